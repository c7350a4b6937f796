//! `cargo xtask demo [FILE]`: the stack, a worker, and one video processed end to end.

use anyhow::{Context, bail};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};
use xtask::{
    install,
    stack::{BUCKET, Stack},
};

/// Processes `file` (or a generated clip) and prints where to watch the result.
pub fn run(stack: &Stack, file: Option<PathBuf>) -> anyhow::Result<()> {
    stack.up()?;
    stack.cargo(&[
        "build",
        "--quiet",
        "--bins",
        "-p",
        "pulse-worker",
        "-p",
        "pulse-starter",
    ])?;
    let bin = stack.root().join("target").join("debug");
    let worker = stack.service("worker");
    if worker.start(stack.command(bin.join("pulse-worker"))?)? {
        println!("started pulse-worker (log {})", worker.log_file().display());
    }
    let file = match file {
        Some(file) => file,
        None => sample_clip(stack.state())?,
    };
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let asset = format!("demo-{stamp}");
    println!("processing {} as asset {asset}...", file.display());
    let output = stack
        .command(bin.join("pulse-starter"))?
        .args(["process", "--wait", "--json", "--asset-id", &asset])
        .arg(&file)
        .stderr(Stdio::inherit())
        .output()
        .context("running pulse-starter")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(state) = stdout.lines().last() else {
        bail!("pulse-starter printed no state ({})", output.status);
    };
    println!("\nfinal state: {state}");
    println!(
        "master playlist: s3://{}/processed/{asset}/hls/master.m3u8",
        BUCKET
    );
    install::run(
        stack
            .command(bin.join("pulse-starter"))?
            .args(["status", &asset]),
    )?;
    println!("Temporal UI: http://localhost:8233/namespaces/default/workflows/video-{asset}");
    println!("(the worker keeps running; `cargo xtask down` stops the stack)");
    Ok(())
}

/// A 20 s 720p test pattern with a tone, generated once.
fn sample_clip(state_dir: &Path) -> anyhow::Result<PathBuf> {
    let clip = state_dir.join("demo").join("sample-720p.mp4");
    if clip.exists() {
        return Ok(clip);
    }
    std::fs::create_dir_all(clip.parent().expect("clip has a folder"))?;
    install::run(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=30:duration=20",
            ])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=20"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-shortest",
            ])
            .arg(&clip),
    )?;
    Ok(clip)
}
