//! `VideoWorkflow`: one run per asset, from uploaded source to a cached HLS ladder.
//!
//! It reads like the seed's orchestrator: probe, thumbnail, then one transcode per variant,
//! smallest first, republishing the master playlist after each so the asset plays as soon as the
//! first variant is out. What finished, what failed and why are workflow state, answered by the
//! `status` query; a crashed worker's replacement replays that state instead of reading flags,
//! so a finished variant is never made twice.
//!
//! An asset that ends `partial` (or `failed` after some variants failed) waits for an operator's
//! `retry` update for [`crate::ProcessingSettings::retry_window`]: a retry re-runs only what
//! failed and promotes the asset to `done` when it all succeeds. Cancelling the workflow stops
//! the running transcode (ffmpeg is killed, temp files removed) and ends the asset with an error
//! that says it was cancelled.
//!
//! Stage events go through an outbox delivered alongside the pipeline, one at a time and in
//! order, each retried until delivered: a slow or failing receiver delays events, never the video.

use crate::{
    contract::{
        BadInputKind, MasterJob, Notification, ProbeJob, ThumbnailJob, TranscodeJob,
        VideoActivities,
    },
    events::Stage,
    media::{Rendition, SourcePlan, VariantSpec},
    progress::{self, ProgressSpan, ladder_spans},
    request::VideoRequest,
    search,
    state::{AssetState, AssetStatus, VariantState, VariantStatus},
};
use std::{
    collections::VecDeque,
    pin::pin,
    time::{Duration, UNIX_EPOCH},
};
use temporalio_common::{RetryPolicy, protos::temporal::api::failure::v1::failure::FailureInfo};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityCancellationType, ActivityExecutionError, ActivityOptions, SyncWorkflowContext,
    WaitConditionOptions, WorkflowCancellationToken, WorkflowContext, WorkflowContextView,
    WorkflowResult, WorkflowTermination,
    workflows::{join, select},
};

/// How long one probe or thumbnail attempt may take.
const QUICK_HEAVY_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long one transcode attempt may take; dead workers are caught by heartbeats much sooner.
const TRANSCODE_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);
/// How long one light activity attempt may take.
const LIGHT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stage event is retried before it is given up.
const NOTIFY_DEADLINE: Duration = Duration::from_secs(60 * 60);
/// Longest wait between two delivery attempts of a stage event.
const NOTIFY_MAX_INTERVAL: Duration = Duration::from_secs(10);

/// The video pipeline of one asset. Its workflow id is `video-{asset_id}`.
#[workflow]
#[derive(Default)]
pub struct VideoWorkflow {
    state: AssetState,
    /// Every finished variant, as the master playlist lists them.
    renditions: Vec<Rendition>,
    /// Stage events waiting for delivery, oldest first.
    outbox: VecDeque<Notification>,
    /// Stage events queued so far.
    events_queued: u32,
    /// Stage events delivered (or given up on) so far.
    events_settled: u32,
    /// Whether the run is ending: no more events will be queued.
    closing: bool,
    /// Whether the asset is waiting for an operator's retry.
    awaiting_retry: bool,
    /// Whether an operator asked for a retry.
    retry_requested: bool,
    /// Whether a transcode refused the source itself (cut off, undecodable): retrying cannot help.
    source_refused: bool,
    /// The probed source in a few words, for operators.
    source: Option<String>,
    /// The status and finished variant count last written to the search attributes.
    searchable: Option<(AssetStatus, i64)>,
}

/// How a run ends.
enum Ending {
    /// Done, partial or failed.
    Finished(AssetState),
    /// Cancelled; the state says what was made before.
    Cancelled(AssetState),
}

#[workflow_methods]
impl VideoWorkflow {
    /// Processes the asset and returns its final state (`done`, `partial` or `failed`). A
    /// cancelled run ends cancelled, with the final state as its details.
    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        request: VideoRequest,
    ) -> WorkflowResult<AssetState> {
        let pipeline = Pipeline {
            ctx: ctx.clone(),
            request,
        };
        let (ending, ()) = join!(pipeline.run(), pipeline.deliver_events());
        match ending {
            Ending::Finished(state) => Ok(state),
            Ending::Cancelled(state) => Err(WorkflowTermination::cancelled_with_details(state)),
        }
    }

    /// The asset's current state.
    #[query]
    pub fn status(&self, _ctx: &WorkflowContextView) -> AssetState {
        self.state.clone()
    }

    /// How many stage events are delivered (or given up on). A transcode sends its progress
    /// events only once the stage events queued before it are out, so the frontend sees every
    /// event in order.
    #[query]
    pub fn events_settled(&self, _ctx: &WorkflowContextView) -> u32 {
        self.events_settled
    }

    #[update_validator(retry)]
    fn validate_retry(
        &self,
        _ctx: &WorkflowContextView,
        _input: &(),
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.awaiting_retry {
            Ok(())
        } else {
            Err(format!(
                "asset {} is {}: only a partial or failed asset whose variants failed can be \
                 retried, and only while it waits for a retry",
                self.state.asset_id,
                self.state.status.as_str()
            )
            .into())
        }
    }

    /// Re-runs what failed (variants, and the thumbnail if it failed); returns the variants
    /// that will be made again.
    #[update]
    pub fn retry(&mut self, _ctx: &mut SyncWorkflowContext<Self>) -> Vec<String> {
        self.retry_requested = true;
        self.state
            .variants_in(VariantStatus::Failed)
            .map(str::to_owned)
            .collect()
    }
}

/// The orchestration of one run; workflow state lives in the context, not here.
struct Pipeline {
    ctx: WorkflowContext<VideoWorkflow>,
    request: VideoRequest,
}

impl Pipeline {
    async fn run(&self) -> Ending {
        let ending = self.process().await;
        self.ctx.state_mut(|workflow| workflow.closing = true);
        ending
    }

    async fn process(&self) -> Ending {
        self.update(|state| {
            *state = AssetState::queued(self.request.asset_id.as_str());
            state.status = AssetStatus::Processing;
        });
        self.notify(Stage::Processing, None);

        let plan = match self.probe().await {
            Ok(plan) if !plan.variants.is_empty() => plan,
            Ok(_) => return self.conclude(vec!["the source has no video to transcode".into()]),
            Err(error) => return self.conclude(vec![reason(&error)]),
        };
        self.ctx.state_mut(|workflow| {
            workflow.source = Some(format!(
                "{}, {:.1} s, {:.1} MiB",
                plan.media.description,
                plan.media.duration_secs,
                plan.media.size_bytes as f64 / 1_048_576.0
            ));
        });
        self.update(|state| {
            state.variants = plan
                .variants
                .iter()
                .map(|variant| VariantState {
                    name: variant.name.clone(),
                    status: VariantStatus::Pending,
                })
                .collect();
        });

        loop {
            let mut problems = self.produce(&plan).await;
            if problems.is_empty()
                && !self.cancelled()
                && let Err(error) = self.finalize_cache_headers().await
            {
                problems.push(format!(
                    "the master playlist could not be marked cacheable: {}",
                    reason(&error)
                ));
            }
            let ending = self.conclude(problems);
            match &ending {
                Ending::Finished(state) if state.status != AssetStatus::Done => {}
                _ => return ending,
            }
            if !self.wait_for_retry().await {
                return ending;
            }
        }
    }

    /// Makes what is missing: the thumbnail, then every variant not done yet, smallest first.
    /// Returns what went wrong.
    async fn produce(&self, plan: &SourcePlan) -> Vec<String> {
        let mut problems = Vec::new();
        if self
            .ctx
            .state(|workflow| workflow.state.thumbnail_key.is_none())
        {
            match self.thumbnail(plan).await {
                Ok(key) => {
                    self.update(|state| state.thumbnail_key = Some(key.clone()));
                    self.notify(Stage::ThumbnailReady, Some(key));
                }
                Err(error) => problems.push(format!("the thumbnail failed: {}", reason(&error))),
            }
        }
        for (variant, span) in plan.variants.iter().zip(ladder_spans(&plan.variants)) {
            let pending = self.ctx.state(|workflow| {
                workflow
                    .state
                    .variants
                    .iter()
                    .any(|v| v.name == variant.name && v.status != VariantStatus::Done)
            });
            if !pending || self.cancelled() {
                continue;
            }
            self.update(|state| state.set_variant(&variant.name, VariantStatus::Running));
            if let Err(error) = self.transcode_and_publish(plan, variant, span).await {
                self.update(|state| state.set_variant(&variant.name, VariantStatus::Failed));
                if refuses_source(&error) {
                    // The source itself is at fault: every other variant would fail the same way.
                    self.ctx.state_mut(|workflow| {
                        workflow.source_refused = true;
                        for pending in &mut workflow.state.variants {
                            if pending.status == VariantStatus::Pending {
                                pending.status = VariantStatus::Failed;
                            }
                        }
                    });
                    self.reflect();
                    problems.push(reason(&error));
                    break;
                }
                problems.push(format!(
                    "variant {} failed: {}",
                    variant.name,
                    reason(&error)
                ));
            }
            self.update(|state| state.progress = state.progress.max(span.end));
        }
        problems
    }

    /// Transcodes one variant, then republishes the master with every finished variant.
    async fn transcode_and_publish(
        &self,
        plan: &SourcePlan,
        variant: &VariantSpec,
        span: ProgressSpan,
    ) -> Result<(), ActivityExecutionError> {
        let rendition = self.transcode(plan, variant, span).await?;
        let mut listed = self.ctx.state(|workflow| workflow.renditions.clone());
        listed.push(rendition);
        let master_key = self.publish_master(&listed).await?;

        let first_playable = self.ctx.state_mut(|workflow| {
            workflow.renditions = listed;
            let state = &mut workflow.state;
            state.set_variant(&variant.name, VariantStatus::Done);
            state.master_key = Some(master_key.clone());
            let first = state.status == AssetStatus::Processing;
            if first {
                state.status = AssetStatus::Playable;
            }
            first
        });
        self.reflect();
        if first_playable {
            self.notify(Stage::Playable, Some(master_key));
        }
        Ok(())
    }

    /// Settles the asset: `done` when nothing went wrong (its master is then cached for good),
    /// else `partial` when something plays, else `failed`; queues the one terminal event.
    fn conclude(&self, mut problems: Vec<String>) -> Ending {
        let cancelled = self.cancelled();
        if cancelled {
            let why = self
                .ctx
                .cancellation_token()
                .reason()
                .filter(|r| !r.is_empty());
            problems.insert(
                0,
                match why {
                    Some(why) => format!("it was cancelled ({why})"),
                    None => "it was cancelled".to_owned(),
                },
            );
        }
        let state = self.update(|state| {
            if problems.is_empty() {
                state.status = AssetStatus::Done;
                state.progress = progress::DONE;
                state.error = None;
            } else {
                let plays = state.variants_in(VariantStatus::Done).next().is_some();
                state.status = if plays {
                    AssetStatus::Partial
                } else {
                    AssetStatus::Failed
                };
                state.error = Some(error_sentence(state.status, &problems));
            }
            state.clone()
        });
        let terminal = if state.status == AssetStatus::Done {
            Notification {
                progress: Some(progress::DONE),
                ..self.notification(Stage::Done, None)
            }
        } else {
            Notification {
                status: Some(state.status),
                error: state.error.clone(),
                ..self.notification(Stage::Failed, None)
            }
        };
        self.queue_event(terminal);
        if cancelled {
            Ending::Cancelled(state)
        } else {
            Ending::Finished(state)
        }
    }

    /// Waits for an operator's retry for the retry window. When one comes, what failed is made
    /// pending again and `true` is returned.
    async fn wait_for_retry(&self) -> bool {
        let retryable = self.ctx.state_mut(|workflow| {
            let retryable = !workflow.source_refused
                && (workflow.state.thumbnail_key.is_none()
                    || workflow
                        .state
                        .variants_in(VariantStatus::Failed)
                        .next()
                        .is_some());
            workflow.awaiting_retry = retryable;
            workflow.retry_requested = false;
            retryable
        });
        if !retryable {
            return false;
        }
        let requested = {
            let mut retry = pin!(self.ctx.wait_condition(|workflow| workflow.retry_requested));
            let mut window = pin!(self.ctx.timer(self.request.settings.retry_window));
            select! {
                asked = retry => asked.is_ok(),
                _ = window => false,
            }
        };
        self.ctx.state_mut(|workflow| {
            workflow.awaiting_retry = false;
            if requested {
                let state = &mut workflow.state;
                for variant in &mut state.variants {
                    if variant.status == VariantStatus::Failed {
                        variant.status = VariantStatus::Pending;
                    }
                }
                state.error = None;
                state.status = if state.master_key.is_some() {
                    AssetStatus::Playable
                } else {
                    AssetStatus::Processing
                };
            }
        });
        self.reflect();
        requested
    }

    async fn probe(&self) -> Result<SourcePlan, ActivityExecutionError> {
        let job = ProbeJob {
            asset_id: self.request.asset_id.clone(),
            source_key: self.request.source_key.clone(),
        };
        self.ctx
            .execute_activity(
                VideoActivities::probe,
                job,
                self.heavy(QUICK_HEAVY_TIMEOUT)
                    .summarised("probe the source"),
            )
            .await
    }

    async fn thumbnail(&self, plan: &SourcePlan) -> Result<String, ActivityExecutionError> {
        let job = ThumbnailJob {
            asset_id: self.request.asset_id.clone(),
            source_key: self.request.source_key.clone(),
            media: plan.media.clone(),
        };
        self.ctx
            .execute_activity(
                VideoActivities::thumbnail,
                job,
                self.heavy(QUICK_HEAVY_TIMEOUT)
                    .summarised("make the thumbnail"),
            )
            .await
    }

    async fn transcode(
        &self,
        plan: &SourcePlan,
        variant: &VariantSpec,
        progress: ProgressSpan,
    ) -> Result<Rendition, ActivityExecutionError> {
        let job = TranscodeJob {
            asset_id: self.request.asset_id.clone(),
            source_key: self.request.source_key.clone(),
            media: plan.media.clone(),
            variant: variant.clone(),
            progress,
            events_before: self.ctx.state(|workflow| workflow.events_queued),
        };
        let mut options = self
            .heavy(TRANSCODE_TIMEOUT)
            .summarised(&format!("transcode {}", variant.name));
        options.heartbeat_timeout = Some(self.request.settings.heartbeat_timeout);
        // A cancelled run ends only once ffmpeg is stopped and the temp files are gone.
        options.cancellation_type = ActivityCancellationType::WaitCancellationCompleted;
        self.ctx
            .execute_activity(VideoActivities::transcode_variant, job, options)
            .await
    }

    async fn publish_master(
        &self,
        renditions: &[Rendition],
    ) -> Result<String, ActivityExecutionError> {
        let names: Vec<&str> = renditions.iter().map(|r| r.name.as_str()).collect();
        let summary = format!("publish the master with {}", names.join(", "));
        let job = MasterJob {
            asset_id: self.request.asset_id.clone(),
            renditions: renditions.to_vec(),
        };
        self.ctx
            .execute_activity(
                VideoActivities::publish_master,
                job,
                self.light().summarised(&summary),
            )
            .await
    }

    /// Marks the master cacheable for a year: the last step of a done asset.
    async fn finalize_cache_headers(&self) -> Result<(), ActivityExecutionError> {
        self.ctx
            .execute_activity(
                VideoActivities::finalize_cache_headers,
                self.request.asset_id.clone(),
                self.light().summarised("cache the master for a year"),
            )
            .await
    }

    /// Queues a stage event pointing at `object_key`.
    fn notify(&self, stage: Stage, object_key: Option<String>) {
        self.queue_event(Notification {
            object_key,
            ..self.notification(stage, None)
        });
    }

    fn queue_event(&self, notification: Notification) {
        self.ctx.state_mut(|workflow| {
            workflow.outbox.push_back(notification);
            workflow.events_queued += 1;
        });
    }

    /// Delivers queued stage events one at a time, in order, until the run ends and the outbox
    /// is empty. Each is retried for an hour; one that cannot be delivered is dropped, since the
    /// asset's state, not the event stream, is authoritative. Delivery goes on when the run is
    /// cancelled, so the frontend learns that too.
    async fn deliver_events(&self) {
        let uncancellable = WorkflowCancellationToken::new();
        loop {
            let ready = self
                .ctx
                .wait_condition_with_options(
                    |workflow| !workflow.outbox.is_empty() || workflow.closing,
                    WaitConditionOptions::builder()
                        .cancellation_token(uncancellable.clone())
                        .build(),
                )
                .await;
            let next = self.ctx.state_mut(|workflow| workflow.outbox.pop_front());
            let (Ok(()), Some(notification)) = (ready, next) else {
                return;
            };
            let mut options = ActivityOptions::schedule_to_close_timeout(NOTIFY_DEADLINE)
                .summarised(&format!(
                    "send the {} event",
                    stage_name(notification.stage)
                ));
            options.task_queue = Some(self.request.settings.light_queue.clone());
            options.cancellation_token = Some(uncancellable.clone());
            options.retry_policy = Some(
                RetryPolicy::builder()
                    .initial_interval(Duration::from_secs(1))
                    .maximum_interval(NOTIFY_MAX_INTERVAL)
                    .build(),
            );
            let _undeliverable = self
                .ctx
                .execute_activity(VideoActivities::notify, notification, options)
                .await;
            self.ctx.state_mut(|workflow| workflow.events_settled += 1);
        }
    }

    fn notification(&self, stage: Stage, object_key: Option<String>) -> Notification {
        let at_unix_ms = self
            .ctx
            .workflow_time()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_millis() as u64);
        Notification {
            asset_id: self.request.asset_id.clone(),
            stage,
            object_key,
            progress: None,
            status: None,
            error: None,
            at_unix_ms,
        }
    }

    fn cancelled(&self) -> bool {
        self.ctx.cancellation_token().is_cancelled()
    }

    fn heavy(&self, timeout: Duration) -> ActivityOptions {
        self.options(&self.request.settings.video_queue, timeout)
    }

    fn light(&self) -> ActivityOptions {
        self.options(&self.request.settings.light_queue, LIGHT_TIMEOUT)
    }

    fn options(&self, queue: &str, timeout: Duration) -> ActivityOptions {
        let retry = &self.request.settings.retry;
        let mut options = ActivityOptions::start_to_close_timeout(timeout);
        options.task_queue = Some(queue.to_owned());
        options.retry_policy = Some(
            RetryPolicy::builder()
                .initial_interval(retry.initial_interval)
                .backoff_coefficient(retry.backoff)
                .maximum_attempts(retry.max_attempts)
                .build(),
        );
        options
    }

    /// Changes the asset's state, then brings what operators see up to date.
    fn update<R>(&self, change: impl FnOnce(&mut AssetState) -> R) -> R {
        let result = self.ctx.state_mut(|workflow| change(&mut workflow.state));
        self.reflect();
        result
    }

    /// Writes the status and finished variant count to the search attributes when they changed
    /// (each write is a history event), and the stage to the current details (free).
    fn reflect(&self) {
        let (changed, details) = self.ctx.state_mut(|workflow| {
            let state = &workflow.state;
            let now = (
                state.status,
                state.variants_in(VariantStatus::Done).count() as i64,
            );
            let changed = workflow.searchable != Some(now);
            workflow.searchable = Some(now);
            (
                changed.then_some(now),
                current_details(state, workflow.source.as_deref()),
            )
        });
        if let Some((status, done)) = changed {
            self.ctx.upsert_search_attributes([
                search::STATUS.value_set(status.as_str().to_owned()),
                search::VARIANTS_DONE.value_set(done),
            ]);
        }
        self.ctx.set_current_details(details);
    }
}

/// What the Temporal UI shows as the run's current details: stage, variant and percent, then
/// what the source is.
fn current_details(state: &AssetState, source: Option<&str>) -> String {
    let done = state.variants_in(VariantStatus::Done).count();
    let mut stage = format!("**{}**", state.status.as_str());
    if let Some(running) = state.variants_in(VariantStatus::Running).next() {
        stage.push_str(&format!(" · transcoding {running}"));
    }
    if !state.variants.is_empty() {
        stage.push_str(&format!(" · {done}/{} variants", state.variants.len()));
    }
    stage.push_str(&format!(" · {:.0}%", state.progress));
    match source {
        Some(source) => format!("{stage}\nsource: {source}"),
        None => stage,
    }
}

/// The sentence `error` holds when the asset is not done.
fn error_sentence(status: AssetStatus, problems: &[String]) -> String {
    let what = problems.join("; ");
    match status {
        AssetStatus::Partial => {
            format!("Processing finished with problems, the asset plays without them: {what}.")
        }
        _ => format!("Processing failed: {what}."),
    }
}

/// A stage as events name it.
fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Processing => "processing",
        Stage::ThumbnailReady => "thumbnail_ready",
        Stage::Playable => "playable",
        Stage::Done => "done",
        Stage::Failed => "failed",
    }
}

/// Activity options with the one-line summary the Temporal UI shows.
trait Summarised {
    fn summarised(self, summary: &str) -> Self;
}

impl Summarised for ActivityOptions {
    fn summarised(mut self, summary: &str) -> Self {
        self.summary = Some(summary.to_owned());
        self
    }
}

/// Whether an activity failed because of the source itself (a non-retryable failure whose type
/// is a [`BadInputKind`]).
fn refuses_source(error: &ActivityExecutionError) -> bool {
    let mut failure = error.failure();
    while let Some(current) = failure {
        if let Some(FailureInfo::ApplicationFailureInfo(info)) = &current.failure_info
            && info.non_retryable
            && BadInputKind::from_type_name(&info.r#type).is_some()
        {
            return true;
        }
        failure = current.cause.as_deref();
    }
    false
}

/// The most specific message of an activity failure: activities put a sentence a person can act
/// on in the innermost application failure, the outer layers only say "activity failed".
fn reason(error: &ActivityExecutionError) -> String {
    let Some(mut failure) = error.failure() else {
        return error.to_string();
    };
    while let Some(cause) = failure.cause.as_deref() {
        failure = cause;
    }
    failure.message.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_sentences_say_whether_the_asset_plays() {
        let problems = vec!["variant 720p failed: ffmpeg crashed".to_owned()];
        assert_eq!(
            error_sentence(AssetStatus::Partial, &problems),
            "Processing finished with problems, the asset plays without them: variant 720p failed: ffmpeg crashed."
        );
        assert_eq!(
            error_sentence(AssetStatus::Failed, &["the source is empty".to_owned()]),
            "Processing failed: the source is empty."
        );
    }
}
