//! `pulse-starter serve`: the HTTP API a frontend talks to (the seed's CompleteUpload view and
//! sockets), over the [`crate::Starter`] library.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `POST /v1/uploads` | bearer | new asset, S3 multipart upload, presigned part URLs |
//! | `POST /v1/uploads/{id}/complete` | bearer | complete the upload, start processing (202) |
//! | `GET /v1/assets/{id}` | bearer | the asset's state |
//! | `POST /v1/assets/{id}/retry` | bearer | re-run what failed |
//! | `DELETE /v1/assets/{id}` | bearer | cancel, and remove the asset's objects |
//! | `GET /v1/assets/{id}/events` | bearer (or `?token=`) | WebSocket of the asset's events |
//! | `POST /v1/webhooks/events` | HMAC signature | events from workers |
//! | `GET /`, `/app.js`, `/hls.js` | none | the demo page |
//! | `GET /healthz` | none | liveness |
//! | `GET /media/processed/...` | none | processed objects, as a CDN would serve them |

mod assets;
mod error;
mod events;
mod site;
mod uploads;

pub use error::ApiError;
pub use events::snapshot_events;

use crate::Starter;
use anyhow::Context;
use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Request, State, rejection::JsonRejection},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
};
use pulse_activities::config::parse;
use pulse_workflows::AssetId;
use std::{net::SocketAddr, path::PathBuf, sync::Arc};
use tower_governor::{
    GovernorLayer, governor::GovernorConfigBuilder, key_extractor::SmartIpKeyExtractor,
};

/// Largest request body the API reads (a completion of 10,000 parts fits).
const MAX_BODY_BYTES: usize = 1 << 20;

/// Settings of the API server, from `PULSE_*` variables.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Where to listen (`PULSE_API_ADDR`, default `127.0.0.1:8080`).
    pub addr: SocketAddr,
    /// The bearer token every API call must carry (`PULSE_API_TOKEN`, required).
    pub token: String,
    /// Key of the signed webhook from workers (`PULSE_WEBHOOK_SECRET`); none disables it.
    pub webhook_secret: Option<String>,
    /// Base of the URLs viewers fetch media from (`PULSE_PUBLIC_BASE_URL`, default this server's
    /// `/media`); a CDN in production.
    pub public_base_url: String,
    /// The object store's address as browsers reach it, if not the one this server uses
    /// (`PULSE_S3_PUBLIC_URL`), e.g. a store inside a private network.
    pub s3_public_url: Option<String>,
    /// Origins whose pages may upload straight to the bucket (`PULSE_UPLOAD_ORIGINS`, comma
    /// separated, default this server's own).
    pub upload_origins: Vec<String>,
    /// Largest upload accepted (`PULSE_MAX_SOURCE_BYTES`, default 50 GiB).
    pub max_source_bytes: u64,
    /// Requests per second each client may make (`PULSE_API_RATE`, default 20, bursts of 5x).
    pub requests_per_second: u32,
    /// Folder of the demo page and its npm packages (`PULSE_WEB_DIR`, default `web`).
    pub web_dir: PathBuf,
}

impl ApiConfig {
    /// Reads the settings through `lookup` (a variable name to its value).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let token = lookup("PULSE_API_TOKEN")
            .filter(|token| token.len() >= 16)
            .context("set PULSE_API_TOKEN to a secret of at least 16 characters: every API call must carry it")?;
        let addr: SocketAddr = parse(&lookup, "PULSE_API_ADDR", "127.0.0.1:8080".parse()?)?;
        let own_origin = format!("http://localhost:{}", addr.port());
        let defaults = pulse_activities::probe::Limits::default();
        Ok(Self {
            token,
            webhook_secret: lookup("PULSE_WEBHOOK_SECRET").filter(|s| !s.is_empty()),
            s3_public_url: lookup("PULSE_S3_PUBLIC_URL").filter(|url| !url.is_empty()),
            public_base_url: lookup("PULSE_PUBLIC_BASE_URL")
                .unwrap_or_else(|| format!("{own_origin}/media")),
            upload_origins: match lookup("PULSE_UPLOAD_ORIGINS") {
                Some(list) => list
                    .split(',')
                    .map(|o| o.trim().to_owned())
                    .filter(|o| !o.is_empty())
                    .collect(),
                None => vec![own_origin, format!("http://127.0.0.1:{}", addr.port())],
            },
            max_source_bytes: parse(&lookup, "PULSE_MAX_SOURCE_BYTES", defaults.max_source_bytes)?,
            requests_per_second: parse(&lookup, "PULSE_API_RATE", 20)?,
            web_dir: lookup("PULSE_WEB_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("web")),
            addr,
        })
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    starter: Starter,
    config: Arc<ApiConfig>,
    events: events::EventHub,
}

/// The API's routes over `starter`.
pub fn router(starter: Starter, config: ApiConfig) -> Router {
    let rate = GovernorConfigBuilder::default()
        .per_millisecond((1000 / config.requests_per_second.max(1)).max(1) as u64)
        .burst_size(config.requests_per_second.max(1) * 5)
        .key_extractor(SmartIpKeyExtractor)
        .finish()
        .expect("a valid rate limit");
    let state = ApiState {
        starter,
        config: Arc::new(config),
        events: events::EventHub::default(),
    };
    let api = Router::new()
        .route("/v1/uploads", post(uploads::create))
        .route("/v1/uploads/{id}/complete", post(uploads::complete))
        .route("/v1/assets/{id}", get(assets::get).delete(assets::delete))
        .route("/v1/assets/{id}/retry", post(assets::retry))
        .route("/v1/assets/{id}/events", get(events::follow))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(api)
        .route("/v1/webhooks/events", post(events::receive))
        .route("/healthz", get(|| async { "ok" }))
        .route("/", get(site::index))
        .route("/app.js", get(site::app_js))
        .route("/hls.js", get(site::hls_js))
        .route("/media/{*key}", get(site::media))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(GovernorLayer::new(Arc::new(rate)))
        .with_state(state)
}

/// Serves the API until SIGINT or SIGTERM.
pub async fn serve(starter: Starter, config: ApiConfig) -> anyhow::Result<()> {
    let starter = match &config.s3_public_url {
        Some(url) => starter.with_browser_endpoint(url),
        None => starter,
    };
    starter
        .storage()
        .allow_browser_uploads(&config.upload_origins)
        .await
        .context("letting browsers upload to the bucket (CORS)")?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("listening on {}", config.addr))?;
    tracing::info!(addr = %config.addr, "serving the Pulse API");
    axum::serve(
        listener,
        router(starter, config).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// Refuses API calls without the bearer token (`?token=` is accepted too, since browsers cannot
/// set headers on a WebSocket).
async fn require_token(
    State(api): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let query = request.uri().query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
    });
    let presented = bearer.or(query).unwrap_or_default();
    if constant_time_eq(presented.as_bytes(), api.config.token.as_bytes()) {
        Ok(next.run(request).await)
    } else {
        Err(ApiError::unauthorized())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The JSON body, or a JSON error saying what is wrong with it.
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(value)) => Ok(value),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(
            ApiError::invalid(format!("the body is larger than {MAX_BODY_BYTES} bytes")),
        ),
        Err(rejection) => Err(ApiError::invalid(rejection.body_text())),
    }
}

/// The asset id in a path, validated.
fn asset_id(id: &str) -> Result<AssetId, ApiError> {
    AssetId::parse(id).map_err(|error| ApiError::invalid(format!("invalid asset id: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret-token-123", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret-token-12", b"secret-token-123"));
        assert!(!constant_time_eq(b"secret-token-124", b"secret-token-123"));
    }

    #[test]
    fn the_token_is_required_and_defaults_follow_the_address() {
        assert!(ApiConfig::from_lookup(|_| None).is_err());
        assert!(
            ApiConfig::from_lookup(|name| (name == "PULSE_API_TOKEN").then(|| "short".into()))
                .is_err()
        );
        let config = ApiConfig::from_lookup(|name| match name {
            "PULSE_API_TOKEN" => Some("0123456789abcdef".into()),
            "PULSE_API_ADDR" => Some("0.0.0.0:9000".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.public_base_url, "http://localhost:9000/media");
        assert_eq!(
            config.upload_origins,
            ["http://localhost:9000", "http://127.0.0.1:9000"]
        );
    }
}
