//! A real webhook receiver for tests: an HTTP server on 127.0.0.1 that records every delivery
//! and can be told to accept, fail or answer slowly.

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use pulse_workflows::events::{Event, signature};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 204 at once.
    Accept,
    /// 500 at once.
    Fail,
    /// 204 after the given delay.
    Slow(Duration),
}

/// One POST the receiver got.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// `X-Pulse-Timestamp`.
    pub timestamp: String,
    /// `X-Pulse-Signature`.
    pub signature: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// When it arrived, as precisely as the clock says.
    pub arrived: SystemTime,
    /// Whether it was answered with success.
    pub accepted: bool,
}

impl Delivery {
    /// The event in the body.
    pub fn event(&self) -> Event {
        serde_json::from_slice(&self.body).expect("deliveries are events")
    }

    /// When it arrived, Unix seconds (as signature timestamps count).
    pub fn received_at(&self) -> u64 {
        self.arrived.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }
}

#[derive(Default)]
struct Shared {
    mode: Mutex<Option<Mode>>,
    deliveries: Mutex<Vec<Delivery>>,
}

/// A running receiver.
pub struct Receiver {
    /// The URL to POST events to.
    pub url: String,
    /// The signing secret the workers are given.
    pub secret: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver answering in `mode`.
    pub async fn start(mode: Mode) -> Self {
        let shared = Arc::new(Shared::default());
        *shared.mode.lock().unwrap() = Some(mode);
        let app = Router::new()
            .route("/events", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the receiver");
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serving webhooks");
        });
        Self {
            url,
            secret: format!("test-secret-{}", uuid::Uuid::new_v4().simple()),
            shared,
            server,
        }
    }

    /// Changes how the receiver answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = Some(mode);
    }

    /// The variables that point workers at this receiver.
    pub fn worker_env(&self) -> [(&str, &str); 2] {
        [
            ("PULSE_WEBHOOK_URL", &self.url),
            ("PULSE_WEBHOOK_SECRET", &self.secret),
        ]
    }

    /// Every delivery so far, accepted or not, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.deliveries.lock().unwrap().clone()
    }

    /// The events of the accepted deliveries, in arrival order.
    pub fn accepted_events(&self) -> Vec<Event> {
        self.deliveries()
            .iter()
            .filter(|d| d.accepted)
            .map(Delivery::event)
            .collect()
    }

    /// Waits until an accepted delivery carries a terminal stage (done or failed).
    pub async fn wait_for_terminal_event(&self, timeout: Duration) -> Vec<Event> {
        self.wait_for(timeout, "terminal event", |event| {
            event.stage.is_some_and(|s| s.is_terminal())
        })
        .await
    }

    /// Waits until an accepted delivery carries an event that `wanted` (described by `what`);
    /// returns the accepted events so far.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&Event) -> bool,
    ) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let events = self.accepted_events();
            if events.iter().any(&wanted) {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} within {timeout:?}; got {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mode = shared.mode.lock().unwrap().unwrap_or(Mode::Accept);
    if let Mode::Slow(delay) = mode {
        tokio::time::sleep(delay).await;
    }
    let accepted = mode != Mode::Fail;
    shared.deliveries.lock().unwrap().push(Delivery {
        timestamp: header(signature::TIMESTAMP_HEADER),
        signature: header(signature::SIGNATURE_HEADER),
        body: body.to_vec(),
        arrived: SystemTime::now(),
        accepted,
    });
    if accepted {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}
