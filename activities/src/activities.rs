//! The Temporal activities: thin adapters from the workflow's contract to the pieces of this
//! crate. Heavy ones (probe, thumbnail, transcode) stop their ffmpeg and remove their temp files
//! when the workflow cancels them.

use crate::{
    cache_policy::ObjectKind,
    config::ActivityConfig,
    failure::into_activity_error,
    ffmpeg::{self, SourceInput, recipes},
    hls, ladder,
    notify::{Notifier, ProgressEvents, stage_event},
    probe::{ProbeReport, analyse, unreadable},
    storage::Storage,
    transcode::{self, PRESIGN_TTL, TranscodeCheckpoint},
    workdir,
};
use anyhow::Context;
use futures::future::BoxFuture;
use pulse_workflows::{
    AssetId, VideoWorkflow,
    contract::{self, MasterJob, Notification, ProbeJob, ThumbnailJob, TranscodeJob},
    media::{Rendition, SourcePlan},
};
use std::{sync::Arc, time::Duration};
use temporalio_client::WorkflowQueryOptions;
use temporalio_common::ActivityDefinition;
use temporalio_macros::activities;
use temporalio_sdk::{
    WorkerOptions,
    activities::{ActivityContext, ActivityError, ExecutableActivity},
};
use tokio::sync::watch;

/// How often a running transcode heartbeats, whether or not it moved.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Every activity of the pipeline, sharing one S3 client and the worker's settings.
pub struct PulseActivities {
    storage: Storage,
    config: ActivityConfig,
    notifier: Notifier,
}

impl PulseActivities {
    /// Activities over `storage`, configured by `config`.
    pub fn new(storage: Storage, config: ActivityConfig, notifier: Notifier) -> Self {
        Self {
            storage,
            config,
            notifier,
        }
    }

    /// Activities configured from the environment.
    pub async fn from_env() -> anyhow::Result<Self> {
        let config = ActivityConfig::from_env()?;
        let storage = Storage::from_env(config.bucket.clone()).await;
        let notifier = Notifier::from_config(&config)?;
        Ok(Self::new(storage, config, notifier))
    }

    /// The settings the activities run with.
    pub fn config(&self) -> &ActivityConfig {
        &self.config
    }

    /// Registers the heavy activities (probe, thumbnail, transcode), which need ffmpeg and CPU,
    /// for a worker of the video task queue.
    pub fn register_heavy(self: &Arc<Self>, options: &mut WorkerOptions) {
        register(options, Self::probe, self);
        register(options, Self::thumbnail, self);
        register(options, Self::transcode_variant, self);
    }

    /// Registers the light activities (playlists, cache headers, events) for a worker of the
    /// light task queue.
    pub fn register_light(self: &Arc<Self>, options: &mut WorkerOptions) {
        register(options, Self::publish_master, self);
        register(options, Self::finalize_cache_headers, self);
        register(options, Self::notify, self);
    }

    async fn plan(&self, job: &ProbeJob) -> anyhow::Result<SourcePlan> {
        let size = self.storage.source_size(&job.source_key).await?;
        self.config.limits.check_size(size)?;
        let url = self
            .storage
            .presign_get(&job.source_key, PRESIGN_TTL)
            .await?;
        let json = match ffmpeg::ffprobe(&SourceInput::new(url)).await {
            Ok(json) => json,
            Err(ffmpeg::ToolError::Failed { stderr, .. }) => return Err(unreadable(&stderr).into()),
            Err(other) => return Err(other.into()),
        };
        let report: ProbeReport =
            serde_json::from_slice(&json).context("reading ffprobe's report")?;
        let media = analyse(&report, size, &self.config.limits)?;
        let variants = ladder::plan_ladder(media.width, media.height);
        Ok(SourcePlan { media, variants })
    }

    async fn make_thumbnail(&self, job: &ThumbnailJob) -> anyhow::Result<String> {
        let work = workdir::job_dir(&self.config.work_dir, job.asset_id.as_str(), "thumbnail")?;
        let output = work.path().join("thumbnail.webp");
        let url = self
            .storage
            .presign_get(&job.source_key, PRESIGN_TTL)
            .await?;
        recipes::thumbnail_command(&url, &job.media, &output)
            .run()
            .await?;
        let key = job.asset_id.keys().thumbnail();
        self.storage
            .put_file(&key, &output, ObjectKind::Thumbnail)
            .await?;
        Ok(key)
    }

    async fn write_master(&self, job: &MasterJob) -> anyhow::Result<String> {
        let key = job.asset_id.keys().master();
        self.storage
            .put_text(
                &key,
                hls::master_playlist(&job.renditions),
                ObjectKind::GrowingMaster,
            )
            .await?;
        Ok(key)
    }
}

#[activities]
impl PulseActivities {
    /// Inspects the source and plans its ladder.
    #[activity(definition = contract::Probe)]
    pub async fn probe(
        self: Arc<Self>,
        ctx: ActivityContext,
        job: ProbeJob,
    ) -> Result<SourcePlan, ActivityError> {
        until_cancelled(&ctx, self.plan(&job)).await
    }

    /// Writes the WebP thumbnail.
    #[activity(definition = contract::Thumbnail)]
    pub async fn thumbnail(
        self: Arc<Self>,
        ctx: ActivityContext,
        job: ThumbnailJob,
    ) -> Result<String, ActivityError> {
        until_cancelled(&ctx, self.make_thumbnail(&job)).await
    }

    /// Transcodes one variant, heartbeating its checkpoint.
    #[activity(definition = contract::TranscodeVariant)]
    pub async fn transcode_variant(
        self: Arc<Self>,
        ctx: ActivityContext,
        job: TranscodeJob,
    ) -> Result<Rendition, ActivityError> {
        if self.config.failing_variants.contains(&job.variant.name) {
            return Err(into_activity_error(anyhow::anyhow!(
                "ffmpeg was not run: PULSE_FAULT_FAIL_VARIANTS lists {} (test fault switch)",
                job.variant.name
            )));
        }
        // What earlier attempts of this transcode reached; a first attempt starts where earlier
        // variants left the overall progress, so neither heartbeats nor events ever go back.
        let mut previous: TranscodeCheckpoint = ctx
            .heartbeat_details()
            .deserialize()
            .ok()
            .flatten()
            .unwrap_or_default();
        previous.progress = previous.progress.max(job.progress.start);
        previous.last_progress_event = previous.last_progress_event.max(job.progress.start);
        let events = ProgressEvents::start(
            self.notifier.clone(),
            job.asset_id.to_string(),
            previous.last_progress_event,
            stage_events_out(&ctx, job.events_before),
        );
        let (checkpoints, mut latest) = watch::channel(previous.clone());
        let work =
            transcode::transcode_variant(&self.storage, &self.config, &job, &previous, checkpoints);
        // Heartbeats carry the latest checkpoint (the SDK throttles them); progress events go
        // out from their own task and never hold the transcode up.
        // Beating also when nothing changed tells Temporal the worker is alive while ffmpeg
        // waits (on a slow source, say); a dead worker stops beating and is replaced.
        let reporting = async {
            let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
            loop {
                tokio::select! {
                    changed = latest.changed() => if changed.is_err() { break },
                    _ = beat.tick() => {}
                }
                let mut checkpoint = latest.borrow_and_update().clone();
                events.offer(checkpoint.progress);
                checkpoint.last_progress_event = events.last_sent();
                let _ = ctx.record_heartbeat(checkpoint).await;
            }
        };
        let (result, ()) = tokio::join!(until_cancelled(&ctx, work), reporting);
        events.finish().await;
        result
    }

    /// Rewrites the master playlist to list the finished variants.
    #[activity(definition = contract::PublishMaster)]
    pub async fn publish_master(
        self: Arc<Self>,
        _ctx: ActivityContext,
        job: MasterJob,
    ) -> Result<String, ActivityError> {
        self.write_master(&job).await.map_err(into_activity_error)
    }

    /// Marks the finished master playlist cacheable for a year.
    #[activity(definition = contract::FinalizeCacheHeaders)]
    pub async fn finalize_cache_headers(
        self: Arc<Self>,
        _ctx: ActivityContext,
        asset_id: AssetId,
    ) -> Result<(), ActivityError> {
        self.storage
            .set_kind(&asset_id.keys().master(), ObjectKind::FinalMaster)
            .await
            .map_err(into_activity_error)
    }

    /// Delivers a stage event.
    #[activity(definition = contract::Notify)]
    pub async fn notify(
        self: Arc<Self>,
        _ctx: ActivityContext,
        notification: Notification,
    ) -> Result<(), ActivityError> {
        let event = stage_event(&notification, &self.config);
        self.notifier
            .deliver(&event)
            .await
            .map_err(into_activity_error)
    }
}

/// Asks the workflow whether the `before` stage events queued ahead of a transcode are
/// delivered, so its progress events cannot overtake them.
fn stage_events_out(
    ctx: &ActivityContext,
    before: u32,
) -> impl Fn() -> BoxFuture<'static, bool> + Send + 'static {
    let workflow = ctx.workflow_handle::<VideoWorkflow>().map(Arc::new);
    move || {
        let workflow = workflow.clone();
        Box::pin(async move {
            let Some(workflow) = workflow else {
                return false;
            };
            workflow
                .query(
                    VideoWorkflow::events_settled,
                    (),
                    WorkflowQueryOptions::default(),
                )
                .await
                .is_ok_and(|settled| settled >= before)
        })
    }
}

/// Registers the activity `_marker` names, implemented by `activities`.
fn register<A>(options: &mut WorkerOptions, _marker: A, activities: &Arc<PulseActivities>)
where
    A: ActivityDefinition + ExecutableActivity<Implementer = PulseActivities>,
    A::Input: Send + Sync,
    A::Output: Send + Sync,
{
    options.register_activity::<A>(activities.clone());
}

/// Runs `work` unless the activity is cancelled first; dropping it kills its ffmpeg and removes
/// its temp folder.
async fn until_cancelled<T>(
    ctx: &ActivityContext,
    work: impl Future<Output = anyhow::Result<T>>,
) -> Result<T, ActivityError> {
    tokio::select! {
        result = work => result.map_err(into_activity_error),
        () = ctx.cancelled() => Err(ActivityError::cancelled()),
    }
}
