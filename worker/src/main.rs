//! `pulse-worker`: see the library for what it does.

use clap::Parser;
use pulse_worker::WorkerSettings;
use pulse_workflows::request::{DEFAULT_LIGHT_QUEUE, DEFAULT_VIDEO_QUEUE};
use std::time::Duration;

/// Hosts the Pulse video workflow and its activities.
///
/// Temporal is found through TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE, the bucket through the AWS_*
/// variables and PULSE_BUCKET.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Task queues to poll, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [DEFAULT_VIDEO_QUEUE.to_owned(), DEFAULT_LIGHT_QUEUE.to_owned()])]
    queues: Vec<String>,
    /// Name of the video (heavy) task queue.
    #[arg(long, env = "PULSE_VIDEO_QUEUE", default_value = DEFAULT_VIDEO_QUEUE)]
    video_queue: String,
    /// Name of the light task queue.
    #[arg(long, env = "PULSE_LIGHT_QUEUE", default_value = DEFAULT_LIGHT_QUEUE)]
    light_queue: String,
    /// Heavy activities (probe, thumbnail, transcode) run at once.
    #[arg(long, env = "PULSE_MAX_HEAVY_ACTIVITIES", default_value_t = 2)]
    max_heavy_activities: usize,
    /// Seconds running activities may go on after SIGINT or SIGTERM before they are cancelled
    /// and handed to another worker; keep it below the supervisor's stop timeout.
    #[arg(
        long = "shutdown-grace-secs",
        value_name = "SECS",
        env = "PULSE_SHUTDOWN_GRACE_SECS",
        default_value = "5",
        value_parser = grace_secs
    )]
    shutdown_grace: Duration,
}

fn grace_secs(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=86_400.0).contains(&secs) => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(format!(
            "{text:?} is not a number of seconds from 0 to 86400"
        )),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    pulse_worker::run(WorkerSettings {
        queues: args.queues,
        video_queue: args.video_queue,
        light_queue: args.light_queue,
        max_heavy_activities: args.max_heavy_activities,
        shutdown_grace: args.shutdown_grace,
    })
    .await
}
