//! The activities the workflow calls: names, inputs and outputs. `pulse-activities` implements
//! them (each implementation is checked against its declaration at compile time), so the
//! workflow crate stays free of I/O.

use crate::{
    asset::AssetId,
    events::Stage,
    media::{Rendition, SourceMedia, SourcePlan, VariantSpec},
    progress::ProgressSpan,
    state::AssetStatus,
};
use serde::{Deserialize, Serialize};
use temporalio_macros::activity_definitions;
use temporalio_sdk::activities::ActivityError;

/// Input of `probe`: the source to inspect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeJob {
    /// The asset.
    pub asset_id: AssetId,
    /// Key of the uploaded source in the bucket.
    pub source_key: String,
}

/// Input of `thumbnail`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThumbnailJob {
    /// The asset.
    pub asset_id: AssetId,
    /// Key of the uploaded source in the bucket.
    pub source_key: String,
    /// The probed source.
    pub media: SourceMedia,
}

/// Input of `transcode_variant`: one rung of the ladder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranscodeJob {
    /// The asset.
    pub asset_id: AssetId,
    /// Key of the uploaded source in the bucket.
    pub source_key: String,
    /// The probed source.
    pub media: SourceMedia,
    /// The rung to produce.
    pub variant: VariantSpec,
    /// The part of the overall progress scale this variant covers.
    pub progress: ProgressSpan,
    /// Stage events queued before this transcode; its progress events wait until the workflow's
    /// `events_settled` query reaches this count.
    pub events_before: u32,
}

/// Input of `publish_master`: every finished variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MasterJob {
    /// The asset.
    pub asset_id: AssetId,
    /// The finished variants, in any order (the playlist lists them lowest first).
    pub renditions: Vec<Rendition>,
}

/// Input of `notify`: a stage event, before it is turned into the wire [`crate::events::Event`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The asset.
    pub asset_id: AssetId,
    /// The milestone.
    pub stage: Stage,
    /// Key of the object the event points at (thumbnail or master), turned into a URL.
    pub object_key: Option<String>,
    /// Overall progress, on `done`.
    pub progress: Option<f64>,
    /// Final status, on `failed`.
    pub status: Option<AssetStatus>,
    /// What went wrong, on `failed`.
    pub error: Option<String>,
    /// Workflow time of the event, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// What is wrong with a source, as the type of the non-retryable failure an activity reports.
/// Retrying cannot help with any of these, so the workflow stops and does not offer a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadInputKind {
    /// The source object does not exist.
    MissingSource,
    /// The source is empty, unreadable or not a video.
    NotAVideo,
    /// The source is larger, longer or bigger in pixels than allowed.
    OverLimit,
    /// The source could be read but not transcoded, e.g. it is cut off.
    Undecodable,
}

impl BadInputKind {
    const ALL: [Self; 4] = [
        Self::MissingSource,
        Self::NotAVideo,
        Self::OverLimit,
        Self::Undecodable,
    ];

    /// The Temporal application failure type.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::MissingSource => "MissingSource",
            Self::NotAVideo => "NotAVideo",
            Self::OverLimit => "OverLimit",
            Self::Undecodable => "Undecodable",
        }
    }

    /// The kind a failure type names, if it names one.
    pub fn from_type_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.type_name() == name)
    }
}

/// The activities of the video pipeline. Heavy ones run on the video task queue, light ones on
/// the light task queue.
pub struct VideoActivities;

#[activity_definitions]
impl VideoActivities {
    /// Heavy. Inspects the source with ffprobe and plans the ladder. Bad input is a
    /// non-retryable failure.
    #[activity(name = "probe")]
    pub fn probe(job: ProbeJob) -> Result<SourcePlan, ActivityError> {
        unimplemented!()
    }

    /// Heavy. Writes `thumbnail.webp`; returns its key.
    #[activity(name = "thumbnail")]
    pub fn thumbnail(job: ThumbnailJob) -> Result<String, ActivityError> {
        unimplemented!()
    }

    /// Heavy. Transcodes and uploads one variant, heartbeating progress.
    #[activity(name = "transcode_variant")]
    pub fn transcode_variant(job: TranscodeJob) -> Result<Rendition, ActivityError> {
        unimplemented!()
    }

    /// Light. Rewrites `master.m3u8` (no-cache) to list the given variants; returns its key.
    #[activity(name = "publish_master")]
    pub fn publish_master(job: MasterJob) -> Result<String, ActivityError> {
        unimplemented!()
    }

    /// Light. Marks the finished master playlist cacheable for a year.
    #[activity(name = "finalize_cache_headers")]
    pub fn finalize_cache_headers(asset_id: AssetId) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Light. Delivers a stage event to the configured sinks.
    #[activity(name = "notify")]
    pub fn notify(notification: Notification) -> Result<(), ActivityError> {
        unimplemented!()
    }
}

/// The activity markers `#[activity(definition = ...)]` binds implementations to.
pub use video_activities::{
    FinalizeCacheHeaders, Notify, Probe, PublishMaster, Thumbnail, TranscodeVariant,
};
