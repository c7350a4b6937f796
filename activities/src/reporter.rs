//! Progress events while an asset is transcoded, sent by the `report_progress` activity.
//!
//! Transcodes only heartbeat their checkpoints; once a second the reporter asks Temporal what
//! the running transcodes heartbeat, adds to it how much the workflow says is settled
//! ([`pulse_workflows::progress::overall`]) and sends an event when the total moved at least two
//! points. Concurrent transcodes (the smallest variant beside the pieces of the others) thus make
//! one progress stream that never goes backwards, and progress never enters workflow history.
//! The workflow is queried only when its answer may have changed: a query is a round trip to a
//! worker, where a description is a read on the server. The reporter also looks as soon as an
//! activity ends ([`ProgressSource::activity_ended`]), so it stops, and lets the terminal event
//! go, right after the last transcode rather than up to a second later.

use crate::notify::{Notifier, ProgressThrottle, now_unix_ms, rfc3339};
use pulse_workflows::{
    contract::{self, ProgressReport},
    events::Event,
    progress::{self, TranscodeCheckpoint},
};
use std::time::Duration;
use temporalio_client::WorkflowExecutionDescription;
use temporalio_common::ActivityDefinition;

/// How often the reporter looks.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The running activities of a workflow, as Temporal describes them.
#[derive(Debug)]
pub struct Running {
    /// Which activities are pending, by id and attempt. The settled progress changes only when
    /// a transcode ends, and then this changes too.
    pub activities: Vec<(String, i32)>,
    /// What the running transcodes heartbeat.
    pub checkpoints: Vec<TranscodeCheckpoint>,
    /// Whether a transcode is pending (running, or waiting to be retried).
    pub transcode_pending: bool,
}

impl Running {
    /// The running activities of a described workflow.
    pub fn of(description: &WorkflowExecutionDescription) -> Self {
        let pending = &description.raw().pending_activities;
        let transcode = contract::Transcode.name();
        Self {
            activities: pending
                .iter()
                .map(|activity| (activity.activity_id.clone(), activity.attempt))
                .collect(),
            checkpoints: running_checkpoints(description),
            transcode_pending: pending.iter().any(|activity| {
                activity
                    .activity_type
                    .as_ref()
                    .is_some_and(|kind| kind.name == transcode)
            }),
        }
    }
}

/// Where the reporter reads progress.
pub trait ProgressSource {
    /// What the workflow says: settled progress, and whether events may go out yet.
    fn report(&self) -> impl Future<Output = Option<ProgressReport>> + Send;
    /// What runs and what the running transcodes heartbeat.
    fn running(&self) -> impl Future<Output = Option<Running>> + Send;
    /// Resolves once an activity of the workflow ended since the last call, so the reporter
    /// looks at once instead of at its next tick: the terminal event waits for the reporter
    /// to stop, and the reporter stops on a look after the last transcode ended. Never
    /// resolves if the source cannot tell.
    fn activity_ended(&self) -> impl Future<Output = ()> + Send;
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
    // The workflow's last answer, and what was running when it was asked.
    let mut answer: Option<(ProgressReport, Vec<(String, i32)>)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = source.activity_ended() => {}
        }
        let Some(running) = source.running().await else {
            continue;
        };
        let report = match &answer {
            Some((report, asked_while))
                if report.events_allowed && *asked_while == running.activities =>
            {
                *report
            }
            _ => {
                let Some(report) = source.report().await else {
                    continue;
                };
                if !report.transcoding {
                    return;
                }
                // An answer that still says "transcoding" once no transcode is pending was
                // given before the workflow saw the last one end: the next look asks again.
                answer = running
                    .transcode_pending
                    .then_some((report, running.activities));
                // A transcode may have ended between the description and the answer, and
                // would count twice: the next look, with the same activities, agrees with it.
                continue;
            }
        };
        let overall = progress::overall(report.settled, &running.checkpoints);
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
    use tokio::sync::Notify;

    /// One look of the reporter: what the workflow would answer, which activities run, and
    /// how far the running transcode got.
    type Look = (ProgressReport, &'static [&'static str], f64);

    /// A source that plays back a script of looks, and counts the queries.
    struct Script {
        looks: Mutex<Vec<Look>>,
        current: Mutex<Option<Look>>,
        queries: Mutex<usize>,
        /// Told when an activity ends.
        activity_ended: Notify,
    }

    impl Script {
        fn new(looks: Vec<Look>) -> Self {
            Self {
                looks: Mutex::new(looks),
                current: Mutex::new(None),
                queries: Mutex::new(0),
                activity_ended: Notify::new(),
            }
        }

        async fn play(&self) -> Vec<f64> {
            let mut sent = Vec::new();
            let notifier = Notifier::log_only();
            let reporting = report(self, &notifier, "a1", 0.0, |value| sent.push(value));
            tokio::time::timeout(Duration::from_secs(60), reporting)
                .await
                .expect("the reporter stops when the transcodes are over");
            sent
        }
    }

    impl ProgressSource for Script {
        async fn report(&self) -> Option<ProgressReport> {
            *self.queries.lock().unwrap() += 1;
            self.current.lock().unwrap().map(|(report, _, _)| report)
        }

        async fn running(&self) -> Option<Running> {
            let mut looks = self.looks.lock().unwrap();
            if looks.is_empty() {
                return None;
            }
            let look = looks.remove(0);
            *self.current.lock().unwrap() = Some(look);
            let (_, activities, progress) = look;
            Some(Running {
                activities: activities.iter().map(|id| (id.to_string(), 1)).collect(),
                checkpoints: vec![TranscodeCheckpoint {
                    span: ProgressSpan {
                        start: 10.0,
                        end: 99.0,
                    },
                    progress,
                    ..Default::default()
                }],
                transcode_pending: !activities.is_empty(),
            })
        }

        async fn activity_ended(&self) {
            self.activity_ended.notified().await;
        }
    }

    fn allowed(settled: f64) -> ProgressReport {
        ProgressReport {
            settled,
            events_allowed: true,
            transcoding: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn events_wait_for_their_turn_then_climb_in_steps_of_two() {
        let waiting = ProgressReport {
            events_allowed: false,
            ..allowed(0.0)
        };
        let over = ProgressReport::default();
        let script = Script::new(vec![
            (waiting, &["t1"], 14.0),
            (allowed(10.0), &["t1"], 11.0),
            (allowed(10.0), &["t1"], 12.0),
            (allowed(10.0), &["t1"], 13.0),
            (allowed(10.0), &["t1"], 14.0),
            (allowed(10.0), &["t1"], 20.0),
            (over, &["t2"], 30.0),
            (allowed(10.0), &["t2"], 40.0),
        ]);
        // Nothing goes out before events are allowed. Then settled 10 plus what the running
        // piece adds: 12 goes out, 13 is less than two above it, 14 and 20 are not. It stops
        // when the activities change and the workflow says the transcodes are over, before 30
        // or 40 could go out.
        assert_eq!(script.play().await, vec![12.0, 14.0, 20.0]);
        assert_eq!(
            *script.queries.lock().unwrap(),
            3,
            "asked thrice in 7 looks"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_workflow_is_asked_again_when_a_transcode_ends() {
        let script = Script::new(vec![
            (allowed(0.0), &["t1", "t2"], 12.0),
            (allowed(0.0), &["t1", "t2"], 14.0),
            (allowed(30.0), &["t2"], 14.0),
            (allowed(30.0), &["t2"], 15.0),
            (allowed(30.0), &["t2"], 16.0),
            (ProgressReport::default(), &[], 16.0),
        ]);
        // t1 ended with 30 settled: the next look adds t2's 5 to it; 36 is too close to 35.
        assert_eq!(script.play().await, vec![4.0, 35.0]);
        assert_eq!(*script.queries.lock().unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_reporter_looks_at_once_when_an_activity_ends() {
        let script = Script::new(vec![
            (allowed(0.0), &["t1"], 12.0),
            (ProgressReport::default(), &[], 12.0),
        ]);
        let started = tokio::time::Instant::now();
        let t1_ends = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            script.activity_ended.notify_one();
        };
        let (sent, ()) = tokio::join!(script.play(), t1_ends);
        assert_eq!(sent, Vec::<f64>::new());
        assert!(
            started.elapsed() < REPORT_EVERY,
            "stopped {:?} after the start, not right after t1 ended",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_older_than_the_last_transcodes_end_is_asked_again() {
        let script = Script::new(vec![
            (allowed(0.0), &["t1"], 12.0),
            // t1 is over, but the workflow has not seen it yet.
            (allowed(0.0), &[], 12.0),
            (ProgressReport::default(), &[], 12.0),
        ]);
        assert_eq!(script.play().await, Vec::<f64>::new());
        assert_eq!(*script.queries.lock().unwrap(), 3);
    }
}
