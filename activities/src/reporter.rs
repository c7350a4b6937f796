//! Progress events while an asset is transcoded, sent by the `report_progress` activity.
//!
//! Transcodes only heartbeat their checkpoints; once a second the reporter asks the workflow how
//! much is settled and Temporal what the running transcodes heartbeat, adds them up
//! ([`pulse_workflows::progress::overall`]) and sends an event when the total moved at least two
//! points. Concurrent transcodes (the smallest variant beside the pieces of the others) thus make
//! one progress stream that never goes backwards, and progress never enters workflow history.

use crate::notify::{Notifier, ProgressThrottle, now_unix_ms, rfc3339};
use pulse_workflows::{
    contract::ProgressReport,
    events::Event,
    progress::{self, TranscodeCheckpoint},
};
use std::time::Duration;
use temporalio_client::WorkflowExecutionDescription;

/// How often the reporter looks.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Where the reporter reads progress.
pub trait ProgressSource {
    /// What the workflow says: settled progress, and whether events may go out yet.
    fn report(&self) -> impl Future<Output = Option<ProgressReport>> + Send;
    /// What the running transcodes heartbeat.
    fn running(&self) -> impl Future<Output = Vec<TranscodeCheckpoint>> + Send;
}

/// The checkpoints the running activities of a described workflow heartbeat.
pub fn running_checkpoints(description: &WorkflowExecutionDescription) -> Vec<TranscodeCheckpoint> {
    description
        .raw()
        .pending_activities
        .iter()
        .filter_map(|activity| activity.heartbeat_details.as_ref()?.payloads.first())
        .filter_map(|payload| serde_json::from_slice(&payload.data).ok())
        .collect()
}

/// Sends the progress events of `asset_id`, starting above `last_sent`, until the workflow says
/// its transcodes are over; calls `sent` with each value delivered.
pub async fn report(
    source: &impl ProgressSource,
    notifier: &Notifier,
    asset_id: &str,
    last_sent: f64,
    mut sent: impl FnMut(f64),
) {
    let mut throttle = ProgressThrottle::after(last_sent);
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        tick.tick().await;
        let Some(report) = source.report().await else {
            continue;
        };
        if !report.transcoding {
            return;
        }
        if !report.events_allowed {
            continue;
        }
        let overall = progress::overall(report.settled, &source.running().await);
        let Some(value) = throttle.worth_sending(overall) else {
            continue;
        };
        let mut event = Event::update(asset_id, rfc3339(now_unix_ms()));
        event.progress = Some(value);
        if notifier.deliver_progress(&event).await {
            throttle.sent(value);
            sent(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_workflows::progress::ProgressSpan;
    use std::sync::Mutex;

    /// A source that plays back a script of (report, running progress) steps, one per look.
    struct Script {
        steps: Mutex<Vec<(ProgressReport, f64)>>,
        running: Mutex<f64>,
    }

    impl ProgressSource for Script {
        async fn report(&self) -> Option<ProgressReport> {
            let mut steps = self.steps.lock().unwrap();
            if steps.is_empty() {
                return None;
            }
            let (report, running) = steps.remove(0);
            *self.running.lock().unwrap() = running;
            Some(report)
        }

        async fn running(&self) -> Vec<TranscodeCheckpoint> {
            vec![TranscodeCheckpoint {
                span: ProgressSpan {
                    start: 10.0,
                    end: 99.0,
                },
                progress: *self.running.lock().unwrap(),
                ..Default::default()
            }]
        }
    }

    #[tokio::test(start_paused = true)]
    async fn events_wait_for_their_turn_then_climb_in_steps_of_two() {
        let allowed = |settled: f64| ProgressReport {
            settled,
            events_allowed: true,
            transcoding: true,
        };
        let steps = Mutex::new(vec![
            (
                ProgressReport {
                    settled: 0.0,
                    events_allowed: false,
                    transcoding: true,
                },
                14.0,
            ),
            (allowed(10.0), 11.0),
            (allowed(10.0), 12.0),
            (allowed(10.0), 14.0),
            (allowed(10.0), 13.0),
            (allowed(10.0), 20.0),
            (ProgressReport::default(), 30.0),
            (allowed(10.0), 40.0),
        ]);
        let script = Script {
            steps,
            running: Mutex::new(0.0),
        };
        let mut sent = Vec::new();
        let notifier = Notifier::log_only();
        let reporting = report(&script, &notifier, "a1", 0.0, |value| sent.push(value));
        tokio::time::timeout(Duration::from_secs(60), reporting)
            .await
            .expect("the reporter stops when the transcodes are over");
        // Nothing goes out before events are allowed; then settled 10 plus what the running
        // piece adds: 11 goes out, 12 and 13 are less than two above the last sent, 14 and 20
        // are not. It stops when the transcodes are over, before 30 or 40 could go out.
        assert_eq!(sent, vec![11.0, 14.0, 20.0]);
    }
}
