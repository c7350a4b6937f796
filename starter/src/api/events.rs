//! The event stream of SPEC section 4 to browsers: workers POST signed events to the webhook
//! route, and every WebSocket following that asset gets them. A client that connects late first
//! gets the current state as events, so nothing is missed.

use super::{ApiState, error::ApiError};
use axum::{
    body::Bytes,
    extract::{
        Path, State, WebSocketUpgrade,
        ws::{Message, WebSocket},
    },
    http::{HeaderMap, StatusCode},
    response::Response,
};
use pulse_activities::notify::rfc3339;
use pulse_workflows::{
    AssetId, AssetState, AssetStatus,
    events::{Event, Stage, signature},
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};
use tokio::sync::broadcast;

/// Events buffered per follower; a follower that falls further behind misses progress updates
/// (never stage events, which are rare).
const FOLLOWER_BUFFER: usize = 256;

/// Live events by asset.
#[derive(Clone, Default)]
pub struct EventHub {
    channels: Arc<Mutex<HashMap<AssetId, broadcast::Sender<Event>>>>,
}

impl EventHub {
    fn follow(&self, asset: &AssetId) -> broadcast::Receiver<Event> {
        let mut channels = self.channels.lock().expect("event hub lock");
        channels.retain(|_, sender| sender.receiver_count() > 0);
        channels
            .entry(asset.clone())
            .or_insert_with(|| broadcast::channel(FOLLOWER_BUFFER).0)
            .subscribe()
    }

    fn publish(&self, asset: &AssetId, event: Event) {
        if let Some(sender) = self.channels.lock().expect("event hub lock").get(asset) {
            let _ = sender.send(event);
        }
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `POST /v1/webhooks/events`: an event from a worker, signed with the webhook secret.
pub async fn receive(
    State(api): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let Some(secret) = &api.config.webhook_secret else {
        return Err(ApiError::not_found(
            "webhooks are not configured (PULSE_WEBHOOK_SECRET)",
        ));
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    signature::verify(
        secret.as_bytes(),
        header(signature::TIMESTAMP_HEADER),
        header(signature::SIGNATURE_HEADER),
        &body,
        now_unix(),
    )
    .map_err(|error| ApiError::invalid(format!("rejected delivery: {error}")))?;
    let event: Event = serde_json::from_slice(&body)
        .map_err(|error| ApiError::invalid(format!("not an event: {error}")))?;
    let asset = super::asset_id(&event.asset_id)?;
    api.events.publish(&asset, event);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/assets/{id}/events`: a WebSocket of the asset's events, starting with its current
/// state; closed after the terminal event.
pub async fn follow(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let asset = super::asset_id(&id)?;
    // Subscribe before reading the state, so nothing falls between the two.
    let live = api.events.follow(&asset);
    let state = api.starter.status(&asset).await?;
    let snapshot = snapshot_events(
        &state,
        &api.config.public_base_url,
        &rfc3339(now_unix() * 1000),
    );
    Ok(upgrade.on_upgrade(move |socket| stream(socket, snapshot, live)))
}

async fn stream(mut socket: WebSocket, snapshot: Vec<Event>, mut live: broadcast::Receiver<Event>) {
    for event in snapshot {
        let terminal = is_terminal(&event);
        if send(&mut socket, &event).await.is_err() || terminal {
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    }
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(event) => {
                    let terminal = is_terminal(&event);
                    if send(&mut socket, &event).await.is_err() || terminal {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

fn is_terminal(event: &Event) -> bool {
    event.stage.is_some_and(Stage::is_terminal)
}

async fn send(socket: &mut WebSocket, event: &Event) -> Result<(), axum::Error> {
    let text = serde_json::to_string(event).expect("events serialize");
    socket.send(Message::Text(text.into())).await
}

/// The events that bring a late follower up to `state`, in SPEC order, dated `at`; object keys
/// become URLs under `base_url`.
pub fn snapshot_events(state: &AssetState, base_url: &str, at: &str) -> Vec<Event> {
    let event = |stage: Option<Stage>| {
        let mut event = Event::update(state.asset_id.clone(), at);
        event.stage = stage;
        event
    };
    let url = |key: &str| format!("{}/{key}", base_url.trim_end_matches('/'));
    let mut events = Vec::new();
    if state.status == AssetStatus::Queued {
        return events;
    }
    events.push(event(Some(Stage::Processing)));
    if let Some(key) = &state.thumbnail_key {
        events.push(Event {
            url: Some(url(key)),
            ..event(Some(Stage::ThumbnailReady))
        });
    }
    if let Some(key) = &state.master_key {
        events.push(Event {
            url: Some(url(key)),
            ..event(Some(Stage::Playable))
        });
    }
    match state.status {
        AssetStatus::Done => events.push(Event {
            progress: Some(100.0),
            ..event(Some(Stage::Done))
        }),
        AssetStatus::Partial | AssetStatus::Failed => events.push(Event {
            status: Some(state.status),
            error: state.error.clone(),
            ..event(Some(Stage::Failed))
        }),
        _ if state.progress > 0.0 => events.push(Event {
            progress: Some((state.progress * 10.0).round() / 10.0),
            ..event(None)
        }),
        _ => {}
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_workflows::state::{VariantState, VariantStatus};

    fn state(status: AssetStatus) -> AssetState {
        AssetState {
            asset_id: "a1".into(),
            status,
            master_key: Some("processed/a1/hls/master.m3u8".into()),
            thumbnail_key: Some("processed/a1/thumbnail.webp".into()),
            progress: 42.46,
            variants: vec![VariantState {
                name: "240p".into(),
                status: VariantStatus::Done,
            }],
            error: None,
        }
    }

    fn stages(events: &[Event]) -> Vec<Option<Stage>> {
        events.iter().map(|e| e.stage).collect()
    }

    #[test]
    fn a_late_follower_catches_up_in_spec_order() {
        let events = snapshot_events(&state(AssetStatus::Playable), "http://api/media/", "t");
        assert_eq!(
            stages(&events),
            [
                Some(Stage::Processing),
                Some(Stage::ThumbnailReady),
                Some(Stage::Playable),
                None
            ]
        );
        assert_eq!(
            events[1].url.as_deref(),
            Some("http://api/media/processed/a1/thumbnail.webp")
        );
        assert_eq!(
            events[2].url.as_deref(),
            Some("http://api/media/processed/a1/hls/master.m3u8")
        );
        assert_eq!(events[3].progress, Some(42.5));
    }

    #[test]
    fn finished_assets_end_with_their_one_terminal_event() {
        let done = snapshot_events(&state(AssetStatus::Done), "b", "t");
        assert_eq!(done.last().unwrap().stage, Some(Stage::Done));
        assert_eq!(done.last().unwrap().progress, Some(100.0));
        let mut partial = state(AssetStatus::Partial);
        partial.error = Some("variant 360p failed".into());
        let events = snapshot_events(&partial, "b", "t");
        let last = events.last().unwrap();
        assert_eq!(
            (last.stage, last.status),
            (Some(Stage::Failed), Some(AssetStatus::Partial))
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| e.stage.is_some_and(Stage::is_terminal))
                .count(),
            1
        );
        assert!(snapshot_events(&AssetState::queued("a1"), "b", "t").is_empty());
    }
}
