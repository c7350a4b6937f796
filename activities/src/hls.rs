//! HLS playlist text: the master playlist that lists finished variants, each variant's VOD
//! playlist, and reading the playlist ffmpeg keeps while it encodes.

use crate::codec::{self, Level};
use m3u8_rs::{
    MasterPlaylist, MediaPlaylist, MediaPlaylistType, MediaSegment, Resolution, VariantStream,
};
use pulse_workflows::{
    asset::segment_file_name,
    media::{Rendition, SegmentRecord, SourceMedia, VariantSpec},
};

/// The master playlist listing `renditions`, lowest first, each at `{name}/index.m3u8`.
pub fn master_playlist(renditions: &[Rendition]) -> String {
    let mut sorted: Vec<&Rendition> = renditions.iter().collect();
    sorted.sort_by_key(|r| (u64::from(r.width) * u64::from(r.height), r.bandwidth));
    let playlist = MasterPlaylist {
        version: Some(3),
        independent_segments: true,
        variants: sorted
            .into_iter()
            .map(|r| VariantStream {
                uri: format!("{}/index.m3u8", r.name),
                bandwidth: r.bandwidth,
                average_bandwidth: Some(r.average_bandwidth),
                codecs: Some(r.codecs.clone()),
                resolution: Some(Resolution {
                    width: u64::from(r.width),
                    height: u64::from(r.height),
                }),
                frame_rate: Some((r.frame_rate * 1000.0).round() / 1000.0),
                ..VariantStream::default()
            })
            .collect(),
        ..MasterPlaylist::default()
    };
    write(|out| playlist.write_to(out))
}

/// What the master says about the variant `spec` of `media` made of `segments`.
pub fn rendition(spec: &VariantSpec, media: &SourceMedia, segments: &[SegmentRecord]) -> Rendition {
    let (bandwidth, average_bandwidth) = bit_rates(segments);
    let level = Level::for_stream(
        spec.width,
        spec.height,
        media.frame_rate,
        spec.max_video_kbps,
    );
    Rendition {
        name: spec.name.clone(),
        width: spec.width,
        height: spec.height,
        frame_rate: media.frame_rate,
        bandwidth,
        average_bandwidth,
        codecs: codec::codecs(level, media.audio_stream.is_some()),
        segments: segments.len() as u32,
        duration_secs: segments.iter().map(|s| s.duration_secs).sum(),
    }
}

/// Whether a variant playlist is final or still growing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaylistKind {
    /// Every segment is listed: a VOD playlist with an end.
    Complete,
    /// More segments will come (fast start): an EVENT playlist without an end.
    Growing,
}

/// The playlist of a variant made of `segments` (in order).
pub fn variant_playlist(segments: &[SegmentRecord], kind: PlaylistKind) -> String {
    let complete = kind == PlaylistKind::Complete;
    let playlist = MediaPlaylist {
        version: Some(3),
        target_duration: segments
            .iter()
            .map(|s| s.duration_secs.round() as u64)
            .max()
            .unwrap_or(1)
            .max(1),
        playlist_type: Some(if complete {
            MediaPlaylistType::Vod
        } else {
            MediaPlaylistType::Event
        }),
        independent_segments: true,
        end_list: complete,
        segments: segments
            .iter()
            .map(|s| MediaSegment {
                uri: segment_file_name(s.index),
                duration: s.duration_secs as f32,
                ..MediaSegment::empty()
            })
            .collect(),
        ..MediaPlaylist::default()
    };
    write(|out| playlist.write_to(out))
}

/// Peak and average bit rates of a variant, in bit/s, for `BANDWIDTH` and `AVERAGE-BANDWIDTH`.
///
/// The peak ignores segments shorter than half the longest one (the tail of the video), whose
/// few bytes over a short time would overstate it.
pub fn bit_rates(segments: &[SegmentRecord]) -> (u64, u64) {
    let rate = |bytes: u64, secs: f64| {
        if secs > 0.0 {
            (bytes as f64 * 8.0 / secs).ceil() as u64
        } else {
            0
        }
    };
    let total_bytes: u64 = segments.iter().map(|s| s.bytes).sum();
    let total_secs: f64 = segments.iter().map(|s| s.duration_secs).sum();
    let average = rate(total_bytes, total_secs);
    let longest = segments.iter().map(|s| s.duration_secs).fold(0.0, f64::max);
    let peak = segments
        .iter()
        .filter(|s| s.duration_secs >= longest / 2.0)
        .map(|s| rate(s.bytes, s.duration_secs))
        .max()
        .unwrap_or(0);
    (peak.max(average), average)
}

/// The segments listed so far in a playlist ffmpeg is writing: file name and duration.
pub fn listed_segments(playlist: &[u8]) -> Option<Vec<(String, f64)>> {
    let parsed = m3u8_rs::parse_media_playlist_res(playlist).ok()?;
    Some(
        parsed
            .segments
            .into_iter()
            .map(|segment| (segment.uri, f64::from(segment.duration)))
            .collect(),
    )
}

fn write(render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    render(&mut out).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("m3u8-rs writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, width: u32, height: u32, bandwidth: u64) -> Rendition {
        Rendition {
            name: name.into(),
            width,
            height,
            frame_rate: 29.97002997,
            bandwidth,
            average_bandwidth: bandwidth / 2,
            codecs: "avc1.64001e,mp4a.40.2".into(),
            segments: 3,
            duration_secs: 10.0,
        }
    }

    #[test]
    fn master_lists_variants_lowest_first() {
        let text = master_playlist(&[
            listed("720p", 1280, 720, 3_000_000),
            listed("240p", 426, 240, 500_000),
        ]);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=500000,AVERAGE-BANDWIDTH=250000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=426x240,FRAME-RATE=29.97\n\
             240p/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=1500000,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=29.97\n\
             720p/index.m3u8\n"
        );
        let parsed = m3u8_rs::parse_master_playlist_res(text.as_bytes()).unwrap();
        assert_eq!(parsed.variants.len(), 2);
    }

    #[test]
    fn variant_playlist_is_a_complete_vod_list() {
        let segments = [
            SegmentRecord {
                index: 0,
                duration_secs: 4.0,
                bytes: 100,
            },
            SegmentRecord {
                index: 1,
                duration_secs: 4.0,
                bytes: 100,
            },
            SegmentRecord {
                index: 2,
                duration_secs: 1.5,
                bytes: 10,
            },
        ];
        let text = variant_playlist(&segments, PlaylistKind::Complete);
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n"), "{text}");
        assert!(text.contains("#EXTINF:4,\nseg_000.ts\n#EXTINF:4,\nseg_001.ts\n#EXTINF:1.5,\nseg_002.ts\n#EXT-X-ENDLIST\n"), "{text}");
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
        assert!(parsed.end_list);
        assert_eq!(parsed.segments.len(), 3);
    }

    #[test]
    fn a_growing_playlist_has_no_end() {
        let segments = [SegmentRecord {
            index: 0,
            duration_secs: 4.0,
            bytes: 100,
        }];
        let text = variant_playlist(&segments, PlaylistKind::Growing);
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{text}");
        assert!(!text.contains("#EXT-X-ENDLIST"), "{text}");
    }

    #[test]
    fn renditions_describe_what_the_segments_hold() {
        let media = SourceMedia {
            width: 1280,
            height: 720,
            duration_secs: 8.0,
            frame_rate: 30.0,
            video_stream: 0,
            audio_stream: Some(1),
            hdr: false,
            size_bytes: 1,
            description: String::new(),
        };
        let spec = VariantSpec {
            name: "720p".into(),
            width: 1280,
            height: 720,
            max_video_kbps: 2800,
            audio_kbps: 128,
        };
        let segments = [
            SegmentRecord {
                index: 0,
                duration_secs: 4.0,
                bytes: 1_000_000,
            },
            SegmentRecord {
                index: 1,
                duration_secs: 4.0,
                bytes: 500_000,
            },
        ];
        let rendition = rendition(&spec, &media, &segments);
        assert_eq!(rendition.codecs, "avc1.64001f,mp4a.40.2");
        assert_eq!(
            (rendition.bandwidth, rendition.average_bandwidth),
            (2_000_000, 1_500_000)
        );
        assert_eq!((rendition.segments, rendition.duration_secs), (2, 8.0));
    }

    #[test]
    fn bit_rates_ignore_a_short_tail() {
        let segments = [
            SegmentRecord {
                index: 0,
                duration_secs: 4.0,
                bytes: 500_000,
            },
            SegmentRecord {
                index: 1,
                duration_secs: 4.0,
                bytes: 1_000_000,
            },
            SegmentRecord {
                index: 2,
                duration_secs: 0.2,
                bytes: 100_000,
            },
        ];
        let (peak, average) = bit_rates(&segments);
        assert_eq!(peak, 2_000_000);
        assert_eq!(average, (1_600_000.0 * 8.0 / 8.2_f64).ceil() as u64);
        assert_eq!(bit_rates(&[]), (0, 0));
    }

    #[test]
    fn reads_ffmpegs_growing_playlist() {
        let text = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXTINF:4.000000,\nseg_000.ts\n#EXTINF:3.966667,\nseg_001.ts\n";
        let listed = listed_segments(text).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1].0, "seg_001.ts");
        assert!((listed[1].1 - 3.966667).abs() < 1e-5);
        assert!(listed_segments(b"not a playlist").is_none());
    }
}
