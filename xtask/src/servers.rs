//! The two servers of the local stack, wherever and on whatever ports they run: a Temporal dev
//! server on a SQLite file, and a single-node Garage. `cargo xtask up` runs one of each on the
//! standard ports under `.pulse/`; fault tests run private ones they can kill and restart.

use crate::process::{Service, port_open, wait_until};
use anyhow::{Context, bail};
use std::{fs, io::Read, path::PathBuf, process::Command, time::Duration};

/// The search attributes the video workflow keeps current (name, type); the same as
/// `pulse_workflows::search::REGISTRATION`, which a test checks.
pub const SEARCH_ATTRIBUTES: [(&str, &str); 3] = [
    ("PulseAssetId", "Keyword"),
    ("PulseStatus", "Keyword"),
    ("PulseVariantsDone", "Int"),
];

/// A Temporal dev server keeping its state in `db`.
pub struct TemporalDev {
    /// The `temporal` CLI.
    pub binary: PathBuf,
    /// The SQLite file.
    pub db: PathBuf,
    /// The gRPC port.
    pub port: u16,
    /// The web UI port, or none for a headless server.
    pub ui_port: Option<u16>,
}

impl TemporalDev {
    /// `host:port` of the gRPC endpoint.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the server as `service` unless it runs, and waits until it is healthy.
    /// Returns whether it was started now.
    pub fn start(&self, service: &Service) -> anyhow::Result<bool> {
        if service.running_pid().is_none() && port_open(&self.address()) {
            bail!(
                "{} is taken by a program that was not started here; stop it first",
                self.address()
            );
        }
        let mut command = Command::new(&self.binary);
        command
            .args([
                "server",
                "start-dev",
                "--ip",
                "127.0.0.1",
                "--log-level",
                "warn",
            ])
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--db-filename")
            .arg(&self.db)
            // A write-ahead log synced at checkpoints, not at every commit: each heartbeat is a
            // commit, and the state still survives the server being killed (only a machine
            // crash could lose the last commits, which a dev server may).
            .args(["--sqlite-pragma", "journal_mode=wal"])
            .args(["--sqlite-pragma", "synchronous=normal"]);
        match self.ui_port {
            Some(port) => command.arg("--ui-port").arg(port.to_string()),
            None => command.arg("--headless"),
        };
        let started = service.start(command)?;
        if !wait_until(Duration::from_secs(60), || self.healthy()) {
            service.fail_with_log("the Temporal dev server did not become healthy")?;
        }
        self.register_search_attributes()?;
        Ok(started)
    }

    /// Registers Pulse's search attributes on the `default` namespace (idempotent).
    fn register_search_attributes(&self) -> anyhow::Result<()> {
        let mut command = Command::new(&self.binary);
        command.args([
            "operator",
            "search-attribute",
            "create",
            "--address",
            &self.address(),
        ]);
        for (name, kind) in SEARCH_ATTRIBUTES {
            command.args(["--name", name, "--type", kind]);
        }
        let output = command
            .output()
            .context("registering the search attributes")?;
        if !output.status.success() {
            bail!(
                "registering the search attributes failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    fn healthy(&self) -> bool {
        Command::new(&self.binary)
            .args([
                "operator",
                "cluster",
                "health",
                "--address",
                &self.address(),
            ])
            .output()
            .is_ok_and(|output| output.status.success())
    }
}

/// A single-node Garage keeping its data and metadata under `dir`.
pub struct GarageNode {
    /// The `garage` binary.
    pub binary: PathBuf,
    /// Where its config, data and metadata live.
    pub dir: PathBuf,
    /// First of four consecutive ports: S3 API, RPC, web, admin.
    pub base_port: u16,
}

/// An S3 access key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Key {
    /// `AWS_ACCESS_KEY_ID`
    pub id: String,
    /// `AWS_SECRET_ACCESS_KEY`
    pub secret: String,
}

/// Garage's S3 region.
pub const S3_REGION: &str = "garage";

impl GarageNode {
    /// The S3 endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.base_port)
    }

    fn config(&self) -> PathBuf {
        self.dir.join("garage.toml")
    }

    /// Starts the node as `service` unless it runs, and waits until it answers. The config
    /// (with a fresh RPC secret) is written the first time. Returns whether it was started now.
    pub fn start(&self, service: &Service) -> anyhow::Result<bool> {
        let s3 = format!("127.0.0.1:{}", self.base_port);
        if service.running_pid().is_none() && port_open(&s3) {
            bail!("{s3} is taken by a program that was not started here; stop it first");
        }
        if !self.config().exists() {
            fs::create_dir_all(&self.dir)?;
            fs::write(self.config(), self.config_text(&random_hex(32)?))?;
        }
        let mut command = Command::new(&self.binary);
        command.arg("-c").arg(self.config()).arg("server");
        let started = service.start(command)?;
        if !wait_until(Duration::from_secs(30), || self.cli(&["status"]).is_ok()) {
            service.fail_with_log("Garage did not start")?;
        }
        Ok(started)
    }

    /// Gives the node its role (once), and makes sure `bucket` exists and `key_name` owns it.
    pub fn configure(&self, bucket: &str, key_name: &str) -> anyhow::Result<S3Key> {
        let layout = self.cli(&["layout", "show"])?;
        if layout.contains("Current cluster layout version: 0") {
            let node = self.cli(&["node", "id", "-q"])?;
            let node = node.trim().split('@').next().unwrap_or_default().to_owned();
            self.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])?;
            self.cli(&["layout", "apply", "--version", "1"])?;
        }
        let key_info = match self.cli(&["key", "info", key_name, "--show-secret"]) {
            Ok(info) => info,
            Err(_) => {
                self.cli(&["key", "create", key_name])?;
                self.cli(&["key", "info", key_name, "--show-secret"])?
            }
        };
        if self.cli(&["bucket", "info", bucket]).is_err() {
            self.cli(&["bucket", "create", bucket])?;
        }
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", key_name,
        ])?;
        let field = |name: &str| {
            key_info
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|value| value.trim().to_owned())
                .with_context(|| format!("garage key info printed no {name}"))
        };
        Ok(S3Key {
            id: field("Key ID:")?,
            secret: field("Secret key:")?,
        })
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(&self.binary)
            .arg("-c")
            .arg(self.config())
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

    /// Single node, SQLite metadata, everything bound to loopback.
    fn config_text(&self, rpc_secret: &str) -> String {
        let port = |offset: u16| format!("127.0.0.1:{}", self.base_port + offset);
        format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
# Video segments do not compress: trying zstd on every block only costs CPU.
compression_level = "none"
rpc_bind_addr = "{rpc}"
rpc_public_addr = "{rpc}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{S3_REGION}"
api_bind_addr = "{s3}"
root_domain = ".s3.garage.localhost"

[s3_web]
bind_addr = "{web}"
root_domain = ".web.garage.localhost"
index = "index.html"

[admin]
api_bind_addr = "{admin}"
"#,
            meta = self.dir.join("meta").display(),
            data = self.dir.join("data").display(),
            s3 = port(0),
            rpc = port(1),
            web = port(2),
            admin = port(3),
        )
    }
}

/// `bytes` random bytes as hex, from the kernel.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    fs::File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}
