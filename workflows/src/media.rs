//! What the pipeline knows about a source and its renditions. These values travel between the
//! workflow and the activities, so they are recorded in workflow history.

use serde::{Deserialize, Serialize};

/// The facts about a source video that the rest of the pipeline needs, after validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceMedia {
    /// Displayed width in pixels, after rotation is applied.
    pub width: u32,
    /// Displayed height in pixels, after rotation is applied.
    pub height: u32,
    /// Duration in seconds.
    pub duration_secs: f64,
    /// Frame rate of every variant (the source's average rate, capped).
    pub frame_rate: f64,
    /// Index of the video stream ffmpeg reads.
    pub video_stream: u32,
    /// Index of the audio stream, if the source has one (variants then carry AAC audio).
    pub audio_stream: Option<u32>,
    /// Whether the source is HDR (PQ or HLG) and needs tone mapping to SDR.
    pub hdr: bool,
    /// Size of the source object in bytes.
    pub size_bytes: u64,
    /// Short human description, e.g. `h264 1920x1080 30fps, aac`, for operators.
    pub description: String,
}

/// One rung of the ladder to produce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantSpec {
    /// Name and folder of the variant, e.g. `720p`.
    pub name: String,
    /// Output width in pixels (even).
    pub width: u32,
    /// Output height in pixels (even).
    pub height: u32,
    /// Peak video bit rate the encoder may use, in kbit/s.
    pub max_video_kbps: u32,
    /// Audio bit rate in kbit/s (used when the source has audio).
    pub audio_kbps: u32,
}

impl VariantSpec {
    /// Pixels per frame; the ladder is ordered by it.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// The probe's verdict: the validated source and the ladder to produce, smallest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourcePlan {
    /// The validated source.
    pub media: SourceMedia,
    /// Variants to produce, smallest first; never larger than the source.
    pub variants: Vec<VariantSpec>,
}

/// A finished variant, with what the master playlist says about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    /// Variant name, e.g. `240p`.
    pub name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frame rate.
    pub frame_rate: f64,
    /// Peak segment bit rate in bit/s (the master's `BANDWIDTH`).
    pub bandwidth: u64,
    /// Average bit rate in bit/s (the master's `AVERAGE-BANDWIDTH`).
    pub average_bandwidth: u64,
    /// RFC 6381 codec string, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    /// Number of media segments.
    pub segments: u32,
    /// Total duration in seconds.
    pub duration_secs: f64,
    /// Segment this attempt started from (0 unless a crashed attempt was resumed).
    pub resumed_from_segment: u32,
}
