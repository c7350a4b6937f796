//! Background services started by xtask: each runs in its own session (so Ctrl-C in the
//! terminal does not reach it), logs to `.pulse/logs/NAME.log` and is remembered in
//! `.pulse/run/NAME.pid`, so `down` stops exactly what was started.

use anyhow::{Context, bail};
use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// A named background service.
pub struct Service {
    name: &'static str,
    pid_file: PathBuf,
    log_file: PathBuf,
}

impl Service {
    /// The service `name`, with its files under `state_dir`.
    pub fn new(state_dir: &Path, name: &'static str) -> Self {
        Self {
            name,
            pid_file: state_dir.join("run").join(format!("{name}.pid")),
            log_file: state_dir.join("logs").join(format!("{name}.log")),
        }
    }

    /// The service's log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The pid of the running service, if it runs.
    pub fn running_pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        // A recycled pid belongs to something else: the command line must still be ours.
        let ours = String::from_utf8_lossy(&cmdline).contains(&self.program_marker());
        (alive && ours).then_some(pid)
    }

    fn program_marker(&self) -> String {
        fs::read_to_string(self.pid_file.with_extension("cmd")).unwrap_or_default()
    }

    /// Starts `command` in the background unless the service already runs.
    /// Returns whether it was started now.
    pub fn start(&self, mut command: Command) -> anyhow::Result<bool> {
        if self.running_pid().is_some() {
            return Ok(false);
        }
        for dir in [self.pid_file.parent(), self.log_file.parent()]
            .into_iter()
            .flatten()
        {
            fs::create_dir_all(dir)?;
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)?;
        let program = command.get_program().to_string_lossy().into_owned();
        // SAFETY: setsid(2) is async-signal-safe; it detaches the child from our terminal.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} ({program})", self.name))?;
        fs::write(&self.pid_file, child.id().to_string())?;
        fs::write(self.pid_file.with_extension("cmd"), program)?;
        Ok(true)
    }

    /// Kills the service at once with SIGKILL, as a crash would. Returns whether it ran.
    pub fn kill(&self) -> bool {
        let Some(pid) = self.running_pid() else {
            return false;
        };
        // SAFETY: sending a signal to a pid we started and verified above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_until(Duration::from_secs(10), || {
            is_zombie(pid) || unsafe { libc::kill(pid, 0) } != 0
        });
        let _ = fs::remove_file(&self.pid_file);
        true
    }

    /// Stops the service if it runs: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&self, grace: Duration) -> anyhow::Result<bool> {
        let Some(pid) = self.running_pid() else {
            let _ = fs::remove_file(&self.pid_file);
            return Ok(false);
        };
        // SAFETY: sending signals to a pid we started and verified above.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid) {
            thread::sleep(Duration::from_millis(100));
        }
        if unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = fs::remove_file(&self.pid_file);
        Ok(true)
    }

    /// Fails with the end of the service's log and, when the service panicked, the panic's own
    /// message: a panic's backtrace (Garage prints one always) would push it out of the end.
    pub fn fail_with_log(&self, what: &str) -> anyhow::Result<()> {
        let log = fs::read_to_string(&self.log_file).unwrap_or_default();
        bail!("{what}; {}", log_excerpt(&log, &self.log_file))
    }
}

/// How many lines of a log [`Service::fail_with_log`] shows from its end.
const EXCERPT_LINES: usize = 20;
/// How many lines it shows from a panic: Rust's "panicked at FILE:LINE:" and the message.
const PANIC_LINES: usize = 3;

/// The last lines of `log`, preceded by the first lines of its last panic if they come before.
fn log_excerpt(log: &str, path: &Path) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let tail_start = lines.len().saturating_sub(EXCERPT_LINES);
    let tail = lines[tail_start..].join("\n");
    let panic = lines
        .iter()
        .rposition(|line| line.contains("panicked at"))
        .filter(|&at| at < tail_start);
    match panic {
        Some(at) => format!(
            "it panicked:\n{}\n[…]\nthe end of {}:\n{tail}",
            lines[at..(at + PANIC_LINES).min(tail_start)].join("\n"),
            path.display()
        ),
        None => format!("the end of {}:\n{tail}", path.display()),
    }
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Waits until `ready` says yes, or fails after `timeout`.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        thread::sleep(Duration::from_millis(250));
    }
    ready()
}

/// Whether something accepts TCP connections at `addr`.
pub fn port_open(addr: &str) -> bool {
    addr.parse().ok().is_some_and(|addr| {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_log_is_shown_whole() {
        let excerpt = log_excerpt("starting\nlistening", Path::new("x.log"));
        assert_eq!(excerpt, "the end of x.log:\nstarting\nlistening");
    }

    #[test]
    fn a_panic_before_a_long_backtrace_is_shown_above_the_end() {
        let backtrace: Vec<String> = (0..40)
            .map(|i| format!("  {i}: core::panicking::f"))
            .collect();
        let log = format!(
            "starting\n======== PANIC ========\npanicked at netapp.rs:234:52:\n\
             called `Result::unwrap()` on an `Err` value: AddrInUse\n\nBACKTRACE:\n{}",
            backtrace.join("\n")
        );
        let excerpt = log_excerpt(&log, Path::new("x.log"));
        assert!(
            excerpt.starts_with(
                "it panicked:\npanicked at netapp.rs:234:52:\n\
                 called `Result::unwrap()` on an `Err` value: AddrInUse\n\n[…]\nthe end of x.log:\n"
            ),
            "{excerpt}"
        );
        assert!(excerpt.ends_with("39: core::panicking::f"), "{excerpt}");
    }
}
