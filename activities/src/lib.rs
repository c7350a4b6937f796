//! Pulse activities: what the video workflow's steps actually do, as thin Temporal adapters
//! ([`activities`]) over pieces that are pure and unit-tested where they can be.
//!
//! - [`activities`]: the Temporal activities (`PulseActivities`).
//! - [`config`]: worker settings from `PULSE_*` variables.
//! - [`connections`]: the Temporal client, as the environment configures it.
//! - [`storage`]: the S3 bucket.
//! - [`probe`]: reading ffprobe's report, limits.
//! - [`ladder`]: which variants a source gets.
//! - [`ffmpeg`]: the typed ffmpeg command builder, recipes and progress parsing.
//! - [`transcode`]: variants over a range of segments, from one decode, to the bucket.
//! - [`cpu_share`]: background transcodes keep off the cores of one that makes an asset playable.
//! - [`reporter`]: progress events from the running transcodes' heartbeats.
//! - [`workdir`]: per-job temp folders, and sweeping those of dead workers.
//! - [`codec`]: H.264 levels and codec strings.
//! - [`hls`]: master and variant playlist text.
//! - [`cache_policy`]: content types and cache headers.
//! - [`notify`]: delivering events.
//! - [`failure`]: bad input, which is never retried.

pub mod activities;
pub mod cache_policy;
pub mod codec;
pub mod config;
pub mod connections;
pub mod cpu_share;
pub mod failure;
pub mod ffmpeg;
pub mod hls;
pub mod ladder;
pub mod notify;
pub mod probe;
pub mod reporter;
pub mod storage;
pub mod transcode;
pub mod workdir;

pub use activities::PulseActivities;
pub use config::ActivityConfig;
pub use storage::Storage;
