//! Pulse workflows: the [`VideoWorkflow`] that turns one uploaded video into an adaptive HLS
//! ladder, and the types it shares with activities, workers and starters.
//!
//! This crate does no I/O; everything here is deterministic and safe to replay.
//!
//! - [`asset`]: asset ids and the storage layout.
//! - [`request`]: the workflow input (asset, source, queues, retries, timeouts).
//! - [`media`]: the probed source, the ladder and finished renditions.
//! - [`contract`]: the activities the workflow calls, implemented in `pulse-activities`.
//! - [`state`]: the queryable asset state.
//! - [`events`]: the events the frontend receives.
//! - [`progress`]: cost-weighted overall progress.
//! - [`search`]: the search attributes operators filter assets by.
//! - [`video`]: the workflow.

pub mod asset;
pub mod contract;
pub mod events;
pub mod media;
pub mod progress;
pub mod request;
pub mod search;
pub mod state;
pub mod video;

pub use asset::{AssetId, AssetKeys};
pub use request::{ProcessingSettings, RetrySettings, VideoRequest};
pub use state::{AssetState, AssetStatus, VariantStatus};
pub use video::VideoWorkflow;
