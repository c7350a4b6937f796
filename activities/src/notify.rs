//! Delivering events (SPEC section 4) to where the frontend can get them.
//!
//! Every event becomes a structured log line (target `pulse::events`). With `PULSE_WEBHOOK_URL`
//! set, it is also POSTed there as JSON, signed with `PULSE_WEBHOOK_SECRET` (see
//! [`pulse_workflows::events::signature`]).
//!
//! Stage events come from the workflow through the `notify` activity: a failed delivery is an
//! error, so Temporal retries it. Progress events come from the `report_progress` activity
//! ([`crate::reporter`]): best effort, at least two points apart ([`ProgressThrottle`]), never
//! backwards.

use crate::config::ActivityConfig;
use anyhow::{Context, bail};
use pulse_workflows::{
    contract::Notification,
    events::{Event, signature},
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a stage event delivery may take before it counts as failed (and is retried).
const STAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a progress event delivery may take before it is dropped.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(2);
/// Smallest progress step worth an event, in points.
pub const PROGRESS_STEP: f64 = 2.0;

/// Builds the wire event of a stage notification; object keys become public URLs.
pub fn stage_event(notification: &Notification, config: &ActivityConfig) -> Event {
    let mut event = Event::update(
        notification.asset_id.as_str(),
        rfc3339(notification.at_unix_ms),
    );
    event.stage = Some(notification.stage);
    event.url = notification
        .object_key
        .as_deref()
        .map(|key| config.public_url(key));
    event.progress = notification.progress;
    event.status = notification.status;
    event.error = notification.error.clone();
    event
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC, e.g. `2026-11-25T12:00:00.000Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where events go: the log, and the webhook if one is configured.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    webhook: Option<Webhook>,
}

/// A signed-JSON webhook.
#[derive(Clone, Debug)]
struct Webhook {
    url: String,
    secret: Vec<u8>,
    http: reqwest::Client,
}

impl Notifier {
    /// A notifier that only logs.
    pub fn log_only() -> Self {
        Self::default()
    }

    /// A notifier as `config` says (`PULSE_WEBHOOK_URL`, `PULSE_WEBHOOK_SECRET`).
    pub fn from_config(config: &ActivityConfig) -> anyhow::Result<Self> {
        let Some(url) = config.webhook_url.clone() else {
            return Ok(Self::log_only());
        };
        let Some(secret) = config.webhook_secret.clone() else {
            bail!(
                "PULSE_WEBHOOK_URL is set but PULSE_WEBHOOK_SECRET is not: deliveries must be signed"
            );
        };
        Ok(Self {
            webhook: Some(Webhook {
                url,
                secret: secret.into_bytes(),
                http: reqwest::Client::builder()
                    .build()
                    .context("building the webhook HTTP client")?,
            }),
        })
    }

    /// Delivers a stage event; an error means it was not delivered and should be retried.
    pub async fn deliver(&self, event: &Event) -> anyhow::Result<()> {
        self.send(event, STAGE_TIMEOUT).await
    }

    /// Delivers a progress event if it can be done quickly; returns whether it was delivered.
    pub async fn deliver_progress(&self, event: &Event) -> bool {
        match self.send(event, PROGRESS_TIMEOUT).await {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(asset_id = %event.asset_id, "progress event dropped: {error:#}");
                false
            }
        }
    }

    async fn send(&self, event: &Event, timeout: Duration) -> anyhow::Result<()> {
        let body = serde_json::to_vec(event)?;
        tracing::info!(target: "pulse::events", asset_id = %event.asset_id, event = %String::from_utf8_lossy(&body));
        let Some(webhook) = &self.webhook else {
            return Ok(());
        };
        let timestamp = now_unix_ms() / 1000;
        let response = webhook
            .http
            .post(&webhook.url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signature::TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                signature::SIGNATURE_HEADER,
                signature::sign(&webhook.secret, timestamp, &body),
            )
            .body(body)
            .send()
            .await
            .with_context(|| format!("posting the event to {}", webhook.url))?;
        if !response.status().is_success() {
            bail!("the webhook {} answered {}", webhook.url, response.status());
        }
        Ok(())
    }
}

/// Which progress values are worth an event: rounded to a tenth, at least [`PROGRESS_STEP`]
/// above the last one sent, so the stream never goes backwards and never spams.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProgressThrottle {
    last_sent_tenths: i64,
}

impl ProgressThrottle {
    /// A throttle whose last sent value was `last_sent` percent.
    pub fn after(last_sent: f64) -> Self {
        Self {
            last_sent_tenths: tenths(last_sent),
        }
    }

    /// The value to send for `progress`, if it is far enough above the last one sent.
    pub fn worth_sending(&self, progress: f64) -> Option<f64> {
        let candidate = tenths(progress);
        (candidate >= self.last_sent_tenths + tenths(PROGRESS_STEP))
            .then(|| candidate as f64 / 10.0)
    }

    /// Records that `value` (as returned by [`Self::worth_sending`]) went out.
    pub fn sent(&mut self, value: f64) {
        self.last_sent_tenths = self.last_sent_tenths.max(tenths(value));
    }

    /// The last value sent.
    pub fn last_sent(&self) -> f64 {
        self.last_sent_tenths as f64 / 10.0
    }
}

fn tenths(percent: f64) -> i64 {
    if percent.is_finite() {
        (percent * 10.0).round() as i64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_workflows::{AssetId, AssetStatus, events::Stage};

    #[test]
    fn stage_events_carry_public_urls_and_times() {
        let config = ActivityConfig::from_lookup(|name| match name {
            "PULSE_PUBLIC_BASE_URL" => Some("https://cdn.example/media/".into()),
            _ => None,
        })
        .unwrap();
        let notification = Notification {
            asset_id: AssetId::parse("a1").unwrap(),
            stage: Stage::Failed,
            object_key: Some("processed/a1/hls/master.m3u8".into()),
            progress: None,
            status: Some(AssetStatus::Partial),
            error: Some("variant 720p failed".into()),
            at_unix_ms: 1_700_000_000_123,
        };
        let event = stage_event(&notification, &config);
        assert_eq!(
            event.url.as_deref(),
            Some("https://cdn.example/media/processed/a1/hls/master.m3u8")
        );
        assert_eq!(event.at, "2023-11-14T22:13:20.123Z");
        assert_eq!(event.status, Some(AssetStatus::Partial));
        assert_eq!(event.kind, "update");
    }

    #[test]
    fn the_throttle_sends_steps_of_two_points_and_never_goes_back() {
        let mut throttle = ProgressThrottle::after(0.0);
        let mut sent = Vec::new();
        for progress in [
            0.5, 1.94, 1.96, 2.5, 3.97, 3.99, 3.0, 10.0, 11.0, 12.04, 50.0, 49.0, 99.0,
        ] {
            if let Some(value) = throttle.worth_sending(progress) {
                throttle.sent(value);
                sent.push(value);
            }
        }
        assert_eq!(sent, vec![2.0, 4.0, 10.0, 12.0, 50.0, 99.0]);
        assert!(sent.windows(2).all(|w| w[1] - w[0] >= PROGRESS_STEP - 1e-9));
    }

    #[test]
    fn a_resumed_throttle_continues_above_what_was_sent() {
        let throttle = ProgressThrottle::after(37.3);
        assert_eq!(throttle.worth_sending(20.0), None);
        assert_eq!(throttle.worth_sending(39.2), None);
        assert_eq!(throttle.worth_sending(39.3), Some(39.3));
        assert_eq!(throttle.worth_sending(f64::NAN), None);
    }
}
