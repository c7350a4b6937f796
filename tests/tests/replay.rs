//! Determinism guard: histories recorded from the dev server (`tests/histories/*.json`, from
//! `temporal workflow show --output json`) must replay against today's workflow code. A change
//! that would break workflows already running fails here; gate such changes with
//! `ctx.patched()` and record a new history.

use pulse_workflows::VideoWorkflow;
use std::path::PathBuf;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

fn recorded_histories() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("histories");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn recorded_histories_replay_deterministically() {
    let files = recorded_histories();
    assert!(
        files.len() >= 3,
        "expected recorded histories in tests/histories, found {files:?}"
    );
    let options = WorkflowReplayerOptions::new()
        .register_workflow::<VideoWorkflow>()
        .expect("registering the workflow")
        .build();
    let replayer = WorkflowReplayer::new(options).expect("a replayer");
    for file in files {
        let history = pulse_tests::history::from_cli_json(&std::fs::read(&file).unwrap())
            .unwrap_or_else(|error| {
                panic!("{} is not a workflow history: {error}", file.display())
            });
        replayer
            .replay_workflow(history)
            .await
            .unwrap_or_else(|error| panic!("{} no longer replays: {error}", file.display()));
    }
}
