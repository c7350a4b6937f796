//! The ffmpeg commands of the pipeline: a transcode (some variants over some segments, from one
//! decode of the source), and the WebP thumbnail.
//!
//! Every variant plays everywhere (SPEC section 3): H.264 High 8-bit 4:2:0 at even sizes with
//! the level announced in the master, AAC-LC stereo, constant frame rate, and keyframes forced
//! on every segment boundary so all variants cut at the same instants, players switch cleanly,
//! and a transcode can start (or restart after a crash) at any segment.

use super::{FfmpegCommand, SourceInput, worker_cores};
use crate::codec::Level;
use pulse_workflows::media::{SegmentRange, SourceMedia, VariantSpec};
use std::{net::SocketAddr, path::Path};

/// Timestamp every output starts from; see [`TranscodeRecipe::output_offset_secs`].
pub const TIMESTAMP_BASE_SECS: f64 = 1.0;
/// One AAC frame of the outputs' 48 kHz audio. An AAC encoder starts one frame before its first
/// sample (the priming frame), so a run continuing the segments of another (a later piece, a
/// resumed transcode) would put that frame over the other run's last one, and the timestamps
/// would repeat at the join. Such a run skips this much of its audio instead: its priming frame
/// takes the place of the skipped samples and the timestamps run on.
const AAC_FRAME_SECS: f64 = 1024.0 / 48_000.0;
/// Name of the playlist ffmpeg keeps in each variant's work folder while it encodes.
pub const WORK_PLAYLIST: &str = "index.m3u8";
/// Longest side of the thumbnail, in pixels.
const THUMBNAIL_SIDE: u32 = 640;
/// WebP quality of the thumbnail (the seed's sweet spot).
const THUMBNAIL_QUALITY: u32 = 75;
/// Constant rate factor of x264; the bit rate cap of the rung bounds it on hard content.
const CRF: u32 = 23;
/// Frames x264 looks ahead while its segments are published as they come (fast start), against
/// 40 at `medium`: a segment is out only once x264 has seen that many frames past it. By hand
/// the first 2 s segment of 240p from the 10-minute bench clip came 0.81 to 0.98 s after ffmpeg
/// started against 1.06 to 1.26 s, and the bench clip's 240p was as good (SSIM 0.9863 against
/// 0.9867) and 6% smaller.
const LIVE_LOOKAHEAD_FRAMES: u32 = 10;

/// Tone maps PQ/HLG HDR to SDR BT.709, so HDR sources look right on every screen.
const HDR_TO_SDR: &str = "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,\
tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv";

/// How the variants of a source are encoded: the settings Pulse and the benchmark's plain
/// ffmpeg baselines share.
#[derive(Clone, Copy, Debug)]
pub struct Encoding<'a> {
    /// The probed source.
    pub media: &'a SourceMedia,
    /// x264 preset, e.g. `medium`.
    pub preset: &'a str,
    /// Fast start: the segments are published as they come, so x264 looks only
    /// [`LIVE_LOOKAHEAD_FRAMES`] ahead.
    pub live: bool,
}

impl Encoding<'_> {
    /// The frames x264 reads ahead of the one it encodes: what ffmpeg must feed each encoder
    /// before the first is encoded. x264's defaults per preset (`x264 --fullhelp`); an unknown
    /// preset fails in ffmpeg anyway.
    pub fn lookahead_frames(&self) -> u32 {
        if self.live {
            return LIVE_LOOKAHEAD_FRAMES;
        }
        match self.preset {
            "ultrafast" | "superfast" => 0,
            "veryfast" => 10,
            "faster" => 20,
            "fast" => 30,
            "slow" => 50,
            "slower" | "veryslow" | "placebo" => 60,
            _ => 40,
        }
    }

    /// The H.264 level of `variant`.
    pub fn level(&self, variant: &VariantSpec) -> Level {
        Level::for_stream(
            variant.width,
            variant.height,
            self.media.frame_rate,
            variant.max_video_kbps,
        )
    }

    /// A filter graph that decodes the source's video once and scales it to each of
    /// `variants`, labelled `[v0]`, `[v1]`...
    pub fn filter_graph(&self, variants: &[VariantSpec]) -> String {
        let input = format!("[0:{}]", self.media.video_stream);
        let prepare = if self.media.hdr {
            format!("{HDR_TO_SDR},")
        } else {
            String::new()
        };
        let copies: String = (0..variants.len()).map(|i| format!("[s{i}]")).collect();
        let mut graph = format!("{input}{prepare}split={}{copies}", variants.len());
        for (i, variant) in variants.iter().enumerate() {
            graph.push_str(&format!(
                ";[s{i}]{}[v{i}]",
                scale(variant.width, variant.height)
            ));
        }
        graph
    }

    /// The output options of variant `index` of the filter graph: streams, encoders, rate
    /// control and keyframes (one starting each segment of `segment_secs`). The muxer comes
    /// after.
    pub fn output_args(
        &self,
        index: usize,
        variant: &VariantSpec,
        segment_secs: u32,
    ) -> Vec<String> {
        let keyframe_frames = (self.media.frame_rate * f64::from(segment_secs))
            .round()
            .max(1.0);
        let max_kbps = variant.max_video_kbps;
        let mut args: Vec<String> = vec!["-map".into(), format!("[v{index}]")];
        if let Some(audio) = self.media.audio_stream {
            args.extend(["-map".into(), format!("0:{audio}")]);
        }
        args.extend(
            [
                "-map_metadata",
                "-1",
                "-map_chapters",
                "-1",
                "-fps_mode",
                "cfr",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-profile:v",
                "high",
                "-sc_threshold",
                "0",
            ]
            .map(str::to_owned),
        );
        args.extend([
            "-r".into(),
            format!("{:.6}", self.media.frame_rate),
            "-level:v".into(),
            self.level(variant).as_x264(),
            "-preset".into(),
            self.preset.to_owned(),
        ]);
        if self.live {
            args.extend(["-rc-lookahead".into(), LIVE_LOOKAHEAD_FRAMES.to_string()]);
        }
        args.extend([
            "-crf".into(),
            CRF.to_string(),
            "-maxrate".into(),
            format!("{max_kbps}k"),
            "-bufsize".into(),
            format!("{}k", max_kbps * 2),
            "-g".into(),
            format!("{keyframe_frames}"),
            "-keyint_min".into(),
            format!("{keyframe_frames}"),
            "-force_key_frames".into(),
            format!("expr:gte(t,n_forced*{segment_secs})"),
            "-threads".into(),
            x264_threads(worker_cores(), variant.height).to_string(),
        ]);
        if self.media.audio_stream.is_some() {
            args.extend(["-c:a", "aac", "-ac", "2", "-ar", "48000", "-b:a"].map(str::to_owned));
            args.push(format!("{}k", variant.audio_kbps));
        }
        args
    }
}

/// One run of ffmpeg: `variants` over the segments of `range`, from one decode of the source.
#[derive(Clone, Debug)]
pub struct TranscodeRecipe<'a> {
    /// The encoder settings.
    pub encoding: Encoding<'a>,
    /// The rungs, each written to its own folder.
    pub variants: &'a [VariantSpec],
    /// The segments to write (the first one may be later than the job's when resuming).
    pub range: SegmentRange,
    /// Test-only: read the source no faster than real time, so a test can act mid-variant.
    pub realtime: bool,
}

impl TranscodeRecipe<'_> {
    /// How far output timestamps are moved: to where this run starts in the source, so a
    /// resumed run or a later piece continues the timestamps of the segments before it, plus
    /// [`TIMESTAMP_BASE_SECS`]. The base keeps the first decode timestamp positive (B-frames
    /// start it before the first picture), so ffmpeg never shifts a run by its own amount and
    /// every run lines up to the frame. ffmpeg's `-progress` times include it.
    pub fn output_offset_secs(&self) -> f64 {
        self.range.start_secs() + TIMESTAMP_BASE_SECS
    }

    /// The ffmpeg command reading `source` and writing, for each variant, HLS segments
    /// `seg_NNN.ts` and a growing `index.m3u8` into `work_dir/{variant}/`, reporting progress
    /// to `progress`.
    pub fn command(
        &self,
        source: &SourceInput,
        work_dir: &Path,
        progress: SocketAddr,
    ) -> FfmpegCommand {
        let mut input = source
            .clone()
            .seek(self.range.start_secs())
            .realtime(self.realtime);
        if let Some(end) = self.range.end {
            input = input.limit(f64::from(
                (end - self.range.first) * self.range.segment_secs,
            ));
        }
        let mut command = FfmpegCommand::new()
            .progress_to(progress)
            .args([
                "-filter_complex_threads".to_owned(),
                worker_cores().to_string(),
            ])
            .input(&input)
            .args([
                "-filter_complex".to_owned(),
                self.encoding.filter_graph(self.variants),
            ]);
        let continues = self.range.first > 0 && self.encoding.media.audio_stream.is_some();
        for (index, variant) in self.variants.iter().enumerate() {
            let folder = work_dir.join(&variant.name);
            command = command
                .args(
                    self.encoding
                        .output_args(index, variant, self.range.segment_secs),
                )
                .args(
                    continues
                        .then(|| ["-af".to_owned(), format!("atrim=start={AAC_FRAME_SECS:.9}")])
                        .into_iter()
                        .flatten(),
                )
                .args([
                    "-output_ts_offset".to_owned(),
                    format!("{:.6}", self.output_offset_secs()),
                ])
                .args(hls_muxer(&self.range, &folder))
                .output(&folder.join(WORK_PLAYLIST));
        }
        command
    }
}

/// The threads x264 takes by itself with `cores` for a picture `height` rows high: half as many
/// again as cores (frame threads), at most one per two rows of macroblocks.
fn x264_threads(cores: usize, height: u32) -> usize {
    let macroblock_rows = (height as usize).div_ceil(16);
    (cores * 3 / 2).min(macroblock_rows / 2).max(1)
}

/// The HLS muxer options of one output: the segments of `range`, numbered from its first,
/// written into `folder` with their playlist replaced atomically after each one.
fn hls_muxer(range: &SegmentRange, folder: &Path) -> Vec<String> {
    vec![
        "-f".into(),
        "hls".into(),
        "-hls_time".into(),
        range.segment_secs.to_string(),
        "-hls_playlist_type".into(),
        "event".into(),
        "-hls_flags".into(),
        "temp_file+independent_segments".into(),
        "-hls_segment_type".into(),
        "mpegts".into(),
        "-start_number".into(),
        range.first.to_string(),
        "-hls_segment_filename".into(),
        folder.join("seg_%03d.ts").display().to_string(),
    ]
}

/// Size of the thumbnail of `media`: the displayed picture fitted into 640 pixels, never
/// enlarged, even on both sides.
pub fn thumbnail_size(media: &SourceMedia) -> (u32, u32) {
    let long = media.width.max(media.height);
    let scale = (f64::from(THUMBNAIL_SIDE) / f64::from(long)).min(1.0);
    let even = |side: u32| (((f64::from(side) * scale).round() as u32) & !1).max(2);
    (even(media.width), even(media.height))
}

/// Where the thumbnail is looked for: a tenth into the video (past a fade from black), at most
/// ten seconds in. It shows the first keyframe from there when one comes soon after.
pub fn thumbnail_time(media: &SourceMedia) -> f64 {
    (media.duration_secs * 0.1).min(10.0)
}

/// Which picture of the source the thumbnail shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThumbnailPicture {
    /// The first keyframe at most [`KEYFRAME_SEARCH_SECS`] after [`thumbnail_time`]: only
    /// keyframes are decoded, a couple of pictures instead of every one from the keyframe
    /// before (a third of the CPU on a source with a keyframe every 8 s).
    NextKeyframe,
    /// The picture at [`thumbnail_time`] itself, for a source with no keyframe soon after it.
    Exact,
}

/// How far past [`thumbnail_time`] a keyframe is looked for: x264's default interval (250
/// pictures) at 25 frames per second.
pub const KEYFRAME_SEARCH_SECS: f64 = 10.0;

/// The ffmpeg command writing the WebP thumbnail of `media`, showing `picture`, to `output`.
/// When no picture reaches the encoder, ffmpeg still succeeds and leaves a WebP header with
/// no picture in it.
pub fn thumbnail_command(
    source_url: &str,
    media: &SourceMedia,
    picture: ThumbnailPicture,
    output: &Path,
) -> FfmpegCommand {
    let (width, height) = thumbnail_size(media);
    let mut filter = scale(width, height);
    if media.hdr {
        filter = format!("{HDR_TO_SDR},{filter}");
    }
    let input = SourceInput::new(source_url).seek(thumbnail_time(media));
    let input = match picture {
        ThumbnailPicture::NextKeyframe => input.keyframes_only().limit(KEYFRAME_SEARCH_SECS),
        ThumbnailPicture::Exact => input,
    };
    FfmpegCommand::new()
        .input(&input)
        .args(["-map".to_owned(), format!("0:{}", media.video_stream)])
        .args(["-frames:v", "1", "-map_metadata", "-1", "-vf"])
        .args([filter])
        .args([
            "-c:v".to_owned(),
            "libwebp".into(),
            "-quality".into(),
            THUMBNAIL_QUALITY.to_string(),
        ])
        .args(["-f", "webp"])
        .output(output)
}

/// Whether the thumbnail at `path` holds a picture. ffmpeg leaves 8 bytes when none reached
/// the encoder; a WebP picture is a 12-byte RIFF header and a chunk of 8 bytes and its data.
pub fn holds_picture(path: &Path) -> std::io::Result<bool> {
    const WEBP_WITH_CHUNK_BYTES: u64 = 20;
    Ok(std::fs::metadata(path)?.len() > WEBP_WITH_CHUNK_BYTES)
}

/// Scales to `width` x `height` with square pixels in 8-bit 4:2:0. (ffmpeg applies the
/// source's rotation before the filters.)
///
/// Rungs never exceed the source, so pictures shrink, and `area` averages each output pixel's
/// footprint in the source: no aliasing, at a fraction of the cost of bicubic, whose taps
/// widen with the reduction. From a noisy 1080p30 source, bicubic to 240p took 2.3
/// CPU-seconds for 30 s, area 1.2 (the smallest variant's ffmpeg, 15.1 against 13.3
/// CPU-seconds, 8.6 against 7.6 s by hand), and the four larger variants' scalers 9.2 against
/// 4.4; the encoded 240p scored an SSIM of 0.957 against 0.959 next to a lanczos reference.
fn scale(width: u32, height: u32) -> String {
    format!("scale={width}:{height}:flags=area,setsar=1,format=yuv420p")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_workflows::media::{FAST_START_SEGMENT_SECS, SEGMENT_SECS};
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

    fn variant(name: &str, width: u32, height: u32, kbps: u32) -> VariantSpec {
        VariantSpec {
            name: name.into(),
            width,
            height,
            max_video_kbps: kbps,
            audio_kbps: 128,
        }
    }

    fn args(media: &SourceMedia, variants: &[VariantSpec], range: SegmentRange) -> String {
        command_args(media, variants, range, false)
    }

    fn command_args(
        media: &SourceMedia,
        variants: &[VariantSpec],
        range: SegmentRange,
        live: bool,
    ) -> String {
        let recipe = TranscodeRecipe {
            encoding: Encoding {
                media,
                preset: "medium",
                live,
            },
            variants,
            range,
            realtime: false,
        };
        recipe
            .command(
                &SourceInput::new("http://s3/src"),
                &PathBuf::from("/work/job"),
                "127.0.0.1:9000".parse().unwrap(),
            )
            .as_args()
            .join(" ")
    }

    #[test]
    fn a_variant_is_plain_h264_with_aligned_keyframes() {
        let args = args(
            &media(true, false),
            &[variant("720p", 1280, 720, 2800)],
            SegmentRange::whole(SEGMENT_SECS),
        );
        for expected in [
            "-progress tcp://127.0.0.1:9000",
            "-i async:http://s3/src -filter_complex [0:0]split=1[s0];[s0]scale=1280:720:flags=area,setsar=1,format=yuv420p[v0]",
            "-map [v0] -map 0:1 -map_metadata -1 -map_chapters -1 -fps_mode cfr -c:v libx264 -pix_fmt yuv420p -profile:v high",
            "-r 29.970030 -level:v 3.1 -preset medium -crf 23 -maxrate 2800k -bufsize 5600k -g 120 -keyint_min 120",
            "-force_key_frames expr:gte(t,n_forced*4)",
            "-c:a aac -ac 2 -ar 48000 -b:a 128k",
            "-output_ts_offset 1.000000 -f hls -hls_time 4 -hls_playlist_type event",
            "-start_number 0 -hls_segment_filename /work/job/720p/seg_%03d.ts /work/job/720p/index.m3u8",
        ] {
            assert!(args.contains(expected), "missing {expected:?} in {args}");
        }
        assert!(!args.contains("-ss") && !args.contains(" -t "), "{args}");
        assert!(
            !args.contains("atrim"),
            "from the start, the audio is whole: {args}"
        );
    }

    #[test]
    fn x264_gets_the_threads_it_would_take_with_every_core_of_the_worker() {
        assert_eq!(x264_threads(2, 240), 3);
        assert_eq!(x264_threads(1, 1080), 1);
        assert_eq!(x264_threads(16, 1080), 24);
        assert_eq!(x264_threads(16, 240), 7, "two macroblock rows per thread");
        assert_eq!(x264_threads(4, 16), 1);
        let args = args(
            &media(true, false),
            &[variant("720p", 1280, 720, 2800)],
            SegmentRange::whole(SEGMENT_SECS),
        );
        let cores = worker_cores();
        assert!(
            args.contains(&format!("-threads {} -c:a aac", x264_threads(cores, 720))),
            "{args}"
        );
        assert!(
            args.contains(&format!(
                "-filter_complex_threads {cores} -protocol_whitelist"
            )),
            "{args}"
        );
    }

    #[test]
    fn fast_start_looks_ahead_less() {
        let variants = [variant("240p", 426, 240, 400)];
        let range = SegmentRange::whole(FAST_START_SEGMENT_SECS);
        let live = command_args(&media(true, false), &variants, range, true);
        assert!(
            live.contains("-preset medium -rc-lookahead 10 -crf 23"),
            "{live}"
        );
        let standard = command_args(&media(true, false), &variants, range, false);
        assert!(!standard.contains("-rc-lookahead"), "{standard}");
        let media = media(true, false);
        let encoding = |preset, live| Encoding {
            media: &media,
            preset,
            live,
        };
        assert_eq!(encoding("medium", true).lookahead_frames(), 10);
        assert_eq!(encoding("medium", false).lookahead_frames(), 40);
        assert_eq!(encoding("veryfast", false).lookahead_frames(), 10);
        assert_eq!(encoding("ultrafast", false).lookahead_frames(), 0);
        assert_eq!(encoding("veryslow", false).lookahead_frames(), 60);
    }

    #[test]
    fn several_variants_share_one_decode() {
        let ladder = [
            variant("360p", 640, 360, 800),
            variant("720p", 1280, 720, 2800),
        ];
        let args = args(
            &media(true, false),
            &ladder,
            SegmentRange::whole(SEGMENT_SECS),
        );
        assert_eq!(args.matches(" -i ").count(), 1, "{args}");
        assert!(args.contains("split=2[s0][s1];[s0]scale=640:360"), "{args}");
        assert!(args.contains("-map [v1] -map 0:1"), "{args}");
        assert!(
            args.contains("/work/job/360p/index.m3u8")
                && args.contains("/work/job/720p/index.m3u8")
        );
    }

    #[test]
    fn a_silent_source_gets_no_audio() {
        let args = args(
            &media(false, false),
            &[variant("720p", 1280, 720, 2800)],
            SegmentRange::whole(SEGMENT_SECS),
        );
        assert!(!args.contains("-c:a") && !args.contains("0:1"), "{args}");
    }

    #[test]
    fn a_range_seeks_limits_and_continues_numbering_and_time() {
        // Segments 3 and 4, of the standard length and of fast start's shorter one: keyframes,
        // cuts, seek and timestamps all follow the segment length.
        let cases = [
            (
                SEGMENT_SECS,
                [
                    "-ss 12.000000 -t 8.000000 -i async:http://s3/src",
                    "-g 120 -keyint_min 120",
                    "-force_key_frames expr:gte(t,n_forced*4)",
                    "-output_ts_offset 13.000000 -f hls -hls_time 4",
                ],
            ),
            (
                FAST_START_SEGMENT_SECS,
                [
                    "-ss 6.000000 -t 4.000000 -i async:http://s3/src",
                    "-g 60 -keyint_min 60",
                    "-force_key_frames expr:gte(t,n_forced*2)",
                    "-output_ts_offset 7.000000 -f hls -hls_time 2",
                ],
            ),
        ];
        for (segment_secs, expected) in cases {
            let range = SegmentRange {
                first: 3,
                end: Some(5),
                segment_secs,
            };
            let args = args(
                &media(true, false),
                &[variant("720p", 1280, 720, 2800)],
                range,
            );
            // The audio skips the priming frame's length, so it runs on from the segments before.
            let continued = "-b:a 128k -af atrim=start=0.021333333 -output_ts_offset";
            for expected in expected.into_iter().chain(["-start_number 3", continued]) {
                assert!(args.contains(expected), "missing {expected:?} in {args}");
            }
        }
    }

    #[test]
    fn hdr_is_tone_mapped_before_the_split() {
        let args = args(
            &media(true, true),
            &[variant("720p", 1280, 720, 2800)],
            SegmentRange::whole(SEGMENT_SECS),
        );
        assert!(args.contains("[0:0]zscale=t=linear:npl=100"), "{args}");
        assert!(
            args.contains("zscale=t=bt709:m=bt709:r=tv,split=1"),
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
        let args = |picture| {
            thumbnail_command(
                "http://s3/src",
                &media(true, false),
                picture,
                &PathBuf::from("/t/thumb.webp"),
            )
            .as_args()
            .join(" ")
        };
        let exact = args(ThumbnailPicture::Exact);
        assert!(
            exact.contains("-ss 3.000000 -i async:http://s3/src"),
            "{exact}"
        );
        let keyframe = args(ThumbnailPicture::NextKeyframe);
        assert!(
            keyframe.contains("-skip_frame nokey -ss 3.000000 -t 10.000000 -i async:http://s3/src"),
            "{keyframe}"
        );
        for args in [exact, keyframe] {
            assert!(args.contains("-frames:v 1"), "{args}");
            assert!(
                args.contains("-c:v libwebp -quality 75 -f webp /t/thumb.webp"),
                "{args}"
            );
        }
    }

    #[test]
    fn a_webp_header_alone_holds_no_picture() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thumb.webp");
        // What ffmpeg writes when no picture reached the encoder.
        std::fs::write(&path, [0, 0, 0, 0, 0xf8, 0xff, 0xff, 0xff]).unwrap();
        assert!(!holds_picture(&path).unwrap());
        let mut picture = b"RIFF\x24\0\0\0WEBPVP8L\x17\0\0\0".to_vec();
        picture.extend([0; 23]);
        std::fs::write(&path, picture).unwrap();
        assert!(holds_picture(&path).unwrap());
    }
}
