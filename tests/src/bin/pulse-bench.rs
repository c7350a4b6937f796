//! `pulse-bench`: the benchmark `cargo xtask bench` runs (see `pulse_tests::bench`). Needs the
//! local stack (`cargo xtask up`) and release binaries in `PULSE_BIN_DIR`.

use clap::Parser;
use pulse_tests::bench::{self, Options};

/// Times Pulse against plain ffmpeg on a generated 30 s 1080p30 clip.
#[derive(Parser)]
struct Args {
    /// Runs of each measurement; the table gives their median, min and max.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print every run and their summary as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Skip fast start on a 10-minute clip (cancelled once it plays).
    #[arg(long)]
    no_long_video: bool,
    /// Skip the scaling runs (a longer clip with 1 and 2 workers).
    #[arg(long)]
    no_scaling: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let report = bench::run(Options {
        runs: args.runs,
        long_video: !args.no_long_video,
        scaling: !args.no_scaling,
    })
    .await;
    if args.json {
        println!("{}", report.json()?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
