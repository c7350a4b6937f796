//! Delivering events (SPEC section 4) to where the frontend can get them.

use crate::config::ActivityConfig;
use pulse_workflows::{contract::Notification, events::Event};
use std::time::{Duration, UNIX_EPOCH};

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

/// Where events go.
#[derive(Clone, Debug, Default)]
pub struct Notifier {}

impl Notifier {
    /// Delivers `event`: one structured log line per event.
    pub async fn deliver(&self, event: &Event) -> anyhow::Result<()> {
        let json = serde_json::to_string(event)?;
        tracing::info!(target: "pulse::events", asset_id = %event.asset_id, event = %json, "event");
        Ok(())
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
}
