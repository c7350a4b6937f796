//! Test media generated with ffmpeg's lavfi sources, and probing what Pulse produced.

use crate::stack::workspace_root;
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A clip to generate: a moving test pattern, optionally with a tone and rotation metadata.
#[derive(Clone, Debug)]
pub struct ClipSpec {
    /// Coded width.
    pub width: u32,
    /// Coded height.
    pub height: u32,
    /// Length in seconds.
    pub secs: f64,
    /// Frames per second.
    pub fps: u32,
    /// Whether it has a stereo tone.
    pub audio: bool,
    /// Display rotation in degrees, written as container metadata.
    pub rotate: Option<i32>,
    /// Whether the picture is covered in moving grain, which costs an encoder what camera
    /// footage does (a bare test pattern compresses unrealistically well).
    pub noisy: bool,
    /// Seconds between keyframes, as phones record (every second or two); `None` leaves x264's
    /// default of 250 pictures, which in a short clip is only the first.
    pub keyframe_secs: Option<u32>,
}

impl ClipSpec {
    /// A 30 fps clip of `width` x `height` lasting `secs`, with audio.
    pub fn new(width: u32, height: u32, secs: f64) -> Self {
        Self {
            width,
            height,
            secs,
            fps: 30,
            audio: true,
            rotate: None,
            noisy: false,
            keyframe_secs: None,
        }
    }

    /// Without audio.
    pub fn silent(mut self) -> Self {
        self.audio = false;
        self
    }

    /// With moving grain over the picture.
    pub fn noisy(mut self) -> Self {
        self.noisy = true;
        self
    }

    /// With a keyframe every `secs` seconds.
    pub fn keyframe_every(mut self, secs: u32) -> Self {
        self.keyframe_secs = Some(secs);
        self
    }

    /// At `fps` frames per second.
    pub fn at_fps(mut self, fps: u32) -> Self {
        self.fps = fps;
        self
    }

    /// With display rotation metadata.
    pub fn rotated(mut self, degrees: i32) -> Self {
        self.rotate = Some(degrees);
        self
    }

    fn file_name(&self) -> String {
        format!(
            "clip-{}x{}-{}s-{}fps{}{}{}{}.mp4",
            self.width,
            self.height,
            self.secs,
            self.fps,
            if self.audio { "-audio" } else { "" },
            self.rotate.map(|r| format!("-rot{r}")).unwrap_or_default(),
            if self.noisy { "-noise" } else { "" },
            self.keyframe_secs
                .map(|secs| format!("-key{secs}s"))
                .unwrap_or_default(),
        )
    }
}

/// The clip of `spec`, generated once into `target/test-media/`.
pub fn clip(spec: &ClipSpec) -> PathBuf {
    let dir = workspace_root().join("target").join("test-media");
    std::fs::create_dir_all(&dir).expect("creating target/test-media");
    let path = dir.join(spec.file_name());
    if path.exists() {
        return path;
    }
    let partial = dir.join(format!(
        "{}.{}.partial.mp4",
        spec.file_name(),
        uuid::Uuid::new_v4().simple()
    ));
    let mut command = ffmpeg();
    command.args(["-f", "lavfi", "-i"]).arg(format!(
        "testsrc2=size={}x{}:rate={}:duration={}{}",
        spec.width,
        spec.height,
        spec.fps,
        spec.secs,
        if spec.noisy {
            ",noise=alls=24:allf=t+u"
        } else {
            ""
        }
    ));
    if spec.audio {
        command.args(["-f", "lavfi", "-i"]).arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={}",
            spec.secs
        ));
        command.args(["-ac", "2", "-c:a", "aac"]);
    }
    command.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ]);
    if let Some(secs) = spec.keyframe_secs {
        command.arg("-g").arg((secs * spec.fps).to_string());
    }
    if spec.noisy {
        // What a phone records at 1080p: about 8 Mbit/s.
        command.args(["-b:v", "8M", "-maxrate", "8M", "-bufsize", "16M"]);
    }
    run(command.arg(&partial));
    if let Some(degrees) = spec.rotate {
        // ffmpeg 5.1 writes rotation only when remuxing: the display matrix phones record.
        let rotated = partial.with_extension("rotated.mp4");
        run(ffmpeg()
            .arg("-i")
            .arg(&partial)
            .args(["-map", "0", "-c", "copy", "-metadata:s:v:0"])
            .arg(format!("rotate={degrees}"))
            .arg(&rotated));
        std::fs::rename(&rotated, &partial).expect("replacing the clip with its rotated copy");
    }
    std::fs::rename(&partial, &path).expect("moving the clip in place");
    path
}

/// A quiet ffmpeg that overwrites its output.
pub fn ffmpeg() -> Command {
    let mut command = Command::new("ffmpeg");
    command.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"]);
    command
}

/// Runs `command`, panicking with its stderr if it fails (or is missing).
pub fn run(command: &mut Command) -> Vec<u8> {
    let output = command.output().unwrap_or_else(|error| {
        panic!("{command:?} could not run ({error}); is ffmpeg installed (cargo xtask up)?")
    });
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// ffprobe's JSON report (format and streams) of a local file.
pub fn probe(path: &Path) -> Value {
    let stdout = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path));
    serde_json::from_slice(&stdout).expect("ffprobe prints JSON")
}

/// The video stream of an ffprobe report.
pub fn video_stream(report: &Value) -> &Value {
    report["streams"]
        .as_array()
        .and_then(|streams| streams.iter().find(|s| s["codec_type"] == "video"))
        .expect("a video stream")
}

/// Decodes every stream of `path` to nowhere; returns ffmpeg's complaints (empty when clean).
/// Local files only: playlists are read with the file protocol.
pub fn decode_errors(path: &Path) -> String {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .expect("running ffmpeg");
    let mut errors = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        errors.push_str(&format!("\nffmpeg exited with {}", output.status));
    }
    errors
}

/// ffprobe's `entries` of the first video stream of `path`, printed as `format`.
fn probe_video(path: &Path, entries: &str, format: &str) -> Vec<u8> {
    run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            entries,
            "-of",
            format,
        ])
        .arg(path))
}

/// The duration of `path` in seconds.
pub fn decoded_duration(path: &Path) -> f64 {
    let stdout = probe_video(path, "format=duration", "csv=p=0");
    String::from_utf8_lossy(&stdout)
        .trim()
        .parse()
        .expect("ffprobe prints a duration")
}

/// The presentation times of every video frame of `path`, in output order.
pub fn frame_times(path: &Path) -> Vec<f64> {
    let report: Value = serde_json::from_slice(&probe_video(path, "frame=pts_time", "json"))
        .expect("ffprobe prints JSON");
    report["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .filter_map(|frame| frame["pts_time"].as_str()?.parse().ok())
        .collect()
}

/// Panics unless `path` holds exactly `secs` x `fps` video frames at a steady pace: no frame
/// missing, none twice.
pub fn assert_no_gap_or_duplicate(path: &Path, secs: f64, fps: f64) {
    let times = frame_times(path);
    let expected = (secs * fps).round() as usize;
    assert_eq!(
        times.len(),
        expected,
        "{} has {} frames, expected {expected}",
        path.display(),
        times.len()
    );
    let step = 1.0 / fps;
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (gap - step).abs() < step / 4.0,
            "{}: frames at {} and {} are {gap} s apart",
            path.display(),
            pair[0],
            pair[1]
        );
    }
}

/// How alike the picture `image` is to the picture of `video` at `at_secs`, scaled to the same
/// size: their PSNR in dB (higher is more alike).
pub fn likeness(image: &Path, video: &Path, at_secs: f64) -> f64 {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(image)
        .args(["-ss", &at_secs.to_string(), "-i"])
        .arg(video)
        .args([
            "-filter_complex",
            "[1:v][0:v]scale2ref[video][image];[image]format=yuv420p[a];\
             [video]format=yuv420p[b];[a][b]psnr",
            "-frames:v",
            "1",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("running ffmpeg");
    let log = String::from_utf8_lossy(&output.stderr);
    let average = log
        .split("average:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no PSNR in ffmpeg's output:\n{log}"));
    average
        .parse()
        .unwrap_or_else(|_| panic!("PSNR {average:?} is not a number"))
}
