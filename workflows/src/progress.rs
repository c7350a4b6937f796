//! Overall progress: the 0–100 scale split among the transcodes of the ladder by their expected
//! cost (pixels × duration), so a 1080p minute weighs as much as it costs.
//!
//! Each transcode covers a [`ProgressSpan`] of the scale and heartbeats how far into it it got
//! ([`TranscodeCheckpoint`]); the workflow adds the width of every finished span to the asset's
//! settled progress. Overall progress is the settled part plus what running transcodes report,
//! so concurrent transcodes add up instead of overtaking each other. The scale tops out at
//! [`BEFORE_DONE`] while work remains: 100 means done.

use crate::media::{SegmentRecord, VariantSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The highest progress shown before the asset is done.
pub const BEFORE_DONE: f64 = 99.0;

/// Progress of a finished asset.
pub const DONE: f64 = 100.0;

/// The part of the overall scale one transcode covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressSpan {
    /// Where on the scale the transcode's part starts.
    pub start: f64,
    /// Where it ends.
    pub end: f64,
}

impl ProgressSpan {
    /// The point `fraction` (0 to 1, clamped; NaN counts as 0) of the way through the span.
    pub fn at(&self, fraction: f64) -> f64 {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self.start + self.width() * fraction
    }

    /// How much of the scale the span covers.
    pub fn width(&self) -> f64 {
        self.end - self.start
    }
}

/// Cost of `variants` over `secs` of video, in pixel-seconds.
pub fn cost(variants: &[VariantSpec], secs: f64) -> f64 {
    variants.iter().map(|v| v.pixels() as f64).sum::<f64>() * secs
}

/// Splits `0..BEFORE_DONE` among jobs of the given costs, in order.
pub fn spans(costs: &[f64]) -> Vec<ProgressSpan> {
    let total: f64 = costs.iter().sum();
    let mut done = 0.0;
    costs
        .iter()
        .map(|cost| {
            let share = |c: f64| {
                if total > 0.0 {
                    BEFORE_DONE * c / total
                } else {
                    0.0
                }
            };
            let start = share(done);
            done += cost;
            ProgressSpan {
                start,
                end: share(done),
            }
        })
        .collect()
}

/// What a running transcode heartbeats: what it has uploaded (so a retry can resume) and how
/// far it got (so progress can be shown live without entering workflow history).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TranscodeCheckpoint {
    /// The segments uploaded so far, by variant, in order.
    pub segments: BTreeMap<String, Vec<SegmentRecord>>,
    /// The part of the overall scale the transcode covers.
    pub span: ProgressSpan,
    /// How far on the overall scale it got; never lowered, also across attempts.
    pub progress: f64,
}

impl TranscodeCheckpoint {
    /// How much this transcode adds to the settled progress so far.
    pub fn contribution(&self) -> f64 {
        (self.progress - self.span.start).clamp(0.0, self.span.width().max(0.0))
    }
}

/// Overall progress: `settled` (the finished transcodes) plus what `running` ones report.
pub fn overall<'a>(
    settled: f64,
    running: impl IntoIterator<Item = &'a TranscodeCheckpoint>,
) -> f64 {
    let live: f64 = running
        .into_iter()
        .map(TranscodeCheckpoint::contribution)
        .sum();
    (settled + live).min(BEFORE_DONE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(width: u32, height: u32) -> VariantSpec {
        VariantSpec {
            name: format!("{height}p"),
            width,
            height,
            max_video_kbps: 1000,
            audio_kbps: 96,
        }
    }

    #[test]
    fn spans_are_weighted_by_cost_and_tile_the_scale() {
        let small = cost(&[variant(426, 240)], 10.0);
        let large = cost(&[variant(1280, 720)], 10.0);
        let spans = spans(&[small, large]);
        assert!((spans[0].end - BEFORE_DONE * small / (small + large)).abs() < 1e-9);
        assert_eq!(spans[0].start, 0.0);
        assert_eq!(spans[1].start, spans[0].end);
        assert!((spans[1].end - BEFORE_DONE).abs() < 1e-9);
        assert!(super::spans(&[]).is_empty());
        assert_eq!(
            super::spans(&[0.0]),
            vec![ProgressSpan {
                start: 0.0,
                end: 0.0
            }]
        );
    }

    #[test]
    fn at_clamps_and_ignores_nan() {
        let span = ProgressSpan {
            start: 10.0,
            end: 20.0,
        };
        assert_eq!(span.at(0.5), 15.0);
        assert_eq!(span.at(-1.0), 10.0);
        assert_eq!(span.at(7.0), 20.0);
        assert_eq!(span.at(f64::NAN), 10.0);
    }

    #[test]
    fn concurrent_transcodes_add_up() {
        let running = |start: f64, end: f64, progress: f64| TranscodeCheckpoint {
            span: ProgressSpan { start, end },
            progress,
            ..Default::default()
        };
        // The first variant (0..10) is half done while the rest (10..99) is a tenth done.
        let both = [running(0.0, 10.0, 5.0), running(10.0, 99.0, 18.9)];
        assert!((overall(0.0, &both) - 13.9).abs() < 1e-9);
        // Once the first is settled, the rest alone moves the needle.
        assert!((overall(10.0, &both[1..]) - 18.9).abs() < 1e-9);
        assert_eq!(overall(98.0, &[running(10.0, 99.0, 99.0)]), BEFORE_DONE);
        assert_eq!(
            running(10.0, 20.0, 3.0).contribution(),
            0.0,
            "progress below the span adds nothing"
        );
    }
}
