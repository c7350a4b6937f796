//! Running ffmpeg and ffprobe: a typed command builder, the recipes Pulse uses, and ffmpeg's
//! machine-readable progress.
//!
//! Sources are untrusted, so every command reads its one input through [`SourceInput`], which
//! limits ffmpeg to the network protocols a presigned URL needs and to real media containers:
//! a playlist or concat list uploaded as a "video" cannot make ffmpeg open anything else.

pub mod progress;
pub mod recipes;

use std::{
    collections::VecDeque,
    ffi::OsString,
    fmt,
    net::SocketAddr,
    path::Path,
    process::{ExitStatus, Stdio},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    task::JoinHandle,
};

/// Demuxers a source may be opened with: media containers that cannot refer to other files.
pub const SOURCE_FORMATS: &str = "mov,matroska,avi,flv,mpegts,mpeg,asf,ogg,mxf";
/// Protocols reading a presigned URL needs: `async` is ffmpeg's read-ahead over the others.
pub const SOURCE_PROTOCOLS: &str = "async,http,https,tcp,tls";
/// ffmpeg reads HTTP sources through its `async` protocol: a thread of its own fills a 4 MiB
/// buffer ahead of the demuxer, so decoding does not stop for each network read (ffprobe reads
/// too little to gain from it).
const READ_AHEAD: &str = "async:";
/// A network read that stalls this long fails (and is retried by ffmpeg, then by Temporal).
const READ_TIMEOUT_MICROS: u64 = 30_000_000;
/// Lines of stderr kept to explain a failure.
const STDERR_TAIL_LINES: usize = 12;
/// Most decoder threads: ffmpeg caps its own choice there too, as each frame thread holds a
/// frame.
const MAX_DECODE_THREADS: usize = 16;

/// The one input of a command: a source read over HTTP(S) from a presigned URL (or, for the
/// benchmark's plain ffmpeg baselines, a local file).
#[derive(Clone, Debug)]
pub struct SourceInput {
    url: String,
    protocols: &'static str,
    seek_secs: Option<f64>,
    limit_secs: Option<f64>,
    realtime: bool,
    keyframes_only: bool,
}

impl SourceInput {
    /// Reads `url` from its start.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            protocols: SOURCE_PROTOCOLS,
            seek_secs: None,
            limit_secs: None,
            realtime: false,
            keyframes_only: false,
        }
    }

    /// Reads the file at `path` on this machine, and nothing over the network.
    pub fn local_file(path: &std::path::Path) -> Self {
        Self {
            protocols: "file",
            ..Self::new(path.display().to_string())
        }
    }

    /// Reads no more than `secs` of the source (from where it starts).
    pub fn limit(mut self, secs: f64) -> Self {
        self.limit_secs = Some(secs);
        self
    }

    /// Decodes only the keyframes (`-skip_frame nokey`); the other pictures are read, not decoded.
    pub fn keyframes_only(mut self) -> Self {
        self.keyframes_only = true;
        self
    }

    /// Reads no faster than real time (`-re`) when `realtime`.
    pub fn realtime(mut self, realtime: bool) -> Self {
        self.realtime = realtime;
        self
    }

    /// Starts reading at `secs` (a fast seek on the input; ffmpeg decodes from the keyframe
    /// before it and drops frames up to `secs`, so the output starts exactly there).
    pub fn seek(mut self, secs: f64) -> Self {
        self.seek_secs = (secs > 0.0).then_some(secs);
        self
    }

    /// Whether the source is read over HTTP(S), where reads may stall or break.
    fn on_network(&self) -> bool {
        self.url.starts_with("http")
    }

    /// What ffmpeg opens: the URL behind a read-ahead buffer when it is on the network.
    fn read_ahead_url(&self) -> String {
        if self.on_network() {
            format!("{READ_AHEAD}{}", self.url)
        } else {
            self.url.clone()
        }
    }

    /// Options that confine how the input is opened, shared by ffmpeg and ffprobe.
    fn confinement_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-protocol_whitelist",
            self.protocols,
            "-format_whitelist",
            SOURCE_FORMATS,
            "-rw_timeout",
        ]
        .map(str::to_owned)
        .to_vec();
        args.push(READ_TIMEOUT_MICROS.to_string());
        if self.on_network() {
            args.extend(
                [
                    "-reconnect",
                    "1",
                    "-reconnect_on_network_error",
                    "1",
                    "-reconnect_on_http_error",
                    "5xx",
                    "-reconnect_delay_max",
                    "10",
                ]
                .map(str::to_owned),
            );
        }
        args
    }
}

/// An ffmpeg invocation, built from typed parts.
#[derive(Clone, Debug, PartialEq)]
pub struct FfmpegCommand {
    args: Vec<String>,
    /// The input URL, kept out of error messages.
    source_url: Option<String>,
    /// Whether to run at idle CPU priority.
    background: bool,
}

impl Default for FfmpegCommand {
    fn default() -> Self {
        Self::new()
    }
}

impl FfmpegCommand {
    /// A quiet, non-interactive ffmpeg that overwrites its outputs.
    pub fn new() -> Self {
        Self {
            args: [
                "-nostdin",
                "-hide_banner",
                "-nostats",
                "-loglevel",
                "error",
                "-y",
            ]
            .map(str::to_owned)
            .to_vec(),
            source_url: None,
            background: false,
        }
    }

    /// Runs ffmpeg at idle CPU priority when `background`: it only gets the CPU other work
    /// leaves, so a transcode that makes an asset playable is never slowed by one that is not.
    pub fn background(mut self, background: bool) -> Self {
        self.background = background;
        self
    }

    /// Sends machine-readable progress (`key=value` blocks) to a TCP listener at `addr`.
    pub fn progress_to(self, addr: SocketAddr) -> Self {
        self.args([
            "-progress".to_owned(),
            format!("tcp://{addr}"),
            "-stats_period".into(),
            "0.5".into(),
        ])
    }

    /// Adds the input, decoded on two threads per core this process may use
    /// (`decode_threads`).
    pub fn input(self, input: &SourceInput) -> Self {
        let mut args = input.confinement_args();
        let threads = decode_threads(worker_cores());
        args.extend(["-threads".to_owned(), threads.to_string()]);
        if input.realtime {
            args.push("-re".to_owned());
        }
        if input.keyframes_only {
            args.extend(["-skip_frame", "nokey"].map(str::to_owned));
        }
        if let Some(secs) = input.seek_secs {
            args.extend(["-ss".to_owned(), format!("{secs:.6}")]);
        }
        if let Some(secs) = input.limit_secs {
            args.extend(["-t".to_owned(), format!("{secs:.6}")]);
        }
        args.extend(["-i".to_owned(), input.read_ahead_url()]);
        Self {
            source_url: Some(input.url.clone()),
            ..self.args(args)
        }
    }

    /// Adds raw arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an output file.
    pub fn output(self, path: &Path) -> Self {
        self.args([path.display().to_string()])
    }

    /// The arguments, without the program name.
    pub fn as_args(&self) -> &[String] {
        &self.args
    }

    /// Starts ffmpeg; it is killed if the returned process is dropped.
    pub fn spawn(&self) -> Result<RunningTool, ToolError> {
        RunningTool::spawn(
            Tool::Ffmpeg,
            &self.args,
            self.source_url.as_deref(),
            self.background,
        )
    }

    /// Runs ffmpeg to the end.
    pub async fn run(&self) -> Result<(), ToolError> {
        self.spawn()?.finish().await.map(drop)
    }
}

/// The cores this process may use (its CPU quota and affinity count).
///
/// ffmpeg and x264 size their thread pools by the cores they may use when they start, and a
/// background transcode starts confined to some of the worker's (see [`crate::cpu_share`]) yet
/// gets them all later: so commands name their thread counts from the worker's cores.
pub fn worker_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Threads decoding the source on `cores`: two per core. Each is a frame thread of the H.264
/// decoder and waits for rows of the frames it refers to, so one per core leaves cores idle
/// beside the small encodes of the smallest variant. On the 2-core Xeon of `BENCHMARKS.md`
/// the smallest variant alone took 5.16 s with four (median of six runs) against 5.64 s with
/// two and 5.38 s with ffmpeg's own three, for the same CPU time; Pulse played 0.17 s sooner
/// and was done 0.60 s sooner (five pairs). On an older 2-core machine three had cost the
/// encoders beside them more than they gained.
fn decode_threads(cores: usize) -> usize {
    (2 * cores).min(MAX_DECODE_THREADS)
}

/// The arguments of an ffprobe call that reports format and streams as JSON.
pub fn ffprobe_args(input: &SourceInput) -> Vec<String> {
    let mut args: Vec<String> = [
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(input.confinement_args());
    args.push(input.url.clone());
    args
}

/// Runs ffprobe on `input` and returns its JSON report.
pub async fn ffprobe(input: &SourceInput) -> Result<Vec<u8>, ToolError> {
    RunningTool::spawn(Tool::Ffprobe, &ffprobe_args(input), Some(&input.url), false)?
        .finish()
        .await
}

/// The programs Pulse runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `ffmpeg`
    Ffmpeg,
    /// `ffprobe`
    Ffprobe,
}

impl Tool {
    fn program(self) -> &'static str {
        match self {
            Self::Ffmpeg => "ffmpeg",
            Self::Ffprobe => "ffprobe",
        }
    }
}

/// Why ffmpeg or ffprobe did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program is not installed.
    #[error("{} is not installed on this worker; install Debian's ffmpeg package", .0.program())]
    Missing(Tool),
    /// The program could not be started or watched.
    #[error("could not run {}: {source}", .tool.program())]
    Io {
        /// Which program.
        tool: Tool,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The program exited unsuccessfully.
    #[error("{} {status}: {stderr}", .tool.program())]
    Failed {
        /// Which program.
        tool: Tool,
        /// How it ended.
        status: ExitStatus,
        /// The last lines it wrote to stderr.
        stderr: StderrTail,
    },
}

/// The last lines a program wrote to stderr.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StderrTail(Vec<String>);

impl StderrTail {
    /// A tail made of `lines`.
    pub fn from_lines(lines: Vec<String>) -> Self {
        Self(lines)
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The lines.
    pub fn lines(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for StderrTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(no output)")
        } else {
            f.write_str(&self.0.join(" | "))
        }
    }
}

/// A started ffmpeg or ffprobe whose stderr tail is being kept.
pub struct RunningTool {
    tool: Tool,
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: JoinHandle<StderrTail>,
}

impl RunningTool {
    /// Starts `tool`; `source_url` is replaced by "the source" in what it writes to stderr,
    /// since a presigned URL is a credential and errors are shown to people.
    fn spawn(
        tool: Tool,
        args: &[String],
        source_url: Option<&str>,
        background: bool,
    ) -> Result<Self, ToolError> {
        let mut command = Command::new(tool.program());
        command
            .args(args.iter().map(OsString::from))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // A worker killed with SIGKILL cannot kill its children, so ask the kernel to: an
        // orphaned ffmpeg would keep burning CPU on a job another worker has taken over.
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2) and
        // sched_setscheduler(2), which are async-signal-safe.
        #[cfg(target_os = "linux")]
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if background {
                    let param = libc::sched_param { sched_priority: 0 };
                    libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ToolError::Missing(tool),
            _ => ToolError::Io { tool, source },
        })?;
        let stdout = child.stdout.take().map(|out| tokio::spawn(read_all(out)));
        let stderr = child.stderr.take().expect("stderr is piped");
        Ok(Self {
            tool,
            child,
            stdout,
            stderr: tokio::spawn(keep_tail(stderr, source_url.map(str::to_owned))),
        })
    }

    /// The process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits for the program to exit (cancel-safe, so it can be raced against other work).
    pub async fn exited(&mut self) -> Result<ExitStatus, ToolError> {
        let tool = self.tool;
        self.child
            .wait()
            .await
            .map_err(|source| ToolError::Io { tool, source })
    }

    /// Waits for the program to end; returns its stdout, or why it failed.
    pub async fn finish(mut self) -> Result<Vec<u8>, ToolError> {
        let tool = self.tool;
        let status = self.exited().await?;
        let stdout = match self.stdout.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => Vec::new(),
        };
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        if status.success() {
            Ok(stdout)
        } else {
            Err(ToolError::Failed {
                tool,
                status,
                stderr,
            })
        }
    }
}

async fn read_all(mut out: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut buffer = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut out, &mut buffer).await;
    buffer
}

async fn keep_tail(err: impl AsyncRead + Unpin, source_url: Option<String>) -> StderrTail {
    let mut lines = BufReader::new(err).lines();
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    while let Ok(Some(line)) = lines.next_line().await {
        let line = tidy(&line, source_url.as_deref());
        if line.is_empty() {
            continue;
        }
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    StderrTail(tail.into())
}

/// One stderr line made fit for a person: `[hls @ 0x55d0...] msg` becomes `hls: msg`, and the
/// source URL (with or without its signed query) becomes "the source".
fn tidy(line: &str, source_url: Option<&str>) -> String {
    let mut line = line.trim().to_owned();
    if let Some(url) = source_url {
        let unsigned = url.split('?').next().unwrap_or(url);
        for shown in [url, unsigned] {
            line = line
                .replace(&format!("{READ_AHEAD}{shown}"), "the source")
                .replace(shown, "the source");
        }
    }
    if let Some(rest) = line.strip_prefix('[')
        && let Some((context, message)) = rest.split_once("] ")
        && let Some((component, _address)) = context.split_once(" @ 0x")
    {
        line = format!("{component}: {message}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_lines_lose_addresses_and_presigned_urls() {
        let url = "http://127.0.0.1:3900/pulse-media/uploads/a/source?X-Amz-Signature=abc";
        assert_eq!(
            tidy(
                "[hls @ 0x564145df1280] Format not on whitelist 'mov'",
                Some(url)
            ),
            "hls: Format not on whitelist 'mov'"
        );
        assert_eq!(
            tidy(&format!("{url}: Invalid data found"), Some(url)),
            "the source: Invalid data found"
        );
        assert_eq!(
            tidy(&format!("async:{url}: End of file"), Some(url)),
            "the source: End of file"
        );
        assert_eq!(
            tidy(
                "http://127.0.0.1:3900/pulse-media/uploads/a/source: 403",
                Some(url)
            ),
            "the source: 403"
        );
        assert_eq!(tidy("  plain  ", None), "plain");
    }

    #[test]
    fn inputs_are_confined_to_media_containers_over_http() {
        let command = FfmpegCommand::new().input(&SourceInput::new("http://s3/x?sig=1").seek(8.0));
        let args = command.as_args().join(" ");
        assert!(
            args.contains("-protocol_whitelist async,http,https,tcp,tls"),
            "{args}"
        );
        assert!(
            args.contains(&format!("-format_whitelist {SOURCE_FORMATS}")),
            "{args}"
        );
        assert!(
            !SOURCE_FORMATS
                .split(',')
                .any(|f| ["hls", "concat", "applehttp", "image2"].contains(&f))
        );
        assert!(
            args.ends_with("-ss 8.000000 -i async:http://s3/x?sig=1"),
            "{args}"
        );
        assert!(args.contains("-reconnect 1"), "{args}");
    }

    #[test]
    fn a_local_file_is_read_directly_and_only_as_a_file() {
        let path = std::path::Path::new("/tmp/clip.mp4");
        let args = FfmpegCommand::new()
            .input(&SourceInput::local_file(path))
            .as_args()
            .join(" ");
        assert!(args.contains("-protocol_whitelist file "), "{args}");
        assert!(args.ends_with("-i /tmp/clip.mp4"), "{args}");
        assert!(!args.contains("-reconnect"), "{args}");
    }

    #[test]
    fn the_source_is_decoded_on_two_threads_per_core_at_most_sixteen() {
        assert_eq!(decode_threads(1), 2);
        assert_eq!(decode_threads(2), 4);
        assert_eq!(decode_threads(64), MAX_DECODE_THREADS);
        let command = FfmpegCommand::new().input(&SourceInput::new("http://s3/x"));
        let threads = decode_threads(worker_cores());
        let args = command.as_args().join(" ");
        assert!(
            args.ends_with(&format!("-threads {threads} -i async:http://s3/x")),
            "{args}"
        );
    }

    #[test]
    fn no_seek_at_zero() {
        let command = FfmpegCommand::new().input(&SourceInput::new("/tmp/a.mp4").seek(0.0));
        assert!(!command.as_args().contains(&"-ss".to_owned()));
        assert!(!command.as_args().contains(&"-reconnect".to_owned()));
    }

    #[test]
    fn ffprobe_reads_json_from_the_confined_input() {
        let args = ffprobe_args(&SourceInput::new("http://s3/x")).join(" ");
        assert!(
            args.starts_with(
                "-v error -print_format json -show_format -show_streams -protocol_whitelist"
            ),
            "{args}"
        );
        assert!(args.ends_with("http://s3/x"));
    }

    #[tokio::test]
    async fn local_files_are_refused_and_the_reason_is_kept() {
        let error = FfmpegCommand::new()
            .input(&SourceInput::new("/nonexistent/input.mp4"))
            .args(["-f", "null", "-"])
            .run()
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("ffmpeg exit status: 1"), "{text}");
        assert!(text.contains("Protocol 'file' not on whitelist"), "{text}");
    }
}
