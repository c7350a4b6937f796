//! `VideoWorkflow`: one run per asset, from uploaded source to a cached HLS ladder.
//!
//! It reads like the seed's orchestrator: probe, thumbnail (beside the smallest variant), transcode
//! smallest first, publish a master playlist that grows as variants finish, cache it for good at
//! the end. What finished, what failed and why are workflow state, answered by the `status` query;
//! a crashed worker's replacement replays that state instead of reading flags, so a finished
//! variant is never made twice.
//!
//! Speed without losing progressive playback: the smallest variant is transcoded on its own at
//! normal CPU priority, so the asset plays as soon as plain ffmpeg could make that variant, while
//! every other variant is made at idle priority by one decode of the source, in pieces of
//! [`crate::ProcessingSettings::chunk_secs`] that many workers can share. With fast start the
//! smallest variant plays while it is still being written, and the others start once its first
//! segment is up.
//!
//! An asset that ends `partial` (or `failed` after some variants failed) waits for an operator's
//! `retry` update for [`crate::ProcessingSettings::retry_window`]: a retry re-runs only what
//! failed and promotes the asset to `done` when it all succeeds. Cancelling the workflow stops
//! the running transcodes (ffmpeg is killed, temp files removed) and ends the asset with an
//! error that says it was cancelled.
//!
//! Stage events go through an outbox delivered alongside the pipeline, one at a time and in
//! order, each retried until delivered: a slow or failing receiver delays events, never the video.
//! Progress events come from the `report_progress` activity, which reads the transcodes'
//! heartbeats: progress never enters history.

use crate::{
    contract::{
        BadInputKind, CompletedVariant, MasterJob, Notification, ProbeJob, ProgressReport,
        PublishedMaster, ThumbnailJob, TranscodeJob, VideoActivities,
    },
    events::Stage,
    media::{
        FAST_START_SEGMENT_SECS, Rendition, SEGMENT_SECS, SegmentRange, SourcePlan,
        TranscodeOutput, VariantSegments, VariantSpec,
    },
    progress::{self, ProgressSpan},
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
    workflows::{join, join_all, select},
};

/// How long one probe or thumbnail attempt may take.
const QUICK_HEAVY_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long one transcode attempt may take; dead workers are caught by heartbeats much sooner.
const TRANSCODE_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);
/// Marks runs whose fast start segments are [`FAST_START_SEGMENT_SECS`] long.
const SHORT_FAST_START_SEGMENTS: &str = "short-fast-start-segments";
/// Marks runs whose other variants wait until the smallest variant's transcode has started.
const REST_AFTER_FIRST_STARTS: &str = "rest-after-first-starts";
/// Marks fast start runs whose other variants wait until the smallest variant's first segment
/// is up, not just until its transcode has started.
const REST_AFTER_FIRST_SEGMENT: &str = "rest-after-first-segment";
/// Marks runs whose thumbnail is made beside the smallest variant rather than after it.
const THUMBNAIL_BESIDE_FIRST: &str = "thumbnail-beside-first";
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
    /// Whether a `publish_master` runs: publications go one at a time, so none overwrites a
    /// newer master with an older list.
    publishing: bool,
    /// Stage events waiting for delivery, oldest first.
    outbox: VecDeque<Notification>,
    /// Whether progress events may go out: the thumbnail event is delivered (or there is none).
    progress_events_allowed: bool,
    /// Whether the thumbnail is made or failed for good: the `playable` event waits for it, so
    /// the frontend always hears `thumbnail_ready` first although both are made at once.
    thumbnail_settled: bool,
    /// The `playable` event, while it waits for the thumbnail.
    held_playable: Option<Notification>,
    /// Whether transcodes run: the progress reporter runs while they do.
    transcoding: bool,
    /// When the other variants' transcodes may be scheduled.
    rest_gate: RestGate,
    /// Whether the progress reporter still runs: the terminal event waits until it stopped, so
    /// no progress event can follow it.
    reporter_running: bool,
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

impl VideoWorkflow {
    /// Marks a processing asset playable through the master at `master_key` and queues the
    /// `playable` event, or holds it until the thumbnail is settled. Nothing happens once the
    /// asset plays.
    fn become_playable(&mut self, master_key: String, at_unix_ms: u64) {
        if self.state.status != AssetStatus::Processing {
            return;
        }
        self.state.status = AssetStatus::Playable;
        self.state.master_key = Some(master_key.clone());
        let playable = Notification {
            object_key: Some(master_key),
            ..notification(&self.state.asset_id, Stage::Playable, at_unix_ms)
        };
        if self.thumbnail_settled {
            self.outbox.push_back(playable);
        } else {
            self.held_playable = Some(playable);
        }
    }
}

/// What the other variants' transcodes wait for before they are scheduled. The smallest
/// variant's transcode ending opens the gate too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum RestGate {
    /// Nothing: they may be scheduled now.
    #[default]
    Open,
    /// The smallest variant's transcode to run, so their pieces cannot take every heavy slot
    /// while it waits.
    FirstStarts,
    /// Fast start: the smallest variant's first segment, as even at idle priority they slow
    /// it down while a player waits for it.
    FirstSegment,
}

/// Which transcode of a round a job is.
#[derive(Clone, Copy)]
enum Turn {
    /// The smallest variant, at full priority: `live` in fast start; `announce_start` when the
    /// other variants wait until it runs.
    First { live: bool, announce_start: bool },
    /// The other variants, at idle priority while `background` (nothing plays yet).
    Rest { background: bool },
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
        let (ending, (), ()) = join!(
            pipeline.run(),
            pipeline.deliver_events(),
            pipeline.report_progress()
        );
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

    /// What `report_progress` needs: the settled progress, and whether progress events may go
    /// out yet (they never overtake the `processing` and `thumbnail_ready` events).
    #[query]
    pub fn progress_report(&self, _ctx: &WorkflowContextView) -> ProgressReport {
        ProgressReport {
            settled: self.state.progress,
            events_allowed: self.progress_events_allowed,
            transcoding: self.transcoding,
        }
    }

    /// Fast start: the first variant's playlist and the master are up while the variant is
    /// still being written. Sent by the transcode, which wrote `master`; later masters list
    /// the variant too until it is complete. The other variants may start from now on.
    #[signal]
    pub fn first_segment_published(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        master: PublishedMaster,
    ) {
        self.rest_gate = RestGate::Open;
        if self.state.status != AssetStatus::Processing {
            return;
        }
        for rendition in master.renditions {
            if self.renditions.iter().all(|r| r.name != rendition.name) {
                self.renditions.push(rendition);
            }
        }
        self.become_playable(master.key, unix_ms(ctx.workflow_time()));
    }

    /// The smallest variant's transcode runs, and so holds a heavy slot. Sent by the transcode.
    #[signal]
    pub fn first_transcode_started(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        if self.rest_gate == RestGate::FirstStarts {
            self.rest_gate = RestGate::Open;
        }
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

/// A transcode to run: variants, the segments to make of them, and its place on the progress
/// scale.
struct Job {
    variants: Vec<VariantSpec>,
    range: SegmentRange,
    span: ProgressSpan,
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

    /// Makes what is missing: every variant not done yet and the thumbnail. Returns what went
    /// wrong.
    async fn produce(&self, plan: &SourcePlan) -> Vec<String> {
        let (first, rest) = self.jobs(plan);
        // Transcodes scheduled together start in no set order: a long video's pieces could
        // take every heavy slot while the smallest variant waits, and nothing would play until
        // a piece is done.
        let rest_waits =
            first.is_some() && !rest.is_empty() && self.ctx.patched(REST_AFTER_FIRST_STARTS);
        let rest_gate = if !rest_waits {
            RestGate::Open
        } else if self.request.settings.fast_start && self.ctx.patched(REST_AFTER_FIRST_SEGMENT) {
            RestGate::FirstSegment
        } else {
            RestGate::FirstStarts
        };
        self.ctx.state_mut(|workflow| {
            workflow.transcoding = true;
            workflow.rest_gate = rest_gate;
        });
        // The `playable` event waits for the thumbnail (the frontend hears `thumbnail_ready`
        // first), so the thumbnail is made beside the smallest variant and is long done when
        // that plays. It takes the second heavy slot meanwhile, and the other variants the
        // slot after it. Runs from before made it after the smallest variant, which held the
        // `playable` event of a fast start until the whole variant was done.
        let thumbnail_beside = first.is_some() && self.ctx.patched(THUMBNAIL_BESIDE_FIRST);
        let first_and_thumbnail = async {
            let (first, mut problems) = if thumbnail_beside {
                join!(
                    self.run_first(plan, first, rest_waits),
                    self.thumbnail_if_missing(plan, true)
                )
            } else {
                let first = self.run_first(plan, first, rest_waits).await;
                (first, self.thumbnail_if_missing(plan, false).await)
            };
            problems.extend(first);
            problems
        };
        let (mut problems, rest) = join!(first_and_thumbnail, self.run_rest(plan, rest));
        self.ctx.state_mut(|workflow| workflow.transcoding = false);
        problems.extend(rest);
        problems
    }

    /// Splits what is missing into transcodes. While nothing plays, the smallest missing
    /// variant goes first on its own; the others share one decode, cut into pieces. Their
    /// progress spans share what is left of the scale by cost.
    fn jobs(&self, plan: &SourcePlan) -> (Option<Job>, Vec<Job>) {
        let (missing, playable, settled) = self.ctx.state(|workflow| {
            let missing: Vec<VariantSpec> = plan
                .variants
                .iter()
                .filter(|variant| {
                    workflow
                        .state
                        .variants
                        .iter()
                        .any(|v| v.name == variant.name && v.status != VariantStatus::Done)
                })
                .cloned()
                .collect();
            let playable = workflow
                .state
                .variants_in(VariantStatus::Done)
                .next()
                .is_some();
            (missing, playable, workflow.state.progress)
        });
        let duration = plan.media.duration_secs;
        let (first, rest) = match missing.split_first() {
            Some((smallest, others)) if !playable => {
                (Some(vec![smallest.clone()]), others.to_vec())
            }
            _ => (None, missing),
        };
        let segment_secs = self.segment_secs();
        let chunks = if rest.is_empty() {
            Vec::new()
        } else {
            SegmentRange::chunks(duration, self.request.settings.chunk_secs, segment_secs)
        };
        let mut costs: Vec<f64> = first
            .iter()
            .map(|variants| progress::cost(variants, duration))
            .collect();
        costs.extend(
            chunks
                .iter()
                .map(|range| progress::cost(&rest, range.duration_secs(duration))),
        );
        // The jobs share what is left of the scale above the settled progress.
        let above_settled =
            |at: f64| settled + (progress::BEFORE_DONE - settled) * at / progress::BEFORE_DONE;
        let mut spans = progress::spans(&costs)
            .into_iter()
            .map(|span| ProgressSpan {
                start: above_settled(span.start),
                end: above_settled(span.end),
            });
        let first = first.map(|variants| Job {
            variants,
            range: SegmentRange::whole(segment_secs),
            span: spans.next().expect("a span per job"),
        });
        let rest = chunks
            .into_iter()
            .zip(spans)
            .map(|(range, span)| Job {
                variants: rest.clone(),
                range,
                span,
            })
            .collect();
        (first, rest)
    }

    /// How long this run's segments are: shorter in fast start, where a player waits for the
    /// first one. A fast start run begun before that keeps the standard length, so a transcode
    /// it retries continues the segments it has.
    fn segment_secs(&self) -> u32 {
        if self.request.settings.fast_start && self.ctx.patched(SHORT_FAST_START_SEGMENTS) {
            FAST_START_SEGMENT_SECS
        } else {
            SEGMENT_SECS
        }
    }

    /// Makes the thumbnail unless it is there; `beside_first`: while the smallest variant is
    /// being made, at idle priority unless in fast start, whose `playable` event waits for it
    /// from the first segment on.
    async fn thumbnail_if_missing(&self, plan: &SourcePlan, beside_first: bool) -> Vec<String> {
        if self
            .ctx
            .state(|workflow| workflow.state.thumbnail_key.is_some())
        {
            self.ctx
                .state_mut(|workflow| workflow.progress_events_allowed = true);
            self.settle_thumbnail();
            return Vec::new();
        }
        let background = beside_first && !self.request.settings.fast_start;
        let problems = match self.thumbnail(plan, background).await {
            Ok(key) => {
                self.update(|state| state.thumbnail_key = Some(key.clone()));
                self.notify(Stage::ThumbnailReady, Some(key));
                Vec::new()
            }
            Err(error) => {
                self.ctx
                    .state_mut(|workflow| workflow.progress_events_allowed = true);
                vec![format!("the thumbnail failed: {}", reason(&error))]
            }
        };
        self.settle_thumbnail();
        problems
    }

    /// Records that the thumbnail is settled and releases a `playable` event that waited for it.
    fn settle_thumbnail(&self) {
        self.ctx.state_mut(|workflow| {
            workflow.thumbnail_settled = true;
            if let Some(playable) = workflow.held_playable.take() {
                workflow.outbox.push_back(playable);
            }
        });
    }

    /// Makes the smallest variant at full priority: the asset plays once it is published.
    /// `announce_start`: the transcode signals when it runs, as the other variants wait for it.
    async fn run_first(
        &self,
        plan: &SourcePlan,
        job: Option<Job>,
        announce_start: bool,
    ) -> Option<String> {
        let job = job?;
        self.set_variants(&job.variants, VariantStatus::Running);
        let turn = Turn::First {
            live: self.request.settings.fast_start,
            announce_start,
        };
        let result = self.transcode(plan, &job, turn).await;
        // Ended without its signal (refused at once, say): the others need not wait any more.
        self.ctx
            .state_mut(|workflow| workflow.rest_gate = RestGate::Open);
        self.settle(job.span);
        match result {
            Ok(output) => self.complete(plan, &job.variants, output.variants).await,
            Err(error) => Some(self.fail(&job.variants, &error)),
        }
    }

    /// Makes the other variants, one decode for all of them, piece by piece: at idle priority
    /// while the smallest variant is still being made.
    async fn run_rest(&self, plan: &SourcePlan, jobs: Vec<Job>) -> Option<String> {
        let variants = jobs.first()?.variants.clone();
        self.set_variants(&variants, VariantStatus::Running);
        let background = self
            .ctx
            .state(|workflow| workflow.state.master_key.is_none());
        let _ = self
            .ctx
            .wait_condition(|workflow| workflow.rest_gate == RestGate::Open)
            .await;
        let pieces = join_all(jobs.iter().map(|job| async move {
            let result = self.transcode(plan, job, Turn::Rest { background }).await;
            self.settle(job.span);
            result
        }))
        .await;
        let mut segments: Vec<VariantSegments> = variants
            .iter()
            .map(|variant| VariantSegments {
                variant: variant.name.clone(),
                segments: Vec::new(),
            })
            .collect();
        for piece in pieces {
            match piece {
                Ok(output) => append(&mut segments, output),
                Err(error) => return Some(self.fail(&variants, &error)),
            }
        }
        self.complete(plan, &variants, segments).await
    }

    /// Publishes finished variants: writes their playlists and a master listing every finished
    /// variant. Publications go one at a time.
    async fn complete(
        &self,
        plan: &SourcePlan,
        variants: &[VariantSpec],
        segments: Vec<VariantSegments>,
    ) -> Option<String> {
        let _ = self
            .ctx
            .wait_condition(|workflow| !workflow.publishing)
            .await;
        let listed = self.ctx.state_mut(|workflow| {
            workflow.publishing = true;
            workflow.renditions.clone()
        });
        let completed = variants
            .iter()
            .map(|spec| CompletedVariant {
                spec: spec.clone(),
                segments: segments
                    .iter()
                    .find(|s| s.variant == spec.name)
                    .map(|s| s.segments.clone())
                    .unwrap_or_default(),
            })
            .collect();
        let job = MasterJob {
            asset_id: self.request.asset_id.clone(),
            media: plan.media.clone(),
            listed,
            completed,
        };
        let published = self.publish_master(job).await;
        self.ctx.state_mut(|workflow| workflow.publishing = false);
        let published = match published {
            Ok(published) => published,
            Err(error) => return Some(self.fail(variants, &error)),
        };
        let at = unix_ms(self.ctx.workflow_time());
        self.ctx.state_mut(|workflow| {
            workflow.renditions = published.renditions;
            for variant in variants {
                workflow
                    .state
                    .set_variant(&variant.name, VariantStatus::Done);
            }
            workflow.state.master_key = Some(published.key.clone());
            workflow.become_playable(published.key, at);
        });
        self.reflect();
        None
    }

    /// Marks `variants` failed because of `error`; returns the problem. When the source itself
    /// is at fault, every variant still pending is failed too: they would fail the same way.
    fn fail(&self, variants: &[VariantSpec], error: &ActivityExecutionError) -> String {
        let refused = refuses_source(error);
        self.ctx.state_mut(|workflow| {
            workflow.source_refused |= refused;
            for variant in &mut workflow.state.variants {
                let failed_here = variants.iter().any(|v| v.name == variant.name);
                if failed_here || (refused && variant.status == VariantStatus::Pending) {
                    variant.status = VariantStatus::Failed;
                }
            }
        });
        self.reflect();
        if refused {
            return reason(error);
        }
        let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
        match names.as_slice() {
            [one] => format!("variant {one} failed: {}", reason(error)),
            many => format!("variants {} failed: {}", many.join(", "), reason(error)),
        }
    }

    fn set_variants(&self, variants: &[VariantSpec], status: VariantStatus) {
        self.update(|state| {
            for variant in variants {
                state.set_variant(&variant.name, status);
            }
        });
    }

    /// Adds a finished transcode's span to the settled progress.
    fn settle(&self, span: ProgressSpan) {
        self.update(|state| {
            state.progress = (state.progress + span.width()).min(progress::BEFORE_DONE);
        });
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

    async fn thumbnail(
        &self,
        plan: &SourcePlan,
        background: bool,
    ) -> Result<String, ActivityExecutionError> {
        let job = ThumbnailJob {
            asset_id: self.request.asset_id.clone(),
            source_key: self.request.source_key.clone(),
            media: plan.media.clone(),
            background,
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
        job: &Job,
        turn: Turn,
    ) -> Result<TranscodeOutput, ActivityExecutionError> {
        let (background, live, announce_start) = match turn {
            Turn::First {
                live,
                announce_start,
            } => (false, live, announce_start),
            Turn::Rest { background } => (background, false, false),
        };
        let names: Vec<&str> = job.variants.iter().map(|v| v.name.as_str()).collect();
        let mut summary = format!("transcode {}", names.join(", "));
        if !job.range.is_whole() {
            summary.push_str(&format!(" from {} s", job.range.start_secs()));
        }
        let input = TranscodeJob {
            asset_id: self.request.asset_id.clone(),
            source_key: self.request.source_key.clone(),
            media: plan.media.clone(),
            variants: job.variants.clone(),
            range: job.range,
            progress: job.span,
            background,
            live,
            announce_start,
        };
        let mut options = self.heavy(TRANSCODE_TIMEOUT).summarised(&summary);
        options.heartbeat_timeout = Some(self.request.settings.heartbeat_timeout);
        // A cancelled run ends only once ffmpeg is stopped and the temp files are gone.
        options.cancellation_type = ActivityCancellationType::WaitCancellationCompleted;
        self.ctx
            .execute_activity(VideoActivities::transcode, input, options)
            .await
    }

    async fn publish_master(
        &self,
        job: MasterJob,
    ) -> Result<crate::contract::PublishedMaster, ActivityExecutionError> {
        let names: Vec<&str> = job
            .kept_listed()
            .map(|r| r.name.as_str())
            .chain(job.completed.iter().map(|c| c.spec.name.as_str()))
            .collect();
        let summary = format!("publish the master with {}", names.join(", "));
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

    /// Runs the progress reporter whenever transcodes run, until the run ends. The reporter
    /// stops by itself once the `progress_report` query says the transcodes are over; the
    /// pipeline goes on meanwhile, only the terminal event waits for it.
    async fn report_progress(&self) {
        let uncancellable = WorkflowCancellationToken::new();
        loop {
            let _ = self
                .ctx
                .wait_condition_with_options(
                    |workflow| workflow.transcoding || workflow.closing,
                    WaitConditionOptions::builder()
                        .cancellation_token(uncancellable.clone())
                        .build(),
                )
                .await;
            if !self.ctx.state(|workflow| workflow.transcoding) {
                return;
            }
            self.ctx
                .state_mut(|workflow| workflow.reporter_running = true);
            self.run_reporter(uncancellable.clone()).await;
            self.ctx
                .state_mut(|workflow| workflow.reporter_running = false);
        }
    }

    /// Runs the `report_progress` activity, never cancelled: cancelling the run ends the
    /// transcodes, and with them the reporter.
    async fn run_reporter(&self, uncancellable: WorkflowCancellationToken) {
        let mut options = ActivityOptions::start_to_close_timeout(TRANSCODE_TIMEOUT)
            .summarised("report progress");
        options.task_queue = Some(self.request.settings.light_queue.clone());
        options.heartbeat_timeout = Some(self.request.settings.heartbeat_timeout);
        options.cancellation_token = Some(uncancellable);
        let _stopped = self
            .ctx
            .execute_activity(
                VideoActivities::report_progress,
                self.request.asset_id.clone(),
                options,
            )
            .await;
    }

    /// Queues a stage event pointing at `object_key`.
    fn notify(&self, stage: Stage, object_key: Option<String>) {
        self.queue_event(Notification {
            object_key,
            ..self.notification(stage, None)
        });
    }

    fn queue_event(&self, notification: Notification) {
        self.ctx
            .state_mut(|workflow| workflow.outbox.push_back(notification));
    }

    /// Delivers queued stage events one at a time, in order, until the run ends and the outbox
    /// is empty. Each is retried for an hour; one that cannot be delivered is dropped, since the
    /// asset's state, not the event stream, is authoritative. Delivery goes on when the run is
    /// cancelled, so the frontend learns that too. The terminal event waits until the progress
    /// reporter has stopped.
    async fn deliver_events(&self) {
        let uncancellable = WorkflowCancellationToken::new();
        loop {
            let ready = self
                .ctx
                .wait_condition_with_options(
                    |workflow| match workflow.outbox.front() {
                        Some(next) => !next.stage.is_terminal() || !workflow.reporter_running,
                        None => workflow.closing,
                    },
                    WaitConditionOptions::builder()
                        .cancellation_token(uncancellable.clone())
                        .build(),
                )
                .await;
            let next = self.ctx.state_mut(|workflow| workflow.outbox.pop_front());
            let (Ok(()), Some(notification)) = (ready, next) else {
                return;
            };
            let stage = notification.stage;
            let mut options = ActivityOptions::schedule_to_close_timeout(NOTIFY_DEADLINE)
                .summarised(&format!("send the {} event", stage_name(stage)));
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
            if stage == Stage::ThumbnailReady {
                self.ctx
                    .state_mut(|workflow| workflow.progress_events_allowed = true);
            }
        }
    }

    fn notification(&self, stage: Stage, object_key: Option<String>) -> Notification {
        Notification {
            object_key,
            ..notification(
                &self.request.asset_id.to_string(),
                stage,
                unix_ms(self.ctx.workflow_time()),
            )
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

/// Appends a piece's segments to those of its variants.
fn append(all: &mut [VariantSegments], piece: TranscodeOutput) {
    for made in piece.variants {
        if let Some(variant) = all.iter_mut().find(|v| v.variant == made.variant) {
            variant.segments.extend(made.segments);
        }
    }
}

/// A stage event of `asset_id` at `at_unix_ms`, pointing at nothing yet.
fn notification(asset_id: &str, stage: Stage, at_unix_ms: u64) -> Notification {
    Notification {
        asset_id: crate::AssetId::parse(asset_id).expect("workflow asset ids are valid"),
        stage,
        object_key: None,
        progress: None,
        status: None,
        error: None,
        at_unix_ms,
    }
}

/// Workflow time in milliseconds since the Unix epoch.
fn unix_ms(time: Option<std::time::SystemTime>) -> u64 {
    time.and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_millis() as u64)
}

/// What the Temporal UI shows as the run's current details: stage, variants and percent, then
/// what the source is.
fn current_details(state: &AssetState, source: Option<&str>) -> String {
    let done = state.variants_in(VariantStatus::Done).count();
    let mut stage = format!("**{}**", state.status.as_str());
    let running: Vec<&str> = state.variants_in(VariantStatus::Running).collect();
    if !running.is_empty() {
        stage.push_str(&format!(" · transcoding {}", running.join(", ")));
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

    #[test]
    fn pieces_append_in_order() {
        let piece = |index: u32| TranscodeOutput {
            variants: vec![VariantSegments {
                variant: "360p".into(),
                segments: vec![crate::media::SegmentRecord {
                    index,
                    duration_secs: 4.0,
                    bytes: 1,
                }],
            }],
            resumed_from_segment: index,
        };
        let mut all = vec![VariantSegments {
            variant: "360p".into(),
            segments: Vec::new(),
        }];
        append(&mut all, piece(0));
        append(&mut all, piece(1));
        let indices: Vec<u32> = all[0].segments.iter().map(|s| s.index).collect();
        assert_eq!(indices, [0, 1]);
    }
}
