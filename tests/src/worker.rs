//! Real `pulse-worker` processes for tests.

use crate::stack::{TestEnv, workspace_root};
use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The path of a workspace binary built by `cargo build --bins` (`cargo xtask test` builds them
/// before running tests).
pub fn binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("PULSE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"))
                .join("debug")
        });
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first (`cargo xtask test` does, or `cargo build --bins`)",
        path.display()
    );
    path
}

/// A running `pulse-worker`, killed when dropped.
pub struct WorkerProcess {
    child: Child,
    /// Where its output goes.
    pub log: PathBuf,
}

impl WorkerProcess {
    /// A worker polling both of the test's queues, with `extra` variables (e.g. a fault switch).
    pub fn spawn(env: &TestEnv, extra: &[(&str, &str)]) -> Self {
        Self::spawn_on(
            env,
            &[&env.settings.video_queue, &env.settings.light_queue],
            extra,
        )
    }

    /// A worker polling `queues` only.
    pub fn spawn_on(env: &TestEnv, queues: &[&str], extra: &[(&str, &str)]) -> Self {
        let log = env
            .work_dir
            .path()
            .join(format!("worker-{}.log", uuid::Uuid::new_v4().simple()));
        let out = File::create(&log).expect("creating the worker log");
        let child = Command::new(binary("pulse-worker"))
            .arg("--queues")
            .arg(queues.join(","))
            .envs(env.process_env())
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("cloning the log handle"))
            .stderr(out)
            .spawn()
            .expect("starting pulse-worker");
        Self { child, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the worker with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the worker to stop with SIGTERM, as a supervisor would, and waits until it exited;
    /// returns how long that took. Panics if it is still running after `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Duration {
        let asked = Instant::now();
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // SAFETY: kill(2) with a valid signal number only sends a signal.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        while asked.elapsed() < limit {
            if !self.is_running() {
                return asked.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "pulse-worker still runs {limit:?} after SIGTERM; its output:\n{}",
            self.output()
        );
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The worker's output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
