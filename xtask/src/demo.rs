//! `cargo xtask demo [FILE]`: the stack, a worker, the API with its demo page, and one video
//! processed end to end; then where to watch it.

use anyhow::{Context, bail};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use xtask::{install, process::wait_until, stack::Stack};

/// Where the demo API listens.
const API_ADDR: &str = "127.0.0.1:8080";
const API_URL: &str = "http://localhost:8080";

/// Processes `file` (or a generated clip) and prints where to watch the result.
pub fn run(stack: &Stack, file: Option<PathBuf>) -> anyhow::Result<()> {
    stack.up()?;
    install::web_packages(&stack.root().join("web"))?;
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
    let token = stack.secret("api-token")?;
    let webhook_secret = stack.secret("webhook-secret")?;

    // Restarted every time, so they run the binaries just built.
    let api = stack.service("api");
    api.stop(Duration::from_secs(10))?;
    let mut serve = stack.command(bin.join("pulse-starter"))?;
    serve
        .arg("serve")
        .env("PULSE_API_ADDR", API_ADDR)
        .env("PULSE_API_TOKEN", &token)
        .env("PULSE_WEBHOOK_SECRET", &webhook_secret)
        .env("PULSE_PUBLIC_BASE_URL", format!("{API_URL}/media"))
        .env("PULSE_WEB_DIR", stack.root().join("web"));
    api.start(serve)?;
    if !wait_until(Duration::from_secs(30), || {
        xtask::process::port_open(API_ADDR)
    }) {
        api.fail_with_log("pulse-starter serve did not start")?;
    }
    let worker = stack.service("worker");
    worker.stop(Duration::from_secs(30))?;
    let mut work = stack.command(bin.join("pulse-worker"))?;
    work.env(
        "PULSE_WEBHOOK_URL",
        format!("http://{API_ADDR}/v1/webhooks/events"),
    )
    .env("PULSE_WEBHOOK_SECRET", &webhook_secret)
    .env("PULSE_PUBLIC_BASE_URL", format!("{API_URL}/media"));
    worker.start(work)?;
    println!(
        "started pulse-worker and pulse-starter serve (logs in {})",
        stack.state().join("logs").display()
    );

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
    println!("\nfinal state: {state}\n");
    install::run(
        stack
            .command(bin.join("pulse-starter"))?
            .args(["status", &asset]),
    )?;
    println!("\nmaster playlist: {API_URL}/media/processed/{asset}/hls/master.m3u8");
    println!("                 (open it with any HLS player: ffplay, VLC, Safari)");
    println!("Temporal UI:     http://localhost:8233/namespaces/default/workflows/video-{asset}");
    println!("demo page:       {API_URL}/#token={token}  (upload your own video there)");
    println!("\nThe worker and the API keep running; `cargo xtask down` stops everything.");
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
