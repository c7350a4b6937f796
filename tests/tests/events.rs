//! What the frontend receives (SPEC section 4), through a real webhook receiver, from a real run.

use pulse_activities::ladder::plan_ladder;
use pulse_tests::{
    media::{self, ClipSpec},
    stack::TestEnv,
    webhook::{Mode, Receiver},
    worker::{WorkerProcess, binary},
};
use pulse_workflows::{
    AssetStatus,
    events::{Event, Stage, signature},
    progress,
};
use std::time::{Duration, Instant};

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

fn stages(events: &[Event]) -> Vec<Stage> {
    events.iter().filter_map(|e| e.stage).collect()
}

fn position(events: &[Event], stage: Stage) -> usize {
    events
        .iter()
        .position(|e| e.stage == Some(stage))
        .unwrap_or_else(|| panic!("no {stage:?} event in {events:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_frontend_receives_every_event_in_order_and_signed() {
    let env = TestEnv::new("events").await;
    let receiver = Receiver::start(Mode::Accept).await;
    // The top variant encodes in real time, so there is live progress to watch. Progress
    // events start only after `thumbnail_ready`, and the real-time variant only once the
    // thumbnail, made beside the smallest variant, frees its heavy slot: the clip is long
    // enough that several seconds of it are still left then, even on a loaded machine.
    let mut worker_env = receiver.worker_env().to_vec();
    worker_env.push(("PULSE_FAULT_REALTIME_VARIANTS", "720p"));
    let _worker = WorkerProcess::spawn(&env, &worker_env);
    let source = media::clip(&ClipSpec::new(1280, 720, 12.0));
    let asset = env.asset("events");

    let key = env.starter.upload(&asset, &source).await.unwrap();
    env.starter.start(&asset, &key).await.unwrap();
    // Follow it the way a person would, with `pulse-starter watch` and its live progress bar,
    // while sampling the state a backend would poll.
    let watch = tokio::process::Command::new(binary("pulse-starter"))
        .args(["watch", asset.as_str()])
        .envs(env.process_env())
        .output();
    let sampling = async {
        let mut seen = Vec::new();
        loop {
            let state = env.starter.status(&asset).await.unwrap();
            seen.push(state.progress);
            if state.status.is_finished() {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let (watch, seen) = tokio::join!(watch, sampling);
    let watch = watch.unwrap();
    assert_eq!(
        watch.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&watch.stderr)
    );
    assert!(
        String::from_utf8_lossy(&watch.stdout).contains(&format!("asset {asset}: done (100%)"))
    );
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "status progress never goes back: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&100.0));
    // The smallest variant goes first; the others share one transcode and the rest of the
    // scale, by cost.
    let ladder = plan_ladder(1280, 720);
    let (smallest, others) = ladder.split_first().unwrap();
    let costs = [
        progress::cost(std::slice::from_ref(smallest), 1.0),
        progress::cost(others, 1.0),
    ];
    let others_span = progress::spans(&costs)[1];
    let mut inside: Vec<f64> = seen
        .iter()
        .copied()
        .filter(|p| *p > others_span.start && *p < others_span.end)
        .collect();
    inside.dedup();
    assert!(
        inside.len() >= 3,
        "status shows the live progress of a variant as it is transcoded, not only per variant: {seen:?}"
    );
    let events = receiver.wait_for_terminal_event(DELIVERY_TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events_after = receiver.accepted_events();
    assert_eq!(
        events.len(),
        events_after.len(),
        "nothing arrives after the terminal event"
    );

    // Every delivery is signed; a tampered body or a replayed old delivery is not accepted.
    let deliveries = receiver.deliveries();
    for delivery in &deliveries {
        let check = |body: &[u8], now: u64| {
            signature::verify(
                receiver.secret.as_bytes(),
                &delivery.timestamp,
                &delivery.signature,
                body,
                now,
            )
        };
        assert_eq!(check(&delivery.body, delivery.received_at()), Ok(()));
        let mut tampered = delivery.body.clone();
        tampered.extend_from_slice(b" ");
        assert_eq!(
            check(&tampered, delivery.received_at()),
            Err(signature::SignatureError::Mismatch)
        );
        assert!(matches!(
            check(
                &delivery.body,
                delivery.received_at() + signature::TOLERANCE_SECS + 1
            ),
            Err(signature::SignatureError::Stale(_))
        ));
    }

    // SPEC order: processing first, thumbnail_ready, progress, playable, progress, one terminal.
    assert!(
        events
            .iter()
            .all(|e| e.kind == "update" && e.asset_id == asset.as_str())
    );
    assert_eq!(events[0].stage, Some(Stage::Processing), "{events:#?}");
    assert_eq!(stages(&events), ALL_STAGES);
    assert!(position(&events, Stage::ThumbnailReady) < position(&events, Stage::Playable));
    let done = events.last().unwrap();
    assert_eq!(
        done.stage,
        Some(Stage::Done),
        "the terminal event is the last one"
    );
    assert_eq!(done.progress, Some(100.0));
    assert!(
        events[position(&events, Stage::ThumbnailReady)]
            .url
            .as_deref()
            .unwrap()
            .ends_with("/thumbnail.webp")
    );
    assert!(
        events[position(&events, Stage::Playable)]
            .url
            .as_deref()
            .unwrap()
            .ends_with("/hls/master.m3u8")
    );

    let progress: Vec<f64> = events.iter().filter_map(|e| e.progress).collect();
    assert!(
        progress.len() >= 5,
        "progress events flow during transcoding: {progress:?}"
    );
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "never decreasing: {progress:?}"
    );
    let updates: Vec<f64> = events
        .iter()
        .filter(|e| e.stage.is_none())
        .filter_map(|e| e.progress)
        .collect();
    assert!(
        updates.windows(2).all(|w| w[1] - w[0] >= 2.0 - 1e-9),
        "steps of at least 2 points: {updates:?}"
    );
    assert!(
        updates.iter().all(|p| *p >= 2.0 && *p < 100.0),
        "{updates:?}"
    );
    assert!(
        events
            .iter()
            .skip(position(&events, Stage::Playable))
            .any(|e| e.stage.is_none()),
        "progress continues after playable: {events:#?}"
    );
}

/// The stage events of a done asset, once each and in order.
const ALL_STAGES: [Stage; 4] = [
    Stage::Processing,
    Stage::ThumbnailReady,
    Stage::Playable,
    Stage::Done,
];

/// Processes a small clip with events going to a receiver answering in `mode`; returns the
/// receiver once the asset is done, and how long that took.
async fn process_with_receiver(
    name: &str,
    mode: Mode,
) -> (TestEnv, Receiver, WorkerProcess, Duration) {
    let env = TestEnv::new(name).await;
    let receiver = Receiver::start(mode).await;
    let worker = WorkerProcess::spawn(&env, &receiver.worker_env());
    let source = media::clip(&ClipSpec::new(640, 360, 4.0));
    let started = Instant::now();
    let state = env.process(&env.asset(name), &source).await;
    assert_eq!(state.status, AssetStatus::Done, "{state:?}");
    (env, receiver, worker, started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_receiver_delays_events_but_never_the_video() {
    let (_env, receiver, _worker, took) = process_with_receiver("downhook", Mode::Fail).await;
    assert!(
        took < Duration::from_secs(60),
        "the video went on without its events"
    );
    assert!(receiver.accepted_events().is_empty());
    assert!(
        !receiver.deliveries().is_empty(),
        "stage events were attempted"
    );

    receiver.set_mode(Mode::Accept);
    let events = receiver.wait_for_terminal_event(DELIVERY_TIMEOUT).await;
    assert_eq!(
        stages(&events),
        ALL_STAGES,
        "every stage event arrives once, in order, once the receiver is back: {events:#?}"
    );
    assert_eq!(events.last().unwrap().stage, Some(Stage::Done));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_receiver_never_slows_the_transcode() {
    let (_env, receiver, _worker, _) =
        process_with_receiver("slowhook", Mode::Slow(Duration::from_secs(4))).await;
    let stage_events_so_far = receiver
        .accepted_events()
        .iter()
        .filter(|e| e.stage.is_some())
        .count();
    assert!(
        stage_events_so_far < 4,
        "the video was done before its events were all delivered"
    );

    let events = receiver.wait_for_terminal_event(DELIVERY_TIMEOUT).await;
    assert_eq!(stages(&events), ALL_STAGES);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_followed_asset_is_not_queried_again_until_its_history_grows() {
    // The workflow's worker apart from the transcoding one, so it can be gone while the
    // transcodes go on. The larger variants encode in real time: seconds with no new event.
    let env = TestEnv::new("followed").await;
    let mut light = WorkerProcess::spawn_on(&env, &[&env.settings.light_queue], &[]);
    let _video = WorkerProcess::spawn_on(
        &env,
        &[&env.settings.video_queue],
        &[("PULSE_FAULT_REALTIME_VARIANTS", "720p")],
    );
    let source = media::clip(&ClipSpec::new(1280, 720, 12.0));
    let asset = env.asset("followed");
    let key = env.starter.upload(&asset, &source).await.unwrap();
    env.starter.start(&asset, &key).await.unwrap();
    // Playable, and the larger variants' transcode heartbeating progress past the first
    // playable sample's: only heartbeats move it until that transcode ends.
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut first_playable = None;
    let before = loop {
        let state = env.starter.status(&asset).await.unwrap();
        if state.status == AssetStatus::Playable {
            match first_playable {
                None => first_playable = Some(state.progress),
                Some(first) if state.progress > first => break state,
                Some(_) => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "no live progress once playable: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // No worker can answer a query now; the history stays as it is while the larger
    // variants encode, and their heartbeats still move the progress on.
    light.kill();
    let mut progress = vec![before.progress];
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let state = tokio::time::timeout(Duration::from_secs(2), env.starter.status(&asset))
            .await
            .expect("the state of an asset whose history did not grow needs no worker")
            .unwrap();
        assert_eq!(state.status, AssetStatus::Playable, "{state:?}");
        assert_eq!(state.variants, before.variants);
        progress.push(state.progress);
    }
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]) && progress.last() > progress.first(),
        "live progress moves on from heartbeats alone: {progress:?}"
    );

    // Once a worker records more, the state follows it.
    let _light = WorkerProcess::spawn_on(&env, &[&env.settings.light_queue], &[]);
    assert_eq!(env.wait(&asset).await.status, AssetStatus::Done);
}
