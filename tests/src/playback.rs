//! Checking that what Pulse published plays: downloaded, decoded end to end, the right size,
//! as long as the source, without a missing or repeated frame.

use crate::{bucket, media, media::ClipSpec};
use pulse_activities::Storage;
use pulse_workflows::{AssetId, AssetState};
use std::path::Path;

/// The variants of a 640x360 source, with their sizes.
pub const LADDER_360P: [(&str, u64, u64); 2] = [("240p", 426, 240), ("360p", 640, 360)];

/// Width and height of the video in `path`.
pub fn picture_size(path: &Path) -> (u64, u64) {
    let report = media::probe(path);
    let video = media::video_stream(&report);
    (
        video["width"].as_u64().unwrap(),
        video["height"].as_u64().unwrap(),
    )
}

/// Downloads the asset's processed tree and checks that the master and every variant in
/// `sizes` (name, width, height) decode cleanly, as plain H.264 High 4:2:0, with every frame of
/// `source` once. Returns the download folder.
pub async fn check_playback(
    storage: &Storage,
    state: &AssetState,
    source: &ClipSpec,
    sizes: &[(&str, u64, u64)],
) -> tempfile::TempDir {
    let asset = AssetId::parse(&state.asset_id).unwrap();
    let dir = tempfile::tempdir().unwrap();
    bucket::download(storage, &asset.keys().processed_prefix(), dir.path()).await;
    let master = dir.path().join("hls/master.m3u8");
    assert_eq!(
        media::decode_errors(&master),
        "",
        "the master playlist plays end to end"
    );
    for (name, width, height) in sizes {
        let playlist = dir.path().join(format!("hls/{name}/index.m3u8"));
        assert_eq!(
            media::decode_errors(&playlist),
            "",
            "{name} decodes cleanly"
        );
        let duration = media::decoded_duration(&playlist);
        assert!(
            (duration - source.secs).abs() < 0.2,
            "{name} lasts {duration} s, the source {} s",
            source.secs
        );
        media::assert_no_gap_or_duplicate(&playlist, source.secs, f64::from(source.fps));
        let first_segment = dir.path().join(format!("hls/{name}/seg_000.ts"));
        assert_eq!(
            picture_size(&first_segment),
            (*width, *height),
            "{name} size"
        );
        let report = media::probe(&first_segment);
        let video = media::video_stream(&report);
        assert_eq!(video["codec_name"], "h264");
        assert_eq!(video["pix_fmt"], "yuv420p");
        assert_eq!(video["profile"], "High");
    }
    dir
}
