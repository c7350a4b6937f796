//! The local stack of a checkout: a Temporal dev server and a single-node Garage on the
//! standard ports, with their state, logs and the generated `.pulse/env` under `.pulse/`.

use crate::{
    install,
    process::Service,
    servers::{GarageNode, S3_REGION, S3Key, TemporalDev},
};
use anyhow::Context;
use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

const TEMPORAL_PORT: u16 = 7233;
const TEMPORAL_UI_PORT: u16 = 8233;
const TEMPORAL_UI: &str = "http://localhost:8233";
const GARAGE_BASE_PORT: u16 = 3900;
/// The bucket of SPEC section 1.
pub const BUCKET: &str = "pulse-media";
const KEY_NAME: &str = "pulse-key";

/// The local stack of one checkout.
pub struct Stack {
    root: PathBuf,
    state: PathBuf,
}

/// The installed tools the stack runs.
pub struct Tools {
    /// The `temporal` CLI.
    pub temporal: PathBuf,
    /// The `garage` binary.
    pub garage: PathBuf,
}

impl Stack {
    /// The stack of the workspace at `root`.
    pub fn at(root: PathBuf) -> Self {
        Self {
            state: root.join(".pulse"),
            root,
        }
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The state folder, `.pulse/`.
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// A background service with its files in the state folder.
    pub fn service(&self, name: &'static str) -> Service {
        Service::new(&self.state, name)
    }

    /// Installs what is missing. Idempotent.
    pub fn install(&self) -> anyhow::Result<Tools> {
        install::ffmpeg()?;
        Ok(Tools {
            temporal: install::temporal(&self.state.join("tools"))?,
            garage: install::garage()?,
        })
    }

    /// Installs what is missing and starts what is not running. Idempotent.
    pub fn up(&self) -> anyhow::Result<Tools> {
        fs::create_dir_all(&self.state)?;
        let tools = self.install()?;
        let temporal = TemporalDev {
            binary: tools.temporal.clone(),
            db: self.state.join("temporal.db"),
            port: TEMPORAL_PORT,
            ui_port: Some(TEMPORAL_UI_PORT),
        };
        if temporal.start(&self.service("temporal"))? {
            eprintln!("started the Temporal dev server (UI {TEMPORAL_UI})");
        }
        let garage = GarageNode {
            binary: tools.garage.clone(),
            dir: self.state.join("garage"),
            base_port: GARAGE_BASE_PORT,
        };
        if garage.start(&self.service("garage"))? {
            eprintln!("started Garage (S3 on {})", garage.endpoint());
        }
        let key = garage.configure(BUCKET, KEY_NAME)?;
        self.write_env(&temporal, &garage, &key)?;
        Ok(tools)
    }

    /// A random secret kept in `.pulse/NAME`, made the first time it is asked for.
    pub fn secret(&self, name: &str) -> anyhow::Result<String> {
        let path = self.state.join(name);
        if let Ok(secret) = fs::read_to_string(&path) {
            return Ok(secret.trim().to_owned());
        }
        let secret = crate::servers::random_hex(16)?;
        fs::write(&path, &secret)?;
        Ok(secret)
    }

    /// Stops the API, the worker, Garage and Temporal if this checkout started them.
    pub fn down(&self) -> anyhow::Result<()> {
        for name in ["api", "worker", "garage", "temporal"] {
            if self.service(name).stop(Duration::from_secs(15))? {
                println!("stopped {name}");
            }
        }
        Ok(())
    }

    fn env_file(&self) -> PathBuf {
        self.state.join("env")
    }

    fn write_env(
        &self,
        temporal: &TemporalDev,
        garage: &GarageNode,
        key: &S3Key,
    ) -> anyhow::Result<()> {
        let vars = [
            ("TEMPORAL_ADDRESS", temporal.address()),
            ("TEMPORAL_NAMESPACE", "default".to_owned()),
            ("AWS_ENDPOINT_URL", garage.endpoint()),
            ("AWS_REGION", S3_REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", key.id.clone()),
            ("AWS_SECRET_ACCESS_KEY", key.secret.clone()),
            ("PULSE_BUCKET", BUCKET.to_owned()),
            (
                "PULSE_WORK_DIR",
                self.state.join("work").display().to_string(),
            ),
        ];
        let mut text = String::from(
            "# Written by `cargo xtask up`: `source .pulse/env` to use the local stack.\n",
        );
        for (name, value) in vars {
            writeln!(text, "export {name}={value}")?;
        }
        fs::write(self.env_file(), text)?;
        Ok(())
    }

    /// The variables of `.pulse/env`.
    pub fn env(&self) -> anyhow::Result<Vec<(String, String)>> {
        let text = fs::read_to_string(self.env_file())
            .context("the local stack is not set up: run cargo xtask up")?;
        Ok(text
            .lines()
            .filter_map(|line| line.strip_prefix("export "))
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect())
    }

    /// A command with the stack's environment, run from the workspace root.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> anyhow::Result<Command> {
        let mut command = Command::new(program);
        command.current_dir(&self.root).envs(self.env()?);
        Ok(command)
    }

    /// Runs cargo with `args` in the stack's environment.
    pub fn cargo(&self, args: &[&str]) -> anyhow::Result<()> {
        install::run(self.command(install::cargo())?.args(args))
    }

    /// Where the local stack can be reached.
    pub fn print_summary(&self) {
        println!("Temporal:  127.0.0.1:{TEMPORAL_PORT} (UI {TEMPORAL_UI})");
        println!("S3:        http://127.0.0.1:{GARAGE_BASE_PORT} (bucket {BUCKET})");
        println!("variables: source {}", self.env_file().display());
    }
}
