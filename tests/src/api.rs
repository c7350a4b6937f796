//! A real `pulse-starter serve` for tests, on a free port, with workers that send it their
//! events through the signed webhook.

use crate::{
    servers::free_ports,
    stack::{TestEnv, workspace_root},
    worker::{WorkerProcess, binary},
};
use std::{
    fs::File,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running API server, killed when dropped.
pub struct ApiServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// The bearer token.
    pub token: String,
    /// The webhook signing secret workers must use.
    pub webhook_secret: String,
}

impl ApiServer {
    /// Starts `pulse-starter serve` for `env` with `extra` variables, and waits until it answers.
    pub fn spawn(env: &TestEnv, extra: &[(&str, &str)]) -> Self {
        let port = free_ports(1);
        let base_url = format!("http://127.0.0.1:{port}");
        let token = format!("token-{}", uuid::Uuid::new_v4().simple());
        let webhook_secret = format!("webhook-{}", uuid::Uuid::new_v4().simple());
        let log = File::create(env.work_dir.path().join(format!("api-{port}.log"))).unwrap();
        let child = Command::new(binary("pulse-starter"))
            .arg("serve")
            .envs(env.process_env())
            .env("PULSE_API_ADDR", format!("127.0.0.1:{port}"))
            .env("PULSE_API_TOKEN", &token)
            .env("PULSE_WEBHOOK_SECRET", &webhook_secret)
            .env("PULSE_PUBLIC_BASE_URL", format!("{base_url}/media"))
            .env(
                "PULSE_UPLOAD_ORIGINS",
                format!("{base_url},http://localhost:{port}"),
            )
            .env("PULSE_WEB_DIR", workspace_root().join("web"))
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting pulse-starter serve");
        let server = Self {
            child,
            base_url,
            token,
            webhook_secret,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "pulse-starter serve did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// A worker for `env` that sends its events to this server, with `extra` variables.
    pub fn worker(&self, env: &TestEnv, extra: &[(&str, &str)]) -> WorkerProcess {
        let webhook = format!("{}/v1/webhooks/events", self.base_url);
        let media = format!("{}/media", self.base_url);
        let mut vars = vec![
            ("PULSE_WEBHOOK_URL", webhook.as_str()),
            ("PULSE_WEBHOOK_SECRET", self.webhook_secret.as_str()),
            ("PULSE_PUBLIC_BASE_URL", media.as_str()),
        ];
        vars.extend_from_slice(extra);
        WorkerProcess::spawn(env, &vars)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
