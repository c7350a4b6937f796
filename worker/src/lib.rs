//! `pulse-worker`: one process hosting the video workflow and its activities.
//!
//! A worker polls one or both task queues: the light queue runs the workflow and the light
//! activities (playlists, cache headers, events), the video queue runs the heavy ones (probe,
//! thumbnail, transcode). Scale them apart by starting workers with `--queues`.
//!
//! The binary (`main.rs`) only parses flags; [`run`] does the work.

use anyhow::{Context, bail};
use pulse_activities::{PulseActivities, connections, workdir};
use pulse_workflows::VideoWorkflow;
use std::{sync::Arc, time::Duration};
use temporalio_sdk::{
    Runtime, Worker, WorkerOptions,
    runtime::{
        RuntimeOptions,
        worker_tuner::{FixedSizeSlotSupplier, TunerHolder},
    },
};

/// Longest time between two heartbeats of a running transcode.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// What one worker process does; the binary's flags give the defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSettings {
    /// Task queues to poll; each must be the video or the light queue.
    pub queues: Vec<String>,
    /// Name of the video (heavy) task queue.
    pub video_queue: String,
    /// Name of the light task queue.
    pub light_queue: String,
    /// Heavy activities run at once; each transcode already uses every core.
    pub max_heavy_activities: usize,
    /// How long running activities may go on after SIGINT or SIGTERM. Then they are cancelled
    /// (ffmpeg is killed, temp files removed) and Temporal retries them on another worker, a
    /// transcode from its last heartbeated segment: a transcode can take hours, and a worker
    /// waiting for it would be killed outright by its supervisor anyway.
    pub shutdown_grace: Duration,
}

/// Runs the worker until SIGINT or SIGTERM, then gives running tasks
/// [`WorkerSettings::shutdown_grace`] to finish.
pub async fn run(settings: WorkerSettings) -> anyhow::Result<()> {
    let options = RuntimeOptions::builder()
        .build()
        .map_err(anyhow::Error::msg)?;
    let runtime = Runtime::from_current_tokio(options)?;
    let client = connections::temporal_client().await?;
    let activities = Arc::new(PulseActivities::from_env().await?);
    for leftover in workdir::sweep_orphans(&activities.config().work_dir) {
        tracing::info!(folder = %leftover.display(), "removed the temp folder of a dead worker");
    }

    let mut workers = Vec::new();
    for queue in &settings.queues {
        let options = worker_options(queue, &settings, &activities)?;
        workers.push(
            Worker::new(&runtime, client.clone(), options)
                .with_context(|| format!("starting the worker of {queue}"))?,
        );
        tracing::info!(queue, "polling");
    }
    let shutdowns: Vec<_> = workers.iter().map(Worker::shutdown_handle).collect();
    let grace = settings.shutdown_grace;
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(
            grace_secs = grace.as_secs_f64(),
            "shutting down: running tasks may finish within the grace period, then they are \
             handed to another worker"
        );
        shutdowns.iter().for_each(|shutdown| shutdown());
    });
    futures::future::try_join_all(workers.iter_mut().map(Worker::run)).await?;
    Ok(())
}

fn worker_options(
    queue: &str,
    settings: &WorkerSettings,
    activities: &Arc<PulseActivities>,
) -> anyhow::Result<WorkerOptions> {
    if queue == settings.video_queue {
        let mut options = WorkerOptions::new(queue)
            .tuner(slots(settings.max_heavy_activities))
            // Live progress in the Temporal UI and `pulse-starter watch` comes from heartbeats.
            .max_heartbeat_throttle_interval(HEARTBEAT_INTERVAL)
            .graceful_shutdown_period(settings.shutdown_grace)
            .build();
        activities.register_heavy(&mut options);
        Ok(options)
    } else if queue == settings.light_queue {
        let mut options = WorkerOptions::new(queue)
            .graceful_shutdown_period(settings.shutdown_grace)
            .build();
        options.register_workflow::<VideoWorkflow>()?;
        activities.register_light(&mut options);
        Ok(options)
    } else {
        bail!(
            "unknown task queue {queue:?}: the video queue is {:?} and the light queue {:?} (PULSE_VIDEO_QUEUE, PULSE_LIGHT_QUEUE)",
            settings.video_queue,
            settings.light_queue
        )
    }
}

/// A tuner allowing `activities` activity tasks at once.
fn slots(activities: usize) -> TunerHolder {
    TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(10))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(activities.max(1)))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .build()
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
