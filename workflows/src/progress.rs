//! Overall progress: the 0–100 scale split among the ladder by each variant's expected cost.
//!
//! Every variant covers the same duration, so its cost (pixels × duration) is proportional to
//! its pixel count. The scale tops out at [`BEFORE_DONE`] while work remains: 100 means done.

use crate::media::VariantSpec;
use serde::{Deserialize, Serialize};

/// The highest progress shown before the asset is done.
pub const BEFORE_DONE: f64 = 99.0;

/// Progress of a finished asset.
pub const DONE: f64 = 100.0;

/// The part of the overall scale one variant's transcode covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressSpan {
    /// Overall percent when the variant starts.
    pub start: f64,
    /// Overall percent when the variant is finished.
    pub end: f64,
}

impl ProgressSpan {
    /// Overall percent when `fraction` (0 to 1, clamped; NaN counts as 0) of the variant is done.
    pub fn at(&self, fraction: f64) -> f64 {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self.start + (self.end - self.start) * fraction
    }
}

/// Splits `0..BEFORE_DONE` among `variants` in order, each by its share of the total cost.
pub fn ladder_spans(variants: &[VariantSpec]) -> Vec<ProgressSpan> {
    let total: u64 = variants.iter().map(VariantSpec::pixels).sum();
    let mut done: u64 = 0;
    variants
        .iter()
        .map(|variant| {
            let share = |pixels: u64| BEFORE_DONE * pixels as f64 / total.max(1) as f64;
            let start = share(done);
            done += variant.pixels();
            ProgressSpan {
                start,
                end: share(done),
            }
        })
        .collect()
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
    fn spans_are_weighted_by_pixels_and_tile_the_scale() {
        let spans = ladder_spans(&[variant(426, 240), variant(1280, 720)]);
        let small = 426.0 * 240.0;
        let large = 1280.0 * 720.0;
        assert!((spans[0].end - BEFORE_DONE * small / (small + large)).abs() < 1e-9);
        assert_eq!(spans[0].start, 0.0);
        assert_eq!(spans[1].start, spans[0].end);
        assert!((spans[1].end - BEFORE_DONE).abs() < 1e-9);
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
    fn empty_ladder_has_no_spans() {
        assert!(ladder_spans(&[]).is_empty());
    }
}
