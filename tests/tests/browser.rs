//! The demo page in real headless Chromium (Debian's `chromium`, driven by `playwright-core`
//! from npm): upload a clip through the page, see the thumbnail, start playback before the
//! asset is done, and see every quality level at the end. The finished page is saved as
//! `target/test-artifacts/demo-page.png`.

use pulse_tests::{
    api::ApiServer,
    media::{self, ClipSpec},
    stack::{TestEnv, workspace_root},
};
use serde_json::Value;
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn a_person_uploads_watches_early_and_ends_with_every_quality() {
    let env = TestEnv::new("browser").await;
    let server = ApiServer::spawn(&env, &[]);
    // The top variant encodes in real time, so there is time to press Play before the end.
    let _worker = server.worker(&env, &[("PULSE_FAULT_REALTIME_VARIANTS", "720p")]);
    let clip = media::clip(&ClipSpec::new(1280, 720, 8.0));
    let artifacts = workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("demo-page.png");
    let web = workspace_root().join("web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules is missing: `cargo xtask test` installs the page's npm packages"
    );

    let output = Command::new("node")
        .arg(workspace_root().join("tests/browser/demo.mjs"))
        .arg(format!("{}/#token={}", server.base_url, server.token))
        .arg(&clip)
        .arg(&screenshot)
        .env("PULSE_WEB_DIR", &web)
        .output()
        .expect("node is needed for the browser test (the machine's Node.js)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let seen: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or_else(|_| {
            panic!(
                "the driver printed no result: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });

    assert_eq!(seen["error"], Value::Null, "{seen:#}");
    assert_eq!(seen["thumbnail"]["width"], 640, "{seen:#}");
    assert_eq!(seen["thumbnail"]["blurred"], true);
    assert_eq!(
        seen["stageWhenPlaying"], "playable",
        "playback started before done: {seen:#}"
    );
    assert_eq!(
        seen["levelsWhenPlaying"][0], "240p",
        "low quality first: {seen:#}"
    );
    assert_eq!(seen["finalStage"], "done");
    assert_eq!(
        seen["levels"],
        serde_json::json!(["240p", "360p", "480p", "720p"]),
        "{seen:#}"
    );
    assert_eq!(
        seen["ringHidden"], true,
        "the progress ring is gone at done"
    );
    assert_eq!(seen["videoError"], Value::Null);
    let complaints: Vec<&Value> = seen["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m.as_str().unwrap().starts_with("pageerror"))
        .collect();
    assert!(complaints.is_empty(), "{complaints:?}");
    assert!(
        screenshot.metadata().unwrap().len() > 10_000,
        "the screenshot was saved"
    );
}
