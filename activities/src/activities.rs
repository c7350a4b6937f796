//! The Temporal activities: thin adapters from the workflow's contract to the pieces of this
//! crate. Heavy ones (probe, thumbnail, transcode) stop their ffmpeg and remove their temp files
//! when the workflow cancels them.

use crate::{
    cache_policy::ObjectKind,
    config::ActivityConfig,
    cpu_share::CpuShare,
    failure::{BadInput, BadInputKind, into_activity_error},
    ffmpeg::{
        SourceInput,
        recipes::{self, ThumbnailPicture},
    },
    hls::{self, PlaylistKind},
    notify::{Notifier, stage_event},
    probe,
    reporter::{self, ProgressSource, Running},
    storage::Storage,
    transcode::{self, PRESIGN_TTL},
    workdir,
};
use futures::StreamExt;
use pulse_workflows::{
    AssetId, VideoWorkflow,
    contract::{
        self, MasterJob, Notification, ProbeJob, ProgressReport, PublishedMaster, ThumbnailJob,
        TranscodeJob,
    },
    media::{Rendition, SourcePlan, TranscodeOutput},
    progress::TranscodeCheckpoint,
};
use serde::{Serialize, de::DeserializeOwned};
use std::{convert::Infallible, sync::Arc, time::Duration};
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowFetchHistoryOptions, WorkflowHandle,
    WorkflowQueryOptions, WorkflowSignalOptions,
};
use temporalio_common::{
    ActivityDefinition, HasWorkflowDefinition, SignalDefinition,
    protos::temporal::api::enums::v1::EventType,
};
use temporalio_macros::activities;
use temporalio_sdk::{
    WorkerOptions,
    activities::{ActivityContext, ActivityError, ExecutableActivity},
};
use tokio::sync::{Notify, oneshot, watch};

/// How often a running transcode heartbeats, whether or not it moved.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Every activity of the pipeline, sharing one S3 client and the worker's settings.
pub struct PulseActivities {
    storage: Storage,
    config: ActivityConfig,
    notifier: Notifier,
    /// Which transcode gets which of this worker's cores.
    cpu_share: CpuShare,
}

impl PulseActivities {
    /// Activities over `storage`, configured by `config`.
    pub fn new(storage: Storage, config: ActivityConfig, notifier: Notifier) -> Self {
        Self {
            storage,
            config,
            notifier,
            cpu_share: CpuShare::default(),
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
        register(options, Self::transcode, self);
    }

    /// Registers the light activities (playlists, cache headers, events) for a worker of the
    /// light task queue.
    pub fn register_light(self: &Arc<Self>, options: &mut WorkerOptions) {
        register(options, Self::publish_master, self);
        register(options, Self::finalize_cache_headers, self);
        register(options, Self::notify, self);
        register(options, Self::report_progress, self);
    }

    async fn plan(&self, job: &ProbeJob) -> anyhow::Result<SourcePlan> {
        let size = self.storage.source_size(&job.source_key).await?;
        let url = self
            .storage
            .presign_get(&job.source_key, PRESIGN_TTL)
            .await?;
        probe::plan_source(&SourceInput::new(url), size, &self.config.limits).await
    }

    async fn make_thumbnail(&self, job: &ThumbnailJob) -> anyhow::Result<String> {
        let work = workdir::job_dir(&self.config.work_dir, job.asset_id.as_str(), "thumbnail")?;
        let output = work.path().join("thumbnail.webp");
        let url = self
            .storage
            .presign_get(&job.source_key, PRESIGN_TTL)
            .await?;
        let command = |picture| {
            recipes::thumbnail_command(&url, &job.media, picture, &output)
                .background(job.background)
        };
        command(ThumbnailPicture::NextKeyframe).run().await?;
        if !recipes::holds_picture(&output)? {
            command(ThumbnailPicture::Exact).run().await?;
            if !recipes::holds_picture(&output)? {
                return Err(BadInput::new(
                    BadInputKind::Undecodable,
                    format!(
                        "the video has no picture at {:.1} s although the file says it lasts \
                         {:.1} s; it is probably cut off, upload it again",
                        recipes::thumbnail_time(&job.media),
                        job.media.duration_secs
                    ),
                )
                .into());
            }
        }
        let key = job.asset_id.keys().thumbnail();
        self.storage
            .put_file(&key, &output, ObjectKind::Thumbnail)
            .await?;
        Ok(key)
    }

    /// Writes the playlists of the completed variants, then the master listing them with the
    /// ones listed before.
    async fn write_master(&self, job: &MasterJob) -> anyhow::Result<PublishedMaster> {
        let keys = job.asset_id.keys();
        let mut renditions: Vec<Rendition> = job.kept_listed().cloned().collect();
        for variant in &job.completed {
            self.storage
                .put_text(
                    &keys.variant_playlist(&variant.spec.name),
                    hls::variant_playlist(&variant.segments, PlaylistKind::Complete),
                    ObjectKind::VariantPlaylist,
                )
                .await?;
            renditions.push(hls::rendition(&variant.spec, &job.media, &variant.segments));
        }
        renditions.sort_by_key(|rendition| rendition.width * rendition.height);
        let key = keys.master();
        self.storage
            .put_text(
                &key,
                hls::master_playlist(&renditions),
                ObjectKind::GrowingMaster,
            )
            .await?;
        Ok(PublishedMaster { key, renditions })
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

    /// Transcodes some variants over some segments, heartbeating its checkpoint; tells the
    /// workflow that it runs when asked to, and in fast start when the first segment plays.
    #[activity(definition = contract::Transcode)]
    pub async fn transcode(
        self: Arc<Self>,
        ctx: ActivityContext,
        job: TranscodeJob,
    ) -> Result<TranscodeOutput, ActivityError> {
        if let Some(failing) = job
            .variants
            .iter()
            .find(|variant| self.config.failing_variants.contains(&variant.name))
        {
            return Err(into_activity_error(anyhow::anyhow!(
                "ffmpeg was not run: PULSE_FAULT_FAIL_VARIANTS lists {} (test fault switch)",
                failing.name
            )));
        }
        // What earlier attempts of this transcode uploaded and reached.
        let previous: TranscodeCheckpoint = last_heartbeat(&ctx);
        let (checkpoints, latest) = watch::channel(previous.clone());
        let (first_published, published) = oneshot::channel();
        let work = transcode::transcode(
            &self.storage,
            &self.config,
            &self.cpu_share,
            &job,
            &previous,
            checkpoints,
            job.live.then_some(first_published),
        );
        let heartbeats = heartbeat(&ctx, latest);
        // Without the first signal the other variants start when this transcode ends; without
        // the second the asset plays when its variant is complete.
        let announce_start = async {
            if job.announce_start {
                signal(&ctx, VideoWorkflow::first_transcode_started, ()).await;
            }
        };
        let announce_playable = async {
            if let Ok(master) = published.await {
                signal(&ctx, VideoWorkflow::first_segment_published, master).await;
            }
        };
        let (result, (), (), ()) = tokio::join!(
            until_cancelled(&ctx, work),
            heartbeats,
            announce_start,
            announce_playable
        );
        result
    }

    /// Writes the playlists of newly completed variants and rewrites the master playlist to list
    /// every finished variant.
    #[activity(definition = contract::PublishMaster)]
    pub async fn publish_master(
        self: Arc<Self>,
        _ctx: ActivityContext,
        job: MasterJob,
    ) -> Result<PublishedMaster, ActivityError> {
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

    /// Sends progress events from the running transcodes' heartbeats until they are over. The
    /// last value sent is heartbeated, so a retried reporter never repeats or lowers it.
    #[activity(definition = contract::ReportProgress)]
    pub async fn report_progress(
        self: Arc<Self>,
        ctx: ActivityContext,
        asset_id: AssetId,
    ) -> Result<(), ActivityError> {
        let Some(workflow) = ctx.workflow_handle::<VideoWorkflow>() else {
            return Ok(());
        };
        let last_sent: f64 = last_heartbeat(&ctx);
        let (sent, latest) = watch::channel(last_sent);
        let source = WorkflowProgress {
            workflow,
            activity_ended: Notify::new(),
        };
        let reporting = reporter::report(
            &source,
            &self.notifier,
            asset_id.as_str(),
            last_sent,
            move |value| {
                sent.send_replace(value);
            },
        );
        let heartbeats = heartbeat(&ctx, latest);
        tokio::select! {
            () = reporting => Ok(()),
            () = heartbeats => Ok(()),
            never = source.watch_activities() => match never {},
            () = ctx.cancelled() => Err(ActivityError::cancelled()),
        }
    }
}

/// Progress as the workflow and the running transcodes' heartbeats tell it.
struct WorkflowProgress {
    workflow: WorkflowHandle<Client, VideoWorkflow>,
    /// Told whenever an activity of the workflow ends.
    activity_ended: Notify,
}

impl WorkflowProgress {
    /// Follows the workflow's history as it grows (a long poll on the server, no load while
    /// nothing happens) and tells `activity_ended` of every activity that ends. Never returns:
    /// should the history become unreadable, the reporter still looks once a second.
    async fn watch_activities(&self) -> Infallible {
        let options = WorkflowFetchHistoryOptions::builder()
            .wait_new_event(true)
            .build();
        let mut events = self.workflow.fetch_history(options);
        while let Some(Ok(event)) = events.next().await {
            if matches!(
                event.event_type(),
                EventType::ActivityTaskCompleted
                    | EventType::ActivityTaskFailed
                    | EventType::ActivityTaskTimedOut
                    | EventType::ActivityTaskCanceled
            ) {
                self.activity_ended.notify_one();
            }
        }
        std::future::pending().await
    }
}

impl ProgressSource for WorkflowProgress {
    async fn report(&self) -> Option<ProgressReport> {
        self.workflow
            .query(
                VideoWorkflow::progress_report,
                (),
                WorkflowQueryOptions::default(),
            )
            .await
            .ok()
    }

    async fn running(&self) -> Option<Running> {
        self.workflow
            .describe(WorkflowDescribeOptions::default())
            .await
            .ok()
            .map(|description| Running::of(&description))
    }

    async fn activity_ended(&self) {
        self.activity_ended.notified().await;
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

/// What the last attempt of this activity heartbeated, or the default on a first attempt.
fn last_heartbeat<T: DeserializeOwned + Default + 'static>(ctx: &ActivityContext) -> T {
    ctx.heartbeat_details()
        .deserialize()
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Heartbeats the latest value of `latest` whenever it changes and every [`HEARTBEAT_EVERY`]
/// until its sender is gone. Beating also when nothing changed tells Temporal the worker is
/// alive while ffmpeg waits (on a slow source, say); a dead worker stops beating and is
/// replaced.
async fn heartbeat<T: Serialize + Clone + 'static>(
    ctx: &ActivityContext,
    mut latest: watch::Receiver<T>,
) {
    let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            changed = latest.changed() => if changed.is_err() { break },
            _ = beat.tick() => {}
        }
        let value = latest.borrow_and_update().clone();
        let _ = ctx.record_heartbeat(value).await;
    }
}

/// Sends `signal` to the workflow of this activity; a failure is only logged, since the
/// workflow also learns what it says when the activity ends.
async fn signal<S>(ctx: &ActivityContext, signal: S, input: S::Input)
where
    S: SignalDefinition<Workflow = <VideoWorkflow as HasWorkflowDefinition>::Run>,
    S::Input: Send,
{
    let name = signal.name().to_owned();
    let Some(workflow) = ctx.workflow_handle::<VideoWorkflow>() else {
        return;
    };
    if let Err(error) = workflow
        .signal(signal, input, WorkflowSignalOptions::default())
        .await
    {
        let workflow_id = ctx.info().workflow_id.clone().unwrap_or_default();
        tracing::warn!(%workflow_id, "could not send the {name} signal: {error}");
    }
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
