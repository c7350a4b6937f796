//! Untrusted input: a corpus of files that are not videos, are broken, or try to make ffmpeg
//! read something else. Each must end `failed` with a clear error, at once (never retried),
//! without crashing the worker, without any request reaching a URL the file names, and without
//! any output published as if it were done.

use pulse_tests::{
    bucket,
    media::{self, ClipSpec},
    stack::TestEnv,
    worker::WorkerProcess,
};
use pulse_workflows::{AssetId, AssetState, AssetStatus};
use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// Every file must be refused within this time.
const REFUSED_WITHIN: Duration = Duration::from_secs(60);

/// A TCP listener that counts every connection made to it: a file that makes ffmpeg fetch a
/// URL would show up here.
async fn bait_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (format!("http://{address}"), hits)
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// The first `fraction` of `file`'s bytes, as `name`.
fn truncated(dir: &Path, name: &str, file: &Path, fraction: f64) -> PathBuf {
    let bytes = std::fs::read(file).unwrap();
    write(
        dir,
        name,
        &bytes[..(bytes.len() as f64 * fraction) as usize],
    )
}

/// An MP4 with its index at the front, so a cut-off copy still says how long it should be.
fn faststart_clip(dir: &Path) -> PathBuf {
    let clip = media::clip(&ClipSpec::new(640, 360, 8.0));
    let path = dir.join("faststart.mp4");
    media::run(
        media::ffmpeg()
            .arg("-i")
            .arg(&clip)
            .args(["-c", "copy", "-movflags", "+faststart"])
            .arg(&path),
    );
    path
}

/// A file made by ffmpeg from the lavfi `source`, encoded with `codec`.
fn generated(dir: &Path, name: &str, source: &str, codec: &[&str]) -> PathBuf {
    let path = dir.join(name);
    media::run(
        media::ffmpeg()
            .args(["-f", "lavfi", "-i", source])
            .args(codec)
            .arg(&path),
    );
    path
}

fn audio_only(dir: &Path) -> PathBuf {
    generated(
        dir,
        "song.m4a",
        "sine=frequency=330:duration=3",
        &["-c:a", "aac"],
    )
}

/// A single 8192x8192 picture: 67 megapixels, over the 8K limit.
fn huge_picture(dir: &Path) -> PathBuf {
    generated(
        dir,
        "huge.avi",
        "color=c=gray:size=8192x8192:duration=0.04:rate=25",
        &["-c:v", "mjpeg", "-q:v", "31", "-frames:v", "1"],
    )
}

async fn assert_refused(env: &TestEnv, asset: &AssetId, state: &AssetState, expected: &str) {
    assert_eq!(state.status, AssetStatus::Failed, "{asset}: {state:?}");
    let error = state.error.as_deref().unwrap_or_default();
    println!("{asset}: {error}");
    assert!(
        error.contains(expected),
        "{asset}: error {error:?} should say {expected:?}"
    );
    for run in env.activity_runs(asset).await {
        assert_eq!(run.attempt, 1, "{asset}: {} was retried", run.activity_type);
    }
    let objects = bucket::objects(&env.storage, &asset.keys().processed_prefix()).await;
    assert!(
        !objects.iter().any(|o| o.key.ends_with(".m3u8")),
        "{asset}: no playlist may be published for a refused file: {objects:?}"
    );
    // A thumbnail may be published for a file cut off after its picture, never an empty one.
    let thumbnail = asset.keys().thumbnail();
    if objects.iter().any(|o| o.key == thumbnail) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thumbnail.webp");
        std::fs::write(&path, bucket::get(&env.storage, &thumbnail).await).unwrap();
        assert_eq!(media::decode_errors(&path), "", "{asset}: the thumbnail");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_and_broken_files_are_refused_clearly_at_once_and_safely() {
    let env = TestEnv::new("hostile").await;
    let mut worker = WorkerProcess::spawn(&env, &[]);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (bait, hits) = bait_server().await;
    let local_video = media::clip(&ClipSpec::new(320, 180, 2.0));
    let local_video = local_video.display();
    let faststart = faststart_clip(dir);

    let corpus: Vec<(&str, PathBuf, &str)> = vec![
        (
            "empty",
            write(dir, "empty.mp4", b""),
            "the uploaded file is empty",
        ),
        (
            "text",
            write(dir, "notes.txt", "my holiday notes\n".repeat(50)),
            "not a video Pulse can read",
        ),
        (
            "truncated",
            truncated(dir, "truncated.mp4", &faststart, 0.4),
            "probably cut off",
        ),
        // Cut before the thumbnail's picture (a tenth in): no empty thumbnail is published.
        (
            "cut-early",
            truncated(dir, "cut-early.mp4", &faststart, 0.05),
            "probably cut off",
        ),
        ("audio", audio_only(dir), "no video stream"),
        (
            "local-playlist",
            write(
                dir,
                "local.m3u8",
                format!(
                    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{local_video}\n#EXT-X-ENDLIST\n"
                ),
            ),
            "an HLS playlist that points at other files",
        ),
        (
            "local-concat",
            write(
                dir,
                "list.txt",
                format!("ffconcat version 1.0\nfile '{local_video}'\n"),
            ),
            "a concat list that points at other files",
        ),
        (
            "remote-playlist",
            write(
                dir,
                "remote.m3u8",
                format!(
                    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{bait}/segment.ts\n#EXT-X-ENDLIST\n"
                ),
            ),
            "an HLS playlist that points at other files",
        ),
        (
            "remote-concat",
            write(
                dir,
                "remote.txt",
                format!("ffconcat version 1.0\nfile '{bait}/segment.ts'\n"),
            ),
            "a concat list that points at other files",
        ),
        ("huge", huge_picture(dir), "8192x8192, more than the limit"),
    ];

    let started = Instant::now();
    let mut assets = Vec::new();
    for (name, file, expected) in &corpus {
        let asset = env.asset(name);
        let key = env.starter.upload(&asset, file).await.unwrap();
        env.starter.start(&asset, &key).await.unwrap();
        assets.push((asset, *expected));
    }
    for (asset, expected) in &assets {
        let state = env.wait(asset).await;
        assert_refused(&env, asset, &state, expected).await;
        assert!(
            !state.error.as_deref().unwrap().contains("X-Amz"),
            "no credentials in errors: {state:?}"
        );
    }
    assert!(
        started.elapsed() < REFUSED_WITHIN,
        "refused in {:?}",
        started.elapsed()
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no request may reach a URL named inside a file"
    );
    assert!(
        worker.is_running(),
        "the worker survived the corpus:\n{}",
        worker.output()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_refuse_long_and_large_sources_before_any_work() {
    let env = TestEnv::new("limits").await;
    let _worker = WorkerProcess::spawn(
        &env,
        &[
            ("PULSE_MAX_DURATION_SECS", "2"),
            ("PULSE_MAX_SOURCE_BYTES", "1000000"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();

    let long = env.asset("long");
    let state = env
        .process(&long, &media::clip(&ClipSpec::new(320, 180, 3.0).silent()))
        .await;
    assert_refused(
        &env,
        &long,
        &state,
        "the video lasts 3s, longer than the limit of 2s",
    )
    .await;

    let large = env.asset("large");
    let state = env
        .process(
            &large,
            &write(dir.path(), "large.mp4", vec![0u8; 1_500_000]),
        )
        .await;
    assert_refused(
        &env,
        &large,
        &state,
        "the uploaded file is 1.4 MiB, more than the limit of 976.6 KiB",
    )
    .await;
}
