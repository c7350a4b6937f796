//! Playable first: on one worker, the transcode that makes an asset playable has the CPU to
//! itself.
//!
//! The other transcodes run at idle CPU priority, yet beside it they still slow it down: they
//! share the cores' caches and memory bandwidth (and the cores themselves where the machine's
//! cores are hyperthreads), and the first variant came out later than plain ffmpeg makes it
//! alone. So a background transcode also waits to start until no full-speed transcode runs on
//! its worker. That costs what the full-speed one leaves idle, a tenth of two cores or so while
//! it runs; transcodes on other workers are not held, and neither are those that are already
//! running when a full-speed one starts.

use pulse_workflows::contract::TranscodeJob;
use tokio::sync::watch;

/// How a transcode uses the CPU, which says whether it waits for its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// As fast as the CPU allows, to make an asset playable: it holds the background back.
    FullSpeed,
    /// At idle priority, once no full-speed transcode runs.
    Background,
    /// Beside the background, holding nothing back: fast start's smallest variant, which plays
    /// from its first segment, so the others need not wait for its end; and variants the test
    /// switch holds to real time, which need little CPU.
    Alongside,
}

impl Pace {
    /// The pace of `job`; `held_to_real_time` says whether ffmpeg reads it no faster than real
    /// time (`PULSE_FAULT_REALTIME_VARIANTS`).
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

/// The full-speed transcodes running on this worker.
#[derive(Debug, Default)]
pub struct PlayableFirst {
    full_speed: watch::Sender<usize>,
}

/// Marks a full-speed transcode as running until dropped.
#[derive(Debug)]
pub struct Turn<'a> {
    full_speed: Option<&'a watch::Sender<usize>>,
}

impl PlayableFirst {
    /// Waits until a transcode at `pace` may start: a background one waits while a full-speed
    /// one runs. Hold the turn while the transcode runs.
    pub async fn turn(&self, pace: Pace) -> Turn<'_> {
        let full_speed = match pace {
            Pace::FullSpeed => {
                self.full_speed.send_modify(|running| *running += 1);
                Some(&self.full_speed)
            }
            Pace::Background => {
                // The sender lives in `self`, so the wait ends only when the count is zero.
                let _ = self
                    .full_speed
                    .subscribe()
                    .wait_for(|running| *running == 0)
                    .await;
                None
            }
            Pace::Alongside => None,
        };
        Turn { full_speed }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(full_speed) = self.full_speed {
            full_speed.send_modify(|running| *running -= 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use pulse_workflows::{
        AssetId,
        media::{SegmentRange, SourceMedia},
    };

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
    fn only_the_smallest_variant_at_full_speed_holds_the_others_back() {
        assert_eq!(Pace::of(&job(false, false), false), Pace::FullSpeed);
        assert_eq!(Pace::of(&job(true, false), false), Pace::Background);
        assert_eq!(Pace::of(&job(false, true), false), Pace::Alongside);
        assert_eq!(Pace::of(&job(false, false), true), Pace::Alongside);
    }

    #[tokio::test]
    async fn a_background_transcode_waits_for_every_full_speed_one_to_end() {
        let turns = PlayableFirst::default();
        let first = turns.turn(Pace::FullSpeed).await;
        let second = turns.turn(Pace::FullSpeed).await;
        let mut background = Box::pin(turns.turn(Pace::Background));
        assert!((&mut background).now_or_never().is_none());
        drop(first);
        assert!((&mut background).now_or_never().is_none());
        drop(second);
        assert!(background.now_or_never().is_some());
    }

    #[tokio::test]
    async fn full_speed_and_alongside_transcodes_never_wait() {
        let turns = PlayableFirst::default();
        let _running = turns.turn(Pace::FullSpeed).await;
        assert!(turns.turn(Pace::FullSpeed).now_or_never().is_some());
        assert!(turns.turn(Pace::Alongside).now_or_never().is_some());
    }

    #[tokio::test]
    async fn a_background_transcode_starts_at_once_on_an_idle_worker() {
        let turns = PlayableFirst::default();
        let _background = turns.turn(Pace::Background).await;
        assert!(turns.turn(Pace::Background).now_or_never().is_some());
    }
}
