//! How one worker's cores are shared between the transcode that makes an asset playable and
//! the background ones beside it.
//!
//! Background transcodes run at idle CPU priority, so they only get the CPU time the smallest
//! variant's ffmpeg leaves. Yet they still slow it down, so while a full-speed transcode runs on
//! the worker, background ffmpeg processes keep out of its way ([`KeepApart`]):
//!
//! - on a worker with cores to spare, they are confined to the upper half of its cores, and the
//!   lower half is the full-speed one's alone: on every core they run they fill the caches with
//!   their own frames;
//! - on a worker whose lower half is too small for the full-speed transcode (two cores), they
//!   are paused (`SIGSTOP`). The smallest variant's ffmpeg keeps about 1.7 cores busy, so it
//!   runs on the second core too, and an idle-priority process there made its many thread
//!   wake-ups slower: on two virtual cores it took 6.1 instead of 5.6 s beside one (even beside
//!   a mere spinning loop), with the same CPU-seconds, and Pulse played 0.55 s sooner with them
//!   paused (10 pairs by hand, sooner in every one).
//!
//! A paused one is only paused once it has started: until ffmpeg has fed each encoder the
//! frames x264 reads ahead, it runs on one thread, mostly faulting in some 900 MB of frame
//! buffers (1.2 to 1.5 s alone), and the encoders wait. Paused from its own start, it did that
//! only after the smallest variant, with a core idle; started first, it uses the third of a core
//! the smallest variant leaves idle: done 0.9 s sooner for 0.2 s on the smallest variant (plain
//! ffmpeg, three rounds by hand), and Pulse done 0.6 s sooner for 0.15 s (four pairs by hand,
//! sooner in three; `BENCHMARKS.md`).
//!
//! The full-speed transcode keeps background ones apart only for the first half of its output
//! ([`ALONE_UNTIL`]); then they share every core with it again. Keeping apart costs what they
//! would have got done meanwhile, and the time to `done` has less room than the time to
//! playable: with the pause lifted halfway, plain ffmpeg's smallest variant took 0.17 s longer
//! and the others were done 0.43 s sooner (6 rounds by hand), and Pulse was done at 1.045 of one
//! decode for all instead of 1.053 and played 0.60 s after plain ffmpeg's smallest variant
//! instead of 0.38 (bench series 37 and 35, `BENCHMARKS.md`; 1.040 and 0.55 s in the five runs
//! of series 38); both targets are met that way.
//!
//! When no full-speed transcode runs they get every core again.

use crate::ffmpeg::progress::ProgressUpdate;
use pulse_workflows::contract::TranscodeJob;
use std::{convert::Infallible, future::pending, time::Duration};
use tokio::sync::watch;

/// How a transcode uses the CPU, which says what it asks of the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// As fast as the CPU allows, to make an asset playable: background ones keep out of its way.
    FullSpeed,
    /// At idle priority, kept apart (confined or paused) while a full-speed transcode runs.
    Background,
    /// Asks nothing of the others: fast start's growing first variant, which the other variants
    /// wait for anyway, or a transcode held to real time (a test fault switch), which needs
    /// little CPU.
    Alongside,
}

impl Pace {
    /// The pace of `job`; `held_to_real_time` says whether ffmpeg reads it at real-time speed.
    pub fn of(job: &TranscodeJob, held_to_real_time: bool) -> Self {
        if job.background {
            Self::Background
        } else if job.live || held_to_real_time {
            Self::Alongside
        } else {
            Self::FullSpeed
        }
    }
}

/// Cores the smallest variant's ffmpeg, the full-speed transcode, keeps busy: about 1.7.
const FULL_SPEED_CORES: usize = 2;

/// How far through its output a full-speed transcode keeps the background ones apart.
pub const ALONE_UNTIL: f64 = 0.5;

/// How background transcodes keep out of a full-speed one's way while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeepApart {
    /// On the upper half of the cores: the lower half is enough for the full-speed one.
    UpperHalf,
    /// Paused: the full-speed one needs more than the lower half.
    Pause,
}

impl KeepApart {
    /// How background transcodes keep apart on a worker that may use `cores`.
    fn on(cores: &[usize]) -> Self {
        if cores.len() - upper_half(cores).len() >= FULL_SPEED_CORES {
            Self::UpperHalf
        } else {
            Self::Pause
        }
    }
}

/// The full-speed transcodes running on this worker, and how background ones keep apart.
#[derive(Debug)]
pub struct CpuShare {
    full_speed: watch::Sender<usize>,
    every_core: Vec<usize>,
    background_cores: Vec<usize>,
    keep_apart: KeepApart,
}

/// A transcode's time on the worker's cores, from its start until dropped: a full-speed one
/// keeps background ones apart until it got [`ALONE_UNTIL`] through its output, a background
/// one keeps apart once its ffmpeg has started.
#[derive(Debug)]
pub struct Turn<'a> {
    share: &'a CpuShare,
    pace: Pace,
    /// Set while a full-speed turn keeps background ones apart.
    full_speed: Option<&'a watch::Sender<usize>>,
    /// Frames ffmpeg feeds each encoder before the first is encoded.
    lookahead_frames: u64,
    /// Whether ffmpeg has fed them.
    started: watch::Sender<bool>,
}

impl Default for CpuShare {
    /// Shares the cores this worker may run on.
    fn default() -> Self {
        let every_core = process::allowed_cores(0);
        Self::new(KeepApart::on(&every_core), every_core)
    }
}

impl CpuShare {
    /// A share of `every_core` whose background transcodes keep apart as `keep_apart` says.
    fn new(keep_apart: KeepApart, every_core: Vec<usize>) -> Self {
        Self {
            background_cores: upper_half(&every_core).to_vec(),
            every_core,
            keep_apart,
            full_speed: watch::Sender::new(0),
        }
    }

    /// Marks a transcode at `pace`, whose encoders read `lookahead_frames` ahead, as running
    /// until the returned turn is dropped.
    pub fn start(&self, pace: Pace, lookahead_frames: u32) -> Turn<'_> {
        let full_speed = (pace == Pace::FullSpeed).then(|| {
            self.full_speed.send_modify(|running| *running += 1);
            &self.full_speed
        });
        Turn {
            share: self,
            pace,
            full_speed,
            lookahead_frames: lookahead_frames.into(),
            started: watch::Sender::new(false),
        }
    }

    /// Keeps the background process `pid` out of the way while a full-speed transcode runs
    /// (on the upper half of the cores, or paused once `started`), and on every core otherwise.
    /// Never returns; drop it when the process ends. Threads the process starts later inherit
    /// the cores of the thread that starts them.
    async fn keep_out_of_the_way(
        &self,
        pid: u32,
        mut started: watch::Receiver<bool>,
    ) -> Infallible {
        let mut full_speed = self.full_speed.subscribe();
        loop {
            let apart = *full_speed.borrow_and_update() > 0;
            match self.keep_apart {
                KeepApart::UpperHalf if apart => pin_process(pid, &self.background_cores),
                // No signal: a stop someone else sent stays.
                KeepApart::UpperHalf => pin_process(pid, &self.every_core),
                KeepApart::Pause => {
                    pin_process(pid, &self.every_core);
                    process::set_paused(pid, apart && *started.borrow_and_update());
                }
            }
            // Both senders outlive this future: one lives in `self`, the other in the turn
            // that made it, dropped only once the process ended.
            tokio::select! {
                Ok(()) = full_speed.changed() => {}
                Ok(()) = started.changed() => {}
                else => return pending().await,
            }
        }
    }
}

impl<'a> Turn<'a> {
    /// Places the process `pid` of this transcode (none once it ended) as the share says: a
    /// background one keeps out of the way of full-speed ones, others run anywhere. Never
    /// returns; drop it when the process ends.
    pub fn place(&self, pid: Option<u32>) -> impl Future<Output = Infallible> + 'a {
        let share = self.share;
        let pace = self.pace;
        let started = self.started.subscribe();
        async move {
            match pid {
                Some(pid) if pace == Pace::Background => {
                    share.keep_out_of_the_way(pid, started).await
                }
                _ => pending().await,
            }
        }
    }

    /// Notes how far ffmpeg got: `update` (its offset taken off) of an output `output_length`
    /// long. Once ffmpeg fed the lookahead a background one keeps apart; from [`ALONE_UNTIL`] of
    /// the output on, background transcodes share the cores with a full-speed one.
    pub fn progressed(&mut self, update: &ProgressUpdate, output_length: Duration) {
        if update
            .frame
            .is_some_and(|frame| frame >= self.lookahead_frames)
        {
            self.started
                .send_if_modified(|started| !std::mem::replace(started, true));
        }
        if update
            .fraction_of(output_length)
            .is_some_and(|fraction| fraction >= ALONE_UNTIL)
        {
            self.end_full_speed();
        }
    }

    fn end_full_speed(&mut self) {
        if let Some(full_speed) = self.full_speed.take() {
            full_speed.send_modify(|running| *running -= 1);
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.end_full_speed();
    }
}

/// The cores background transcodes keep to beside a full-speed one: the upper half, and the
/// only one on a single core.
fn upper_half(cores: &[usize]) -> &[usize] {
    &cores[cores.len() - (cores.len() / 2).max(1).min(cores.len())..]
}

pub use process::pin_process;

#[cfg(target_os = "linux")]
mod process {
    //! CPU affinity through sched_getaffinity(2) and sched_setaffinity(2), pausing through
    //! kill(2).

    use std::mem::{size_of, zeroed};

    /// The cores process or thread `pid` (0: this thread) may run on, lowest first.
    pub fn allowed_cores(pid: u32) -> Vec<usize> {
        // SAFETY: `set` is a plain bitmask the kernel fills in; its size is passed along.
        let set = unsafe {
            let mut set: libc::cpu_set_t = zeroed();
            if libc::sched_getaffinity(pid as libc::pid_t, size_of::<libc::cpu_set_t>(), &mut set)
                != 0
            {
                return Vec::new();
            }
            set
        };
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `core` is below CPU_SETSIZE, the set's size.
            .filter(|&core| unsafe { libc::CPU_ISSET(core, &set) })
            .collect()
    }

    /// Puts every thread of process `pid` on `cores` (an empty list changes nothing); the threads
    /// it starts later inherit them. Threads that end meanwhile, or a process
    /// that already ended, are skipped: there is nothing left to place.
    pub fn pin_process(pid: u32, cores: &[usize]) {
        if cores.is_empty() {
            return;
        }
        // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET ignores cores beyond its size.
        let set = unsafe {
            let mut set: libc::cpu_set_t = zeroed();
            for &core in cores {
                libc::CPU_SET(core, &mut set);
            }
            set
        };
        let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return;
        };
        for thread in threads.flatten() {
            if let Some(tid) = thread.file_name().to_str().and_then(|t| t.parse().ok()) {
                // SAFETY: `set` is a valid cpu_set_t of the size passed.
                unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set) };
            }
        }
    }

    /// Stops process `pid` (`SIGSTOP`) or lets it go on (`SIGCONT`, which changes nothing for
    /// a running one). A process that already ended is not there to signal.
    pub fn set_paused(pid: u32, paused: bool) {
        let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) has no memory preconditions; a stale pid only fails.
        unsafe { libc::kill(pid as libc::pid_t, signal) };
    }
}

#[cfg(not(target_os = "linux"))]
mod process {
    //! Nothing outside Linux: background transcodes only run at a lower priority.

    pub fn allowed_cores(_pid: u32) -> Vec<usize> {
        Vec::new()
    }

    pub fn pin_process(_pid: u32, _cores: &[usize]) {}

    pub fn set_paused(_pid: u32, _paused: bool) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_workflows::{
        AssetId,
        media::{SegmentRange, SourceMedia},
    };
    use std::time::Duration;

    fn job(background: bool, live: bool) -> TranscodeJob {
        TranscodeJob {
            asset_id: AssetId::parse("a").unwrap(),
            source_key: "uploads/a/source".into(),
            media: SourceMedia {
                width: 1920,
                height: 1080,
                duration_secs: 30.0,
                frame_rate: 30.0,
                video_stream: 0,
                audio_stream: None,
                hdr: false,
                size_bytes: 1,
                description: String::new(),
            },
            variants: Vec::new(),
            range: SegmentRange::whole(4),
            progress: Default::default(),
            background,
            live,
            announce_start: false,
        }
    }

    #[test]
    fn only_the_smallest_variant_at_full_speed_asks_for_cores_of_its_own() {
        assert_eq!(Pace::of(&job(false, false), false), Pace::FullSpeed);
        assert_eq!(Pace::of(&job(true, false), false), Pace::Background);
        assert_eq!(Pace::of(&job(false, true), false), Pace::Alongside);
        assert_eq!(Pace::of(&job(false, false), true), Pace::Alongside);
    }

    /// What ffmpeg reports having fed `frame` frames and reached `out_secs` of its output.
    fn update(frame: u64, out_secs: f64) -> ProgressUpdate {
        ProgressUpdate {
            frame: Some(frame),
            out_time: Some(Duration::from_secs_f64(out_secs)),
            ..Default::default()
        }
    }

    const OUTPUT: Duration = Duration::from_secs(10);

    #[test]
    fn a_full_speed_turn_ends_halfway_through_its_output_or_when_dropped() {
        let share = CpuShare::new(KeepApart::Pause, vec![0, 1]);
        let running = || *share.full_speed.borrow();
        let mut turn = share.start(Pace::FullSpeed, 40);
        let mut background = share.start(Pace::Background, 40);
        background.progressed(&update(300, 10.0), OUTPUT);
        turn.progressed(&ProgressUpdate::default(), OUTPUT);
        turn.progressed(&update(147, 4.9), OUTPUT);
        assert_eq!(running(), 1);
        turn.progressed(&update(150, 5.0), OUTPUT);
        assert_eq!(running(), 0);
        turn.progressed(&update(300, 10.0), OUTPUT);
        drop(turn);
        assert_eq!(running(), 0, "a turn ends once");
        let turn = share.start(Pace::FullSpeed, 40);
        assert_eq!(running(), 1);
        drop(turn);
        assert_eq!(running(), 0);
    }

    #[test]
    fn a_turn_has_started_once_its_ffmpeg_fed_the_lookahead() {
        let share = CpuShare::new(KeepApart::Pause, vec![0, 1]);
        let mut turn = share.start(Pace::Background, 40);
        let started = turn.started.subscribe();
        turn.progressed(&ProgressUpdate::default(), OUTPUT);
        turn.progressed(&update(39, 1.3), OUTPUT);
        assert!(!*started.borrow());
        turn.progressed(&update(40, 1.33), OUTPUT);
        assert!(*started.borrow());
        let mut without_lookahead = share.start(Pace::Background, 0);
        without_lookahead.progressed(&update(0, 0.0), OUTPUT);
        assert!(*without_lookahead.started.borrow());
    }

    #[test]
    fn background_transcodes_keep_to_the_upper_half_of_the_cores() {
        assert_eq!(upper_half(&[0, 1]), [1]);
        assert_eq!(upper_half(&[0, 1, 2]), [2]);
        assert_eq!(upper_half(&[0, 1, 2, 3, 4, 5, 6, 7]), [4, 5, 6, 7]);
        assert_eq!(upper_half(&[3]), [3]);
        assert!(upper_half(&[]).is_empty());
    }

    #[test]
    fn background_transcodes_pause_where_the_lower_half_is_too_small() {
        assert_eq!(KeepApart::on(&[0]), KeepApart::Pause);
        assert_eq!(KeepApart::on(&[0, 1]), KeepApart::Pause);
        assert_eq!(KeepApart::on(&[0, 1, 2]), KeepApart::UpperHalf);
        assert_eq!(KeepApart::on(&[0, 1, 2, 3]), KeepApart::UpperHalf);
    }

    /// Where a process is: the cores it may run on and whether it is stopped.
    #[cfg(target_os = "linux")]
    #[derive(Debug, PartialEq)]
    struct Placement {
        cores: Vec<usize>,
        stopped: bool,
    }

    #[cfg(target_os = "linux")]
    fn placement(pid: u32) -> Placement {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // The state follows the command name, which may hold spaces.
        let state = stat.rsplit_once(") ").unwrap().1.chars().next();
        Placement {
            cores: process::allowed_cores(pid),
            stopped: state == Some('T'),
        }
    }

    /// A background process on a share of either kind, checked before, during (before and after
    /// its ffmpeg started) and after a full-speed turn, then through a turn while stopped from
    /// elsewhere.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_background_process_keeps_apart_only_while_a_full_speed_one_runs() {
        for keep_apart in [KeepApart::UpperHalf, KeepApart::Pause] {
            let share = CpuShare::new(keep_apart, process::allowed_cores(0));
            let free = Placement {
                cores: share.every_core.clone(),
                stopped: false,
            };
            let apart = match keep_apart {
                KeepApart::UpperHalf => Placement {
                    cores: share.background_cores.clone(),
                    stopped: false,
                },
                KeepApart::Pause => Placement {
                    cores: share.every_core.clone(),
                    stopped: true,
                },
            };
            let mut process = tokio::process::Command::new("sleep")
                .arg("30")
                .kill_on_drop(true)
                .spawn()
                .expect("sleep runs");
            let pid = process.id().unwrap();
            let mut background = share.start(Pace::Background, 40);
            let followed = background.place(Some(pid));
            tokio::pin!(followed);
            // Follows the share until the process is placed as `expected`, for at most `within`;
            // says whether it was.
            let mut placed_within = async |expected: &Placement, within: Duration| {
                let placed = async {
                    while placement(pid) != *expected {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                };
                tokio::select! {
                    never = &mut followed => match never {},
                    () = placed => true,
                    () = tokio::time::sleep(within) => false,
                }
            };
            let soon = Duration::from_secs(5);
            let at = |expected: &Placement| {
                format!(
                    "{keep_apart:?}: process is {:?}, expected {expected:?}",
                    placement(pid)
                )
            };
            assert!(placed_within(&free, soon).await, "{}", at(&free));
            let turn = share.start(Pace::FullSpeed, 40);
            if keep_apart == KeepApart::Pause {
                assert!(
                    !placed_within(&apart, Duration::from_millis(300)).await,
                    "paused before its ffmpeg fed the lookahead"
                );
                background.progressed(&update(40, 1.3), OUTPUT);
            }
            assert!(placed_within(&apart, soon).await, "{}", at(&apart));
            drop(turn);
            assert!(placed_within(&free, soon).await, "{}", at(&free));
            // A stop sent from elsewhere lasts through a turn, unless the share pauses itself.
            process::set_paused(pid, true);
            let turn = share.start(Pace::FullSpeed, 40);
            let stopped_apart = Placement {
                stopped: true,
                ..apart
            };
            assert!(
                placed_within(&stopped_apart, soon).await,
                "{}",
                at(&stopped_apart)
            );
            drop(turn);
            let after = Placement {
                stopped: keep_apart == KeepApart::UpperHalf,
                ..free
            };
            assert!(placed_within(&after, soon).await, "{}", at(&after));
            process.kill().await.unwrap();
        }
    }
}
