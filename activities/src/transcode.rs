//! The transcode of one variant.
//!
//! ffmpeg reads the presigned source and writes HLS segments into a private temp folder. Each
//! segment is uploaded and deleted as soon as ffmpeg finishes it, so disk use stays at a few
//! segments whatever the length of the video, and what is uploaded is heartbeated as a
//! [`TranscodeCheckpoint`]. The variant's `index.m3u8` is written last, once every segment is up:
//! a variant playlist in the bucket always means a complete variant.
//!
//! A retried attempt (after a crash, an S3 outage, a lost worker) reads the checkpoint its
//! predecessors heartbeated, keeps their segments and restarts ffmpeg at the next segment
//! boundary, with numbering and timestamps continued, instead of from zero.

use crate::{
    cache_policy::ObjectKind,
    codec,
    config::ActivityConfig,
    failure::{BadInput, BadInputKind},
    ffmpeg::{
        progress::ProgressListener,
        recipes::{SEGMENT_SECS, TIMESTAMP_BASE_SECS, VariantRecipe, WORK_PLAYLIST},
    },
    hls::{self, SegmentRecord},
    storage::Storage,
    workdir,
};
use anyhow::{Context, bail};
use pulse_workflows::{AssetKeys, contract::TranscodeJob, media::Rendition};
use serde::{Deserialize, Serialize};
use std::{path::Path, time::Duration};
use tokio::sync::watch;

/// How long presigned source URLs stay valid: longer than any transcode attempt.
pub const PRESIGN_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// How often the work folder is checked for finished segments.
const SCAN_INTERVAL: Duration = Duration::from_millis(250);
/// How much shorter than its source a variant may be before the source counts as cut off.
const TRUNCATION_TOLERANCE_SECS: f64 = 1.0;

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

/// Where a transcode picks up after earlier attempts: the segments they uploaded that can be
/// kept, and whether nothing is left to encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Segments kept: numbers `0..kept` are already in the bucket.
    pub kept: u32,
    /// Whether the kept segments already cover the whole variant.
    pub complete: bool,
}

/// Decides what of `uploaded` a new attempt keeps, for a variant of `duration_secs` at
/// `frame_rate`. When the uploaded segments already cover the whole variant, nothing is left to
/// encode. Otherwise ffmpeg restarts on a segment boundary, seeking to `kept` x
/// [`SEGMENT_SECS`], so only an unbroken run `seg_000`, `seg_001`... of full segments is kept (a
/// full segment is [`SEGMENT_SECS`] long give or take a frame, since cuts fall on frames).
pub fn resume_from(uploaded: &[SegmentRecord], frame_rate: f64, duration_secs: f64) -> Resume {
    let frame_secs = 1.0 / frame_rate.max(1.0);
    let unbroken = uploaded
        .iter()
        .enumerate()
        .take_while(|(position, segment)| segment.index as usize == *position)
        .count();
    let covered: f64 = uploaded[..unbroken].iter().map(|s| s.duration_secs).sum();
    if unbroken > 0 && covered >= duration_secs - frame_secs {
        return Resume {
            kept: unbroken as u32,
            complete: true,
        };
    }
    let full = |segment: &&SegmentRecord| {
        (segment.duration_secs - f64::from(SEGMENT_SECS)).abs() <= frame_secs + 1e-3
    };
    let kept = uploaded[..unbroken].iter().take_while(full).count();
    Resume {
        kept: kept as u32,
        complete: false,
    }
}

/// Transcodes `job`, publishing the checkpoint to `checkpoints` whenever it changes (at most
/// every [`SCAN_INTERVAL`]). `previous` is what earlier attempts reached: their uploaded
/// segments are kept and ffmpeg restarts at the next segment boundary. Returns the finished
/// rendition, which says where this attempt resumed.
pub async fn transcode_variant(
    storage: &Storage,
    config: &ActivityConfig,
    job: &TranscodeJob,
    previous: &TranscodeCheckpoint,
    checkpoints: watch::Sender<TranscodeCheckpoint>,
) -> anyhow::Result<Rendition> {
    let variant = &job.variant;
    let resume = resume_from(
        &previous.segments,
        job.media.frame_rate,
        job.media.duration_secs,
    );
    let recipe = VariantRecipe {
        media: &job.media,
        variant,
        preset: &config.x264_preset,
        first_segment: resume.kept,
        realtime: config.realtime_variants.contains(&variant.name),
    };
    let mut checkpoint = TranscodeCheckpoint {
        segments: previous.segments[..resume.kept as usize].to_vec(),
        ..previous.clone()
    };
    if resume.kept > 0 {
        tracing::info!(asset_id = %job.asset_id, variant = %variant.name, segment = resume.kept, "resuming");
    }
    if !resume.complete {
        encode(storage, config, job, &recipe, &mut checkpoint, &checkpoints).await?;
    }
    if checkpoint.segments.is_empty() {
        bail!(
            "ffmpeg finished without writing any segment of {}",
            variant.name
        );
    }
    check_complete(&checkpoint.segments, job.media.duration_secs)?;
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

/// Runs ffmpeg from `recipe.first_segment` on, uploading each segment as it is finished.
async fn encode(
    storage: &Storage,
    config: &ActivityConfig,
    job: &TranscodeJob,
    recipe: &VariantRecipe<'_>,
    checkpoint: &mut TranscodeCheckpoint,
    checkpoints: &watch::Sender<TranscodeCheckpoint>,
) -> anyhow::Result<()> {
    let work = workdir::job_dir(&config.work_dir, job.asset_id.as_str(), &job.variant.name)?;
    let source_url = storage.presign_get(&job.source_key, PRESIGN_TTL).await?;
    let listener = ProgressListener::bind()
        .await
        .context("opening the progress socket")?;
    let command = recipe.command(&source_url, work.path(), listener.addr()?);
    let mut progress = listener.latest();
    let mut ffmpeg = command.spawn()?;

    let uploader = SegmentUploader {
        storage,
        keys: job.asset_id.keys(),
        variant: &job.variant.name,
        work_dir: work.path(),
    };
    // ffmpeg reports output times, which start at the base: what is left is the position in
    // the whole variant, whatever segment this run started from.
    let base = Duration::from_secs_f64(TIMESTAMP_BASE_SECS);
    let duration = Duration::from_secs_f64(job.media.duration_secs);
    let mut scan = tokio::time::interval(SCAN_INTERVAL);
    loop {
        tokio::select! {
            exit = ffmpeg.exited() => {
                exit?;
                break;
            }
            _ = scan.tick() => {
                let uploaded = uploader.upload_finished(checkpoint).await?;
                let fraction = progress.borrow_and_update().without_offset(base).fraction_of(duration);
                let reached = fraction.map_or(0.0, |f| job.progress.at(f));
                if uploaded || reached > checkpoint.progress {
                    checkpoint.progress = checkpoint.progress.max(reached);
                    checkpoints.send_replace(checkpoint.clone());
                }
            }
        }
    }
    ffmpeg.finish().await?;
    uploader.upload_finished(checkpoint).await?;
    Ok(())
}

/// Refuses a variant much shorter than the source says it is: the file is cut off, and an
/// incomplete variant must never be published as complete.
fn check_complete(segments: &[SegmentRecord], expected_secs: f64) -> Result<(), BadInput> {
    let encoded: f64 = segments.iter().map(|s| s.duration_secs).sum();
    let missing = expected_secs - encoded;
    if missing > TRUNCATION_TOLERANCE_SECS.max(expected_secs * 0.05) {
        return Err(BadInput::new(
            BadInputKind::Undecodable,
            format!(
                "the video stops after {encoded:.1} s although the file says it lasts {expected_secs:.1} s; \
                 it is probably cut off, upload it again"
            ),
        ));
    }
    Ok(())
}

/// Moves segments ffmpeg has finished from the work folder to the bucket.
struct SegmentUploader<'a> {
    storage: &'a Storage,
    keys: AssetKeys,
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
                    &self.keys.segment(self.variant, index),
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

    fn segments(durations: &[f64]) -> Vec<SegmentRecord> {
        durations
            .iter()
            .enumerate()
            .map(|(index, &duration_secs)| SegmentRecord {
                index: index as u32,
                duration_secs,
                bytes: 1,
            })
            .collect()
    }

    #[test]
    fn a_retry_keeps_the_unbroken_run_of_full_segments() {
        let resume = |durations: &[f64]| resume_from(&segments(durations), 30.0, 10.0);
        assert_eq!(
            resume(&[]),
            Resume {
                kept: 0,
                complete: false
            }
        );
        assert_eq!(
            resume(&[4.0]),
            Resume {
                kept: 1,
                complete: false
            }
        );
        assert_eq!(
            resume(&[4.0, 3.9667]),
            Resume {
                kept: 2,
                complete: false
            },
            "a frame short is full"
        );
        assert_eq!(
            resume(&[4.0, 4.0, 2.0]),
            Resume {
                kept: 3,
                complete: true
            }
        );
        assert_eq!(
            resume(&[4.0, 4.5]),
            Resume {
                kept: 1,
                complete: false
            },
            "an odd segment is redone"
        );
        let mut gap = segments(&[4.0, 4.0, 2.0]);
        gap.remove(1);
        assert_eq!(
            resume_from(&gap, 30.0, 10.0),
            Resume {
                kept: 1,
                complete: false
            }
        );
    }

    #[test]
    fn a_slow_frame_rate_widens_what_counts_as_full() {
        assert_eq!(
            resume_from(&segments(&[4.0, 3.9]), 10.0, 30.0),
            Resume {
                kept: 2,
                complete: false
            }
        );
        assert_eq!(
            resume_from(&segments(&[4.0, 3.9]), 30.0, 30.0),
            Resume {
                kept: 1,
                complete: false
            }
        );
    }

    #[test]
    fn a_cut_off_source_is_refused_and_a_whole_one_is_not() {
        assert!(check_complete(&segments(&[4.0, 4.0, 2.0]), 10.0).is_ok());
        assert!(
            check_complete(&segments(&[4.0, 4.0, 1.5]), 10.0).is_ok(),
            "half a second short is fine"
        );
        let error = check_complete(&segments(&[4.0, 1.0]), 10.0).unwrap_err();
        assert_eq!(error.kind, BadInputKind::Undecodable);
        assert!(
            error
                .message
                .starts_with("the video stops after 5.0 s although the file says it lasts 10.0 s"),
            "{error}"
        );
        assert!(
            check_complete(&segments(&[4.0; 95]), 400.0).is_ok(),
            "5 % of a long video is tolerated"
        );
    }

    #[test]
    fn segment_numbers() {
        assert_eq!(segment_index("seg_000.ts"), Some(0));
        assert_eq!(segment_index("/tmp/x/seg_1234.ts"), Some(1234));
        assert_eq!(segment_index("seg_a.ts"), None);
        assert_eq!(segment_index("index.m3u8"), None);
    }
}
