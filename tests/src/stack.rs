//! The local stack, as `cargo xtask test` (or `source .pulse/env`) describes it.

use pulse_activities::{Storage, connections};
use pulse_starter::Starter;
use pulse_workflows::{AssetId, ProcessingSettings, RetrySettings};
use std::{path::PathBuf, time::Duration};

/// The variables the stack must have set; `cargo xtask test` sets them from `.pulse/env`.
const REQUIRED: [&str; 5] = [
    "TEMPORAL_ADDRESS",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "PULSE_BUCKET",
];

/// Panics with instructions unless the stack's variables are set.
pub fn require_stack() {
    for name in REQUIRED {
        if std::env::var_os(name).is_none() {
            panic!(
                "{name} is not set: integration tests need the local stack. Run them with \
                 `cargo xtask test`, or `cargo xtask up && source .pulse/env` first."
            );
        }
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// An id unique to this test run, e.g. `landscape-3f2a9c1e`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Where a test's Temporal server and bucket are.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// `host:port` of Temporal.
    pub temporal_address: String,
    /// The S3 endpoint URL.
    pub s3_endpoint: String,
    /// The S3 region.
    pub s3_region: String,
    /// `AWS_ACCESS_KEY_ID`.
    pub key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret: String,
    /// The bucket.
    pub bucket: String,
}

impl Endpoints {
    /// The stack `cargo xtask up` runs, as the environment describes it.
    pub fn shared() -> Self {
        require_stack();
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        Self {
            temporal_address: var("TEMPORAL_ADDRESS"),
            s3_endpoint: var("AWS_ENDPOINT_URL"),
            s3_region: var("AWS_REGION"),
            key_id: var("AWS_ACCESS_KEY_ID"),
            secret: var("AWS_SECRET_ACCESS_KEY"),
            bucket: var("PULSE_BUCKET"),
        }
    }

    /// The variables that point a worker or starter process here.
    pub fn process_env(&self) -> Vec<(String, String)> {
        [
            ("TEMPORAL_ADDRESS", &self.temporal_address),
            ("AWS_ENDPOINT_URL", &self.s3_endpoint),
            ("AWS_REGION", &self.s3_region),
            ("AWS_ACCESS_KEY_ID", &self.key_id),
            ("AWS_SECRET_ACCESS_KEY", &self.secret),
            ("PULSE_BUCKET", &self.bucket),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.clone()))
        .collect()
    }

    /// A client of the bucket.
    pub async fn storage(&self) -> Storage {
        Storage::with_key(
            &self.s3_endpoint,
            &self.s3_region,
            &self.key_id,
            &self.secret,
            &self.bucket,
        )
        .await
    }
}

/// One test's private corner of the stack: its own task queues, fast retries, a starter and the
/// bucket.
pub struct TestEnv {
    /// Processing settings: the test's queues, short retries and heartbeat timeout.
    pub settings: ProcessingSettings,
    /// Where Temporal and the bucket are.
    pub endpoints: Endpoints,
    /// A starter using these settings.
    pub starter: Starter,
    /// The bucket.
    pub storage: Storage,
    /// A work folder for the test's workers.
    pub work_dir: tempfile::TempDir,
}

impl TestEnv {
    /// A fresh environment named after `test`, on the shared stack.
    pub async fn new(test: &str) -> Self {
        Self::with(test, Endpoints::shared(), |_| {}).await
    }

    /// A fresh environment named after `test` on `endpoints`, with the test settings changed
    /// by `adjust`.
    pub async fn with(
        test: &str,
        endpoints: Endpoints,
        adjust: impl FnOnce(&mut ProcessingSettings),
    ) -> Self {
        let queues = unique(test);
        let mut settings = ProcessingSettings {
            video_queue: format!("{queues}-video"),
            light_queue: format!("{queues}-light"),
            retry: RetrySettings {
                initial_interval: Duration::from_millis(500),
                backoff: 2.0,
                max_attempts: 2,
            },
            heartbeat_timeout: Duration::from_secs(5),
            retry_window: Duration::from_secs(10 * 60),
            ..ProcessingSettings::default()
        };
        adjust(&mut settings);
        let storage = endpoints.storage().await;
        let client = connections::temporal_client_at(&endpoints.temporal_address)
            .await
            .expect("connecting to Temporal (is the stack up? cargo xtask up)");
        Self {
            starter: Starter::new(client, storage.clone(), settings.clone()),
            settings,
            endpoints,
            storage,
            work_dir: tempfile::tempdir().expect("a temp folder"),
        }
    }

    /// Every variable a worker or starter process of this test needs.
    pub fn process_env(&self) -> Vec<(String, String)> {
        let retry = &self.settings.retry;
        let secs = |duration: Duration| duration.as_secs_f64().to_string();
        let mut env = self.endpoints.process_env();
        env.extend(
            [
                ("PULSE_VIDEO_QUEUE", self.settings.video_queue.clone()),
                ("PULSE_LIGHT_QUEUE", self.settings.light_queue.clone()),
                ("PULSE_RETRY_INITIAL_SECS", secs(retry.initial_interval)),
                ("PULSE_RETRY_BACKOFF", retry.backoff.to_string()),
                ("PULSE_RETRY_MAX_ATTEMPTS", retry.max_attempts.to_string()),
                (
                    "PULSE_HEARTBEAT_TIMEOUT_SECS",
                    secs(self.settings.heartbeat_timeout),
                ),
                ("PULSE_RETRY_WINDOW_SECS", secs(self.settings.retry_window)),
                ("PULSE_CHUNK_SECS", self.settings.chunk_secs.to_string()),
                ("PULSE_FAST_START", self.settings.fast_start.to_string()),
                ("PULSE_WORK_DIR", self.work_dir.path().display().to_string()),
            ]
            .map(|(name, value)| (name.to_owned(), value)),
        );
        env
    }

    /// A new asset id for this test.
    pub fn asset(&self, name: &str) -> AssetId {
        AssetId::parse(&unique(name)).expect("unique ids are valid asset ids")
    }
}

/// The longest a test waits for one asset.
pub const ASSET_TIMEOUT: Duration = Duration::from_secs(300);

impl TestEnv {
    /// Generates the clip of `spec` and processes it as a new asset named after `name`:
    /// [`Self::process`] of the clip; returns the asset and its final state.
    pub async fn process_clip(
        &self,
        name: &str,
        spec: &crate::media::ClipSpec,
    ) -> (AssetId, pulse_workflows::AssetState) {
        let asset = self.asset(name);
        let state = self.process(&asset, &crate::media::clip(spec)).await;
        (asset, state)
    }

    /// Uploads `file` as `asset`, starts it and waits until it is done, partial or failed.
    pub async fn process(
        &self,
        asset: &AssetId,
        file: &std::path::Path,
    ) -> pulse_workflows::AssetState {
        let key = self
            .starter
            .upload(asset, file)
            .await
            .expect("uploading the clip");
        self.starter
            .start(asset, &key)
            .await
            .expect("starting the workflow");
        self.wait(asset).await
    }

    /// Waits until `asset` is done, partial or failed.
    pub async fn wait(&self, asset: &AssetId) -> pulse_workflows::AssetState {
        tokio::time::timeout(ASSET_TIMEOUT, self.starter.wait(asset, |_| {}))
            .await
            .unwrap_or_else(|_| panic!("asset {asset} did not finish within {ASSET_TIMEOUT:?}"))
            .expect("following the asset")
    }
}

/// One started activity attempt, from workflow history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityRun {
    /// Activity type, e.g. `transcode`.
    pub activity_type: String,
    /// Its summary, e.g. `transcode 720p`.
    pub summary: Option<String>,
    /// The attempt that ran last (history records only the last start of an activity).
    pub attempt: i32,
}

impl TestEnv {
    /// The events of the asset's workflow history.
    pub async fn history(&self, asset: &AssetId) -> Vec<HistoryEvent> {
        self.starter
            .client()
            .get_workflow_handle::<pulse_workflows::VideoWorkflow>(asset.workflow_id())
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
            .await
            .expect("reading workflow history")
    }

    /// Every activity the asset's workflow ran, in order, with the attempt that ran last.
    pub async fn activity_runs(&self, asset: &AssetId) -> Vec<ActivityRun> {
        let events = self.history(asset).await;
        let scheduled = |id: i64| {
            events
                .iter()
                .find(|e| e.event_id == id)
                .and_then(|e| match &e.attributes {
                    Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => Some((
                        a.activity_type
                            .as_ref()
                            .map(|t| t.name.clone())
                            .unwrap_or_default(),
                        summary(e),
                    )),
                    _ => None,
                })
        };
        events
            .iter()
            .filter_map(|e| match &e.attributes {
                Some(Attributes::ActivityTaskStartedEventAttributes(started)) => {
                    let (activity_type, summary) = scheduled(started.scheduled_event_id)?;
                    Some(ActivityRun {
                        activity_type,
                        summary,
                        attempt: started.attempt,
                    })
                }
                _ => None,
            })
            .collect()
    }
}

/// The summary the workflow gave a history event (an activity's, say), if any.
pub fn summary(event: &HistoryEvent) -> Option<String> {
    let payload = event.user_metadata.as_ref()?.summary.as_ref()?;
    serde_json::from_slice(&payload.data).ok()
}

use temporalio_client::WorkflowFetchHistoryOptions;
use temporalio_common::protos::temporal::api::history::v1::{
    HistoryEvent, history_event::Attributes,
};

impl TestEnv {
    /// The checkpoint the running transcode of `variant` of `asset` heartbeats, if one runs.
    pub async fn running_checkpoint(
        &self,
        asset: &AssetId,
        variant: &str,
    ) -> Option<TranscodeCheckpoint> {
        let description = self
            .starter
            .client()
            .get_workflow_handle::<pulse_workflows::VideoWorkflow>(asset.workflow_id())
            .describe(WorkflowDescribeOptions::default())
            .await
            .ok()?;
        running_checkpoints(&description)
            .into_iter()
            .find(|checkpoint| checkpoint.segments.contains_key(variant))
    }

    /// Waits until `variant` of `asset` is being transcoded and its transcode has uploaded at
    /// least `segments` segments of every variant it makes (they share one ffmpeg, whose
    /// outputs finish a segment at slightly different times, and a retry restarts them all at
    /// the segment every one has reached); returns the checkpoint of the transcode.
    pub async fn wait_for_segments(
        &self,
        asset: &AssetId,
        variant: &str,
        segments: usize,
    ) -> TranscodeCheckpoint {
        let deadline = tokio::time::Instant::now() + ASSET_TIMEOUT;
        loop {
            let state = self.starter.status(asset).await.expect("reading the state");
            if let Some(checkpoint) = self.running_checkpoint(asset, variant).await
                && checkpoint
                    .segments
                    .values()
                    .all(|uploaded| uploaded.len() >= segments)
            {
                return checkpoint;
            }
            assert!(
                !state.status.is_finished() && tokio::time::Instant::now() < deadline,
                "{variant} of {asset} never reached {segments} segments: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the asset's run has closed (it may still deliver events after the asset is
    /// finished) and returns how it closed.
    pub async fn wait_closed(&self, asset: &AssetId) -> WorkflowExecutionStatus {
        let handle = self
            .starter
            .client()
            .get_workflow_handle::<pulse_workflows::VideoWorkflow>(asset.workflow_id());
        for _ in 0..300 {
            let status = handle
                .describe(WorkflowDescribeOptions::default())
                .await
                .expect("describing the run")
                .status();
            if status != WorkflowExecutionStatus::Running {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the run of {asset} did not close");
    }

    /// What the asset's transcodes returned, in order of completion.
    pub async fn transcode_outputs(&self, asset: &AssetId) -> Vec<TranscodeOutput> {
        self.history(asset)
            .await
            .iter()
            .filter_map(|event| match &event.attributes {
                Some(Attributes::ActivityTaskCompletedEventAttributes(done)) => {
                    let payload = done.result.as_ref()?.payloads.first()?;
                    serde_json::from_slice::<TranscodeOutput>(&payload.data).ok()
                }
                _ => None,
            })
            .collect()
    }
}

/// The pids of ffmpeg processes reading the source of `asset`.
pub fn ffmpeg_processes_of(asset: &AssetId) -> Vec<u32> {
    let needle = format!("uploads/{asset}/source");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.starts_with("ffmpeg") && cmdline.contains(&needle)
        })
        .collect()
}

use pulse_activities::reporter::running_checkpoints;
use pulse_workflows::{media::TranscodeOutput, progress::TranscodeCheckpoint};
use temporalio_client::{WorkflowDescribeOptions, WorkflowExecutionStatus};
