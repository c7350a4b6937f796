//! The transcode of one variant.
//!
//! ffmpeg reads the presigned source and writes HLS segments into a private temp folder. Each
//! segment is uploaded and deleted as soon as ffmpeg finishes it, so disk use stays at a few
//! segments whatever the length of the video, and what is uploaded is heartbeated as a
//! [`TranscodeCheckpoint`]. The variant's `index.m3u8` is written last, once every segment is up:
//! a variant playlist in the bucket always means a complete variant.

use crate::{
    cache_policy::ObjectKind,
    codec,
    config::ActivityConfig,
    ffmpeg::{
        progress::ProgressListener,
        recipes::{VariantRecipe, WORK_PLAYLIST},
    },
    hls::{self, SegmentRecord},
    storage::Storage,
};
use anyhow::{Context, bail};
use pulse_workflows::{contract::TranscodeJob, media::Rendition};
use serde::{Deserialize, Serialize};
use std::{path::Path, time::Duration};
use tokio::sync::watch;

/// How long presigned source URLs stay valid: longer than any transcode attempt.
pub const PRESIGN_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// How often the work folder is checked for finished segments.
const SCAN_INTERVAL: Duration = Duration::from_millis(250);

/// What the attempts of a transcode have achieved so far; heartbeated, so it outlives them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TranscodeCheckpoint {
    /// Segments uploaded so far, in order.
    pub segments: Vec<SegmentRecord>,
    /// Overall progress reached so far, 0 to 100; never lowered, also across attempts.
    pub progress: f64,
    /// The last progress event delivered, so a retried attempt never sends a lower one.
    pub last_progress_event: f64,
}

/// Transcodes `job`, publishing the checkpoint to `checkpoints` whenever it changes (at most
/// every [`SCAN_INTERVAL`]); `previous` is what earlier attempts reached. Returns the finished
/// rendition.
pub async fn transcode_variant(
    storage: &Storage,
    config: &ActivityConfig,
    job: &TranscodeJob,
    previous: &TranscodeCheckpoint,
    checkpoints: watch::Sender<TranscodeCheckpoint>,
) -> anyhow::Result<Rendition> {
    let variant = &job.variant;
    let recipe = VariantRecipe {
        media: &job.media,
        variant,
        preset: &config.x264_preset,
        first_segment: 0,
    };
    tokio::fs::create_dir_all(&config.work_dir)
        .await
        .with_context(|| format!("creating the work folder {}", config.work_dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix(&format!("{}-{}-", job.asset_id, variant.name))
        .tempdir_in(&config.work_dir)
        .context("creating a temp folder for the variant")?;

    let source_url = storage.presign_get(&job.source_key, PRESIGN_TTL).await?;
    let listener = ProgressListener::bind()
        .await
        .context("opening the progress socket")?;
    let command = recipe.command(&source_url, work.path(), listener.addr()?);
    let mut progress = listener.latest();
    let mut ffmpeg = command.spawn()?;

    let uploader = SegmentUploader {
        storage,
        keys_prefix: job.asset_id.keys(),
        variant: &variant.name,
        work_dir: work.path(),
    };
    let duration = Duration::from_secs_f64(job.media.duration_secs);
    let mut checkpoint = TranscodeCheckpoint {
        segments: Vec::new(),
        ..previous.clone()
    };
    let mut scan = tokio::time::interval(SCAN_INTERVAL);
    loop {
        tokio::select! {
            exit = ffmpeg.exited() => {
                exit?;
                break;
            }
            _ = scan.tick() => {
                let uploaded = uploader.upload_finished(&mut checkpoint).await?;
                let fraction = progress.borrow_and_update().fraction_of(duration);
                let reached = fraction.map_or(0.0, |f| job.progress.at(f));
                if uploaded || reached > checkpoint.progress {
                    checkpoint.progress = checkpoint.progress.max(reached);
                    checkpoints.send_replace(checkpoint.clone());
                }
            }
        }
    }
    ffmpeg.finish().await?;
    uploader.upload_finished(&mut checkpoint).await?;
    if checkpoint.segments.is_empty() {
        bail!(
            "ffmpeg finished without writing any segment of {}",
            variant.name
        );
    }
    checkpoint.progress = job.progress.end;
    checkpoints.send_replace(checkpoint.clone());

    storage
        .put_text(
            &job.asset_id.keys().variant_playlist(&variant.name),
            hls::variant_playlist(&checkpoint.segments),
            ObjectKind::VariantPlaylist,
        )
        .await?;
    let (bandwidth, average_bandwidth) = hls::bit_rates(&checkpoint.segments);
    Ok(Rendition {
        name: variant.name.clone(),
        width: variant.width,
        height: variant.height,
        frame_rate: job.media.frame_rate,
        bandwidth,
        average_bandwidth,
        codecs: codec::codecs(recipe.level(), job.media.audio_stream.is_some()),
        segments: checkpoint.segments.len() as u32,
        duration_secs: checkpoint.segments.iter().map(|s| s.duration_secs).sum(),
        resumed_from_segment: recipe.first_segment,
    })
}

/// Moves segments ffmpeg has finished from the work folder to the bucket.
struct SegmentUploader<'a> {
    storage: &'a Storage,
    keys_prefix: pulse_workflows::AssetKeys,
    variant: &'a str,
    work_dir: &'a Path,
}

impl SegmentUploader<'_> {
    /// Uploads and deletes every segment the work playlist lists that is not uploaded yet.
    /// Returns whether there was any.
    async fn upload_finished(&self, checkpoint: &mut TranscodeCheckpoint) -> anyhow::Result<bool> {
        // ffmpeg replaces the playlist atomically after each segment (`temp_file`), so a listed
        // segment is complete on disk. No playlist yet means no segment yet.
        let Ok(text) = tokio::fs::read(self.work_dir.join(WORK_PLAYLIST)).await else {
            return Ok(false);
        };
        let Some(listed) = hls::listed_segments(&text) else {
            return Ok(false);
        };
        let next = checkpoint.segments.last().map_or(0, |last| last.index + 1);
        let mut uploaded = false;
        for (uri, duration_secs) in listed {
            let index = segment_index(&uri)
                .with_context(|| format!("ffmpeg listed an unexpected segment {uri:?}"))?;
            if index < next {
                continue;
            }
            let path = self.work_dir.join(format!("seg_{index:03}.ts"));
            let bytes = self
                .storage
                .put_file(
                    &self.keys_prefix.segment(self.variant, index),
                    &path,
                    ObjectKind::Segment,
                )
                .await?;
            tokio::fs::remove_file(&path).await?;
            checkpoint.segments.push(SegmentRecord {
                index,
                duration_secs,
                bytes,
            });
            uploaded = true;
        }
        Ok(uploaded)
    }
}

/// The number of a segment file `seg_NNN.ts` (any folder in front is ignored).
fn segment_index(uri: &str) -> Option<u32> {
    let name = uri.rsplit('/').next()?;
    name.strip_prefix("seg_")?.strip_suffix(".ts")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_numbers() {
        assert_eq!(segment_index("seg_000.ts"), Some(0));
        assert_eq!(segment_index("/tmp/x/seg_1234.ts"), Some(1234));
        assert_eq!(segment_index("seg_a.ts"), None);
        assert_eq!(segment_index("index.m3u8"), None);
    }
}
