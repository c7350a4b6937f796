//! What browsers load without a token: the demo page, its scripts (hls.js comes from npm, in
//! `web/node_modules`), and the processed media, served the way a CDN would serve it: only
//! objects under `processed/`, never the uploaded sources.

use super::ApiState;
use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use tokio_util::io::ReaderStream;

/// hls.js as npm installs it under the web folder.
const HLS_JS: &str = "node_modules/hls.js/dist/hls.min.js";

/// `GET /`: the demo page.
pub async fn index(State(api): State<ApiState>) -> Response {
    file(&api, "index.html", "text/html; charset=utf-8").await
}

/// `GET /app.js`: the demo page's script.
pub async fn app_js(State(api): State<ApiState>) -> Response {
    file(&api, "app.js", "text/javascript; charset=utf-8").await
}

/// `GET /hls.js`: the player library.
pub async fn hls_js(State(api): State<ApiState>) -> Response {
    file(&api, HLS_JS, "text/javascript; charset=utf-8").await
}

async fn file(api: &ApiState, relative: &str, content_type: &'static str) -> Response {
    let path = api.config.web_dir.join(relative);
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Err(_) => (
            StatusCode::NOT_FOUND,
            format!(
                "{} is missing; run `npm ci` in the web folder (cargo xtask demo does)",
                path.display()
            ),
        )
            .into_response(),
    }
}

/// `GET /media/{key}`: a processed object with its own Content-Type and Cache-Control.
pub async fn media(State(api): State<ApiState>, Path(key): Path<String>) -> Response {
    let servable = key.starts_with("processed/")
        && !key.split('/').any(|part| part == ".." || part.is_empty());
    if !servable {
        return StatusCode::NOT_FOUND.into_response();
    }
    match api.starter.storage().get(&key).await {
        Ok(Some(object)) => {
            let body = ReaderStream::new(object.body.into_async_read());
            let mut response = Response::new(Body::from_stream(body));
            let headers = response.headers_mut();
            for (name, value) in [
                (header::CONTENT_TYPE, object.content_type),
                (header::CACHE_CONTROL, object.cache_control),
            ] {
                if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    headers.insert(name, value);
                }
            }
            if let Some(length) = object.length {
                headers.insert(header::CONTENT_LENGTH, length.into());
            }
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            response
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => {
            tracing::warn!("reading {key}: {error:#}");
            StatusCode::BAD_GATEWAY.into_response()
        }
    }
}
