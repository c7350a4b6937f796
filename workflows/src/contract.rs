//! The activities the workflow calls: names, inputs and outputs. `pulse-activities` implements
//! them (each implementation is checked against its declaration at compile time), so the
//! workflow crate stays free of I/O.

use crate::{
    asset::AssetId,
    events::Stage,
    media::{
        Rendition, SegmentRange, SegmentRecord, SourceMedia, SourcePlan, TranscodeOutput,
        VariantSpec,
    },
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
    /// Whether ffmpeg runs at idle CPU priority, beside the smallest variant's transcode
    /// (absent in runs from before it did).
    #[serde(default)]
    pub background: bool,
}

/// Input of `transcode`: some rungs of the ladder over some segments of the video, all from
/// one decode of the source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranscodeJob {
    /// The asset.
    pub asset_id: AssetId,
    /// Key of the uploaded source in the bucket.
    pub source_key: String,
    /// The probed source.
    pub media: SourceMedia,
    /// The rungs to make.
    pub variants: Vec<VariantSpec>,
    /// The segments to make.
    pub range: SegmentRange,
    /// The part of the overall progress scale this transcode covers.
    pub progress: ProgressSpan,
    /// Run at idle CPU priority, so the transcode that makes the asset playable gets the
    /// machine first and this one takes what is left.
    pub background: bool,
    /// Fast start: publish the (single) variant's playlist as it grows, and the master as soon
    /// as the first segment is up, then tell the workflow with the `first_segment_published`
    /// signal.
    pub live: bool,
    /// Tell the workflow with the `first_transcode_started` signal once running: the smallest
    /// variant then holds a heavy slot, and the pieces of the other variants may be scheduled
    /// without taking it. Jobs recorded before this field never signal.
    #[serde(default)]
    pub announce_start: bool,
}

/// A variant whose every segment is uploaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletedVariant {
    /// The rung.
    pub spec: VariantSpec,
    /// Every segment, in order.
    pub segments: Vec<SegmentRecord>,
}

/// Input of `publish_master`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MasterJob {
    /// The asset.
    pub asset_id: AssetId,
    /// The probed source.
    pub media: SourceMedia,
    /// Variants the master lists already.
    pub listed: Vec<Rendition>,
    /// Variants complete since: their playlists are written, then they join the master.
    pub completed: Vec<CompletedVariant>,
}

impl MasterJob {
    /// The listed variants the master keeps: a variant listed while it was written (fast
    /// start) is replaced by its complete self.
    pub fn kept_listed(&self) -> impl Iterator<Item = &Rendition> {
        self.listed
            .iter()
            .filter(|listed| self.completed.iter().all(|c| c.spec.name != listed.name))
    }
}

/// Output of `publish_master`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishedMaster {
    /// Key of `master.m3u8`.
    pub key: String,
    /// Every variant it lists.
    pub renditions: Vec<Rendition>,
}

/// What the `report_progress` activity asks the workflow (query `progress_report`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressReport {
    /// Progress of the finished transcodes.
    pub settled: f64,
    /// Whether progress events may go out (the stage events that come first are delivered).
    pub events_allowed: bool,
    /// Whether transcodes still run: once they are over the reporter stops by itself, so the
    /// workflow never waits for a cancellation to reach it.
    pub transcoding: bool,
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

    /// Heavy. Transcodes and uploads some rungs over some segments, heartbeating a checkpoint.
    #[activity(name = "transcode")]
    pub fn transcode(job: TranscodeJob) -> Result<TranscodeOutput, ActivityError> {
        unimplemented!()
    }

    /// Light. Writes the playlists of completed variants, then rewrites `master.m3u8`
    /// (no-cache) to list every finished variant.
    #[activity(name = "publish_master")]
    pub fn publish_master(job: MasterJob) -> Result<PublishedMaster, ActivityError> {
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

    /// Light. Sends progress events while the transcodes run, from their heartbeats, until
    /// cancelled.
    #[activity(name = "report_progress")]
    pub fn report_progress(asset_id: AssetId) -> Result<(), ActivityError> {
        unimplemented!()
    }
}

/// The activity markers `#[activity(definition = ...)]` binds implementations to.
pub use video_activities::{
    FinalizeCacheHeaders, Notify, Probe, PublishMaster, ReportProgress, Thumbnail, Transcode,
};
