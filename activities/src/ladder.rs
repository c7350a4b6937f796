//! Which variants a source gets (SPEC section 3).
//!
//! Rungs are named after the short side of the picture, so a portrait 1080x1920 phone video gets
//! `720p` as 720x1280. Rungs above the source are skipped (never upscale); a source below the
//! lowest rung gets one variant at its own size.

use pulse_workflows::media::VariantSpec;

/// A standard rung: short side in pixels and peak video bit rate in kbit/s.
struct Rung {
    short_side: u32,
    max_video_kbps: u32,
}

/// The ladder, smallest first.
const RUNGS: [Rung; 7] = [
    Rung {
        short_side: 240,
        max_video_kbps: 400,
    },
    Rung {
        short_side: 360,
        max_video_kbps: 800,
    },
    Rung {
        short_side: 480,
        max_video_kbps: 1_400,
    },
    Rung {
        short_side: 720,
        max_video_kbps: 2_800,
    },
    Rung {
        short_side: 1080,
        max_video_kbps: 5_000,
    },
    Rung {
        short_side: 1440,
        max_video_kbps: 9_000,
    },
    Rung {
        short_side: 2160,
        max_video_kbps: 16_000,
    },
];

/// Audio bit rate of the smaller variants, in kbit/s.
const SMALL_AUDIO_KBPS: u32 = 96;
/// Audio bit rate from 480p up, in kbit/s.
const AUDIO_KBPS: u32 = 128;

/// The variants for a source displayed at `width` x `height` (rotation already applied),
/// smallest first.
pub fn plan_ladder(width: u32, height: u32) -> Vec<VariantSpec> {
    let short = width.min(height);
    let long = width.max(height);
    let lowest = &RUNGS[0];
    if short < lowest.short_side {
        let (w, h) = (even_floor(width), even_floor(height));
        let name_side = w.min(h);
        let share = f64::from(w) * f64::from(h) / rung_pixels(lowest);
        let kbps = (f64::from(lowest.max_video_kbps) * share).round() as u32;
        return vec![variant(name_side, w, h, kbps.max(100))];
    }
    RUNGS
        .iter()
        .filter(|rung| rung.short_side <= short)
        .map(|rung| {
            let scaled_long =
                even_round(f64::from(long) * f64::from(rung.short_side) / f64::from(short));
            let (w, h) = if width >= height {
                (scaled_long, rung.short_side)
            } else {
                (rung.short_side, scaled_long)
            };
            variant(rung.short_side, w, h, rung.max_video_kbps)
        })
        .collect()
}

fn variant(short_side: u32, width: u32, height: u32, max_video_kbps: u32) -> VariantSpec {
    VariantSpec {
        name: format!("{short_side}p"),
        width,
        height,
        max_video_kbps,
        audio_kbps: if short_side < 480 {
            SMALL_AUDIO_KBPS
        } else {
            AUDIO_KBPS
        },
    }
}

/// Pixels of a 16:9 picture at `rung`.
fn rung_pixels(rung: &Rung) -> f64 {
    let short = f64::from(rung.short_side);
    short * short * 16.0 / 9.0
}

/// The nearest even number (H.264 4:2:0 needs even dimensions), at least 2.
fn even_round(value: f64) -> u32 {
    ((value / 2.0).round() as u32 * 2).max(2)
}

/// The largest even number not above `value`, at least 2.
fn even_floor(value: u32) -> u32 {
    (value & !1).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(ladder: &[VariantSpec]) -> Vec<(String, u32, u32)> {
        ladder
            .iter()
            .map(|v| (v.name.clone(), v.width, v.height))
            .collect()
    }

    #[test]
    fn landscape_1080p_gets_every_rung_up_to_its_own() {
        let ladder = plan_ladder(1920, 1080);
        assert_eq!(
            sizes(&ladder),
            vec![
                ("240p".into(), 426, 240),
                ("360p".into(), 640, 360),
                ("480p".into(), 854, 480),
                ("720p".into(), 1280, 720),
                ("1080p".into(), 1920, 1080),
            ]
        );
    }

    #[test]
    fn portrait_rungs_follow_the_short_side() {
        let ladder = plan_ladder(1080, 1920);
        assert_eq!(ladder.last().unwrap().name, "1080p");
        assert_eq!((ladder[3].width, ladder[3].height), (720, 1280));
        assert!(ladder.iter().all(|v| v.height > v.width));
    }

    #[test]
    fn never_upscales() {
        let ladder = plan_ladder(1280, 700);
        assert_eq!(ladder.last().unwrap().name, "480p");
        assert!(ladder.iter().all(|v| v.height <= 700 && v.width <= 1280));
    }

    #[test]
    fn below_240p_gets_one_variant_at_its_own_size() {
        assert_eq!(
            sizes(&plan_ladder(320, 180)),
            vec![("180p".into(), 320, 180)]
        );
        assert_eq!(sizes(&plan_ladder(161, 99)), vec![("98p".into(), 160, 98)]);
        assert_eq!(sizes(&plan_ladder(1, 1)), vec![("2p".into(), 2, 2)]);
        assert!(plan_ladder(320, 180)[0].max_video_kbps >= 100);
    }

    #[test]
    fn ordered_smallest_first_with_even_sizes() {
        for (w, h) in [
            (3840, 2160),
            (2160, 3840),
            (1440, 1080),
            (1000, 1000),
            (720, 1280),
        ] {
            let ladder = plan_ladder(w, h);
            assert!(
                ladder
                    .windows(2)
                    .all(|pair| pair[0].pixels() < pair[1].pixels())
            );
            assert!(ladder.iter().all(|v| v.width % 2 == 0 && v.height % 2 == 0));
        }
    }

    #[test]
    fn a_rotated_4k_phone_video_tops_out_at_2160p() {
        let ladder = plan_ladder(2160, 3840);
        assert_eq!(ladder.len(), 7);
        assert_eq!((ladder[6].width, ladder[6].height), (2160, 3840));
    }
}
