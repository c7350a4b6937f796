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

/// One test's private corner of the stack: its own task queues, fast retries, a starter and the
/// bucket.
pub struct TestEnv {
    /// Processing settings: the test's queues, short retries and heartbeat timeout.
    pub settings: ProcessingSettings,
    /// A starter using these settings.
    pub starter: Starter,
    /// The bucket.
    pub storage: Storage,
    /// A work folder for the test's workers.
    pub work_dir: tempfile::TempDir,
}

impl TestEnv {
    /// A fresh environment named after `test`.
    pub async fn new(test: &str) -> Self {
        require_stack();
        let queues = unique(test);
        let settings = ProcessingSettings {
            video_queue: format!("{queues}-video"),
            light_queue: format!("{queues}-light"),
            retry: RetrySettings {
                initial_interval: Duration::from_millis(500),
                backoff: 2.0,
                max_attempts: 2,
            },
            heartbeat_timeout: Duration::from_secs(5),
        };
        let storage = Storage::from_env(std::env::var("PULSE_BUCKET").unwrap()).await;
        let client = connections::temporal_client()
            .await
            .expect("connecting to Temporal (is the stack up? cargo xtask up)");
        Self {
            starter: Starter::new(client, storage.clone(), settings.clone()),
            settings,
            storage,
            work_dir: tempfile::tempdir().expect("a temp folder"),
        }
    }

    /// The variables a worker or starter process of this test needs on top of the stack's.
    pub fn process_env(&self) -> Vec<(String, String)> {
        let retry = &self.settings.retry;
        vec![
            (
                "PULSE_VIDEO_QUEUE".into(),
                self.settings.video_queue.clone(),
            ),
            (
                "PULSE_LIGHT_QUEUE".into(),
                self.settings.light_queue.clone(),
            ),
            (
                "PULSE_RETRY_INITIAL_SECS".into(),
                retry.initial_interval.as_secs_f64().to_string(),
            ),
            (
                "PULSE_RETRY_MAX_ATTEMPTS".into(),
                retry.max_attempts.to_string(),
            ),
            (
                "PULSE_HEARTBEAT_TIMEOUT_SECS".into(),
                self.settings.heartbeat_timeout.as_secs_f64().to_string(),
            ),
            (
                "PULSE_WORK_DIR".into(),
                self.work_dir.path().display().to_string(),
            ),
        ]
    }

    /// A new asset id for this test.
    pub fn asset(&self, name: &str) -> AssetId {
        AssetId::parse(&unique(name)).expect("unique ids are valid asset ids")
    }
}

/// The longest a test waits for one asset.
pub const ASSET_TIMEOUT: Duration = Duration::from_secs(300);

impl TestEnv {
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
    /// Activity type, e.g. `transcode_variant`.
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
                        e.user_metadata
                            .as_ref()
                            .and_then(|m| m.summary.as_ref())
                            .and_then(|p| serde_json::from_slice::<String>(&p.data).ok()),
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

use temporalio_client::WorkflowFetchHistoryOptions;
use temporalio_common::protos::temporal::api::history::v1::{
    HistoryEvent, history_event::Attributes,
};
