//! The workflow's input: which asset, where its source is, and how hard to try.
//!
//! Timeouts, retries and task queues travel in the input rather than being read by the workflow
//! from its environment, because workflow code must be deterministic; the starter fills them in
//! from `PULSE_*` variables.

use crate::asset::AssetId;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Default task queue of heavy activities (probe, thumbnail, transcode).
pub const DEFAULT_VIDEO_QUEUE: &str = "pulse-video";
/// Default task queue of the workflow and light activities (playlists, cache headers, events).
pub const DEFAULT_LIGHT_QUEUE: &str = "pulse-light";

/// Input of [`crate::VideoWorkflow`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoRequest {
    /// The asset to process.
    pub asset_id: AssetId,
    /// Key of the uploaded source in the bucket.
    pub source_key: String,
    /// Queues, retries and timeouts.
    pub settings: ProcessingSettings,
}

/// How the workflow schedules its activities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessingSettings {
    /// Task queue of heavy activities.
    pub video_queue: String,
    /// Task queue of light activities.
    pub light_queue: String,
    /// Retry policy of every activity but `notify`.
    pub retry: RetrySettings,
    /// A transcode that does not heartbeat for this long is presumed dead and retried elsewhere.
    pub heartbeat_timeout: Duration,
    /// How long a partial or failed asset waits for an operator's retry before its run ends.
    #[serde(default = "default_retry_window")]
    pub retry_window: Duration,
    /// Length of the pieces the higher variants are cut into, in seconds of video: the pieces of
    /// a long video are transcoded in parallel by as many workers as there are.
    #[serde(default = "default_chunk_secs")]
    pub chunk_secs: f64,
    /// Fast start: the first variant plays while it is still being written (its playlist grows
    /// segment by segment), a second or two after the start whatever the video's length.
    #[serde(default)]
    pub fast_start: bool,
}

fn default_retry_window() -> Duration {
    Duration::from_secs(7 * 24 * 60 * 60)
}

fn default_chunk_secs() -> f64 {
    120.0
}

impl Default for ProcessingSettings {
    fn default() -> Self {
        Self {
            video_queue: DEFAULT_VIDEO_QUEUE.to_owned(),
            light_queue: DEFAULT_LIGHT_QUEUE.to_owned(),
            retry: RetrySettings::default(),
            heartbeat_timeout: Duration::from_secs(20),
            retry_window: default_retry_window(),
            chunk_secs: default_chunk_secs(),
            fast_start: false,
        }
    }
}

/// Exponential backoff between attempts of a failing activity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrySettings {
    /// Wait before the first retry.
    pub initial_interval: Duration,
    /// Each wait is this many times the previous one.
    pub backoff: f64,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
}

impl Default for RetrySettings {
    /// The seed's policy: retries after 10 s, 20 s and 40 s.
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_secs(10),
            backoff: 2.0,
            max_attempts: 4,
        }
    }
}
