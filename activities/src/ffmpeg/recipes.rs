//! The ffmpeg commands of the pipeline: one HLS variant, and the WebP thumbnail.
//!
//! Every variant plays everywhere (SPEC section 3): H.264 High 8-bit 4:2:0 at even sizes with
//! the level announced in the master, AAC-LC stereo, constant frame rate, and keyframes forced
//! on every segment boundary so all variants cut at the same instants and players switch cleanly.

use super::{FfmpegCommand, SourceInput};
use crate::codec::Level;
use pulse_workflows::media::{SourceMedia, VariantSpec};
use std::{net::SocketAddr, path::Path};

/// Length of a media segment, in seconds.
pub const SEGMENT_SECS: u32 = 4;
/// Timestamp every variant's output starts from; see [`VariantRecipe::output_offset_secs`].
pub const TIMESTAMP_BASE_SECS: f64 = 1.0;
/// Name of the playlist ffmpeg keeps in the work folder while it encodes.
pub const WORK_PLAYLIST: &str = "index.m3u8";
/// Longest side of the thumbnail, in pixels.
const THUMBNAIL_SIDE: u32 = 640;
/// WebP quality of the thumbnail (the seed's sweet spot).
const THUMBNAIL_QUALITY: u32 = 75;
/// Constant rate factor of x264; the bit rate cap of the rung bounds it on hard content.
const CRF: u32 = 23;

/// Tone maps PQ/HLG HDR to SDR BT.709, so HDR sources look right on every screen.
const HDR_TO_SDR: &str = "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,\
tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv";

/// How one variant is encoded.
#[derive(Clone, Debug)]
pub struct VariantRecipe<'a> {
    /// The probed source.
    pub media: &'a SourceMedia,
    /// The rung.
    pub variant: &'a VariantSpec,
    /// x264 preset, e.g. `veryfast`.
    pub preset: &'a str,
    /// First segment to produce (0 unless resuming after a crash).
    pub first_segment: u32,
    /// Test-only: read the source no faster than real time, so a test can act mid-variant.
    pub realtime: bool,
}

impl VariantRecipe<'_> {
    /// The H.264 level of this variant.
    pub fn level(&self) -> Level {
        Level::for_stream(
            self.variant.width,
            self.variant.height,
            self.media.frame_rate,
            self.variant.max_video_kbps,
        )
    }

    /// Where in the source this run starts, in seconds.
    pub fn start_secs(&self) -> f64 {
        f64::from(self.first_segment * SEGMENT_SECS)
    }

    /// How far output timestamps are moved: to where this run starts in the source, so a
    /// resumed run continues the timestamps of the segments already uploaded, plus
    /// [`TIMESTAMP_BASE_SECS`]. The base keeps the first decode timestamp positive (B-frames
    /// start it before the first picture), so ffmpeg never shifts a run by its own amount and
    /// every run of a variant lines up to the frame. ffmpeg's `-progress` times include it.
    pub fn output_offset_secs(&self) -> f64 {
        self.start_secs() + TIMESTAMP_BASE_SECS
    }

    /// The ffmpeg command writing HLS segments `seg_NNN.ts` and a growing `index.m3u8` into
    /// `work_dir`, reporting progress to `progress`.
    pub fn command(
        &self,
        source_url: &str,
        work_dir: &Path,
        progress: SocketAddr,
    ) -> FfmpegCommand {
        let media = self.media;
        let variant = self.variant;
        let start = self.start_secs();
        let keyframe_frames = (media.frame_rate * f64::from(SEGMENT_SECS))
            .round()
            .max(1.0);
        let max_kbps = variant.max_video_kbps;

        let mut command = FfmpegCommand::new()
            .progress_to(progress)
            .input(
                &SourceInput::new(source_url)
                    .seek(start)
                    .realtime(self.realtime),
            )
            .args(["-map".to_owned(), format!("0:{}", media.video_stream)]);
        if let Some(audio) = media.audio_stream {
            command = command.args(["-map".to_owned(), format!("0:{audio}")]);
        }
        command = command
            .args(["-map_metadata", "-1", "-map_chapters", "-1"])
            .args([
                "-vf".to_owned(),
                video_filter(media, variant.width, variant.height),
            ])
            .args([
                "-fps_mode".to_owned(),
                "cfr".into(),
                "-r".into(),
                format!("{:.6}", media.frame_rate),
            ])
            .args([
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-profile:v",
                "high",
            ])
            .args(["-level:v".to_owned(), self.level().as_x264()])
            .args(["-preset".to_owned(), self.preset.to_owned()])
            .args(["-crf".to_owned(), CRF.to_string()])
            .args([
                "-maxrate".to_owned(),
                format!("{max_kbps}k"),
                "-bufsize".into(),
                format!("{}k", max_kbps * 2),
            ])
            .args([
                "-g".to_owned(),
                format!("{keyframe_frames}"),
                "-keyint_min".into(),
                format!("{keyframe_frames}"),
            ])
            .args(["-sc_threshold", "0"])
            .args([
                "-force_key_frames".to_owned(),
                format!("expr:gte(t,n_forced*{SEGMENT_SECS})"),
            ]);
        if media.audio_stream.is_some() {
            command = command
                .args(["-c:a", "aac", "-ac", "2", "-ar", "48000"])
                .args(["-b:a".to_owned(), format!("{}k", variant.audio_kbps)]);
        }
        command
            .args([
                "-output_ts_offset".to_owned(),
                format!("{:.6}", self.output_offset_secs()),
            ])
            .args(["-f", "hls", "-hls_time"])
            .args([SEGMENT_SECS.to_string()])
            .args([
                "-hls_playlist_type",
                "event",
                "-hls_flags",
                "temp_file+independent_segments",
            ])
            .args(["-hls_segment_type", "mpegts", "-start_number"])
            .args([self.first_segment.to_string()])
            .args([
                "-hls_segment_filename".to_owned(),
                work_dir.join("seg_%03d.ts").display().to_string(),
            ])
            .output(&work_dir.join(WORK_PLAYLIST))
    }
}

/// Size of the thumbnail of `media`: the displayed picture fitted into 640 pixels, never
/// enlarged, even on both sides.
pub fn thumbnail_size(media: &SourceMedia) -> (u32, u32) {
    let long = media.width.max(media.height);
    let scale = (f64::from(THUMBNAIL_SIDE) / f64::from(long)).min(1.0);
    let even = |side: u32| (((f64::from(side) * scale).round() as u32) & !1).max(2);
    (even(media.width), even(media.height))
}

/// Where the thumbnail is taken: a tenth into the video, at most ten seconds in.
pub fn thumbnail_time(media: &SourceMedia) -> f64 {
    (media.duration_secs * 0.1).min(10.0)
}

/// The ffmpeg command writing the WebP thumbnail of `media` to `output`.
pub fn thumbnail_command(source_url: &str, media: &SourceMedia, output: &Path) -> FfmpegCommand {
    let (width, height) = thumbnail_size(media);
    FfmpegCommand::new()
        .input(&SourceInput::new(source_url).seek(thumbnail_time(media)))
        .args(["-map".to_owned(), format!("0:{}", media.video_stream)])
        .args(["-frames:v", "1", "-map_metadata", "-1"])
        .args(["-vf".to_owned(), video_filter(media, width, height)])
        .args([
            "-c:v".to_owned(),
            "libwebp".into(),
            "-quality".into(),
            THUMBNAIL_QUALITY.to_string(),
        ])
        .args(["-f", "webp"])
        .output(output)
}

/// Scales to `width` x `height` with square pixels in 8-bit 4:2:0, tone mapping HDR first.
/// (ffmpeg applies the source's rotation before this chain.)
fn video_filter(media: &SourceMedia, width: u32, height: u32) -> String {
    let scale = format!("scale={width}:{height}:flags=bicubic,setsar=1,format=yuv420p");
    if media.hdr {
        format!("{HDR_TO_SDR},{scale}")
    } else {
        scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn media(audio: bool, hdr: bool) -> SourceMedia {
        SourceMedia {
            width: 1920,
            height: 1080,
            duration_secs: 30.0,
            frame_rate: 30000.0 / 1001.0,
            video_stream: 0,
            audio_stream: audio.then_some(1),
            hdr,
            size_bytes: 1,
            description: String::new(),
        }
    }

    fn variant() -> VariantSpec {
        VariantSpec {
            name: "720p".into(),
            width: 1280,
            height: 720,
            max_video_kbps: 2800,
            audio_kbps: 128,
        }
    }

    fn args(recipe: &VariantRecipe) -> String {
        recipe
            .command(
                "http://s3/src",
                &PathBuf::from("/work/job"),
                "127.0.0.1:9000".parse().unwrap(),
            )
            .as_args()
            .join(" ")
    }

    #[test]
    fn a_variant_is_plain_h264_with_aligned_keyframes() {
        let media = media(true, false);
        let variant = variant();
        let recipe = VariantRecipe {
            media: &media,
            variant: &variant,
            preset: "veryfast",
            first_segment: 0,
            realtime: false,
        };
        let args = args(&recipe);
        for expected in [
            "-progress tcp://127.0.0.1:9000",
            "-i http://s3/src -map 0:0 -map 0:1",
            "-vf scale=1280:720:flags=bicubic,setsar=1,format=yuv420p",
            "-fps_mode cfr -r 29.970030",
            "-c:v libx264 -pix_fmt yuv420p -profile:v high -level:v 3.1 -preset veryfast -crf 23",
            "-maxrate 2800k -bufsize 5600k -g 120 -keyint_min 120 -sc_threshold 0",
            "-force_key_frames expr:gte(t,n_forced*4)",
            "-c:a aac -ac 2 -ar 48000 -b:a 128k",
            "-f hls -hls_time 4 -hls_playlist_type event",
            "-start_number 0 -hls_segment_filename /work/job/seg_%03d.ts /work/job/index.m3u8",
        ] {
            assert!(args.contains(expected), "missing {expected:?} in {args}");
        }
        assert!(!args.contains("-ss"), "{args}");
        assert!(args.contains("-output_ts_offset 1.000000 -f hls"), "{args}");
    }

    #[test]
    fn a_silent_source_gets_no_audio() {
        let media = media(false, false);
        let variant = variant();
        let args = args(&VariantRecipe {
            media: &media,
            variant: &variant,
            preset: "veryfast",
            first_segment: 0,
            realtime: false,
        });
        assert!(!args.contains("-c:a"), "{args}");
        assert!(!args.contains("0:1"), "{args}");
    }

    #[test]
    fn resuming_seeks_to_the_segment_and_continues_numbering_and_time() {
        let media = media(true, false);
        let variant = variant();
        let recipe = VariantRecipe {
            media: &media,
            variant: &variant,
            preset: "veryfast",
            first_segment: 3,
            realtime: false,
        };
        let args = args(&recipe);
        assert!(args.contains("-ss 12.000000 -i http://s3/src"), "{args}");
        assert!(args.contains("-output_ts_offset 13.000000"), "{args}");
        assert!(args.contains("-start_number 3"), "{args}");
    }

    #[test]
    fn hdr_is_tone_mapped_before_scaling() {
        let media = media(true, true);
        let variant = variant();
        let args = args(&VariantRecipe {
            media: &media,
            variant: &variant,
            preset: "veryfast",
            first_segment: 0,
            realtime: false,
        });
        assert!(args.contains("-vf zscale=t=linear:npl=100"), "{args}");
        assert!(
            args.contains(
                "tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,scale=1280:720"
            ),
            "{args}"
        );
    }

    #[test]
    fn thumbnails_fit_640_without_enlarging() {
        assert_eq!(thumbnail_size(&media(true, false)), (640, 360));
        let mut portrait = media(true, false);
        (portrait.width, portrait.height) = (1080, 1920);
        assert_eq!(thumbnail_size(&portrait), (360, 640));
        let mut tiny = media(true, false);
        (tiny.width, tiny.height) = (161, 99);
        assert_eq!(thumbnail_size(&tiny), (160, 98));
    }

    #[test]
    fn thumbnail_is_webp_at_quality_75_from_early_in_the_video() {
        let args = thumbnail_command(
            "http://s3/src",
            &media(true, false),
            &PathBuf::from("/t/thumb.webp"),
        )
        .as_args()
        .join(" ");
        assert!(args.contains("-ss 3.000000 -i http://s3/src"), "{args}");
        assert!(args.contains("-frames:v 1"), "{args}");
        assert!(
            args.contains("-c:v libwebp -quality 75 -f webp /t/thumb.webp"),
            "{args}"
        );
    }
}
