//! H.264 levels and the RFC 6381 codec strings the master playlist announces.
//!
//! The encoder is told the level, and the playlist announces the same one, so a player can
//! decide from the master alone whether it can decode a variant.

/// An H.264 level with the limits of ITU-T H.264 Table A-1 that matter for a ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// `level_idc`: 30 for level 3.0, 41 for 4.1...
    pub idc: u8,
    /// Macroblocks per second.
    max_mbps: u64,
    /// Macroblocks per frame.
    max_fs: u64,
    /// Peak bit rate for the Baseline/Main profiles in kbit/s; High allows 1.25 times this.
    max_kbps: u64,
}

const LEVELS: [Level; 9] = [
    Level {
        idc: 30,
        max_mbps: 40_500,
        max_fs: 1_620,
        max_kbps: 10_000,
    },
    Level {
        idc: 31,
        max_mbps: 108_000,
        max_fs: 3_600,
        max_kbps: 14_000,
    },
    Level {
        idc: 32,
        max_mbps: 216_000,
        max_fs: 5_120,
        max_kbps: 20_000,
    },
    Level {
        idc: 40,
        max_mbps: 245_760,
        max_fs: 8_192,
        max_kbps: 20_000,
    },
    Level {
        idc: 41,
        max_mbps: 245_760,
        max_fs: 8_192,
        max_kbps: 50_000,
    },
    Level {
        idc: 42,
        max_mbps: 522_240,
        max_fs: 8_704,
        max_kbps: 50_000,
    },
    Level {
        idc: 50,
        max_mbps: 589_824,
        max_fs: 22_080,
        max_kbps: 135_000,
    },
    Level {
        idc: 51,
        max_mbps: 983_040,
        max_fs: 36_864,
        max_kbps: 240_000,
    },
    Level {
        idc: 52,
        max_mbps: 2_073_600,
        max_fs: 36_864,
        max_kbps: 240_000,
    },
];

impl Level {
    /// The lowest level (3.0 at least, which every HLS player decodes) that fits a High-profile
    /// stream of `width` x `height` at `frame_rate` peaking at `max_kbps`.
    pub fn for_stream(width: u32, height: u32, frame_rate: f64, max_kbps: u32) -> Self {
        let frame_mbs = u64::from(width.div_ceil(16)) * u64::from(height.div_ceil(16));
        let mbps = (frame_mbs as f64 * frame_rate).ceil() as u64;
        LEVELS
            .iter()
            .copied()
            .find(|level| {
                frame_mbs <= level.max_fs
                    && mbps <= level.max_mbps
                    && u64::from(max_kbps) * 4 <= level.max_kbps * 5
            })
            .unwrap_or(LEVELS[LEVELS.len() - 1])
    }

    /// The level as x264 takes it, e.g. `4.1`.
    pub fn as_x264(self) -> String {
        format!("{}.{}", self.idc / 10, self.idc % 10)
    }
}

/// The codec string of a High-profile H.264 variant, with AAC-LC audio when it has sound.
pub fn codecs(level: Level, has_audio: bool) -> String {
    let video = format!("avc1.6400{:02x}", level.idc);
    if has_audio {
        format!("{video},mp4a.40.2")
    } else {
        video
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_ladder_levels() {
        assert_eq!(Level::for_stream(426, 240, 30.0, 400).idc, 30);
        assert_eq!(Level::for_stream(640, 360, 30.0, 800).idc, 30);
        assert_eq!(Level::for_stream(854, 480, 30.0, 1400).idc, 31);
        assert_eq!(Level::for_stream(1280, 720, 30.0, 2800).idc, 31);
        assert_eq!(Level::for_stream(1280, 720, 60.0, 2800).idc, 32);
        assert_eq!(Level::for_stream(1920, 1080, 30.0, 5000).idc, 40);
        assert_eq!(Level::for_stream(1920, 1080, 60.0, 5000).idc, 42);
        assert_eq!(Level::for_stream(2560, 1440, 30.0, 9000).idc, 50);
        assert_eq!(Level::for_stream(3840, 2160, 30.0, 16000).idc, 51);
        assert_eq!(Level::for_stream(3840, 2160, 60.0, 16000).idc, 52);
    }

    #[test]
    fn bit_rate_can_raise_the_level() {
        assert_eq!(Level::for_stream(1920, 1080, 30.0, 30_000).idc, 41);
    }

    #[test]
    fn codec_strings() {
        let level = Level::for_stream(1280, 720, 30.0, 2800);
        assert_eq!(level.as_x264(), "3.1");
        assert_eq!(codecs(level, true), "avc1.64001f,mp4a.40.2");
        assert_eq!(
            codecs(Level::for_stream(1920, 1080, 30.0, 5000), false),
            "avc1.640028"
        );
    }
}
