//! Reading ffprobe's report on a source and deciding whether Pulse can process it.
//!
//! [`analyse`] is pure: it turns the JSON of `ffprobe -show_format -show_streams` into the
//! validated [`SourceMedia`] or a [`BadInput`] that says what is wrong. [`plan_source`] runs
//! ffprobe and plans the ladder.

use crate::{
    failure::{BadInput, BadInputKind},
    ffmpeg::{self, SourceInput, StderrTail},
    ladder,
};
use anyhow::Context;
use pulse_workflows::media::{SourceMedia, SourcePlan};
use serde::Deserialize;
use std::collections::HashMap;

/// Highest frame rate a variant gets; faster sources are converted down.
const MAX_FRAME_RATE: f64 = 60.0;
/// Frame rate assumed when the source does not say.
const FALLBACK_FRAME_RATE: f64 = 30.0;

/// The limits a source must stay within.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Longest duration, in seconds.
    pub max_duration_secs: f64,
    /// Most pixels per frame.
    pub max_pixels: u64,
    /// Largest source, in bytes.
    pub max_source_bytes: u64,
}

impl Default for Limits {
    /// Four hours, 8K, 50 GiB.
    fn default() -> Self {
        Self {
            max_duration_secs: 4.0 * 3600.0,
            max_pixels: 7680 * 4320,
            max_source_bytes: 50 << 30,
        }
    }
}

impl Limits {
    /// Refuses a source of `size_bytes` before anything reads it.
    pub fn check_size(&self, size_bytes: u64) -> Result<(), BadInput> {
        if size_bytes == 0 {
            return Err(BadInput::new(
                BadInputKind::NotAVideo,
                "the uploaded file is empty; upload the video again",
            ));
        }
        if size_bytes > self.max_source_bytes {
            return Err(BadInput::new(
                BadInputKind::OverLimit,
                format!(
                    "the uploaded file is {}, more than the limit of {}",
                    human_bytes(size_bytes),
                    human_bytes(self.max_source_bytes)
                ),
            ));
        }
        Ok(())
    }
}

/// The parts of `ffprobe -print_format json -show_format -show_streams` that Pulse reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProbeReport {
    /// Streams in the container.
    #[serde(default)]
    pub streams: Vec<ProbeStream>,
    /// The container.
    #[serde(default)]
    pub format: ProbeFormat,
}

/// One stream in a [`ProbeReport`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProbeStream {
    /// Stream index in the container.
    pub index: u32,
    /// `video`, `audio`, `subtitle`, `data`...
    #[serde(default)]
    pub codec_type: String,
    /// e.g. `h264`.
    #[serde(default)]
    pub codec_name: String,
    /// Coded width.
    pub width: Option<u32>,
    /// Coded height.
    pub height: Option<u32>,
    /// Average frame rate as a fraction, e.g. `30000/1001`.
    pub avg_frame_rate: Option<String>,
    /// Base frame rate as a fraction.
    pub r_frame_rate: Option<String>,
    /// e.g. `smpte2084` for PQ HDR.
    pub color_transfer: Option<String>,
    /// Stream duration in seconds, as text.
    pub duration: Option<String>,
    /// Flags such as `attached_pic` (cover art shows up as a video stream).
    #[serde(default)]
    pub disposition: HashMap<String, i64>,
    /// Side data such as the display matrix.
    #[serde(default)]
    pub side_data_list: Vec<SideData>,
    /// Stream tags; older files keep rotation in `rotate`.
    #[serde(default)]
    pub tags: HashMap<String, String>,
}

/// Side data of a [`ProbeStream`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SideData {
    /// Rotation of the display matrix in degrees.
    pub rotation: Option<f64>,
}

/// The container of a [`ProbeReport`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProbeFormat {
    /// e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    #[serde(default)]
    pub format_name: String,
    /// Duration in seconds, as text.
    pub duration: Option<String>,
}

impl ProbeStream {
    fn is_picture(&self) -> bool {
        self.codec_type == "video"
            && self.disposition.get("attached_pic").copied().unwrap_or(0) == 0
    }

    /// Rotation in degrees, from the display matrix or the legacy `rotate` tag.
    fn rotation(&self) -> f64 {
        self.side_data_list
            .iter()
            .find_map(|side| side.rotation)
            .or_else(|| self.tags.get("rotate").and_then(|r| r.parse().ok()))
            .unwrap_or(0.0)
    }

    /// Whether the picture is turned a quarter, so width and height swap on display.
    fn is_quarter_turned(&self) -> bool {
        (self.rotation().round() as i64).rem_euclid(180) == 90
    }
}

/// Validates a probed source of `size_bytes` against `limits`.
pub fn analyse(
    report: &ProbeReport,
    size_bytes: u64,
    limits: &Limits,
) -> Result<SourceMedia, BadInput> {
    let not_a_video = |why: &str| BadInput::new(BadInputKind::NotAVideo, why.to_owned());
    let video = report
        .streams
        .iter()
        .find(|stream| stream.is_picture())
        .ok_or_else(|| {
            not_a_video("the file has no video stream (is it an audio file or an image?)")
        })?;
    let (coded_width, coded_height) = match (video.width, video.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(not_a_video(
                "the video stream has no picture size; the file may be damaged",
            ));
        }
    };
    let (width, height) = if video.is_quarter_turned() {
        (coded_height, coded_width)
    } else {
        (coded_width, coded_height)
    };

    // The video stream's own duration is what the variants will last; the container's covers
    // every stream (audio may run longer).
    let duration_secs = [video.duration.as_deref(), report.format.duration.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(|text| text.parse::<f64>().ok())
        .find(|d| d.is_finite() && *d > 0.0)
        .ok_or_else(|| {
            not_a_video("the video's duration is unknown; the file may be truncated or damaged")
        })?;

    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(BadInput::new(
            BadInputKind::OverLimit,
            format!(
                "the video is {width}x{height}, more than the limit of {} pixels per frame",
                limits.max_pixels
            ),
        ));
    }
    if duration_secs > limits.max_duration_secs {
        return Err(BadInput::new(
            BadInputKind::OverLimit,
            format!(
                "the video lasts {}, longer than the limit of {}",
                human_duration(duration_secs),
                human_duration(limits.max_duration_secs)
            ),
        ));
    }

    let frame_rate = [
        video.avg_frame_rate.as_deref(),
        video.r_frame_rate.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(parse_fraction)
    .find(|rate| *rate >= 1.0 && *rate <= 1000.0)
    .unwrap_or(FALLBACK_FRAME_RATE)
    .min(MAX_FRAME_RATE);
    let audio = report
        .streams
        .iter()
        .find(|stream| stream.codec_type == "audio");
    let hdr = matches!(
        video.color_transfer.as_deref(),
        Some("smpte2084" | "arib-std-b67")
    );

    let mut description = format!(
        "{} {width}x{height} {}fps",
        video.codec_name,
        (frame_rate * 100.0).round() / 100.0
    );
    if hdr {
        description.push_str(" HDR");
    }
    if let Some(audio) = audio {
        description.push_str(&format!(", {}", audio.codec_name));
    }

    Ok(SourceMedia {
        width,
        height,
        duration_secs,
        frame_rate,
        video_stream: video.index,
        audio_stream: audio.map(|stream| stream.index),
        hdr,
        size_bytes,
        description,
    })
}

/// Parses `num/den` (or a plain number) as a rate.
fn parse_fraction(text: &str) -> Option<f64> {
    let value = match text.split_once('/') {
        Some((num, den)) => num.trim().parse::<f64>().ok()? / den.trim().parse::<f64>().ok()?,
        None => text.trim().parse::<f64>().ok()?,
    };
    value.is_finite().then_some(value)
}

/// Probes `source`, `size_bytes` long, checks it against `limits` and plans its ladder. A
/// source Pulse cannot process is a [`BadInput`].
pub async fn plan_source(
    source: &SourceInput,
    size_bytes: u64,
    limits: &Limits,
) -> anyhow::Result<SourcePlan> {
    limits.check_size(size_bytes)?;
    let json = match ffmpeg::ffprobe(source).await {
        Ok(json) => json,
        Err(ffmpeg::ToolError::Failed { stderr, .. }) => return Err(unreadable(&stderr).into()),
        Err(other) => return Err(other.into()),
    };
    let report: ProbeReport = serde_json::from_slice(&json).context("reading ffprobe's report")?;
    let media = analyse(&report, size_bytes, limits)?;
    let variants = ladder::plan_ladder(media.width, media.height);
    Ok(SourcePlan { media, variants })
}

/// Why ffprobe could not read a source, from what it wrote to stderr.
pub fn unreadable(stderr: &StderrTail) -> BadInput {
    let refused_format = stderr.lines().iter().find_map(|line| {
        let (format, message) = line.split_once(": ")?;
        message
            .starts_with("Format not on whitelist")
            .then_some(format)
    });
    let message = match refused_format {
        Some(format) => format!(
            "the file is {} that points at other files, not a video; upload the video file itself",
            match format {
                "hls" => "an HLS playlist".to_owned(),
                "concat" => "a concat list".to_owned(),
                other => format!("a {other} file"),
            }
        ),
        None => format!("the file is not a video Pulse can read (ffprobe: {stderr})"),
    };
    BadInput::new(BadInputKind::NotAVideo, message)
}

fn human_bytes(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else if b >= MIB {
        format!("{:.1} MiB", b / MIB)
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn human_duration(secs: f64) -> String {
    let total = secs.round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: serde_json::Value) -> ProbeReport {
        serde_json::from_value(json).unwrap()
    }

    fn landscape() -> serde_json::Value {
        serde_json::json!({
            "streams": [
                {"index": 0, "codec_type": "video", "codec_name": "h264", "width": 1280, "height": 720,
                 "avg_frame_rate": "30000/1001", "r_frame_rate": "30000/1001", "duration": "10.0",
                 "disposition": {"attached_pic": 0}},
                {"index": 1, "codec_type": "audio", "codec_name": "aac"}
            ],
            "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "10.010000"}
        })
    }

    #[test]
    fn reads_a_normal_video() {
        let media = analyse(&report(landscape()), 1000, &Limits::default()).unwrap();
        assert_eq!((media.width, media.height), (1280, 720));
        assert!((media.frame_rate - 29.97).abs() < 0.01);
        assert_eq!(
            media.duration_secs, 10.0,
            "the video stream's duration, not the container's"
        );
        assert_eq!(media.video_stream, 0);
        assert_eq!(media.audio_stream, Some(1));
        assert!(!media.hdr);
        assert_eq!(media.description, "h264 1280x720 29.97fps, aac");
    }

    #[test]
    fn rotation_swaps_the_displayed_size() {
        let mut json = landscape();
        json["streams"][0]["side_data_list"] =
            serde_json::json!([{"side_data_type": "Display Matrix", "rotation": -90}]);
        let media = analyse(&report(json), 1000, &Limits::default()).unwrap();
        assert_eq!((media.width, media.height), (720, 1280));

        let mut json = landscape();
        json["streams"][0]["tags"] = serde_json::json!({"rotate": "270"});
        assert_eq!(
            analyse(&report(json), 1, &Limits::default()).unwrap().width,
            720
        );

        let mut json = landscape();
        json["streams"][0]["side_data_list"] = serde_json::json!([{"rotation": 180}]);
        assert_eq!(
            analyse(&report(json), 1, &Limits::default()).unwrap().width,
            1280
        );
    }

    #[test]
    fn cover_art_is_not_a_video() {
        let json = serde_json::json!({
            "streams": [
                {"index": 0, "codec_type": "audio", "codec_name": "mp3"},
                {"index": 1, "codec_type": "video", "codec_name": "mjpeg", "width": 500, "height": 500,
                 "disposition": {"attached_pic": 1}}
            ],
            "format": {"duration": "200.0"}
        });
        let error = analyse(&report(json), 1000, &Limits::default()).unwrap_err();
        assert_eq!(error.kind, BadInputKind::NotAVideo);
        assert!(error.message.contains("no video stream"), "{error}");
    }

    #[test]
    fn unknown_duration_is_refused() {
        let mut json = landscape();
        json["format"]["duration"] = serde_json::Value::Null;
        json["streams"][0]["duration"] = "N/A".into();
        let error = analyse(&report(json), 1000, &Limits::default()).unwrap_err();
        assert!(error.message.contains("duration is unknown"), "{error}");
    }

    #[test]
    fn limits_are_enforced_with_a_clear_message() {
        let limits = Limits {
            max_duration_secs: 5.0,
            max_pixels: 1920 * 1080,
            max_source_bytes: 1 << 20,
        };
        let error = analyse(&report(landscape()), 1000, &limits).unwrap_err();
        assert_eq!(error.kind, BadInputKind::OverLimit);
        assert_eq!(
            error.message,
            "the video lasts 10s, longer than the limit of 5s"
        );

        let mut json = landscape();
        json["streams"][0]["width"] = 10_000.into();
        json["streams"][0]["height"] = 5_000.into();
        let error = analyse(&report(json), 1000, &Limits::default()).unwrap_err();
        assert!(error.message.contains("10000x5000"), "{error}");

        assert_eq!(
            limits.check_size(0).unwrap_err().kind,
            BadInputKind::NotAVideo
        );
        assert_eq!(
            limits.check_size(3 << 20).unwrap_err().message,
            "the uploaded file is 3.0 MiB, more than the limit of 1.0 MiB"
        );
        assert!(limits.check_size(1000).is_ok());
    }

    #[test]
    fn frame_rate_falls_back_and_is_capped() {
        let mut json = landscape();
        json["streams"][0]["avg_frame_rate"] = "0/0".into();
        json["streams"][0]["r_frame_rate"] = "120/1".into();
        assert_eq!(
            analyse(&report(json), 1, &Limits::default())
                .unwrap()
                .frame_rate,
            60.0
        );

        let mut json = landscape();
        json["streams"][0]["avg_frame_rate"] = "0/0".into();
        json["streams"][0]["r_frame_rate"] = "0/0".into();
        assert_eq!(
            analyse(&report(json), 1, &Limits::default())
                .unwrap()
                .frame_rate,
            30.0
        );
    }

    #[test]
    fn playlists_and_lists_are_named_for_what_they_are() {
        let tail =
            |lines: &[&str]| StderrTail::from_lines(lines.iter().map(|l| l.to_string()).collect());
        let error = unreadable(&tail(&[
            "hls: Format not on whitelist 'mov'",
            "the source: Invalid argument",
        ]));
        assert_eq!(
            error.message,
            "the file is an HLS playlist that points at other files, not a video; upload the video file itself"
        );
        assert!(
            unreadable(&tail(&["concat: Format not on whitelist 'mov'"]))
                .message
                .contains("a concat list")
        );
        let error = unreadable(&tail(&[
            "the source: Invalid data found when processing input",
        ]));
        assert_eq!(
            error.message,
            "the file is not a video Pulse can read (ffprobe: the source: Invalid data found when processing input)"
        );
        assert_eq!(error.kind, BadInputKind::NotAVideo);
    }

    #[test]
    fn hdr_is_detected() {
        let mut json = landscape();
        json["streams"][0]["color_transfer"] = "smpte2084".into();
        let media = analyse(&report(json), 1, &Limits::default()).unwrap();
        assert!(media.hdr);
        assert!(media.description.contains("HDR"));
    }
}
