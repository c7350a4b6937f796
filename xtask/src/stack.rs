//! The local stack: a Temporal dev server and a single-node Garage, with their state, logs and
//! the generated `.pulse/env` under `.pulse/` at the workspace root.

use crate::{
    install,
    process::{Service, port_open, wait_until},
};
use anyhow::{Context, bail};
use std::{
    fmt::Write as _,
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

const TEMPORAL_ADDRESS: &str = "127.0.0.1:7233";
const TEMPORAL_UI: &str = "http://localhost:8233";
const S3_ADDRESS: &str = "127.0.0.1:3900";
const GARAGE_RPC: &str = "127.0.0.1:3901";
const GARAGE_WEB: &str = "127.0.0.1:3902";
const GARAGE_ADMIN: &str = "127.0.0.1:3903";
/// The bucket of SPEC section 1.
pub const BUCKET: &str = "pulse-media";
const KEY_NAME: &str = "pulse-key";
const S3_REGION: &str = "garage";

/// The local stack of one checkout.
pub struct Stack {
    root: PathBuf,
    state: PathBuf,
}

impl Stack {
    /// The stack of the workspace this xtask belongs to.
    pub fn at_workspace_root() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives in the workspace")
            .to_path_buf();
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

    /// Installs what is missing and starts what is not running. Idempotent.
    pub fn up(&self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.state)?;
        install::ffmpeg()?;
        let temporal = install::temporal(&self.state.join("tools"))?;
        let garage = install::garage()?;
        self.start_temporal(&temporal)?;
        self.start_garage(&garage)?;
        let (key_id, secret) = self.configure_garage(&garage)?;
        self.write_env(&key_id, &secret)
    }

    /// Stops the worker, Garage and Temporal if this checkout started them.
    pub fn down(&self) -> anyhow::Result<()> {
        for name in ["worker", "garage", "temporal"] {
            if self.service(name).stop(Duration::from_secs(15))? {
                println!("stopped {name}");
            }
        }
        Ok(())
    }

    fn start_temporal(&self, temporal: &Path) -> anyhow::Result<()> {
        let service = self.service("temporal");
        if service.running_pid().is_none() && port_open(TEMPORAL_ADDRESS) {
            bail!(
                "{TEMPORAL_ADDRESS} is taken by a program this checkout did not start; stop it first"
            );
        }
        let mut command = Command::new(temporal);
        command
            .args([
                "server",
                "start-dev",
                "--ip",
                "127.0.0.1",
                "--port",
                "7233",
                "--ui-port",
                "8233",
            ])
            .args(["--log-level", "warn", "--db-filename"])
            .arg(self.state.join("temporal.db"));
        if service.start(command)? {
            println!("started the Temporal dev server (UI {TEMPORAL_UI})");
        }
        let healthy = || {
            Command::new(temporal)
                .args([
                    "operator",
                    "cluster",
                    "health",
                    "--address",
                    TEMPORAL_ADDRESS,
                ])
                .output()
                .is_ok_and(|output| output.status.success())
        };
        if !wait_until(Duration::from_secs(60), healthy) {
            service.fail_with_log("the Temporal dev server did not become healthy")?;
        }
        Ok(())
    }

    fn garage_config(&self) -> PathBuf {
        self.state.join("garage").join("garage.toml")
    }

    fn start_garage(&self, garage: &Path) -> anyhow::Result<()> {
        let service = self.service("garage");
        if service.running_pid().is_none() && port_open(S3_ADDRESS) {
            bail!("{S3_ADDRESS} is taken by a program this checkout did not start; stop it first");
        }
        let config = self.garage_config();
        if !config.exists() {
            let dir = config.parent().expect("config has a folder");
            fs::create_dir_all(dir)?;
            fs::write(&config, garage_toml(dir, &random_hex(32)?))?;
        }
        let mut command = Command::new(garage);
        command.arg("-c").arg(&config).arg("server");
        if service.start(command)? {
            println!("started Garage (S3 on http://{S3_ADDRESS})");
        }
        if !wait_until(Duration::from_secs(30), || {
            self.garage_cli(garage, &["status"]).is_ok()
        }) {
            service.fail_with_log("Garage did not start")?;
        }
        Ok(())
    }

    /// Gives the single node its role, creates the bucket and its key. Returns the key.
    fn configure_garage(&self, garage: &Path) -> anyhow::Result<(String, String)> {
        let layout = self.garage_cli(garage, &["layout", "show"])?;
        if layout.contains("Current cluster layout version: 0") {
            let node = self.garage_cli(garage, &["node", "id", "-q"])?;
            let node = node.trim().split('@').next().unwrap_or_default().to_owned();
            self.garage_cli(
                garage,
                &["layout", "assign", "-z", "dc1", "-c", "1G", &node],
            )?;
            self.garage_cli(garage, &["layout", "apply", "--version", "1"])?;
        }
        let key_info = match self.garage_cli(garage, &["key", "info", KEY_NAME, "--show-secret"]) {
            Ok(info) => info,
            Err(_) => {
                self.garage_cli(garage, &["key", "create", KEY_NAME])?;
                self.garage_cli(garage, &["key", "info", KEY_NAME, "--show-secret"])?
            }
        };
        if self
            .garage_cli(garage, &["bucket", "info", BUCKET])
            .is_err()
        {
            self.garage_cli(garage, &["bucket", "create", BUCKET])?;
        }
        self.garage_cli(
            garage,
            &[
                "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", KEY_NAME,
            ],
        )?;
        let field = |name: &str| {
            key_info
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|value| value.trim().to_owned())
                .with_context(|| format!("garage key info printed no {name}"))
        };
        Ok((field("Key ID:")?, field("Secret key:")?))
    }

    fn garage_cli(&self, garage: &Path, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(garage)
            .arg("-c")
            .arg(self.garage_config())
            .args(args)
            .output()
            .with_context(|| format!("running garage {}", args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "garage {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn env_file(&self) -> PathBuf {
        self.state.join("env")
    }

    fn write_env(&self, key_id: &str, secret: &str) -> anyhow::Result<()> {
        let vars = [
            ("TEMPORAL_ADDRESS", TEMPORAL_ADDRESS),
            ("TEMPORAL_NAMESPACE", "default"),
            ("AWS_ENDPOINT_URL", &format!("http://{S3_ADDRESS}")),
            ("AWS_REGION", S3_REGION),
            ("AWS_ACCESS_KEY_ID", key_id),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("PULSE_BUCKET", BUCKET),
            (
                "PULSE_WORK_DIR",
                &self.state.join("work").display().to_string(),
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
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        install::run(self.command(cargo)?.args(args))
    }

    /// Where the local stack can be reached.
    pub fn print_summary(&self) {
        println!("Temporal:  {TEMPORAL_ADDRESS} (UI {TEMPORAL_UI})");
        println!("S3:        http://{S3_ADDRESS} (bucket {BUCKET})");
        println!("variables: source {}", self.env_file().display());
    }
}

/// A single-node Garage with SQLite metadata, bound to loopback.
fn garage_toml(dir: &Path, rpc_secret: &str) -> String {
    format!(
        r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "{GARAGE_RPC}"
rpc_public_addr = "{GARAGE_RPC}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{S3_REGION}"
api_bind_addr = "{S3_ADDRESS}"
root_domain = ".s3.garage.localhost"

[s3_web]
bind_addr = "{GARAGE_WEB}"
root_domain = ".web.garage.localhost"
index = "index.html"

[admin]
api_bind_addr = "{GARAGE_ADMIN}"
"#,
        meta = dir.join("meta").display(),
        data = dir.join("data").display(),
    )
}

/// `bytes` random bytes as hex, from the kernel.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    fs::File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}
