//! The HTTP API over real HTTP against the real stack: the browser's upload flow (presigned
//! parts straight to S3), completion, state, events over a WebSocket, retry, delete, and every
//! way a request can be wrong.

use futures::StreamExt;
use pulse_tests::{
    api::ApiServer,
    bucket,
    media::{self, ClipSpec},
    stack::TestEnv,
};
use pulse_workflows::{
    AssetState, AssetStatus,
    events::{Event, Stage, signature},
};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

struct Api<'a> {
    server: &'a ApiServer,
    http: Client,
}

impl Api<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.server.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Uploads `file` the way the browser does: plan, PUT each part to S3, complete.
    async fn upload(&self, file: &std::path::Path) -> (String, Value, Value) {
        let bytes = std::fs::read(file).unwrap();
        let (status, plan) = self
            .call(
                reqwest::Method::POST,
                "/v1/uploads",
                Some(json!({"filename": "holiday.mp4", "size": bytes.len(), "content_type": "video/mp4"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{plan}");
        let part_size = plan["part_size"].as_u64().unwrap() as usize;
        let mut parts = Vec::new();
        for (index, part) in plan["parts"].as_array().unwrap().iter().enumerate() {
            let chunk = bytes.chunks(part_size).nth(index).unwrap().to_vec();
            let response = self
                .http
                .put(part["url"].as_str().unwrap())
                .body(chunk)
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_success(),
                "PUT part: {}",
                response.status()
            );
            let etag = response.headers()["etag"].to_str().unwrap().to_owned();
            parts.push(json!({"part_number": part["part_number"], "etag": etag}));
        }
        let completion = json!({"upload_id": plan["upload_id"], "parts": parts});
        (
            plan["asset_id"].as_str().unwrap().to_owned(),
            plan,
            completion,
        )
    }

    async fn state(&self, asset: &str) -> AssetState {
        let (status, body) = self
            .call(reqwest::Method::GET, &format!("/v1/assets/{asset}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    async fn wait(&self, asset: &str) -> AssetState {
        for _ in 0..600 {
            let state = self.state(asset).await;
            if state.status.is_finished() {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("asset {asset} did not finish");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_browser_upload_flow_processes_a_video_and_streams_its_events() {
    let env = TestEnv::new("api").await;
    let server = ApiServer::spawn(&env, &[]);
    let _worker = server.worker(&env, &[]);
    let api = Api {
        server: &server,
        http: Client::new(),
    };
    let source = media::clip(&ClipSpec::new(640, 360, 4.0));

    let (asset, _plan, completion) = api.upload(&source).await;
    let path = format!("/v1/uploads/{asset}/complete");
    let (status, accepted) = api
        .call(reqwest::Method::POST, &path, Some(completion.clone()))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["workflow_id"], format!("video-{asset}"));
    let (status, again) = api
        .call(reqwest::Method::POST, &path, Some(completion))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(
        again["run_id"], accepted["run_id"],
        "a second completion joins the same run"
    );

    let ws_url = format!(
        "{}/v1/assets/{asset}/events?token={}",
        server.base_url.replace("http", "ws"),
        server.token
    );
    let (socket, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .expect("the events WebSocket");
    let events: Vec<Event> = tokio::time::timeout(
        Duration::from_secs(120),
        socket
            .filter_map(|message| async move {
                let text = message.ok()?.into_text().ok()?;
                serde_json::from_str::<Event>(&text).ok()
            })
            .collect(),
    )
    .await
    .expect("the event stream ends after the terminal event");
    let stages: Vec<Stage> = events.iter().filter_map(|e| e.stage).collect();
    assert_eq!(stages.first(), Some(&Stage::Processing));
    assert_eq!(stages.last(), Some(&Stage::Done), "{events:#?}");
    assert!(stages.contains(&Stage::ThumbnailReady) && stages.contains(&Stage::Playable));

    let state = api.wait(&asset).await;
    assert_eq!(state.status, AssetStatus::Done, "{state:?}");
    // The media the events point at is served under /media, the way a CDN would serve it.
    let master_url = events
        .iter()
        .find(|e| e.stage == Some(Stage::Playable))
        .unwrap()
        .url
        .clone()
        .unwrap();
    assert_eq!(
        master_url,
        format!(
            "{}/media/processed/{asset}/hls/master.m3u8",
            server.base_url
        )
    );
    let master = api.http.get(&master_url).send().await.unwrap();
    assert_eq!(
        master.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    assert!(master.text().await.unwrap().contains("360p/index.m3u8"));
    let source_url = format!("{}/media/uploads/{asset}/source", server.base_url);
    assert_eq!(
        api.http.get(&source_url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "sources are never served"
    );
    let sneaky = format!(
        "{}/media/processed/../uploads/{asset}/source",
        server.base_url
    );
    assert_eq!(
        api.http.get(&sneaky).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let (status, body) = api
        .call(
            reqwest::Method::POST,
            &format!("/v1/assets/{asset}/retry"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing to retry")
    );

    let (status, body) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/assets/{asset}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["deleted_objects"].as_u64().unwrap() > 5);
    assert!(
        bucket::objects(&env.storage, &format!("uploads/{asset}/"))
            .await
            .is_empty()
    );
    assert!(
        bucket::objects(&env.storage, &format!("processed/{asset}/"))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_requests_get_clear_json_errors() {
    let env = TestEnv::new("apierrors").await;
    let server = ApiServer::spawn(&env, &[]);
    // A connection the server closes after refusing an oversized body must not be reused.
    let http = Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let api = Api {
        server: &server,
        http,
    };
    let post = reqwest::Method::POST;

    // No token, a wrong one.
    let response = api
        .http
        .get(api.url("/v1/assets/abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let response = api
        .http
        .get(api.url("/v1/assets/abc"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Bad ids, an unknown asset, an unknown upload.
    let (status, body) = api
        .call(reqwest::Method::GET, "/v1/assets/bad.id", None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, body) = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/assets/{}", "x".repeat(65)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = api
        .call(reqwest::Method::GET, "/v1/assets/never-started", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let completion = json!({"upload_id": "nope", "parts": [{"part_number": 1, "etag": "\"x\""}]});
    let (status, body) = api
        .call(
            post.clone(),
            "/v1/uploads/nothing-here/complete",
            Some(completion),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Invalid fields and shapes.
    for bad in [
        json!({"filename": "a.mp4", "size": 0, "content_type": "video/mp4"}),
        json!({"filename": "a.mp4", "size": 10, "content_type": "text/html"}),
        json!({"filename": "", "size": 10, "content_type": "video/mp4"}),
        json!({"filename": "a.mp4", "size": 10}),
        json!({"filename": "a.mp4", "size": -1, "content_type": "video/mp4"}),
        json!({"filename": "a.mp4", "size": 10, "content_type": "video/mp4", "admin": true}),
        json!("not an object"),
    ] {
        let (status, body) = api
            .call(post.clone(), "/v1/uploads", Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let (status, body) = api
        .call(
            post.clone(),
            "/v1/uploads",
            Some(json!({"filename": "a.mp4", "size": 1u64 << 62, "content_type": "video/mp4"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("over the limit"),
        "{body}"
    );

    // An oversized body is refused before it is read.
    let huge = json!({"filename": "a".repeat(2 << 20), "size": 1, "content_type": "video/mp4"});
    let (status, body) = api.call(post.clone(), "/v1/uploads", Some(huge)).await;
    assert!(
        matches!(
            status,
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE
        ),
        "{status} {body}"
    );

    // Webhook deliveries must be signed, and recent.
    let event = serde_json::to_vec(&Event::update("abc", "2026-01-01T00:00:00Z")).unwrap();
    let webhook = api.url("/v1/webhooks/events");
    let unsigned = api
        .http
        .post(&webhook)
        .body(event.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::BAD_REQUEST);
    let stale = 1_000_000_000u64;
    let replayed = api
        .http
        .post(&webhook)
        .header(signature::TIMESTAMP_HEADER, stale.to_string())
        .header(
            signature::SIGNATURE_HEADER,
            signature::sign(server.webhook_secret.as_bytes(), stale, &event),
        )
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);
    let body: Value = replayed.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signed"),
        "{body}"
    );

    let (status, _) = api.call(reqwest::Method::GET, "/v2/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_over_the_rate_limit_are_turned_away() {
    let env = TestEnv::new("apirate").await;
    let server = ApiServer::spawn(&env, &[("PULSE_API_RATE", "2")]);
    let http = Client::new();
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let response = http
            .get(format!("{}/v1/assets/abc", server.base_url))
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}
