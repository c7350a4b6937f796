//! An asset's state, retry and removal.

use super::{ApiState, error::ApiError};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use pulse_workflows::AssetState;
use serde_json::{Value, json};
use std::time::Duration;

/// How long a delete waits for a cancelled run to stop writing before removing its objects.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

/// `GET /v1/assets/{id}`: the state (SPEC section 2).
pub async fn get(
    State(api): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<AssetState>, ApiError> {
    let asset = super::asset_id(&id)?;
    Ok(Json(api.starter.status(&asset).await?))
}

/// `POST /v1/assets/{id}/retry`: re-runs what failed in a partial asset.
pub async fn retry(
    State(api): State<ApiState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let asset = super::asset_id(&id)?;
    let variants = api.starter.retry(&asset).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"asset_id": asset.to_string(), "retrying": variants})),
    ))
}

/// `DELETE /v1/assets/{id}`: cancels processing if it runs, then removes the asset's source and
/// every processed object.
pub async fn delete(
    State(api): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let asset = super::asset_id(&id)?;
    if !api.starter.status(&asset).await?.status.is_finished() {
        api.starter.cancel(&asset, "the asset was deleted").await?;
        // Let the transcode stop writing before its objects are removed.
        let _ = tokio::time::timeout(CANCEL_WAIT, api.starter.wait(&asset, |_| {})).await;
    }
    let storage = api.starter.storage();
    let keys = asset.keys();
    let mut deleted = 0;
    for prefix in [format!("uploads/{asset}/"), keys.processed_prefix()] {
        deleted += storage
            .delete_prefix(&prefix)
            .await
            .map_err(ApiError::upstream)?;
    }
    Ok(Json(
        json!({"asset_id": asset.to_string(), "deleted_objects": deleted}),
    ))
}
