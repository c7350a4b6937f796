//! A transcode: some variants over some segments of the video, from one decode of the source.
//!
//! ffmpeg reads the presigned source and writes each variant's HLS segments into its own folder
//! of a private temp folder. Each segment is uploaded and deleted as soon as ffmpeg finishes it,
//! so disk use stays at a few segments whatever the length of the video, and what is uploaded
//! is heartbeated as a [`TranscodeCheckpoint`]. Variant playlists are written when every piece
//! of a variant is done (by `publish_master`), so a variant playlist in the bucket means a
//! complete variant, except in fast start, where the first variant's playlist grows segment by
//! segment.
//!
//! A retried attempt (after a crash, an S3 outage, a lost worker) reads the checkpoint its
//! predecessors heartbeated, keeps their segments and restarts ffmpeg at the next segment
//! boundary, with numbering and timestamps continued, instead of from the start.

use crate::{
    cache_policy::ObjectKind,
    config::ActivityConfig,
    cpu_share::{CpuShare, Pace},
    failure::{BadInput, BadInputKind},
    ffmpeg::{
        SourceInput,
        progress::ProgressListener,
        recipes::{Encoding, TIMESTAMP_BASE_SECS, TranscodeRecipe, WORK_PLAYLIST},
    },
    hls::{self, PlaylistKind},
    storage::Storage,
    workdir,
};
use anyhow::{Context, bail};
use pulse_workflows::{
    AssetKeys,
    contract::{PublishedMaster, TranscodeJob},
    media::{SegmentRange, SegmentRecord, TranscodeOutput, VariantSegments, VariantSpec},
    progress::TranscodeCheckpoint,
};
use std::{path::Path, time::Duration};
use tokio::sync::{oneshot, watch};

/// How long presigned source URLs stay valid: longer than any transcode attempt.
pub const PRESIGN_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// How often a fast-start transcode checks its work folder for finished segments: often, since
/// a player waits for the first one.
const LIVE_SCAN_INTERVAL: Duration = Duration::from_millis(100);
/// How often other transcodes check their work folders: a segment takes seconds to make, and
/// every scan wakes the worker to read each variant's playlist.
const SCAN_INTERVAL: Duration = Duration::from_millis(500);
/// How much shorter than its source a variant may be before the source counts as cut off.
const TRUNCATION_TOLERANCE_SECS: f64 = 1.0;

/// Where a transcode picks up after earlier attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Segments kept: numbers `first..first + kept` of every variant are already in the bucket.
    pub kept: u32,
    /// Whether the kept segments already cover the whole range.
    pub complete: bool,
}

/// Decides what of `uploaded` (one variant's segments) a new attempt at `range` of a video of
/// `duration_secs` at `frame_rate` keeps. When the uploaded segments cover the range, nothing
/// is left to do. Otherwise ffmpeg restarts on a segment boundary, so only an unbroken run of
/// full segments from the range's first is kept (a full segment is the range's segment length
/// give or take a frame, since cuts fall on frames).
pub fn resume_from(
    uploaded: &[SegmentRecord],
    range: &SegmentRange,
    duration_secs: f64,
    frame_rate: f64,
) -> Resume {
    let (first, range_secs) = (range.first, range.duration_secs(duration_secs));
    let frame_secs = 1.0 / frame_rate.max(1.0);
    let unbroken = uploaded
        .iter()
        .enumerate()
        .take_while(|(position, segment)| segment.index == first + *position as u32)
        .count();
    let covered: f64 = uploaded[..unbroken].iter().map(|s| s.duration_secs).sum();
    if unbroken > 0 && covered >= range_secs - frame_secs {
        return Resume {
            kept: unbroken as u32,
            complete: true,
        };
    }
    let full = |segment: &&SegmentRecord| {
        (segment.duration_secs - f64::from(range.segment_secs)).abs() <= frame_secs + 1e-3
    };
    let kept = uploaded[..unbroken].iter().take_while(full).count();
    Resume {
        kept: kept as u32,
        complete: false,
    }
}

/// Runs `job`, publishing the checkpoint to `checkpoints` whenever it changes (at most every
/// `SCAN_INTERVAL`, or `LIVE_SCAN_INTERVAL` in fast start). `previous` is what earlier
/// attempts reached: their segments are kept and ffmpeg restarts at the next segment boundary
/// every variant has reached. In fast start, `first_published` receives the master once the
/// first segment is playable.
pub async fn transcode(
    storage: &Storage,
    config: &ActivityConfig,
    cpu_share: &CpuShare,
    job: &TranscodeJob,
    previous: &TranscodeCheckpoint,
    checkpoints: watch::Sender<TranscodeCheckpoint>,
    first_published: Option<oneshot::Sender<PublishedMaster>>,
) -> anyhow::Result<TranscodeOutput> {
    let range_secs = job.range.duration_secs(job.media.duration_secs);
    let uploaded = |variant: &VariantSpec| {
        previous
            .segments
            .get(&variant.name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let resumes: Vec<Resume> = job
        .variants
        .iter()
        .map(|variant| {
            resume_from(
                uploaded(variant),
                &job.range,
                job.media.duration_secs,
                job.media.frame_rate,
            )
        })
        .collect();
    let complete = resumes.iter().all(|resume| resume.complete);
    let kept = if complete {
        0
    } else {
        resumes.iter().map(|resume| resume.kept).min().unwrap_or(0)
    };
    let mut checkpoint = TranscodeCheckpoint {
        segments: job
            .variants
            .iter()
            .map(|variant| {
                // A finished range keeps everything; otherwise every variant restarts at the
                // same segment.
                let keep = if complete { usize::MAX } else { kept as usize };
                let segments = uploaded(variant).iter().take(keep).cloned().collect();
                (variant.name.clone(), segments)
            })
            .collect(),
        span: job.progress,
        progress: previous.progress.max(job.progress.start),
    };
    // Every heartbeated segment was published in fast start, the first one with the master.
    let master_published = job
        .variants
        .iter()
        .any(|variant| !uploaded(variant).is_empty());
    let resumed_from_segment = job.range.first + kept;
    if kept > 0 {
        tracing::info!(asset_id = %job.asset_id, segment = resumed_from_segment, "resuming");
    }
    if !complete {
        let run = Run {
            storage,
            config,
            cpu_share,
            pace: Pace::of(job, config.held_to_real_time(&job.variants)),
            job,
            keys: job.asset_id.keys(),
            range: SegmentRange {
                first: resumed_from_segment,
                ..job.range
            },
            master_published,
        };
        run.encode(&mut checkpoint, &checkpoints, first_published)
            .await?;
    }
    for variant in &job.variants {
        let segments = &checkpoint.segments[&variant.name];
        if segments.is_empty() {
            bail!(
                "ffmpeg finished without writing any segment of {}",
                variant.name
            );
        }
        check_complete(segments, range_secs)?;
    }
    checkpoint.progress = job.progress.end;
    checkpoints.send_replace(checkpoint.clone());
    Ok(TranscodeOutput {
        variants: job
            .variants
            .iter()
            .map(|variant| VariantSegments {
                variant: variant.name.clone(),
                segments: checkpoint.segments[&variant.name].clone(),
            })
            .collect(),
        resumed_from_segment,
    })
}

/// One run of ffmpeg over `range`.
struct Run<'a> {
    storage: &'a Storage,
    config: &'a ActivityConfig,
    cpu_share: &'a CpuShare,
    /// How this run's ffmpeg shares the worker's cores.
    pace: Pace,
    job: &'a TranscodeJob,
    keys: AssetKeys,
    range: SegmentRange,
    /// Fast start: an earlier attempt published the master, which may list more variants by
    /// now; this one must not overwrite it.
    master_published: bool,
}

impl Run<'_> {
    /// Runs ffmpeg, uploading each segment as it is finished; tells its turn on the cores how
    /// far it got.
    async fn encode(
        &self,
        checkpoint: &mut TranscodeCheckpoint,
        checkpoints: &watch::Sender<TranscodeCheckpoint>,
        mut first_published: Option<oneshot::Sender<PublishedMaster>>,
    ) -> anyhow::Result<()> {
        let job = self.job;
        let names: Vec<&str> = job.variants.iter().map(|v| v.name.as_str()).collect();
        let work = workdir::job_dir(
            &self.config.work_dir,
            job.asset_id.as_str(),
            &names.join("+"),
        )?;
        for variant in &job.variants {
            tokio::fs::create_dir_all(work.path().join(&variant.name)).await?;
        }
        let recipe = TranscodeRecipe {
            encoding: Encoding {
                media: &job.media,
                preset: &self.config.x264_preset,
                live: job.live,
            },
            variants: &job.variants,
            range: self.range,
            realtime: self.config.held_to_real_time(&job.variants),
        };
        let source_url = self
            .storage
            .presign_get(&job.source_key, PRESIGN_TTL)
            .await?;
        let listener = ProgressListener::bind()
            .await
            .context("opening the progress socket")?;
        let command = recipe
            .command(&SourceInput::new(source_url), work.path(), listener.addr()?)
            .background(job.background);
        let mut progress = listener.latest();
        let mut turn = self
            .cpu_share
            .start(self.pace, recipe.encoding.lookahead_frames());
        let mut ffmpeg = command.spawn()?;
        let placed = turn.place(ffmpeg.id());
        tokio::pin!(placed);

        // ffmpeg reports output times, which start at the base plus where the job's range
        // starts: what is left is how far into the range it got.
        let range_start = Duration::from_secs_f64(TIMESTAMP_BASE_SECS + job.range.start_secs());
        let range_length =
            Duration::from_secs_f64(job.range.duration_secs(job.media.duration_secs));
        let mut scan = tokio::time::interval(if job.live {
            LIVE_SCAN_INTERVAL
        } else {
            SCAN_INTERVAL
        });
        loop {
            tokio::select! {
                never = &mut placed => match never {},
                exit = ffmpeg.exited() => {
                    exit?;
                    break;
                }
                Ok(()) = progress.changed() => turn.progressed(
                    &progress.borrow_and_update().without_offset(range_start),
                    range_length,
                ),
                _ = scan.tick() => {
                    let uploaded = self.upload_finished(work.path(), checkpoint).await?;
                    if uploaded && job.live {
                        self.publish_live(checkpoint, &mut first_published).await?;
                    }
                    let fraction = progress.borrow().without_offset(range_start).fraction_of(range_length);
                    let reached = fraction.map_or(0.0, |f| job.progress.at(f));
                    if uploaded || reached > checkpoint.progress {
                        checkpoint.progress = checkpoint.progress.max(reached);
                        checkpoints.send_replace(checkpoint.clone());
                    }
                }
            }
        }
        ffmpeg.finish().await?;
        if self.upload_finished(work.path(), checkpoint).await? && job.live {
            self.publish_live(checkpoint, &mut first_published).await?;
        }
        Ok(())
    }

    /// Uploads and deletes every segment the work playlists list that is not uploaded yet.
    /// Returns whether there was any.
    async fn upload_finished(
        &self,
        work_dir: &Path,
        checkpoint: &mut TranscodeCheckpoint,
    ) -> anyhow::Result<bool> {
        let mut uploaded = false;
        for variant in &self.job.variants {
            let folder = work_dir.join(&variant.name);
            // ffmpeg replaces the playlist atomically after each segment (`temp_file`), so a
            // listed segment is complete on disk. No playlist yet means no segment yet.
            let Ok(text) = tokio::fs::read(folder.join(WORK_PLAYLIST)).await else {
                continue;
            };
            let Some(listed) = hls::listed_segments(&text) else {
                continue;
            };
            let made = checkpoint.segments.entry(variant.name.clone()).or_default();
            let next = made.last().map_or(self.range.first, |last| last.index + 1);
            for (uri, duration_secs) in listed {
                let index = segment_index(&uri)
                    .with_context(|| format!("ffmpeg listed an unexpected segment {uri:?}"))?;
                if index < next {
                    continue;
                }
                let path = folder.join(format!("seg_{index:03}.ts"));
                let key = self.keys.segment(&variant.name, index);
                let bytes = self
                    .storage
                    .put_file(&key, &path, ObjectKind::Segment)
                    .await?;
                tokio::fs::remove_file(&path).await?;
                made.push(SegmentRecord {
                    index,
                    duration_secs,
                    bytes,
                });
                uploaded = true;
            }
        }
        Ok(uploaded)
    }

    /// Fast start: rewrites the growing playlist of the (single) variant, and after the first
    /// segment the master (unless an earlier attempt did), then hands the master's key to
    /// whoever tells the workflow.
    async fn publish_live(
        &self,
        checkpoint: &TranscodeCheckpoint,
        first_published: &mut Option<oneshot::Sender<PublishedMaster>>,
    ) -> anyhow::Result<()> {
        let [variant] = self.job.variants.as_slice() else {
            bail!("fast start publishes a single variant");
        };
        let segments = &checkpoint.segments[&variant.name];
        let playlist = hls::variant_playlist(segments, PlaylistKind::Growing);
        self.storage
            .put_text(
                &self.keys.variant_playlist(&variant.name),
                playlist,
                ObjectKind::GrowingPlaylist,
            )
            .await?;
        if let Some(first) = first_published.take() {
            let rendition = hls::rendition(variant, &self.job.media, segments);
            let master = PublishedMaster {
                key: self.keys.master(),
                renditions: vec![rendition],
            };
            if !self.master_published {
                self.storage
                    .put_text(
                        &master.key,
                        hls::master_playlist(&master.renditions),
                        ObjectKind::GrowingMaster,
                    )
                    .await?;
            }
            let _ = first.send(master);
        }
        Ok(())
    }
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

/// The number of a segment file `seg_NNN.ts` (any folder in front is ignored).
fn segment_index(uri: &str) -> Option<u32> {
    let name = uri.rsplit('/').next()?;
    name.strip_prefix("seg_")?.strip_suffix(".ts")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_workflows::media::{FAST_START_SEGMENT_SECS, SEGMENT_SECS};

    fn segments(first: u32, durations: &[f64]) -> Vec<SegmentRecord> {
        durations
            .iter()
            .enumerate()
            .map(|(position, &duration_secs)| SegmentRecord {
                index: first + position as u32,
                duration_secs,
                bytes: 1,
            })
            .collect()
    }

    #[test]
    fn a_retry_keeps_the_unbroken_run_of_full_segments() {
        let whole = SegmentRange::whole(SEGMENT_SECS);
        let resume = |durations: &[f64]| resume_from(&segments(0, durations), &whole, 10.0, 30.0);
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
        let mut gap = segments(0, &[4.0, 4.0, 2.0]);
        gap.remove(1);
        assert_eq!(
            resume_from(&gap, &whole, 10.0, 30.0),
            Resume {
                kept: 1,
                complete: false
            }
        );
    }

    #[test]
    fn a_piece_resumes_from_its_own_first_segment() {
        let piece = SegmentRange {
            first: 5,
            end: Some(10),
            segment_secs: SEGMENT_SECS,
        };
        assert_eq!(
            resume_from(&segments(5, &[4.0, 4.0]), &piece, 100.0, 30.0),
            Resume {
                kept: 2,
                complete: false
            }
        );
        assert_eq!(
            resume_from(&segments(5, &[4.0; 5]), &piece, 100.0, 30.0),
            Resume {
                kept: 5,
                complete: true
            }
        );
        assert_eq!(
            resume_from(&segments(0, &[4.0]), &piece, 100.0, 30.0),
            Resume {
                kept: 0,
                complete: false
            }
        );
    }

    #[test]
    fn a_slow_frame_rate_widens_what_counts_as_full() {
        let whole = SegmentRange::whole(SEGMENT_SECS);
        assert_eq!(
            resume_from(&segments(0, &[4.0, 3.9]), &whole, 30.0, 10.0),
            Resume {
                kept: 2,
                complete: false
            }
        );
        assert_eq!(
            resume_from(&segments(0, &[4.0, 3.9]), &whole, 30.0, 30.0),
            Resume {
                kept: 1,
                complete: false
            }
        );
    }

    #[test]
    fn full_segments_are_as_long_as_the_range_says() {
        let short = SegmentRange::whole(FAST_START_SEGMENT_SECS);
        assert_eq!(
            resume_from(&segments(0, &[2.0, 2.0, 4.0]), &short, 30.0, 30.0),
            Resume {
                kept: 2,
                complete: false
            },
            "a 4 s segment in a range of 2 s segments is redone"
        );
    }

    #[test]
    fn a_cut_off_source_is_refused_and_a_whole_one_is_not() {
        assert!(check_complete(&segments(0, &[4.0, 4.0, 2.0]), 10.0).is_ok());
        assert!(
            check_complete(&segments(0, &[4.0, 4.0, 1.5]), 10.0).is_ok(),
            "half a second short is fine"
        );
        let error = check_complete(&segments(0, &[4.0, 1.0]), 10.0).unwrap_err();
        assert_eq!(error.kind, BadInputKind::Undecodable);
        assert!(
            error
                .message
                .starts_with("the video stops after 5.0 s although the file says it lasts 10.0 s"),
            "{error}"
        );
        assert!(
            check_complete(&segments(0, &[4.0; 95]), 400.0).is_ok(),
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
