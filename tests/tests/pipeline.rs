//! The pipeline end to end on the real stack: real Temporal, real Garage, real ffmpeg, real
//! `pulse-worker` processes (SPEC sections 2, 3, 5 and the happy and partial rows of 6).

use pulse_tests::{
    bucket,
    media::{self, ClipSpec},
    playback::{LADDER_360P, check_playback, picture_size},
    stack::{Endpoints, TestEnv, summary},
    webhook::{Mode, Receiver},
    worker::{WorkerProcess, binary},
};
use pulse_workflows::{
    AssetState, AssetStatus, VariantStatus, events::Stage, media::FAST_START_SEGMENT_SECS,
};
use std::{
    collections::BTreeSet,
    process::Command,
    time::{Duration, Instant},
};
use temporalio_common::protos::temporal::api::history::v1::{
    HistoryEvent, history_event::Attributes,
};

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn variant_names(state: &AssetState) -> Vec<(&str, VariantStatus)> {
    state
        .variants
        .iter()
        .map(|v| (v.name.as_str(), v.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_landscape_clip_with_audio_becomes_a_complete_cached_ladder() {
    let env = TestEnv::new("landscape").await;
    let _worker = WorkerProcess::spawn(&env, &[]);
    // A keyframe every second, as phones record.
    let spec = ClipSpec::new(1280, 720, 5.0).keyframe_every(1);
    let (asset, state) = env.process_clip("landscape", &spec).await;

    assert_eq!(state.status, AssetStatus::Done, "{state:?}");
    assert_eq!(state.progress, 100.0);
    assert_eq!(state.error, None);
    assert_eq!(
        variant_names(&state),
        ["240p", "360p", "480p", "720p"].map(|name| (name, VariantStatus::Done))
    );
    let keys = asset.keys();
    assert_eq!(state.master_key.as_deref(), Some(keys.master().as_str()));
    assert_eq!(
        state.thumbnail_key.as_deref(),
        Some(keys.thumbnail().as_str())
    );

    // Exactly the SPEC layout: 5 s in 4 s segments is two segments per variant.
    let objects = bucket::objects(&env.storage, &keys.processed_prefix()).await;
    let found: BTreeSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    let mut expected = BTreeSet::from([keys.thumbnail(), keys.master()]);
    for name in ["240p", "360p", "480p", "720p"] {
        expected.insert(keys.variant_playlist(name));
        expected.insert(keys.segment(name, 0));
        expected.insert(keys.segment(name, 1));
    }
    assert_eq!(found, expected.iter().map(String::as_str).collect());

    for object in &objects {
        let (content_type, cache_control) = if object.key.ends_with("master.m3u8") {
            ("application/vnd.apple.mpegurl", "public, max-age=31536000")
        } else if object.key.ends_with(".m3u8") {
            ("application/vnd.apple.mpegurl", IMMUTABLE)
        } else if object.key.ends_with(".ts") {
            ("video/mp2t", IMMUTABLE)
        } else {
            ("image/webp", IMMUTABLE)
        };
        assert_eq!(object.content_type, content_type, "{}", object.key);
        assert_eq!(object.cache_control, cache_control, "{}", object.key);
        assert!(object.size > 0, "{} is empty", object.key);
    }

    let master_text = bucket::get(&env.storage, &keys.master()).await;
    let master = m3u8_rs::parse_master_playlist_res(&master_text).expect("a master playlist");
    let listed: Vec<_> = master
        .variants
        .iter()
        .map(|v| (v.uri.as_str(), v.resolution.map(|r| (r.width, r.height))))
        .collect();
    assert_eq!(
        listed,
        [
            ("240p/index.m3u8", Some((426, 240))),
            ("360p/index.m3u8", Some((640, 360))),
            ("480p/index.m3u8", Some((854, 480))),
            ("720p/index.m3u8", Some((1280, 720))),
        ]
    );
    for variant in &master.variants {
        assert!(variant.bandwidth > 0);
        let codecs = variant.codecs.as_deref().unwrap();
        assert!(
            codecs.starts_with("avc1.6400") && codecs.ends_with(",mp4a.40.2"),
            "{codecs}"
        );
    }

    let dir = check_playback(
        &env.storage,
        &state,
        &spec,
        &[
            ("240p", 426, 240),
            ("360p", 640, 360),
            ("480p", 854, 480),
            ("720p", 1280, 720),
        ],
    )
    .await;
    let audio = media::probe(&dir.path().join("hls/720p/seg_000.ts"));
    let audio = audio["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("audio");
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(audio["channels"], 2);

    let thumbnail = dir.path().join("thumbnail.webp");
    assert_eq!(&std::fs::read(&thumbnail).unwrap()[8..12], b"WEBP");
    assert_eq!(
        media::video_stream(&media::probe(&thumbnail))["codec_name"],
        "webp"
    );
    assert_eq!(picture_size(&thumbnail), (640, 360));
    // A tenth into the video is 0.5 s; the thumbnail is the keyframe after it, which costs
    // decoding two pictures instead of every one up to there.
    let clip = media::clip(&spec);
    let (keyframe, exact) = (
        media::likeness(&thumbnail, &clip, 1.0),
        media::likeness(&thumbnail, &clip, 0.5),
    );
    assert!(
        keyframe > exact + 2.0,
        "the thumbnail should show the keyframe at 1 s ({keyframe:.1} dB alike) rather than the picture at 0.5 s ({exact:.1} dB)"
    );

    let leftovers: Vec<_> = std::fs::read_dir(env.work_dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_dir())
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp folders left behind: {leftovers:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_phone_clip_yields_portrait_variants() {
    let env = TestEnv::new("portrait").await;
    let _worker = WorkerProcess::spawn(&env, &[]);
    // Coded landscape, displayed portrait: the way phones record.
    let spec = ClipSpec::new(640, 360, 3.0).rotated(90);
    let (_, state) = env.process_clip("portrait", &spec).await;

    assert_eq!(state.status, AssetStatus::Done, "{state:?}");
    assert_eq!(
        variant_names(&state),
        [("240p", VariantStatus::Done), ("360p", VariantStatus::Done)]
    );
    let dir = check_playback(
        &env.storage,
        &state,
        &spec,
        &[("240p", 240, 426), ("360p", 360, 640)],
    )
    .await;
    assert_eq!(picture_size(&dir.path().join("thumbnail.webp")), (360, 640));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clip_below_240p_gets_one_variant_at_its_own_size() {
    let env = TestEnv::new("tiny").await;
    let _worker = WorkerProcess::spawn(&env, &[]);
    let spec = ClipSpec::new(320, 180, 3.0).silent();
    let (asset, state) = env.process_clip("tiny", &spec).await;

    assert_eq!(state.status, AssetStatus::Done, "{state:?}");
    assert_eq!(variant_names(&state), [("180p", VariantStatus::Done)]);
    check_playback(&env.storage, &state, &spec, &[("180p", 320, 180)]).await;
    let master =
        String::from_utf8(bucket::get(&env.storage, &asset.keys().master()).await).unwrap();
    assert!(
        master.contains("CODECS=\"avc1.64001e\""),
        "a silent source announces no audio: {master}"
    );
}

/// Runs `pulse-starter` with the test's settings; returns its exit code and stdout.
fn starter_cli(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary("pulse-starter"))
        .args(args)
        .envs(env.process_env())
        .output()
        .expect("running pulse-starter");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn last_line_state(stdout: &str) -> AssetState {
    let line = stdout.lines().last().expect("a last line");
    serde_json::from_str(line)
        .unwrap_or_else(|error| panic!("last line {line:?} is not the state: {error}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_variant_failing_for_good_leaves_a_partial_asset_that_still_plays() {
    let env = TestEnv::new("partial").await;
    let _worker = WorkerProcess::spawn(&env, &[("PULSE_FAULT_FAIL_VARIANTS", "360p")]);
    let spec = ClipSpec::new(640, 360, 3.0);
    let source = media::clip(&spec);
    let asset = env.asset("partial");

    let (code, stdout, stderr) = starter_cli(
        &env,
        &[
            "process",
            "--wait",
            "--json",
            "--asset-id",
            asset.as_str(),
            source.to_str().unwrap(),
        ],
    );

    assert_eq!(code, 2, "exit code of a partial asset; stderr: {stderr}");
    let state = last_line_state(&stdout);
    assert_eq!(state.status, AssetStatus::Partial);
    assert_eq!(
        variant_names(&state),
        [
            ("240p", VariantStatus::Done),
            ("360p", VariantStatus::Failed)
        ]
    );
    let error = state.error.as_deref().unwrap();
    assert!(
        error.contains("360p") && error.contains("PULSE_FAULT_FAIL_VARIANTS"),
        "{error}"
    );

    let keys = asset.keys();
    let objects = bucket::objects(&env.storage, &keys.processed_prefix()).await;
    let master = objects
        .iter()
        .find(|o| o.key == keys.master())
        .expect("the master stays");
    assert_eq!(
        master.cache_control, "no-cache",
        "a partial master is never cached"
    );
    assert!(
        !objects
            .iter()
            .any(|o| o.key == keys.variant_playlist("360p")),
        "no playlist for a failed variant"
    );
    let master_text = String::from_utf8(bucket::get(&env.storage, &keys.master()).await).unwrap();
    assert!(
        master_text.contains("240p/index.m3u8") && !master_text.contains("360p"),
        "{master_text}"
    );
    check_playback(&env.storage, &state, &spec, &[("240p", 426, 240)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_playable_ends_failed() {
    let env = TestEnv::new("failed").await;
    let _worker = WorkerProcess::spawn(&env, &[("PULSE_FAULT_FAIL_VARIANTS", "180p")]);
    let spec = ClipSpec::new(320, 180, 2.0).silent();
    let (asset, state) = env.process_clip("failed", &spec).await;

    assert_eq!(state.status, AssetStatus::Failed, "{state:?}");
    assert_eq!(state.master_key, None);
    assert!(
        state
            .error
            .as_deref()
            .unwrap()
            .starts_with("Processing failed: variant 180p failed"),
        "{state:?}"
    );
    let (code, stdout, _) = starter_cli(&env, &["status", "--json", asset.as_str()]);
    assert_eq!(code, 0);
    assert_eq!(last_line_state(&stdout), state);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_a_video_fails_at_once_with_a_clear_error() {
    let env = TestEnv::new("notvideo").await;
    let _worker = WorkerProcess::spawn(&env, &[]);
    let file = env.work_dir.path().join("notes.txt");
    std::fs::write(&file, "these are my holiday notes, not a video\n").unwrap();
    let asset = env.asset("notvideo");

    let started = std::time::Instant::now();
    let state = env.process(&asset, &file).await;

    assert_eq!(state.status, AssetStatus::Failed, "{state:?}");
    let error = state.error.unwrap();
    assert!(error.contains("not a video"), "{error}");
    assert!(started.elapsed().as_secs() < 30, "bad input is not retried");
    assert!(state.variants.is_empty());
    let probes: Vec<_> = env
        .activity_runs(&asset)
        .await
        .into_iter()
        .filter(|run| run.activity_type == "probe")
        .collect();
    assert_eq!(probes.len(), 1);
    assert_eq!(probes[0].attempt, 1, "bad input is never retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn starting_the_same_asset_twice_gives_one_run() {
    let env = TestEnv::new("twice").await;
    let _worker = WorkerProcess::spawn(&env, &[]);
    let spec = ClipSpec::new(320, 180, 2.0).silent();
    let source = media::clip(&spec);
    let asset = env.asset("twice");
    let key = env.starter.upload(&asset, &source).await.unwrap();

    let first = env.starter.start(&asset, &key).await.unwrap();
    let second = env.starter.start(&asset, &key).await.unwrap();
    assert_eq!(first, second, "a second start while running joins the run");

    let state = env.wait(&asset).await;
    assert_eq!(state.status, AssetStatus::Done);
    let third = env.starter.start(&asset, &key).await.unwrap();
    assert_eq!(
        first, third,
        "a start after the end returns the finished run"
    );

    let (code, stdout, stderr) = starter_cli(
        &env,
        &[
            "start",
            "--json",
            "--asset-id",
            asset.as_str(),
            "--source-key",
            &key,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&first.run_id), "{stderr}");
    assert_eq!(last_line_state(&stdout).status, AssetStatus::Done);
}

#[test]
fn invalid_asset_ids_are_refused_before_any_work() {
    for bad in ["../etc", "", "has space", &"x".repeat(65)] {
        let output = Command::new(binary("pulse-starter"))
            .args([
                "start",
                "--asset-id",
                bad,
                "--source-key",
                "uploads/x/source",
            ])
            .env("TEMPORAL_ADDRESS", "127.0.0.1:1")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{bad:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("asset id"), "{bad:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_in_pieces_plays_in_full_and_its_pieces_wait_for_the_smallest_variant() {
    let env = TestEnv::with("pieces", Endpoints::shared(), |settings| {
        settings.chunk_secs = 8.0;
    })
    .await;
    // One worker with two heavy slots, three pieces of 360p: scheduled with the smallest
    // variant, two pieces could take both slots while it waited, and nothing would play.
    let _worker = WorkerProcess::spawn(&env, &[]);
    let spec = ClipSpec::new(640, 360, 20.0);
    let (asset, state) = env.process_clip("pieces", &spec).await;

    assert_eq!(state.status, AssetStatus::Done, "{state:?}");
    check_playback(&env.storage, &state, &spec, &LADDER_360P).await;
    let events = env.history(&asset).await;
    let started = signalled(&events, "first_transcode_started")
        .expect("the smallest variant's transcode says when it runs");
    let pieces = scheduled(&events, "transcode 360p");
    let names: Vec<&str> = pieces.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "transcode 360p from 0 s",
            "transcode 360p from 8 s",
            "transcode 360p from 16 s"
        ]
    );
    assert!(
        pieces.iter().all(|(at, _)| *at > started),
        "pieces are scheduled once the smallest variant's transcode runs"
    );
}

/// Where in `events` the workflow received the signal `name`.
fn signalled(events: &[HistoryEvent], name: &str) -> Option<usize> {
    events.iter().position(|event| {
        matches!(&event.attributes, Some(Attributes::WorkflowExecutionSignaledEventAttributes(signal))
            if signal.signal_name == name)
    })
}

/// The activities scheduled in `events` whose summary starts with `prefix`, with where.
fn scheduled(events: &[HistoryEvent], prefix: &str) -> Vec<(usize, String)> {
    events
        .iter()
        .enumerate()
        .filter_map(|(at, event)| Some((at, summary(event)?)))
        .filter(|(_, summary)| summary.starts_with(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn fast_start_plays_the_smallest_variant_while_it_is_written() {
    let env = TestEnv::with("faststart", Endpoints::shared(), |settings| {
        settings.fast_start = true;
    })
    .await;
    // No faster than real time, every variant of a 12 s clip is being written for 12 s: the
    // asset can only play early through fast start.
    let receiver = Receiver::start(Mode::Accept).await;
    let mut worker_env = receiver.worker_env().to_vec();
    worker_env.push(("PULSE_FAULT_REALTIME_VARIANTS", "240p,360p"));
    let _worker = WorkerProcess::spawn(&env, &worker_env);
    let spec = ClipSpec::new(640, 360, 12.0);
    let source = media::clip(&spec);
    let asset = env.asset("faststart");
    let keys = asset.keys();
    let key = env.starter.upload(&asset, &source).await.unwrap();
    env.starter.start(&asset, &key).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let state = env.starter.status(&asset).await.unwrap();
        if state.status != AssetStatus::Processing {
            break state;
        }
        assert!(Instant::now() < deadline, "never playable: {state:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(state.status, AssetStatus::Playable, "{state:?}");
    assert_eq!(
        variant_names(&state)[0],
        ("240p", VariantStatus::Running),
        "playable while the smallest variant is still written"
    );
    let object = |key: String| {
        let storage = env.storage.clone();
        async move {
            let head = storage.get(&key).await.unwrap().expect("published");
            let text = head.body.collect().await.unwrap().into_bytes().to_vec();
            (head.cache_control.unwrap_or_default(), text)
        }
    };
    let (master_cache, master) = object(keys.master()).await;
    assert_eq!(master_cache, "no-cache");
    let master = m3u8_rs::parse_master_playlist_res(&master).expect("a master playlist");
    assert_eq!(master.variants.len(), 1);
    assert_eq!(master.variants[0].uri, "240p/index.m3u8");
    let (growing_cache, growing) = object(keys.variant_playlist("240p")).await;
    assert_eq!(
        growing_cache, "no-cache",
        "a growing playlist is never cached"
    );
    let growing = m3u8_rs::parse_media_playlist_res(&growing).expect("a media playlist");
    assert_eq!(
        growing.playlist_type,
        Some(m3u8_rs::MediaPlaylistType::Event)
    );
    assert!(!growing.end_list, "the growing playlist has no end yet");
    assert!(!growing.segments.is_empty() && growing.segments.len() < 3);
    // The frontend starts its player on the `playable` event, which waits for the thumbnail:
    // that must not wait for the smallest variant.
    receiver
        .wait_for(Duration::from_secs(30), "playable event", |event| {
            event.stage == Some(Stage::Playable)
        })
        .await;
    let state = env.starter.status(&asset).await.unwrap();
    assert_eq!(
        variant_names(&state)[0],
        ("240p", VariantStatus::Running),
        "the frontend hears `playable` while the smallest variant is still written"
    );

    let state = env.wait(&asset).await;
    assert_eq!(state.status, AssetStatus::Done, "{state:?}");
    let (final_cache, finished) = object(keys.variant_playlist("240p")).await;
    assert_eq!(final_cache, IMMUTABLE);
    let finished = m3u8_rs::parse_media_playlist_res(&finished).expect("a media playlist");
    assert!(finished.end_list);
    let durations: Vec<f32> = finished.segments.iter().map(|s| s.duration).collect();
    assert!(
        durations.len() == 6
            && durations
                .iter()
                .all(|d| (d - FAST_START_SEGMENT_SECS as f32).abs() < 0.1),
        "fast start cuts 2 s segments, so the first one is out sooner: {durations:?}"
    );
    check_playback(&env.storage, &state, &spec, &LADDER_360P).await;
    // Even at idle priority the other variants would slow the segment a player waits for.
    let events = env.history(&asset).await;
    let published = signalled(&events, "first_segment_published").expect("a first segment");
    let rest = scheduled(&events, "transcode 360p");
    assert!(
        !rest.is_empty() && rest.iter().all(|(at, _)| *at > published),
        "the other variants start once the first segment is up: {rest:?}"
    );
}
