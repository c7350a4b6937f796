//! How one worker's cores are shared between the transcode that makes an asset playable and
//! the background ones beside it.
//!
//! Background transcodes run at idle CPU priority, so they only get the CPU time the smallest
//! variant's ffmpeg leaves (about a tenth of two cores). Yet on every core they run they also
//! fill the core's caches with their own frames, and the smallest variant came out about half a
//! second later beside them than alone. So while a full-speed transcode runs on the worker,
//! background ffmpeg processes are confined to the upper half of the worker's cores: the lower
//! half is the full-speed one's alone. When no full-speed transcode runs they get every core
//! again. By hand on two cores, 14 rounds of plain ffmpeg: the smallest variant took 6.56 s
//! alone, 7.04 s beside the larger variants and 6.63 s beside them confined to one core (at the
//! median), while the larger variants lost 0.5 of the 2.8 CPU-seconds they got meanwhile.

use pulse_workflows::contract::TranscodeJob;
use std::{convert::Infallible, future::pending};
use tokio::sync::watch;

/// How a transcode uses the CPU, which says what it asks of the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// As fast as the CPU allows, to make an asset playable: background ones keep off its cores.
    FullSpeed,
    /// At idle priority, confined while a full-speed transcode runs.
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

/// The full-speed transcodes running on this worker, and the cores background ones may use.
#[derive(Debug)]
pub struct CpuShare {
    full_speed: watch::Sender<usize>,
    every_core: Vec<usize>,
    background_cores: Vec<usize>,
}

/// Marks a full-speed transcode as running until dropped.
#[derive(Debug)]
pub struct FullSpeedTurn<'a> {
    full_speed: Option<&'a watch::Sender<usize>>,
}

impl Default for CpuShare {
    /// Shares the cores this worker may run on.
    fn default() -> Self {
        let every_core = affinity::allowed_cores(0);
        Self {
            background_cores: upper_half(&every_core).to_vec(),
            every_core,
            full_speed: watch::Sender::new(0),
        }
    }
}

impl CpuShare {
    /// Marks a transcode at `pace` as running, until the returned turn is dropped.
    pub fn start(&self, pace: Pace) -> FullSpeedTurn<'_> {
        if pace != Pace::FullSpeed {
            return FullSpeedTurn { full_speed: None };
        }
        self.full_speed.send_modify(|running| *running += 1);
        FullSpeedTurn {
            full_speed: Some(&self.full_speed),
        }
    }

    /// Places the process `pid` of a transcode at `pace` (none once it ended) as the share says:
    /// a background one follows [`CpuShare::confine`], others run anywhere. Never returns; drop
    /// it when the process ends.
    pub async fn follow(&self, pace: Pace, pid: Option<u32>) -> Infallible {
        match pid {
            Some(pid) if pace == Pace::Background => self.confine(pid).await,
            _ => pending().await,
        }
    }

    /// Keeps the threads of the background process `pid` on the upper half of the cores while a
    /// full-speed transcode runs, on every core otherwise. Never returns; drop it when the
    /// process ends. Threads the process starts later inherit the cores of the thread that
    /// starts them.
    async fn confine(&self, pid: u32) -> Infallible {
        let mut full_speed = self.full_speed.subscribe();
        loop {
            let cores = if *full_speed.borrow_and_update() > 0 {
                &self.background_cores
            } else {
                &self.every_core
            };
            pin_process(pid, cores);
            if full_speed.changed().await.is_err() {
                // The sender lives in `self`, which outlives this future.
                return pending().await;
            }
        }
    }
}

impl Drop for FullSpeedTurn<'_> {
    fn drop(&mut self) {
        if let Some(full_speed) = self.full_speed {
            full_speed.send_modify(|running| *running -= 1);
        }
    }
}

/// The cores background transcodes keep to beside a full-speed one: the upper half, and the
/// only one on a single core.
fn upper_half(cores: &[usize]) -> &[usize] {
    &cores[cores.len() - (cores.len() / 2).max(1).min(cores.len())..]
}

pub use affinity::pin_process;

#[cfg(target_os = "linux")]
mod affinity {
    //! CPU affinity through sched_getaffinity(2) and sched_setaffinity(2).

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
}

#[cfg(not(target_os = "linux"))]
mod affinity {
    //! No CPU affinity outside Linux: background transcodes only run at a lower priority.

    pub fn allowed_cores(_pid: u32) -> Vec<usize> {
        Vec::new()
    }

    pub fn pin_process(_pid: u32, _cores: &[usize]) {}
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

    #[test]
    fn background_transcodes_keep_to_the_upper_half_of_the_cores() {
        assert_eq!(upper_half(&[0, 1]), [1]);
        assert_eq!(upper_half(&[0, 1, 2]), [2]);
        assert_eq!(upper_half(&[0, 1, 2, 3, 4, 5, 6, 7]), [4, 5, 6, 7]);
        assert_eq!(upper_half(&[3]), [3]);
        assert!(upper_half(&[]).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_background_process_keeps_off_the_full_speed_cores_only_while_one_runs() {
        let share = CpuShare::default();
        let mut process = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .expect("sleep runs");
        let pid = process.id().unwrap();
        let confined = share.follow(Pace::Background, Some(pid));
        tokio::pin!(confined);
        // Follows the share until the process may run on `expected` cores.
        let mut until_on = async |expected: &[usize]| {
            let placed = async {
                while affinity::allowed_cores(pid) != expected {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            tokio::select! {
                never = &mut confined => match never {},
                () = placed => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => panic!(
                    "process may run on {:?}, expected {expected:?}",
                    affinity::allowed_cores(pid)
                ),
            }
        };
        until_on(&share.every_core).await;
        let turn = share.start(Pace::FullSpeed);
        let _background = share.start(Pace::Background);
        until_on(&share.background_cores).await;
        drop(turn);
        until_on(&share.every_core).await;
        process.kill().await.unwrap();
    }
}
