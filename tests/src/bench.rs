//! `cargo xtask bench`: how fast Pulse turns a video into HLS on this machine, against plain
//! ffmpeg with the same encoder settings, on the real local stack.
//!
//! Each run processes a generated 30 s 1080p30 clip (moving grain, stereo tone) with a fresh
//! release worker, timing the start call to a playable master and to `done` (the arrival of the
//! `playable` event, the time the `done` event carries), while a [`Sampler`] watches the worker's
//! memory, its ffmpeg children and its temp folder. The same ladder is then encoded by plain ffmpeg
//! from the local file: one process per variant in turn (the seed's way), one process making every
//! variant from one decode, the smallest variant alone, then the rest, and beside the rest (the
//! layout Pulse uses, its cores shared as a worker shares them). Fast start on a 10-minute clip
//! and scaling over workers are measured after the runs.

use crate::{
    media::ClipSpec,
    media::clip,
    stack::{ASSET_TIMEOUT, Endpoints, TestEnv},
    webhook::{Delivery, Mode, Receiver},
    worker::WorkerProcess,
};
use pulse_activities::{
    ActivityConfig, Storage,
    cpu_share::{CpuShare, Pace, pin_process},
    ffmpeg::{
        SourceInput,
        progress::ProgressListener,
        recipes::{Encoding, TranscodeRecipe},
    },
    probe::{Limits, plan_source},
};
use pulse_workflows::{
    AssetId, AssetStatus,
    events::{Event, Stage},
    media::{SEGMENT_SECS, SegmentRange, SourcePlan, VariantSpec},
    request::ProcessingSettings,
};
use serde::Serialize;
use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

/// The clip every run processes.
pub fn bench_clip() -> ClipSpec {
    ClipSpec::new(1920, 1080, 30.0).noisy()
}

/// The longer, smaller clip that shows how the wall time falls as workers are added.
pub fn scaling_clip() -> ClipSpec {
    ClipSpec::new(1280, 720, 48.0).noisy()
}

/// The long clip fast start is timed on: players should start as early as on the short one.
pub fn long_clip() -> ClipSpec {
    ClipSpec::new(1920, 1080, 600.0).noisy()
}

/// Piece length of the scaling runs: the larger variants of the scaling clip come in 4 pieces.
const SCALING_CHUNK_SECS: u32 = 12;

/// How often the sampler looks.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Smallest, middle and largest of repeated measurements.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// The middle value (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; all zero for none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut sorted: Vec<f64> = values.into_iter().collect();
        sorted.sort_by(f64::total_cmp);
        let Some((&min, &max)) = sorted.first().zip(sorted.last()) else {
            return Self {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            };
        };
        let middle = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        } else {
            sorted[middle]
        };
        Self { median, min, max }
    }
}

/// Peak resource use seen during a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Peaks {
    /// Peak resident memory of the worker process itself (its `VmHWM`), ffmpeg excluded.
    pub worker_rss_bytes: u64,
    /// Peak resident memory of the worker's ffmpeg children together.
    pub ffmpeg_rss_bytes: u64,
    /// Peak size of the worker's temp folder.
    pub temp_disk_bytes: u64,
}

/// Watches a worker process, its ffmpeg children and its temp folder from a thread.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Peaks>,
}

impl Sampler {
    /// Starts watching worker `pid` working in `work_dir`.
    pub fn start(pid: u32, work_dir: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peaks = Peaks::default();
            while !stopped.load(Ordering::Relaxed) {
                let ffmpeg: u64 = ffmpeg_children(pid)
                    .into_iter()
                    .filter_map(|child| status_bytes(child, "VmRSS"))
                    .sum();
                peaks = Peaks {
                    worker_rss_bytes: status_bytes(pid, "VmHWM")
                        .unwrap_or(0)
                        .max(peaks.worker_rss_bytes),
                    ffmpeg_rss_bytes: ffmpeg.max(peaks.ffmpeg_rss_bytes),
                    temp_disk_bytes: folder_bytes(&work_dir).max(peaks.temp_disk_bytes),
                };
                std::thread::sleep(SAMPLE_EVERY);
            }
            peaks
        });
        Self { stop, thread }
    }

    /// Stops watching; returns the peaks seen.
    pub fn finish(self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler thread panicked")
    }
}

/// A `kB` line of `/proc/{pid}/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    proc_bytes(&format!("/proc/{pid}/status"), field)
}

/// A `Field: N kB` line of a `/proc` file, in bytes.
fn proc_bytes(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// The ffmpeg processes started by `pid`. Reading each thread's `children` keeps the sampler
/// from scanning all of `/proc` (and from slowing what it measures).
fn ffmpeg_children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|child| child.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/comm"))
                .is_ok_and(|name| name.trim() == "ffmpeg")
        })
        .collect()
}

/// Bytes of the files under `folder`; files that vanish while it counts count as nothing.
fn folder_bytes(folder: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => folder_bytes(&entry.path()),
            _ => entry.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// How Pulse is run for one measurement.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// Fast start: the smallest variant plays while it is written.
    pub fast_start: bool,
    /// Worker processes.
    pub workers: usize,
    /// Piece length of the larger variants, if not the default.
    pub chunk_secs: Option<u32>,
    /// Whether each worker gets a core of its own.
    pub core_per_worker: bool,
}

impl Setup {
    /// One worker, default settings.
    pub fn standard() -> Self {
        Self {
            fast_start: false,
            workers: 1,
            chunk_secs: None,
            core_per_worker: false,
        }
    }
}

/// How one asset went through Pulse.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PulseRun {
    /// From the start call until the frontend hears that the asset plays: the arrival of its
    /// `playable` event (its master in the bucket then lists a playlist with a segment).
    pub playable_secs: f64,
    /// From the start call until the workflow made the asset `done`: the time its `done`
    /// event carries.
    pub done_secs: f64,
    /// Events in the workflow's history, once closed.
    pub history_events: usize,
    /// Resources of the (first) worker.
    pub peaks: Peaks,
}

/// Processes `source` with fresh release workers as `setup` says.
pub async fn run_pulse(source: &Path, setup: Setup) -> PulseRun {
    let run = StartedRun::start(source, setup).await;
    let (playable_secs, done) = tokio::join!(
        run.playable_secs(),
        wait_delivery(
            &run.receiver,
            &run.asset,
            "terminal event",
            Stage::is_terminal
        )
    );
    let done = done.event();
    assert_eq!(done.stage, Some(Stage::Done), "{done:?}");
    let done_at = humantime::parse_rfc3339(&done.at).expect("events carry RFC 3339 times");
    let done_secs = run.secs_until(done_at);
    let peaks = run.sampler.finish();
    // The run closes once the done event is out; the workers stay until then.
    run.env.wait_closed(&run.asset).await;
    PulseRun {
        playable_secs,
        done_secs,
        history_events: run.env.history(&run.asset).await.len(),
        peaks,
    }
}

/// Fast start's time to playable on `source`, a video too long to wait for: the run is
/// cancelled once it plays.
pub async fn playable_with_fast_start(source: &Path) -> f64 {
    let setup = Setup {
        fast_start: true,
        ..Setup::standard()
    };
    let run = StartedRun::start(source, setup).await;
    let playable_secs = run.playable_secs().await;
    run.sampler.finish();
    run.env
        .starter
        .cancel(&run.asset, "the benchmark has its time to playable")
        .await
        .expect("cancelling the run");
    run.env.wait_closed(&run.asset).await;
    playable_secs
}

/// An asset started on Pulse with fresh release workers, the clock running.
struct StartedRun {
    /// Kept so the workers live as long as the run; dropped (killed) first.
    _workers: Vec<WorkerProcess>,
    receiver: Receiver,
    env: TestEnv,
    asset: AssetId,
    sampler: Sampler,
    started: SystemTime,
}

impl StartedRun {
    /// Uploads `source` and starts its run, after a warm-up asset.
    async fn start(source: &Path, setup: Setup) -> Self {
        let env = TestEnv::with("bench", Endpoints::shared(), |settings| {
            // Production retries and heartbeat timeout, not the tests' short ones.
            let production = ProcessingSettings::default();
            settings.retry = production.retry;
            settings.heartbeat_timeout = production.heartbeat_timeout;
            settings.fast_start = setup.fast_start;
            if let Some(chunk_secs) = setup.chunk_secs {
                settings.chunk_secs = f64::from(chunk_secs);
            }
        })
        .await;
        // The workers send their events to a real receiver, as in production; the `done`
        // event says to the millisecond when the asset was done, where polling its state would
        // add up to a polling interval and load the worker with queries.
        let receiver = Receiver::start(Mode::Accept).await;
        let workers: Vec<WorkerProcess> = (0..setup.workers)
            .map(|_| WorkerProcess::spawn(&env, &receiver.worker_env()))
            .collect();
        if setup.core_per_worker {
            // One worker on one core stands in for one machine; the ffmpeg it starts inherits it.
            for (core, worker) in workers.iter().enumerate() {
                pin_process(worker.pid(), &[core]);
            }
        }
        // A tiny asset first, so the clock starts with workers already polling.
        let (_, warm_up) = env
            .process_clip("warmup", &ClipSpec::new(320, 240, 1.0))
            .await;
        assert_eq!(warm_up.status, AssetStatus::Done, "warm-up: {warm_up:?}");

        let asset = env.asset("bench");
        let key = env
            .starter
            .upload(&asset, source)
            .await
            .expect("uploading the clip");
        let sampler = Sampler::start(workers[0].pid(), env.work_dir.path().to_owned());
        let started = SystemTime::now();
        env.starter
            .start(&asset, &key)
            .await
            .expect("starting the workflow");
        Self {
            _workers: workers,
            receiver,
            env,
            asset,
            sampler,
            started,
        }
    }

    /// Seconds from the start call until the frontend hears that the asset plays: the arrival
    /// of its `playable` event, after which the master in the bucket is checked to play.
    async fn playable_secs(&self) -> f64 {
        let playable = wait_delivery(&self.receiver, &self.asset, "playable event", |stage| {
            stage == Stage::Playable
        })
        .await;
        assert!(
            plays(&self.env.storage, &self.asset).await,
            "the master of an asset announced playable must list a variant with a segment: \
             {:?}",
            playable.event()
        );
        self.secs_until(playable.arrived)
    }

    fn secs_until(&self, time: SystemTime) -> f64 {
        time.duration_since(self.started)
            .expect("the clock goes forward")
            .as_secs_f64()
    }
}

/// The first accepted delivery of an event of `asset` at a stage `wanted` picks (described by
/// `what`).
async fn wait_delivery(
    receiver: &Receiver,
    asset: &AssetId,
    what: &str,
    wanted: impl Fn(Stage) -> bool,
) -> Delivery {
    let picked =
        |event: &Event| event.asset_id == asset.as_str() && event.stage.is_some_and(&wanted);
    receiver.wait_for(ASSET_TIMEOUT, what, picked).await;
    receiver
        .deliveries()
        .into_iter()
        .find(|delivery| delivery.accepted && picked(&delivery.event()))
        .expect("wait_for returns once the event is there")
}

/// Whether the master of `asset` lists a variant whose playlist has a segment: what a player
/// needs to start.
async fn plays(storage: &Storage, asset: &AssetId) -> bool {
    let keys = asset.keys();
    let Some(master) = text(storage, &keys.master()).await else {
        return false;
    };
    let Some(variant) = m3u8_rs::parse_master_playlist_res(master.as_bytes())
        .ok()
        .and_then(|master| master.variants.into_iter().next())
    else {
        return false;
    };
    let playlist_key = format!("{}hls/{}", keys.processed_prefix(), variant.uri);
    text(storage, &playlist_key)
        .await
        .and_then(|playlist| m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).ok())
        .is_some_and(|playlist| !playlist.segments.is_empty())
}

async fn text(storage: &Storage, key: &str) -> Option<String> {
    let object = storage.get(key).await.ok()??;
    let bytes = object.body.collect().await.ok()?.into_bytes();
    String::from_utf8(bytes.to_vec()).ok()
}

/// Plain ffmpeg on the local file, with Pulse's encoder settings.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct FfmpegRun {
    /// One ffmpeg per variant, one after the other (the seed's way).
    pub sequential_secs: f64,
    /// One ffmpeg making every variant from one decode.
    pub single_decode_secs: f64,
    /// The smallest variant alone.
    pub smallest_secs: f64,
    /// The smallest variant, then the others from one decode: Pulse's plan done by hand.
    pub smallest_then_rest_secs: f64,
    /// The smallest variant beside the others (from one decode, at idle priority and kept off
    /// the smallest variant's cores, as a worker runs them).
    pub smallest_beside_rest_secs: f64,
    /// The smallest variant's own time in `smallest_beside_rest_secs`: as soon as Pulse's
    /// layout, done by plain ffmpeg, could play.
    pub smallest_within_beside_secs: f64,
}

/// Probes the local `source` as the worker would.
pub async fn plan_local(source: &Path) -> SourcePlan {
    let size = std::fs::metadata(source)
        .expect("reading the clip's size")
        .len();
    plan_source(&SourceInput::local_file(source), size, &Limits::default())
        .await
        .expect("probing the clip")
}

/// Plain ffmpeg on the local clip with Pulse's encoder settings.
pub struct Baselines<'a> {
    /// The clip.
    pub source: &'a Path,
    /// Its ladder, as the worker plans it.
    pub plan: &'a SourcePlan,
    /// The x264 preset.
    pub preset: &'a str,
    /// The cores, shared as a worker shares them.
    pub cpu_share: CpuShare,
}

/// The two baselines the targets compare Pulse with.
#[derive(Clone, Copy, Debug)]
pub struct TargetBaselines {
    /// The smallest variant alone.
    pub smallest_secs: f64,
    /// Every variant from one decode.
    pub single_decode_secs: f64,
}

impl Baselines<'_> {
    /// The baselines of the targets, to be measured right beside Pulse.
    pub async fn targets(&self) -> TargetBaselines {
        TargetBaselines {
            smallest_secs: self.encode(&self.plan.variants[..1], Pace::FullSpeed).await,
            single_decode_secs: self.encode(&self.plan.variants, Pace::FullSpeed).await,
        }
    }

    /// Every other way, completing `targets` into one run.
    pub async fn others(&self, targets: TargetBaselines) -> FfmpegRun {
        let (smallest, rest) = self.plan.variants.split_at(1);
        let mut sequential_secs = 0.0;
        for variant in &self.plan.variants {
            sequential_secs += self
                .encode(std::slice::from_ref(variant), Pace::FullSpeed)
                .await;
        }
        let beside = Instant::now();
        let (smallest_within_beside_secs, _) = tokio::join!(
            self.encode(smallest, Pace::FullSpeed),
            self.encode(rest, Pace::Background)
        );
        let smallest_beside_rest_secs = beside.elapsed().as_secs_f64();
        FfmpegRun {
            sequential_secs,
            single_decode_secs: targets.single_decode_secs,
            smallest_secs: targets.smallest_secs,
            smallest_then_rest_secs: targets.smallest_secs
                + self.encode(rest, Pace::FullSpeed).await,
            smallest_beside_rest_secs,
            smallest_within_beside_secs,
        }
    }

    /// Seconds plain ffmpeg takes to write `variants` of the clip as HLS into a temp folder,
    /// sharing the cores at `pace` as a worker would.
    async fn encode(&self, variants: &[VariantSpec], pace: Pace) -> f64 {
        let out = tempfile::tempdir().expect("a temp folder for plain ffmpeg");
        for variant in variants {
            std::fs::create_dir_all(out.path().join(&variant.name)).expect("a variant folder");
        }
        let recipe = TranscodeRecipe {
            encoding: Encoding {
                media: &self.plan.media,
                preset: self.preset,
                live: false,
            },
            variants,
            range: SegmentRange::whole(SEGMENT_SECS),
            realtime: false,
        };
        let progress = ProgressListener::bind().await.expect("a progress socket");
        let command = recipe
            .command(
                &SourceInput::local_file(self.source),
                out.path(),
                progress.addr().expect("the progress socket's address"),
            )
            .background(pace == Pace::Background);
        let mut updates = progress.latest();
        let mut turn = self
            .cpu_share
            .start(pace, recipe.encoding.lookahead_frames());
        let started = Instant::now();
        let mut ffmpeg = command
            .spawn()
            .unwrap_or_else(|error| panic!("plain ffmpeg failed to start: {error}"));
        let placed = turn.place(ffmpeg.id());
        tokio::pin!(placed);
        // Tells the turn how far ffmpeg got, as the worker does: the rest pauses once started,
        // and the pause lifts halfway through the smallest variant.
        let output_starts = Duration::from_secs_f64(recipe.output_offset_secs());
        let output_length =
            Duration::from_secs_f64(recipe.range.duration_secs(self.plan.media.duration_secs));
        let exited = loop {
            tokio::select! {
                never = &mut placed => match never {},
                exited = ffmpeg.exited() => break exited,
                Ok(()) = updates.changed() => turn.progressed(
                    &updates.borrow_and_update().without_offset(output_starts),
                    output_length,
                ),
            }
        };
        exited
            .and(ffmpeg.finish().await)
            .unwrap_or_else(|error| panic!("plain ffmpeg failed: {error}"));
        started.elapsed().as_secs_f64()
    }
}

/// The machine the numbers come from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Cores available to the bench.
    pub cores: usize,
    /// Memory, in GiB.
    pub memory_gib: f64,
    /// ffmpeg's version line.
    pub ffmpeg: String,
    /// The x264 preset of every encode.
    pub x264_preset: String,
}

impl Machine {
    /// This machine, encoding with `preset`.
    pub fn here(preset: &str) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
            .map(|(_, model)| model.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let memory = proc_bytes("/proc/meminfo", "MemTotal").unwrap_or(0);
        let ffmpeg = std::process::Command::new("ffmpeg")
            .arg("-version")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.lines().next().map(str::to_owned))
            .unwrap_or_else(|| "ffmpeg not found".to_owned());
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: memory as f64 / (1u64 << 30) as f64,
            ffmpeg,
            x264_preset: preset.to_owned(),
        }
    }
}

/// Everything one `cargo xtask bench` measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// The clip: `WIDTHxHEIGHT, SECS s, FPS fps` and its ladder.
    pub clip: String,
    /// Variants made.
    pub ladder: Vec<String>,
    /// Pulse, one run per element.
    pub pulse: Vec<PulseRun>,
    /// Plain ffmpeg, one run per element.
    pub ffmpeg: Vec<FfmpegRun>,
    /// Pulse in fast start, one run per element.
    pub fast_start: Vec<PulseRun>,
    /// Fast start on the long clip.
    pub long_video: Option<LongVideo>,
    /// The scaling clip's time to done with 1 and 2 workers, a core each.
    pub scaling: Option<Scaling>,
}

/// Fast start on a long video, each run cancelled once it plays.
#[derive(Clone, Debug, Serialize)]
pub struct LongVideo {
    /// The clip.
    pub clip: String,
    /// Fast start's time to playable, one run per element.
    pub fast_start_playable_secs: Vec<f64>,
}

/// Wall time of a longer video as workers are added.
#[derive(Clone, Debug, Serialize)]
pub struct Scaling {
    /// The clip.
    pub clip: String,
    /// Piece length of the larger variants.
    pub chunk_secs: u32,
    /// (workers, seconds to done).
    pub done_secs: Vec<(usize, f64)>,
}

/// The derived numbers the targets are about.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Pulse's time to playable.
    pub playable_secs: Spread,
    /// Pulse's time to done.
    pub done_secs: Spread,
    /// Plain ffmpeg, one process per variant in turn.
    pub sequential_secs: Spread,
    /// Plain ffmpeg, every variant from one decode.
    pub single_decode_secs: Spread,
    /// Plain ffmpeg, the smallest variant alone.
    pub smallest_secs: Spread,
    /// Plain ffmpeg, the smallest variant then the others from one decode.
    pub smallest_then_rest_secs: Spread,
    /// Plain ffmpeg, the smallest variant beside the others.
    pub smallest_beside_rest_secs: Spread,
    /// Plain ffmpeg, the smallest variant's own time beside the others.
    pub smallest_within_beside_secs: Spread,
    /// Pulse's time to done over the single-decode baseline, run by run.
    pub done_over_single_decode: Spread,
    /// Pulse's time to done over the sequential baseline, run by run.
    pub done_over_sequential: Spread,
    /// Pulse's time to playable minus the smallest variant alone, run by run.
    pub playable_minus_smallest_secs: Spread,
    /// Pulse's time to playable minus the smallest variant's own time beside the others, run
    /// by run: what Pulse adds to its layout done by plain ffmpeg.
    pub playable_minus_smallest_within_beside_secs: Spread,
    /// Fast start's time to playable.
    pub fast_start_playable_secs: Spread,
    /// Fast start's time to done.
    pub fast_start_done_secs: Spread,
    /// Peak worker memory, ffmpeg excluded, in MiB.
    pub worker_rss_mib: Spread,
    /// Peak memory of the ffmpeg children together, in MiB.
    pub ffmpeg_rss_mib: Spread,
    /// Peak temp disk, in MiB.
    pub temp_disk_mib: Spread,
    /// Events in the history.
    pub history_events: Spread,
}

impl Report {
    /// The medians, extremes and ratios of the runs.
    pub fn summary(&self) -> Summary {
        let pulse = |f: fn(&PulseRun) -> f64| Spread::of(self.pulse.iter().map(f));
        let fast = |f: fn(&PulseRun) -> f64| Spread::of(self.fast_start.iter().map(f));
        let plain = |f: fn(&FfmpegRun) -> f64| Spread::of(self.ffmpeg.iter().map(f));
        let paired = |f: fn(&PulseRun, &FfmpegRun) -> f64| {
            Spread::of(self.pulse.iter().zip(&self.ffmpeg).map(|(p, b)| f(p, b)))
        };
        let mib = |bytes: u64| bytes as f64 / (1u64 << 20) as f64;
        Summary {
            playable_secs: pulse(|r| r.playable_secs),
            done_secs: pulse(|r| r.done_secs),
            sequential_secs: plain(|r| r.sequential_secs),
            single_decode_secs: plain(|r| r.single_decode_secs),
            smallest_secs: plain(|r| r.smallest_secs),
            smallest_then_rest_secs: plain(|r| r.smallest_then_rest_secs),
            smallest_beside_rest_secs: plain(|r| r.smallest_beside_rest_secs),
            smallest_within_beside_secs: plain(|r| r.smallest_within_beside_secs),
            done_over_single_decode: paired(|p, b| p.done_secs / b.single_decode_secs),
            done_over_sequential: paired(|p, b| p.done_secs / b.sequential_secs),
            playable_minus_smallest_secs: paired(|p, b| p.playable_secs - b.smallest_secs),
            playable_minus_smallest_within_beside_secs: paired(|p, b| {
                p.playable_secs - b.smallest_within_beside_secs
            }),
            fast_start_playable_secs: fast(|r| r.playable_secs),
            fast_start_done_secs: fast(|r| r.done_secs),
            worker_rss_mib: Spread::of(self.pulse.iter().map(|r| mib(r.peaks.worker_rss_bytes))),
            ffmpeg_rss_mib: Spread::of(self.pulse.iter().map(|r| mib(r.peaks.ffmpeg_rss_bytes))),
            temp_disk_mib: Spread::of(self.pulse.iter().map(|r| mib(r.peaks.temp_disk_bytes))),
            history_events: pulse(|r| r.history_events as f64),
        }
    }

    /// Every run and the summary of them, as pretty JSON: what `--json` prints, so a script
    /// reads the same medians and ratios as the table.
    pub fn json(&self) -> serde_json::Result<String> {
        #[derive(Serialize)]
        struct WithSummary<'a> {
            #[serde(flatten)]
            report: &'a Report,
            summary: Summary,
        }
        serde_json::to_string_pretty(&WithSummary {
            report: self,
            summary: self.summary(),
        })
    }

    /// The report as a text table.
    pub fn table(&self) -> String {
        let summary = self.summary();
        let m = &self.machine;
        let mut out = format!(
            "{} ({} cores, {:.0} GiB), {}, x264 preset {}\n{}: {}, {} runs\n\n",
            m.cpu,
            m.cores,
            m.memory_gib,
            m.ffmpeg,
            m.x264_preset,
            self.clip,
            self.ladder.join(" "),
            self.pulse.len()
        );
        out.push_str(&format!(
            "{:<44} {:>9} {:>9} {:>9}\n",
            "measure", "median", "min", "max"
        ));
        let rows: [(&str, Spread); 18] = [
            ("time to playable (s)", summary.playable_secs),
            ("time to done (s)", summary.done_secs),
            (
                "plain ffmpeg, one per variant in turn (s)",
                summary.sequential_secs,
            ),
            (
                "plain ffmpeg, one decode for all (s)",
                summary.single_decode_secs,
            ),
            (
                "plain ffmpeg, smallest variant alone (s)",
                summary.smallest_secs,
            ),
            (
                "plain ffmpeg, smallest, then the rest (s)",
                summary.smallest_then_rest_secs,
            ),
            (
                "plain ffmpeg, smallest beside the rest (s)",
                summary.smallest_beside_rest_secs,
            ),
            (
                "  of it the smallest's own time (s)",
                summary.smallest_within_beside_secs,
            ),
            ("done / one decode for all", summary.done_over_single_decode),
            (
                "done / one per variant in turn",
                summary.done_over_sequential,
            ),
            (
                "playable - smallest alone (s)",
                summary.playable_minus_smallest_secs,
            ),
            (
                "playable - smallest's own time beside (s)",
                summary.playable_minus_smallest_within_beside_secs,
            ),
            (
                "fast start: time to playable (s)",
                summary.fast_start_playable_secs,
            ),
            ("fast start: time to done (s)", summary.fast_start_done_secs),
            (
                "peak worker RSS, ffmpeg excluded (MiB)",
                summary.worker_rss_mib,
            ),
            (
                "peak ffmpeg RSS, all children (MiB)",
                summary.ffmpeg_rss_mib,
            ),
            ("peak temp disk (MiB)", summary.temp_disk_mib),
            ("history events", summary.history_events),
        ];
        for (name, spread) in rows {
            out.push_str(&format!(
                "{name:<44} {:>9.2} {:>9.2} {:>9.2}\n",
                spread.median, spread.min, spread.max
            ));
        }
        if let Some(long) = &self.long_video {
            let playable = Spread::of(long.fast_start_playable_secs.iter().copied());
            out.push_str(&format!(
                "\nfast start on {}: playable in {:.2} s (median; {:.2} to {:.2})\n",
                long.clip, playable.median, playable.min, playable.max
            ));
        }
        if let Some(scaling) = &self.scaling {
            out.push_str(&format!(
                "\nscaling, {} in {} s pieces, a core per worker:\n",
                scaling.clip, scaling.chunk_secs
            ));
            for (workers, secs) in &scaling.done_secs {
                out.push_str(&format!("  {workers} worker(s): done in {secs:.1} s\n"));
            }
        }
        out
    }
}

/// What `cargo xtask bench` asked for.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Runs of each measurement.
    pub runs: usize,
    /// Whether to time fast start on the long clip too.
    pub long_video: bool,
    /// Whether to measure scaling over workers too.
    pub scaling: bool,
}

/// Runs the whole benchmark; progress goes to stderr.
pub async fn run(options: Options) -> Report {
    let preset = ActivityConfig::from_env()
        .expect("reading the worker settings")
        .x264_preset;
    let spec = bench_clip();
    eprintln!("generating the clip...");
    let source = clip(&spec);
    let plan = plan_local(&source).await;
    let mut report = Report {
        machine: Machine::here(&preset),
        clip: describe(&spec),
        ladder: plan.variants.iter().map(|v| v.name.clone()).collect(),
        pulse: Vec::new(),
        ffmpeg: Vec::new(),
        fast_start: Vec::new(),
        long_video: None,
        scaling: None,
    };
    let baselines = Baselines {
        source: &source,
        plan: &plan,
        preset: &preset,
        cpu_share: CpuShare::default(),
    };
    for run in 1..=options.runs {
        // This machine's speed drifts over minutes: Pulse and the two baselines of its targets
        // run back to back, in turns first and last, so the drift weighs on both sides alike.
        eprintln!("run {run}/{}: Pulse and its baselines", options.runs);
        let (pulse, targets) = if run % 2 == 1 {
            let pulse = run_pulse(&source, Setup::standard()).await;
            (pulse, baselines.targets().await)
        } else {
            let targets = baselines.targets().await;
            (run_pulse(&source, Setup::standard()).await, targets)
        };
        report.pulse.push(pulse);
        eprintln!("run {run}/{}: plain ffmpeg, other ways", options.runs);
        report.ffmpeg.push(baselines.others(targets).await);
        eprintln!("run {run}/{}: Pulse, fast start", options.runs);
        let fast_start = Setup {
            fast_start: true,
            ..Setup::standard()
        };
        report.fast_start.push(run_pulse(&source, fast_start).await);
    }
    if options.long_video {
        report.long_video = Some(run_long_video(options.runs).await);
    }
    if options.scaling {
        report.scaling = Some(run_scaling().await);
    }
    report
}

/// Fast start's time to playable on the long clip, `runs` times.
async fn run_long_video(runs: usize) -> LongVideo {
    let spec = long_clip();
    eprintln!("generating the long clip (once)...");
    let source = clip(&spec);
    let mut fast_start_playable_secs = Vec::new();
    for run in 1..=runs {
        eprintln!("long video {run}/{runs}: Pulse, fast start, until it plays");
        fast_start_playable_secs.push(playable_with_fast_start(&source).await);
    }
    LongVideo {
        clip: describe(&spec),
        fast_start_playable_secs,
    }
}

/// The scaling clip with 1, then 2 workers, a core each.
async fn run_scaling() -> Scaling {
    let spec = scaling_clip();
    let source = clip(&spec);
    let mut done_secs = Vec::new();
    for workers in [1, 2] {
        eprintln!("scaling: {workers} worker(s)");
        let setup = Setup {
            workers,
            chunk_secs: Some(SCALING_CHUNK_SECS),
            core_per_worker: true,
            ..Setup::standard()
        };
        done_secs.push((workers, run_pulse(&source, setup).await.done_secs));
    }
    Scaling {
        clip: describe(&spec),
        chunk_secs: SCALING_CHUNK_SECS,
        done_secs,
    }
}

fn describe(spec: &ClipSpec) -> String {
    format!(
        "{}x{} {} s {} fps{}{}",
        spec.width,
        spec.height,
        spec.secs,
        spec.fps,
        if spec.noisy { " grain" } else { "" },
        if spec.audio { " stereo" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_take_the_middle_and_the_extremes() {
        assert_eq!(
            Spread::of([3.0, 1.0, 2.0]),
            Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(Spread::of([4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Spread::of([]).max, 0.0);
    }

    #[test]
    fn the_json_report_has_the_runs_and_their_summary() {
        let pulse = |done_secs| PulseRun {
            playable_secs: 5.0,
            done_secs,
            history_events: 81,
            peaks: Peaks::default(),
        };
        let plain = FfmpegRun {
            sequential_secs: 80.0,
            single_decode_secs: 60.0,
            smallest_secs: 4.5,
            smallest_then_rest_secs: 64.0,
            smallest_beside_rest_secs: 61.0,
            smallest_within_beside_secs: 4.75,
        };
        let report = Report {
            machine: Machine {
                cpu: "a test CPU".into(),
                cores: 2,
                memory_gib: 4.0,
                ffmpeg: "ffmpeg version 5.1".into(),
                x264_preset: "medium".into(),
            },
            clip: describe(&bench_clip()),
            ladder: vec!["240p".into()],
            pulse: vec![pulse(63.0), pulse(60.0), pulse(66.0)],
            ffmpeg: vec![plain; 3],
            fast_start: Vec::new(),
            long_video: None,
            scaling: None,
        };
        let json: serde_json::Value = serde_json::from_str(&report.json().unwrap()).unwrap();
        assert_eq!(json["pulse"].as_array().unwrap().len(), 3);
        assert_eq!(json["ffmpeg"][0]["single_decode_secs"], 60.0);
        let ratio = &json["summary"]["done_over_single_decode"];
        assert_eq!(ratio["median"], 1.05);
        assert_eq!(ratio["max"], 1.1);
        assert_eq!(json["summary"]["playable_minus_smallest_secs"]["min"], 0.5);
        let beside = &json["summary"]["playable_minus_smallest_within_beside_secs"];
        assert_eq!(beside["median"], 0.25);
    }

    #[test]
    fn the_sampler_sees_this_process_and_its_folder() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::create_dir(folder.path().join("job")).unwrap();
        std::fs::write(folder.path().join("job/seg_000.ts"), vec![0u8; 4096]).unwrap();
        let sampler = Sampler::start(std::process::id(), folder.path().to_owned());
        std::thread::sleep(SAMPLE_EVERY * 3);
        let peaks = sampler.finish();
        assert_eq!(peaks.temp_disk_bytes, 4096);
        assert!(peaks.worker_rss_bytes > 1 << 20, "{peaks:?}");
        assert_eq!(peaks.ffmpeg_rss_bytes, 0);
    }
}
