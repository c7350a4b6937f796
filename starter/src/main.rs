//! `pulse-starter`: the CLI of SPEC section 2 over the [`pulse_starter`] library.

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pulse_starter::{Starter, api};
use pulse_workflows::{AssetId, AssetState, VariantStatus};
use std::{path::PathBuf, process::ExitCode, time::Duration};

/// Start and follow Pulse video processing.
///
/// Temporal is found through TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE, the bucket through the AWS_*
/// variables and PULSE_BUCKET (`source .pulse/env` after `cargo xtask up`).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload FILE to uploads/{asset_id}/source (multipart), then start processing it.
    Process {
        /// The video to upload.
        file: PathBuf,
        /// Asset id (1 to 64 of A-Z a-z 0-9 _ -); a random one when omitted.
        #[arg(long)]
        asset_id: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Start processing a source already in the bucket (the CompleteUpload handoff).
    Start {
        /// Asset id (1 to 64 of A-Z a-z 0-9 _ -).
        #[arg(long)]
        asset_id: String,
        /// Key of the uploaded source in the bucket.
        #[arg(long)]
        source_key: String,
        #[command(flatten)]
        output: Output,
    },
    /// Print the state of an asset.
    Status {
        /// Asset id.
        id: String,
        /// Print the state as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show a live progress bar until the asset is done, partial or failed.
    Watch {
        /// Asset id.
        id: String,
    },
    /// Re-run what failed in a partial (or failed) asset; it becomes done when all succeeds.
    Retry {
        /// Asset id.
        id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Serve the HTTP API and the demo page (PULSE_API_ADDR, PULSE_API_TOKEN, see the README).
    Serve,
    /// Stop processing an asset: its running transcode is stopped and it ends cancelled.
    Cancel {
        /// Asset id.
        id: String,
        /// Why, for the record (shown in the asset's error).
        #[arg(long, default_value = "by an operator")]
        reason: String,
    },
}

#[derive(Args)]
struct Output {
    /// Wait until the asset is done, partial or failed; exit 0 done, 2 partial, 1 failed.
    #[arg(long)]
    wait: bool,
    /// Print the asset's state as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli.command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Process {
            file,
            asset_id,
            output,
        } => {
            let asset = match asset_id {
                Some(id) => AssetId::parse(&id)?,
                None => AssetId::parse(&uuid::Uuid::new_v4().simple().to_string())?,
            };
            if !file.is_file() {
                anyhow::bail!("{} is not a readable file", file.display());
            }
            let starter = Starter::from_env().await?;
            let key = starter.upload(&asset, &file).await?;
            eprintln!(
                "uploaded {} to s3://{}/{key}",
                file.display(),
                starter.storage().bucket()
            );
            follow(&starter, &asset, &key, output).await
        }
        Command::Start {
            asset_id,
            source_key,
            output,
        } => {
            let asset = AssetId::parse(&asset_id)?;
            let starter = Starter::from_env().await?;
            follow(&starter, &asset, &source_key, output).await
        }
        Command::Status { id, json } => {
            let asset = AssetId::parse(&id)?;
            let state = Starter::from_env().await?.status(&asset).await?;
            print_state(&state, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Retry { id, output } => {
            let asset = AssetId::parse(&id)?;
            let starter = Starter::from_env().await?;
            let variants = starter.retry(&asset).await?;
            eprintln!("asset {asset}: retrying {}", describe_retry(&variants));
            report(&starter, &asset, output).await
        }
        Command::Serve => {
            tracing_subscriber::fmt()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            let config = api::ApiConfig::from_lookup(|name| std::env::var(name).ok())?;
            api::serve(Starter::from_env().await?, config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { id, reason } => {
            let asset = AssetId::parse(&id)?;
            Starter::from_env().await?.cancel(&asset, &reason).await?;
            eprintln!("asset {asset}: cancellation requested");
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch { id } => {
            let asset = AssetId::parse(&id)?;
            let starter = Starter::from_env().await?;
            let state = watch(&starter, &asset).await?;
            print_state(&state, false)?;
            Ok(exit_code(&state))
        }
    }
}

/// Starts the asset, then prints its state (after waiting, with `--wait`).
async fn follow(
    starter: &Starter,
    asset: &AssetId,
    source_key: &str,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let run = starter.start(asset, source_key).await?;
    eprintln!(
        "asset {asset}: workflow {} run {}",
        run.workflow_id, run.run_id
    );
    report(starter, asset, output).await
}

fn describe_retry(variants: &[String]) -> String {
    if variants.is_empty() {
        "the thumbnail".to_owned()
    } else {
        variants.join(", ")
    }
}

/// Prints the asset's state, after waiting for it to finish with `--wait`.
async fn report(starter: &Starter, asset: &AssetId, output: Output) -> anyhow::Result<ExitCode> {
    if !output.wait {
        print_state(&starter.status(asset).await?, output.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let state = starter
        .wait(asset, |state| {
            eprintln!("asset {asset}: {}", one_line(state))
        })
        .await?;
    print_state(&state, output.json)?;
    Ok(exit_code(&state))
}

/// A live progress bar with the current stage and variant, until the asset finishes.
async fn watch(starter: &Starter, asset: &AssetId) -> anyhow::Result<AssetState> {
    let bar = ProgressBar::new(1000).with_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {percent:>3}% {msg}")?
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let state = starter
        .wait(asset, |state| {
            bar.set_position((state.progress * 10.0).round() as u64);
            bar.set_message(one_line(state));
        })
        .await?;
    bar.finish_and_clear();
    Ok(state)
}

fn one_line(state: &AssetState) -> String {
    let running: Vec<&str> = state.variants_in(VariantStatus::Running).collect();
    let done = state.variants_in(VariantStatus::Done).count();
    let mut line = format!(
        "{} {:.0}%, {done}/{} variants",
        state.status.as_str(),
        state.progress,
        state.variants.len()
    );
    if !running.is_empty() {
        line.push_str(&format!(", transcoding {}", running.join(", ")));
    }
    line
}

fn print_state(state: &AssetState, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(state)?);
        return Ok(());
    }
    println!(
        "asset {}: {} ({:.0}%)",
        state.asset_id,
        state.status.as_str(),
        state.progress
    );
    if let Some(key) = &state.master_key {
        println!("  master:    {key}");
    }
    if let Some(key) = &state.thumbnail_key {
        println!("  thumbnail: {key}");
    }
    if !state.variants.is_empty() {
        let variants: Vec<String> = state
            .variants
            .iter()
            .map(|v| {
                format!(
                    "{} {}",
                    v.name,
                    serde_json::to_value(v.status)
                        .ok()
                        .and_then(|s| s.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )
            })
            .collect();
        println!("  variants:  {}", variants.join(", "));
    }
    if let Some(error) = &state.error {
        println!("  error:     {error}");
    }
    Ok(())
}

fn exit_code(state: &AssetState) -> ExitCode {
    ExitCode::from(state.status.exit_code() as u8)
}
