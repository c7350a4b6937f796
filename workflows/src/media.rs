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
}

/// Length of a media segment outside fast start, in seconds: keyframes sit on every multiple of
/// the segment length in every variant, so segments line up across the ladder and a transcode
/// can start at any of them.
pub const SEGMENT_SECS: u32 = 4;

/// Length of a media segment in fast start: a player starts once the first segment is out, and
/// x264 writes a 2 s segment about half a second sooner than a 4 s one.
pub const FAST_START_SEGMENT_SECS: u32 = 2;

/// A finished, uploaded media segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// Segment number: `seg_{index:03}.ts`.
    pub index: u32,
    /// Duration in seconds.
    pub duration_secs: f64,
    /// Size in bytes.
    pub bytes: u64,
}

/// Segments `first..end` of a video cut into segments of `segment_secs`; `end` none means to
/// the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRange {
    /// First segment.
    pub first: u32,
    /// The segment after the last one, if not the end of the video.
    pub end: Option<u32>,
    /// Length of every segment but the video's last, in seconds ([`SEGMENT_SECS`] in ranges
    /// recorded before the length could differ).
    #[serde(default = "standard_segment_secs")]
    pub segment_secs: u32,
}

fn standard_segment_secs() -> u32 {
    SEGMENT_SECS
}

impl SegmentRange {
    /// The whole video, in segments of `segment_secs`.
    pub fn whole(segment_secs: u32) -> Self {
        Self {
            first: 0,
            end: None,
            segment_secs,
        }
    }

    /// Whether the range is the whole video.
    pub fn is_whole(&self) -> bool {
        self.first == 0 && self.end.is_none()
    }

    /// Where the range starts in the video, in seconds.
    pub fn start_secs(&self) -> f64 {
        f64::from(self.first * self.segment_secs)
    }

    /// How long the range lasts in a video of `duration_secs`.
    pub fn duration_secs(&self, duration_secs: f64) -> f64 {
        let end = self.end.map_or(duration_secs, |end| {
            f64::from(end * self.segment_secs).min(duration_secs)
        });
        (end - self.start_secs()).max(0.0)
    }

    /// Cuts a video of `duration_secs` into ranges of about `chunk_secs` (whole segments of
    /// `segment_secs`).
    pub fn chunks(duration_secs: f64, chunk_secs: f64, segment_secs: u32) -> Vec<Self> {
        let segment = f64::from(segment_secs);
        let segments = (duration_secs / segment).ceil().max(1.0) as u32;
        let per_chunk = ((chunk_secs / segment).round() as u32).max(1);
        let mut ranges = Vec::new();
        let mut first = 0;
        while first < segments {
            let end = first.saturating_add(per_chunk);
            ranges.push(Self {
                first,
                end: (end < segments).then_some(end),
                segment_secs,
            });
            first = end;
        }
        ranges
    }
}

/// The segments a transcode made of one variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantSegments {
    /// Variant name.
    pub variant: String,
    /// Its segments in the transcoded range, in order.
    pub segments: Vec<SegmentRecord>,
}

/// What a transcode made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranscodeOutput {
    /// The segments of each variant.
    pub variants: Vec<VariantSegments>,
    /// The segment this attempt started from: the range's first unless it resumed the work of
    /// a crashed attempt.
    pub resumed_from_segment: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_video_in_whole_segments() {
        assert_eq!(
            SegmentRange::chunks(30.0, 120.0, SEGMENT_SECS),
            vec![SegmentRange::whole(SEGMENT_SECS)]
        );
        let chunks = SegmentRange::chunks(30.0, 8.0, SEGMENT_SECS);
        let range = |first, end| SegmentRange {
            first,
            end,
            segment_secs: SEGMENT_SECS,
        };
        assert_eq!(
            chunks,
            vec![
                range(0, Some(2)),
                range(2, Some(4)),
                range(4, Some(6)),
                range(6, None)
            ]
        );
        assert_eq!(chunks[1].start_secs(), 8.0);
        assert_eq!(chunks[1].duration_secs(30.0), 8.0);
        assert_eq!(chunks[3].duration_secs(30.0), 6.0);
        assert_eq!(
            SegmentRange::chunks(0.5, 8.0, SEGMENT_SECS),
            vec![SegmentRange::whole(SEGMENT_SECS)]
        );
        assert!(SegmentRange::whole(SEGMENT_SECS).is_whole());
        assert!(chunks.iter().all(|chunk| !chunk.is_whole()));
    }

    #[test]
    fn shorter_segments_cut_the_same_pieces_in_more_segments() {
        let chunks = SegmentRange::chunks(30.0, 8.0, FAST_START_SEGMENT_SECS);
        assert_eq!(chunks.len(), 4);
        assert_eq!((chunks[1].first, chunks[1].end), (4, Some(8)));
        assert_eq!(chunks[1].start_secs(), 8.0);
        assert_eq!(chunks[3].duration_secs(30.0), 6.0);
    }

    #[test]
    fn ranges_recorded_without_a_segment_length_have_the_standard_one() {
        let range: SegmentRange = serde_json::from_str(r#"{"first":2,"end":null}"#).unwrap();
        assert_eq!(range.segment_secs, SEGMENT_SECS);
        assert_eq!(range.start_secs(), 8.0);
    }
}
