//! Real faults on real servers (SPEC section 6, issue "crash-proof processing"): a worker killed
//! with SIGKILL or stopped with SIGTERM mid-variant (also in fast start), the S3 server stopped
//! mid-job, the Temporal server killed and restarted, a cancelled workflow, several videos at
//! once, and an operator's retry.
//!
//! Variants marked with `PULSE_FAULT_REALTIME_VARIANTS` encode no faster than real time, so the
//! fault can strike while they are half done.

use pulse_tests::{
    bucket,
    media::{self, ClipSpec},
    playback::{LADDER_360P, check_playback},
    servers::{PrivateGarage, PrivateTemporal},
    stack::{Endpoints, TestEnv, ffmpeg_processes_of},
    worker::{WorkerProcess, binary},
};
use pulse_workflows::{AssetStatus, VariantStatus};
use std::{
    process::Command,
    time::{Duration, Instant},
};

/// Taken shared by every test here and alone by the fast-start one, whose other transcode runs
/// at idle priority while the growing variant is written: beside the other tests' encodes it
/// would starve.
static CORES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Transcodes making `variant` (alone or with others) the asset's history shows, with the
/// attempt each ended on.
async fn transcode_attempts(
    env: &TestEnv,
    asset: &pulse_workflows::AssetId,
    variant: &str,
) -> Vec<i32> {
    env.activity_runs(asset)
        .await
        .into_iter()
        .filter(|run| {
            run.summary
                .as_deref()
                .and_then(|summary| summary.strip_prefix("transcode "))
                .is_some_and(|variants| variants.split(", ").any(|name| name == variant))
        })
        .map(|run| run.attempt)
        .collect()
}

/// How many segments of `variant` are in the bucket now.
async fn segments_in_bucket(
    env: &TestEnv,
    asset: &pulse_workflows::AssetId,
    variant: &str,
) -> usize {
    bucket::objects(&env.storage, &asset.keys().variant_prefix(variant))
        .await
        .iter()
        .filter(|object| object.key.ends_with(".ts"))
        .count()
}

/// The playlists the asset's master lists now.
async fn master_variants(env: &TestEnv, asset: &pulse_workflows::AssetId) -> Vec<String> {
    let text = bucket::get(&env.storage, &asset.keys().master()).await;
    m3u8_rs::parse_master_playlist_res(&text)
        .expect("a master playlist")
        .variants
        .into_iter()
        .map(|variant| variant.uri)
        .collect()
}

fn job_folders(env: &TestEnv) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(env.work_dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect()
}

/// How a worker goes away in the middle of a variant.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    /// SIGKILL, as a crash or the OOM killer: Temporal notices the missing heartbeats.
    Kill,
    /// SIGTERM, as a supervisor stopping it: after its grace period it cancels the transcode,
    /// cleans up and reports the activity failed, so it is retried at once.
    Terminate,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_variant_is_replaced_and_the_variant_resumes() {
    let _shared = CORES.read().await;
    a_worker_stopped_mid_variant(Stop::Kill, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_terminated_mid_variant_exits_promptly_and_the_variant_resumes_elsewhere() {
    let _shared = CORES.read().await;
    a_worker_stopped_mid_variant(Stop::Terminate, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn in_fast_start_a_worker_killed_mid_growing_playlist_is_replaced_and_it_grows_on() {
    let _alone = CORES.write().await;
    a_worker_stopped_mid_variant(Stop::Kill, true).await;
}

/// Stops the worker as `stop` says while a variant is half done (360p, or in `fast_start` the
/// smallest, whose growing playlist already plays), starts another, and checks that nothing
/// finished is redone, the variant resumes where it was and the asset plays completely.
async fn a_worker_stopped_mid_variant(stop: Stop, fast_start: bool) {
    let name = format!("{stop:?}{}", if fast_start { "-fast" } else { "" }).to_lowercase();
    let (interrupted, finished) = if fast_start {
        ("240p", "360p")
    } else {
        ("360p", "240p")
    };
    let env = TestEnv::with(&name, Endpoints::shared(), |settings| {
        settings.heartbeat_timeout = Duration::from_secs(3);
        settings.retry.max_attempts = 5;
        settings.fast_start = fast_start;
    })
    .await;
    let mut first = WorkerProcess::spawn(
        &env,
        &[
            ("PULSE_FAULT_REALTIME_VARIANTS", interrupted),
            ("PULSE_SHUTDOWN_GRACE_SECS", "1"),
        ],
    );
    // In fast start the smallest variant is the one held to real time, and the other must be
    // done well before it, at idle priority: a 360p source leaves it one cheap variant (with
    // 360p and 480p to make, a slow machine finished them with under 3 s of the clip left, too
    // little to watch the resumed attempt grow), and 10 pictures a second make it cheaper still
    // (at 30, a slow CI machine once took the whole clip's length over the 360p variant).
    let (spec, sizes): (_, &[_]) = if fast_start {
        (ClipSpec::new(640, 360, 24.0).at_fps(10), &LADDER_360P)
    } else {
        (
            ClipSpec::new(854, 480, 16.0),
            &[("240p", 428, 240), ("360p", 640, 360), ("480p", 854, 480)],
        )
    };
    let source = media::clip(&spec);
    let asset = env.asset(&name);
    let key = env.starter.upload(&asset, &source).await.unwrap();
    env.starter.start(&asset, &key).await.unwrap();

    // The other transcode, not held to real time, finishes while the interrupted variant is
    // still being written (in fast start it runs at idle priority: the clip is longer).
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let state = env.starter.status(&asset).await.unwrap();
        let done = |name: &str| state.variants_in(VariantStatus::Done).any(|n| n == name);
        if done(finished) {
            assert!(
                !done(interrupted),
                "{interrupted} ended too soon: {state:?}"
            );
            break state;
        }
        assert!(
            Instant::now() < deadline,
            "{finished} never done: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let before = env.wait_for_segments(&asset, interrupted, 2).await;
    assert_eq!(state.status, AssetStatus::Playable, "{state:?}");
    match stop {
        Stop::Kill => {
            first.kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Stop::Terminate => {
            let took = first.terminate(Duration::from_secs(30));
            assert!(
                took < Duration::from_secs(10),
                "a terminated worker exits soon after its 1 s grace period, not when its \
                 transcode is over: it took {took:?}"
            );
        }
    }
    assert!(
        ffmpeg_processes_of(&asset).is_empty(),
        "ffmpeg dies with its worker"
    );
    assert_eq!(
        job_folders(&env).is_empty(),
        stop == Stop::Terminate,
        "only a worker that was asked to stop can clean up"
    );

    // What the stopped worker had uploaded of every variant of its transcode: it may have gone
    // on for a segment or two after `before` was read (a heartbeat lags, a stopping worker has
    // its grace period), but never further.
    let mut reached = usize::MAX;
    for variant in before.segments.keys() {
        reached = reached.min(segments_in_bucket(&env, &asset, variant).await);
    }

    // Still in real time, so the resumed attempt can be watched as it grows: in the bucket,
    // where every segment shows at once, not through heartbeats, which are throttled.
    let _second = WorkerProcess::spawn(&env, &[("PULSE_FAULT_REALTIME_VARIANTS", interrupted)]);
    let mut live = vec![before.progress];
    let mut masters_while_growing = Vec::new();
    let state = loop {
        let state = env.starter.status(&asset).await.unwrap();
        if let Some(checkpoint) = env.running_checkpoint(&asset, interrupted).await {
            live.push(checkpoint.progress);
        }
        if state.status.is_finished() {
            break state;
        }
        if segments_in_bucket(&env, &asset, interrupted).await > reached {
            masters_while_growing.push(master_variants(&env, &asset).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    assert_eq!(state.status, AssetStatus::Done, "{state:?}");
    assert!(
        live.windows(2).all(|w| w[0] <= w[1]),
        "heartbeated progress never goes back: {live:?}"
    );
    if fast_start {
        assert!(
            !masters_while_growing.is_empty(),
            "the resumed attempt grew the playlist on"
        );
    }
    for listed in &masters_while_growing {
        assert!(
            listed.iter().any(|uri| uri.starts_with(finished)),
            "the master never drops a finished variant while the resumed one grows: {listed:?}"
        );
    }
    assert_eq!(
        transcode_attempts(&env, &asset, finished).await,
        [1],
        "a finished variant is never redone"
    );
    let attempts = transcode_attempts(&env, &asset, interrupted).await;
    assert!(
        attempts.len() == 1 && attempts[0] > 1,
        "{interrupted} was retried: {attempts:?}"
    );
    let outputs = env.transcode_outputs(&asset).await;
    let resumed_from = |variant: &str| {
        outputs
            .iter()
            .find(|output| output.variants.iter().any(|v| v.variant == variant))
            .unwrap()
            .resumed_from_segment
    };
    // Every variant of the interrupted transcode restarts at the segment all had reached.
    let resumed = resumed_from(interrupted);
    assert!(
        resumed >= 2 && resumed as usize <= reached,
        "resumed from segment {resumed}, with {reached} segments of every variant uploaded"
    );
    assert_eq!(resumed_from(finished), 0);

    check_playback(&env.storage, &state, &spec, sizes).await;
    assert!(
        job_folders(&env).is_empty(),
        "no temp folder is left: the new worker swept a dead one's"
    );
}

/// Processes a 12 s clip whose 360p encodes in real time, strikes with `fault` once 360p has a
/// segment up, and checks that the asset still ends done and plays completely.
async fn survives(
    env: &TestEnv,
    name: &str,
    fault: impl AsyncFnOnce(),
) -> pulse_workflows::AssetId {
    let _worker = WorkerProcess::spawn(env, &[("PULSE_FAULT_REALTIME_VARIANTS", "360p")]);
    let spec = ClipSpec::new(640, 360, 12.0);
    let source = media::clip(&spec);
    let asset = env.asset(name);
    let key = env.starter.upload(&asset, &source).await.unwrap();
    env.starter.start(&asset, &key).await.unwrap();

    env.wait_for_segments(&asset, "360p", 1).await;
    fault().await;
    let state = env.wait(&asset).await;

    assert_eq!(state.status, AssetStatus::Done, "{state:?}");
    check_playback(&env.storage, &state, &spec, &LADDER_360P).await;
    asset
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_outage_mid_job_is_waited_out_and_nothing_is_missing() {
    let _shared = CORES.read().await;
    let dir = tempfile::tempdir().unwrap();
    let garage = PrivateGarage::start(dir.path());
    let endpoints = garage.endpoints(Endpoints::shared().temporal_address);
    let env = TestEnv::with("s3down", endpoints, |settings| {
        settings.retry.initial_interval = Duration::from_secs(1);
        settings.retry.max_attempts = 10;
    })
    .await;

    let asset = survives(&env, "s3down", async || {
        garage.stop();
        tokio::time::sleep(Duration::from_secs(5)).await;
        garage.restart();
    })
    .await;

    let keys = asset.keys();
    let objects = bucket::objects(&env.storage, &keys.processed_prefix()).await;
    for segment in 0..3 {
        assert!(
            objects
                .iter()
                .any(|o| o.key == keys.segment("360p", segment)),
            "360p segment {segment}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_temporal_server_killed_and_restarted_mid_job_is_survived() {
    let _shared = CORES.read().await;
    let dir = tempfile::tempdir().unwrap();
    let temporal = PrivateTemporal::start(dir.path());
    let mut endpoints = Endpoints::shared();
    endpoints.temporal_address = temporal.address();
    let env = TestEnv::with("temporaldown", endpoints, |settings| {
        settings.retry.max_attempts = 5;
    })
    .await;

    survives(&env, "temporaldown", async || {
        temporal.kill();
        tokio::time::sleep(Duration::from_secs(3)).await;
        temporal.restart();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_stops_ffmpeg_removes_temp_files_and_says_so() {
    let _shared = CORES.read().await;
    let env = TestEnv::new("cancel").await;
    let _worker = WorkerProcess::spawn(&env, &[("PULSE_FAULT_REALTIME_VARIANTS", "360p")]);
    let spec = ClipSpec::new(640, 360, 30.0);
    let source = media::clip(&spec);
    let asset = env.asset("cancel");
    let key = env.starter.upload(&asset, &source).await.unwrap();
    env.starter.start(&asset, &key).await.unwrap();
    env.wait_for_segments(&asset, "360p", 1).await;
    assert!(!ffmpeg_processes_of(&asset).is_empty());

    let cancelled_at = Instant::now();
    let output = Command::new(binary("pulse-starter"))
        .args(["cancel", asset.as_str(), "--reason", "uploaded by mistake"])
        .envs(env.process_env())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    while !ffmpeg_processes_of(&asset).is_empty() {
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(5),
            "ffmpeg still runs 5 s after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = env.wait(&asset).await;

    assert_eq!(
        state.status,
        AssetStatus::Partial,
        "240p still plays: {state:?}"
    );
    let error = state.error.as_deref().unwrap();
    assert!(
        error.contains("it was cancelled (uploaded by mistake)"),
        "{error}"
    );
    assert_eq!(
        state
            .variants
            .iter()
            .map(|v| (v.name.as_str(), v.status))
            .collect::<Vec<_>>(),
        [
            ("240p", VariantStatus::Done),
            ("360p", VariantStatus::Failed)
        ]
    );
    assert!(job_folders(&env).is_empty(), "temp files are removed");
    assert_eq!(
        env.wait_closed(&asset).await,
        temporalio_client::WorkflowExecutionStatus::Canceled,
        "the run shows as cancelled in Temporal"
    );
    let master = bucket::objects(&env.storage, &asset.keys().master()).await;
    assert_eq!(master[0].cache_control, "no-cache");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_videos_at_once_on_one_worker_share_nothing_and_all_finish() {
    let _shared = CORES.read().await;
    let env = TestEnv::new("together").await;
    let _worker = WorkerProcess::spawn(&env, &[("PULSE_MAX_HEAVY_ACTIVITIES", "3")]);
    let spec = ClipSpec::new(640, 360, 6.0);
    let source = media::clip(&spec);
    let assets: Vec<_> = (0..3).map(|_| env.asset("together")).collect();
    for asset in &assets {
        let key = env.starter.upload(asset, &source).await.unwrap();
        env.starter.start(asset, &key).await.unwrap();
    }

    let mut most_folders = 0;
    let mut states = Vec::new();
    for asset in &assets {
        loop {
            most_folders = most_folders.max(job_folders(&env).len());
            let state = env.starter.status(asset).await.unwrap();
            if state.status.is_finished() {
                states.push(state);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    assert!(
        most_folders >= 2,
        "jobs ran side by side, each in its own folder ({most_folders} at most)"
    );
    for state in &states {
        assert_eq!(state.status, AssetStatus::Done, "{state:?}");
        check_playback(&env.storage, state, &spec, &LADDER_360P).await;
    }
    assert!(job_folders(&env).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_retry_redoes_only_the_failed_variants_and_promotes_to_done() {
    let _shared = CORES.read().await;
    let env = TestEnv::new("retry").await;
    let mut faulty = WorkerProcess::spawn(&env, &[("PULSE_FAULT_FAIL_VARIANTS", "360p")]);
    let spec = ClipSpec::new(640, 360, 4.0);
    let (asset, state) = env.process_clip("retry", &spec).await;
    assert_eq!(state.status, AssetStatus::Partial, "{state:?}");
    faulty.kill();
    let _fixed = WorkerProcess::spawn(&env, &[]);

    let output = Command::new(binary("pulse-starter"))
        .args(["retry", asset.as_str(), "--wait", "--json"])
        .envs(env.process_env())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("retrying 360p"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let state: pulse_workflows::AssetState =
        serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(state.status, AssetStatus::Done, "{state:?}");
    assert_eq!(state.error, None);
    assert_eq!(
        transcode_attempts(&env, &asset, "240p").await,
        [1],
        "240p was made once"
    );
    assert_eq!(
        transcode_attempts(&env, &asset, "360p").await.len(),
        2,
        "360p failed, then was redone"
    );

    let master = bucket::objects(&env.storage, &asset.keys().master()).await;
    assert_eq!(master[0].cache_control, "public, max-age=31536000");
    check_playback(&env.storage, &state, &spec, &LADDER_360P).await;

    let again = Command::new(binary("pulse-starter"))
        .args(["retry", asset.as_str()])
        .envs(env.process_env())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is done: there is nothing to retry"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
