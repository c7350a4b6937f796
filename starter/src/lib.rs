//! `pulse-starter`: what a backend calls to hand an uploaded video to Pulse and follow it.
//!
//! [`Starter`] is the library a backend embeds (the seed's `CompleteUpload` view); the binary in
//! `main.rs` is a thin CLI over it (SPEC section 2).
//!
//! - [`Starter::upload`]: multipart-uploads a local file to `uploads/{asset_id}/source`.
//! - [`Starter::start`]: starts the asset's one workflow (`video-{asset_id}`); starting again
//!   returns the same run.
//! - [`Starter::status`] and [`Starter::wait`]: the asset's state, from the workflow.
//! - [`settings`]: queues, retries and timeouts from `PULSE_*` variables.
//! - [`api`]: `pulse-starter serve`, the HTTP API and demo page over the library.

pub mod api;
pub mod settings;

use anyhow::Context;
use pulse_activities::{ActivityConfig, Storage, connections, reporter::running_checkpoints};
use pulse_workflows::{
    AssetId, AssetState, AssetStatus, ProcessingSettings, VideoRequest, VideoWorkflow, progress,
    search,
};
use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowDescribeOptions, WorkflowExecuteUpdateOptions,
    WorkflowExecutionDescription, WorkflowExecutionStatus, WorkflowGetResultOptions,
    WorkflowHandle, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowQueryOptions,
    WorkflowStartOptions,
    errors::{
        WorkflowGetResultError, WorkflowInteractionError, WorkflowStartError, WorkflowUpdateError,
    },
};
use temporalio_common::search_attributes::SearchAttributes;

/// How often [`Starter::wait`] looks at the state.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// The longest source key accepted.
const MAX_SOURCE_KEY_LEN: usize = 1024;

/// Why a starter call failed.
#[derive(Debug, thiserror::Error)]
pub enum StarterError {
    /// No workflow was ever started for the asset (or its history has expired).
    #[error("there is no asset {0}: it was never started, or its history expired")]
    UnknownAsset(AssetId),
    /// The source key is not acceptable.
    #[error("invalid source key: {0}")]
    InvalidSourceKey(String),
    /// The asset cannot be retried now; the message says why.
    #[error("{0}")]
    NotRetryable(String),
    /// Anything else: Temporal or S3 unreachable, and so on.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A started run of an asset's workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedRun {
    /// The workflow id, `video-{asset_id}`.
    pub workflow_id: String,
    /// The run id.
    pub run_id: String,
}

/// Starts and follows video processing.
#[derive(Clone)]
pub struct Starter {
    client: Client,
    storage: Storage,
    settings: ProcessingSettings,
    /// What this starter last saw of each running asset it was asked about.
    followed: Arc<Mutex<HashMap<AssetId, Followed>>>,
}

/// What a starter last saw of a running asset.
#[derive(Debug)]
struct Followed {
    /// The state the workflow last answered.
    settled: Settled,
    /// Highest progress reported. Live progress comes from the running transcode's heartbeat,
    /// which vanishes a moment before the workflow records the finished variant; the mark keeps
    /// what this starter reports from going back in that moment.
    progress_mark: f64,
}

/// A running workflow's state as it answered a query.
#[derive(Clone, Debug)]
struct Settled {
    /// The run it belongs to.
    run_id: String,
    /// The length of the run's history when the state was queried. The workflow's state
    /// changes only with new events (heartbeats add none), so while the length stays the same
    /// the state is still the one queried, and no worker is asked again: a query is a round
    /// trip through a worker and Temporal, twice a second for every `--wait`, `watch` or
    /// browser following an asset.
    history_length: usize,
    /// The workflow's state at that length.
    state: AssetState,
}

impl Starter {
    /// A starter over `client` and `storage`, putting `settings` in each workflow input.
    pub fn new(client: Client, storage: Storage, settings: ProcessingSettings) -> Self {
        Self {
            client,
            storage,
            settings,
            followed: Arc::default(),
        }
    }

    /// A starter configured from the environment (Temporal, AWS and `PULSE_*` variables).
    pub async fn from_env() -> anyhow::Result<Self> {
        let config = ActivityConfig::from_env()?;
        let storage = Storage::from_env(config.bucket).await;
        let client = connections::temporal_client().await?;
        Ok(Self::new(client, storage, settings::from_env()?))
    }

    /// This starter with upload URLs signed for browsers at `endpoint` (see
    /// [`Storage::with_browser_endpoint`]).
    pub fn with_browser_endpoint(mut self, endpoint: &str) -> Self {
        self.storage = self.storage.with_browser_endpoint(endpoint);
        self
    }

    /// The bucket.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The Temporal client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Uploads `file` as the source of `asset` with a multipart upload; returns the key.
    pub async fn upload(&self, asset: &AssetId, file: &Path) -> anyhow::Result<String> {
        let key = asset.keys().upload();
        self.storage
            .upload_multipart(&key, file, "application/octet-stream")
            .await
            .with_context(|| format!("uploading {}", file.display()))?;
        Ok(key)
    }

    /// Hands the source at `source_key` to Pulse: starts the one workflow of `asset`. Starting
    /// an asset again, running or finished, returns its existing run.
    pub async fn start(
        &self,
        asset: &AssetId,
        source_key: &str,
    ) -> Result<StartedRun, StarterError> {
        self.start_file(asset, source_key, None).await
    }

    /// [`Self::start`], naming the uploaded file (`filename`) for operators.
    pub async fn start_file(
        &self,
        asset: &AssetId,
        source_key: &str,
        filename: Option<&str>,
    ) -> Result<StartedRun, StarterError> {
        check_source_key(source_key)?;
        let request = VideoRequest {
            asset_id: asset.clone(),
            source_key: source_key.to_owned(),
            settings: self.settings.clone(),
        };
        let workflow_id = asset.workflow_id();
        let source = format!("s3://{}/{source_key}", self.storage.bucket());
        let options =
            WorkflowStartOptions::new(self.settings.light_queue.clone(), workflow_id.clone())
                .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
                .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
                .static_summary(format!("video {}", filename.unwrap_or(source_key)))
                .static_details(match filename {
                    Some(filename) => {
                        format!("asset **{asset}**, uploaded as `{filename}`\n\nsource `{source}`")
                    }
                    None => format!("asset **{asset}**\n\nsource `{source}`"),
                })
                .search_attributes(SearchAttributes::new([
                    search::ASSET_ID.value_set(asset.to_string()),
                    search::STATUS.value_set(AssetStatus::Queued.as_str().to_owned()),
                    search::VARIANTS_DONE.value_set(0),
                ]))
                .build();
        let run_id = match self
            .client
            .start_workflow(VideoWorkflow::run, request, options)
            .await
        {
            Ok(handle) => handle.run_id().unwrap_or_default().to_owned(),
            Err(WorkflowStartError::AlreadyStarted { run_id, .. }) => match run_id {
                Some(run_id) => run_id,
                None => self.describe(asset).await?.run_id().to_owned(),
            },
            Err(error) => {
                return Err(anyhow::Error::new(error)
                    .context(format!("starting {workflow_id}"))
                    .into());
            }
        };
        Ok(StartedRun {
            workflow_id,
            run_id,
        })
    }

    /// The current state of `asset`. While it is processed, `progress` includes the live
    /// progress the running transcode heartbeats.
    pub async fn status(&self, asset: &AssetId) -> Result<AssetState, StarterError> {
        let description = self.describe(asset).await?;
        match description.status() {
            WorkflowExecutionStatus::Running => {
                let (settled, description) = self.settled_state(asset, description).await?;
                let mut state = settled.state.clone();
                // Under one lock, so that requests racing for the same asset only raise the mark.
                let mut followed = self.followed.lock().expect("followed assets lock");
                if state.status.is_finished() {
                    followed.remove(asset);
                    return Ok(state);
                }
                let live = progress::overall(state.progress, &running_checkpoints(&description));
                state.progress = followed
                    .get(asset)
                    .filter(|seen| seen.settled.run_id == settled.run_id)
                    .map_or(live, |seen| seen.progress_mark.max(live));
                followed.insert(
                    asset.clone(),
                    Followed {
                        settled,
                        progress_mark: state.progress,
                    },
                );
                Ok(state)
            }
            _ => match self
                .handle(asset)
                .get_result(WorkflowGetResultOptions::default())
                .await
            {
                Ok(state) => Ok(state),
                // A cancelled run carries its final state as the cancellation details.
                Err(WorkflowGetResultError::Cancelled { details }) => {
                    details.deserialize::<AssetState>().map_err(|error| {
                        anyhow::Error::new(error)
                            .context("reading the state of a cancelled run")
                            .into()
                    })
                }
                Err(other) => {
                    let mut state = AssetState::queued(asset.as_str());
                    state.status = AssetStatus::Failed;
                    state.error = Some(format!(
                        "The processing workflow ended before finishing ({other}); start the asset again under a new id."
                    ));
                    Ok(state)
                }
            },
        }
    }

    /// What is known of the running `asset` described by `description`: the state last queried
    /// if its history has not grown since, else the state a worker answers now. Returned with
    /// the description whose running transcodes add their live progress to it.
    async fn settled_state(
        &self,
        asset: &AssetId,
        description: WorkflowExecutionDescription,
    ) -> Result<(Settled, WorkflowExecutionDescription), StarterError> {
        let unchanged = self
            .followed
            .lock()
            .expect("followed assets lock")
            .get(asset)
            .map(|seen| &seen.settled)
            .filter(|settled| {
                settled.run_id == description.run_id()
                    && settled.history_length == description.history_length()
            })
            .cloned();
        if let Some(settled) = unchanged {
            return Ok((settled, description));
        }
        let state = self
            .handle(asset)
            .query(VideoWorkflow::status, (), WorkflowQueryOptions::default())
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "asset {asset} is being processed, but no worker answered ({error}); is pulse-worker running on {}?",
                    self.settings.light_queue
                )
            })?;
        let settled = Settled {
            run_id: description.run_id().to_owned(),
            // The length before the query: the answer is at least that recent, and a history
            // that grew meanwhile only makes the next look ask again.
            history_length: description.history_length(),
            state,
        };
        // A transcode that ended between `description` and the answer is settled in the answer
        // and still heartbeats in `description`: it would count twice. Every transcode still
        // pending in a description taken after the answer was pending when the workflow
        // answered, so it is not settled yet.
        Ok((settled, self.describe(asset).await?))
    }

    /// Asks a partial (or failed) asset to re-run what failed; returns the variants it will
    /// make again. Only possible while the asset waits for a retry (see the retry window).
    pub async fn retry(&self, asset: &AssetId) -> Result<Vec<String>, StarterError> {
        let running = self.describe(asset).await?.status() == WorkflowExecutionStatus::Running;
        let state = self.status(asset).await?;
        if state.status == AssetStatus::Done {
            return Err(StarterError::NotRetryable(format!(
                "asset {asset} is done: there is nothing to retry"
            )));
        }
        if !running {
            return Err(StarterError::NotRetryable(format!(
                "asset {asset} is {} and its run has ended: retries are taken only within the retry window \
                 (PULSE_RETRY_WINDOW_SECS); process the source again under a new asset id",
                state.status.as_str()
            )));
        }
        self.handle(asset)
            .execute_update(
                VideoWorkflow::retry,
                (),
                WorkflowExecuteUpdateOptions::default(),
            )
            .await
            .map_err(|error| match error {
                WorkflowUpdateError::Failed(failure) => StarterError::NotRetryable(failure.message),
                other => anyhow::Error::new(other)
                    .context(format!("retrying asset {asset}"))
                    .into(),
            })
    }

    /// Cancels the processing of `asset`: its running transcode stops and the asset ends with an
    /// error saying it was cancelled (and why).
    pub async fn cancel(&self, asset: &AssetId, reason: &str) -> Result<(), StarterError> {
        self.describe(asset).await?;
        self.handle(asset)
            .cancel(
                WorkflowCancelOptions::builder()
                    .reason(reason.to_owned())
                    .build(),
            )
            .await
            .map_err(|error| {
                anyhow::Error::new(error)
                    .context(format!("cancelling asset {asset}"))
                    .into()
            })
    }

    /// Waits until `asset` is done, partial or failed, calling `on_change` with each new state.
    pub async fn wait(
        &self,
        asset: &AssetId,
        mut on_change: impl FnMut(&AssetState),
    ) -> Result<AssetState, StarterError> {
        let mut last: Option<AssetState> = None;
        loop {
            let state = self.status(asset).await?;
            if last.as_ref() != Some(&state) {
                on_change(&state);
            }
            if state.status.is_finished() {
                return Ok(state);
            }
            last = Some(state);
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn handle(&self, asset: &AssetId) -> WorkflowHandle<Client, VideoWorkflow> {
        self.client
            .get_workflow_handle::<VideoWorkflow>(asset.workflow_id())
    }

    /// The asset's workflow as Temporal describes it.
    async fn describe(
        &self,
        asset: &AssetId,
    ) -> Result<WorkflowExecutionDescription, StarterError> {
        match self
            .handle(asset)
            .describe(WorkflowDescribeOptions::default())
            .await
        {
            Ok(description) => Ok(description),
            Err(WorkflowInteractionError::NotFound(_)) => {
                Err(StarterError::UnknownAsset(asset.clone()))
            }
            Err(error) => Err(anyhow::Error::new(error)
                .context(format!("looking up asset {asset}"))
                .into()),
        }
    }
}

/// Refuses keys that cannot name an uploaded source.
fn check_source_key(key: &str) -> Result<(), StarterError> {
    let problem = if key.is_empty() {
        Some("it is empty")
    } else if key.len() > MAX_SOURCE_KEY_LEN {
        Some("it is longer than 1024 bytes")
    } else if key.chars().any(char::is_control) {
        Some("it contains control characters")
    } else if key.starts_with("processed/") {
        Some("it points into processed/, where Pulse writes its output")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(StarterError::InvalidSourceKey(format!(
            "{key:?}: {problem}"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_keys_are_checked() {
        assert!(check_source_key("uploads/a1/source").is_ok());
        for bad in ["", "processed/a1/hls/master.m3u8", "a\nb"] {
            assert!(check_source_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_source_key(&"k".repeat(1025)).is_err());
    }
}
