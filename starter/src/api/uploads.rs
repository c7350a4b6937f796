//! Uploads straight from the browser to S3: the API hands out presigned part URLs, the browser
//! PUTs the bytes, then `complete` stitches the parts and starts processing. The API never sees
//! the video.

use super::{ApiState, error::ApiError, json_body};
use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::StatusCode,
};
use pulse_activities::storage::{PART_SIZE, UploadError, UploadedPart};
use pulse_workflows::AssetId;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long presigned part URLs stay valid.
const PART_URL_TTL: Duration = Duration::from_secs(6 * 60 * 60);
/// S3 allows at most this many parts.
const MAX_PARTS: u64 = 10_000;
/// Longest accepted file name, in characters.
const MAX_FILENAME: usize = 255;

/// `POST /v1/uploads`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUpload {
    /// The name of the file on the uploader's machine.
    pub filename: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its MIME type: `video/*` or `application/octet-stream`.
    pub content_type: String,
}

/// The answer to `POST /v1/uploads`: where to PUT each part.
#[derive(Debug, Serialize)]
pub struct UploadPlan {
    /// The new asset.
    pub asset_id: String,
    /// The S3 multipart upload id, to send back on completion.
    pub upload_id: String,
    /// Bytes per part (the last one may be shorter).
    pub part_size: u64,
    /// One presigned PUT URL per part, in order.
    pub parts: Vec<PartUrl>,
    /// How long the URLs stay valid, in seconds.
    pub expires_in_secs: u64,
    /// Where to POST the completion.
    pub complete_url: String,
}

/// Where to PUT one part.
#[derive(Debug, Serialize)]
pub struct PartUrl {
    /// 1-based part number.
    pub part_number: i32,
    /// Presigned PUT URL.
    pub url: String,
}

/// `POST /v1/uploads/{id}/complete`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    /// The upload id from the upload plan.
    pub upload_id: String,
    /// Every part, with the ETag S3 answered its PUT with.
    pub parts: Vec<CompletedPart>,
}

/// One uploaded part.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletedPart {
    /// 1-based part number.
    pub part_number: i32,
    /// The part's ETag.
    pub etag: String,
}

/// The answer to a completion: processing has started (or had already).
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// The asset.
    pub asset_id: String,
    /// Its workflow, `video-{asset_id}`.
    pub workflow_id: String,
    /// Its one run.
    pub run_id: String,
    /// Where to read its state.
    pub status_url: String,
    /// Where to follow its events (WebSocket).
    pub events_url: String,
}

/// Checks a new upload against the size limit; returns the part size and count.
pub fn plan_parts(upload: &NewUpload, max_bytes: u64) -> Result<(u64, u64), ApiError> {
    let filename = upload.filename.trim();
    if filename.is_empty() || filename.chars().count() > MAX_FILENAME {
        return Err(ApiError::invalid("filename must be 1 to 255 characters"));
    }
    if filename.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "filename must not contain control characters",
        ));
    }
    if upload.size == 0 {
        return Err(ApiError::invalid("size must be more than 0 bytes"));
    }
    if upload.size > max_bytes {
        return Err(ApiError::invalid(format!(
            "size {} is over the limit of {max_bytes} bytes",
            upload.size
        )));
    }
    let content_type = upload.content_type.trim().to_ascii_lowercase();
    let plausible = content_type
        .strip_prefix("video/")
        .is_some_and(|sub| !sub.is_empty())
        || content_type == "application/octet-stream";
    if !plausible || content_type.len() > 100 {
        return Err(ApiError::invalid(
            "content_type must be video/* or application/octet-stream",
        ));
    }
    let part_size = (PART_SIZE as u64).max(upload.size.div_ceil(MAX_PARTS));
    Ok((part_size, upload.size.div_ceil(part_size)))
}

/// Checks a completion; returns its parts.
pub fn check_completion(completion: &Completion) -> Result<Vec<UploadedPart>, ApiError> {
    if completion.upload_id.is_empty() || completion.upload_id.len() > 1024 {
        return Err(ApiError::invalid("upload_id must be 1 to 1024 characters"));
    }
    if completion.parts.is_empty() || completion.parts.len() as u64 > MAX_PARTS {
        return Err(ApiError::invalid("parts must list 1 to 10000 parts"));
    }
    for (position, part) in completion.parts.iter().enumerate() {
        if part.part_number != position as i32 + 1 {
            return Err(ApiError::invalid(
                "parts must be numbered 1, 2, 3... in order",
            ));
        }
        if part.etag.is_empty() || part.etag.len() > 128 || part.etag.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(format!(
                "part {} has an invalid etag",
                part.part_number
            )));
        }
    }
    Ok(completion
        .parts
        .iter()
        .map(|part| UploadedPart {
            part_number: part.part_number,
            etag: part.etag.clone(),
        })
        .collect())
}

/// `POST /v1/uploads`: a new asset and its presigned part URLs.
pub async fn create(
    State(api): State<ApiState>,
    body: Result<Json<NewUpload>, JsonRejection>,
) -> Result<(StatusCode, Json<UploadPlan>), ApiError> {
    let upload = json_body(body)?;
    let (part_size, count) = plan_parts(&upload, api.config.max_source_bytes)?;
    let asset = AssetId::parse(&uuid::Uuid::new_v4().simple().to_string())
        .expect("uuids are valid asset ids");
    let key = asset.keys().upload();
    let storage = api.starter.storage();
    let upload_id = storage
        .start_multipart(&key, &upload.content_type, Some(upload.filename.trim()))
        .await
        .map_err(ApiError::upstream)?;
    let mut parts = Vec::with_capacity(count as usize);
    for part_number in 1..=count as i32 {
        let url = storage
            .presign_part(&key, &upload_id, part_number, PART_URL_TTL)
            .await
            .map_err(ApiError::upstream)?;
        parts.push(PartUrl { part_number, url });
    }
    Ok((
        StatusCode::CREATED,
        Json(UploadPlan {
            complete_url: format!("/v1/uploads/{asset}/complete"),
            asset_id: asset.to_string(),
            upload_id,
            part_size,
            parts,
            expires_in_secs: PART_URL_TTL.as_secs(),
        }),
    ))
}

/// `POST /v1/uploads/{id}/complete`: stitches the parts and starts processing; calling it again
/// for the same asset returns the same run.
pub async fn complete(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<Completion>, JsonRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let asset = super::asset_id(&id)?;
    let completion = json_body(body)?;
    let parts = check_completion(&completion)?;
    let key = asset.keys().upload();
    let storage = api.starter.storage();
    match storage
        .complete_multipart(&key, &completion.upload_id, &parts)
        .await
    {
        Ok(()) => {}
        // Completed by an earlier call: starting again joins the same run.
        Err(UploadError::NoSuchUpload) if storage.source_size(&key).await.is_ok() => {}
        Err(UploadError::NoSuchUpload) => {
            return Err(ApiError::not_found(format!(
                "there is no upload {} for asset {asset}",
                completion.upload_id
            )));
        }
        Err(UploadError::InvalidParts(message)) => return Err(ApiError::invalid(message)),
        Err(UploadError::Store(error)) => return Err(ApiError::upstream(format!("{error:#}"))),
    }
    let filename = storage
        .uploaded_filename(&key)
        .await
        .map_err(ApiError::upstream)?;
    let run = api
        .starter
        .start_file(&asset, &key, filename.as_deref())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            asset_id: asset.to_string(),
            workflow_id: run.workflow_id,
            run_id: run.run_id,
            status_url: format!("/v1/assets/{asset}"),
            events_url: format!("/v1/assets/{asset}/events"),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(filename: &str, size: u64, content_type: &str) -> NewUpload {
        NewUpload {
            filename: filename.into(),
            size,
            content_type: content_type.into(),
        }
    }

    #[test]
    fn parts_are_16_mib_until_that_would_need_too_many() {
        assert_eq!(
            plan_parts(&upload("a.mp4", 1, "video/mp4"), u64::MAX).unwrap(),
            (16 << 20, 1)
        );
        assert_eq!(
            plan_parts(&upload("a.mp4", 40 << 20, "video/mp4"), u64::MAX).unwrap(),
            (16 << 20, 3)
        );
        let (size, count) = plan_parts(&upload("a.mp4", 500 << 30, "video/mp4"), u64::MAX).unwrap();
        assert!(count <= MAX_PARTS && size * count >= 500 << 30);
    }

    #[test]
    fn bad_uploads_are_refused() {
        for bad in [
            upload("", 10, "video/mp4"),
            upload(&"x".repeat(256), 10, "video/mp4"),
            upload("a\nb", 10, "video/mp4"),
            upload("a.mp4", 0, "video/mp4"),
            upload("a.mp4", 11, "video/mp4"),
            upload("a.mp4", 10, "text/html"),
            upload("a.mp4", 10, "video/"),
        ] {
            assert!(plan_parts(&bad, 10).is_err(), "{bad:?}");
        }
        assert!(plan_parts(&upload("clip.mov", 10, "video/quicktime"), 10).is_ok());
        assert!(plan_parts(&upload("clip", 10, "application/octet-stream"), 10).is_ok());
    }

    #[test]
    fn completions_must_list_every_part_in_order() {
        let completion = |numbers: &[i32]| Completion {
            upload_id: "u".into(),
            parts: numbers
                .iter()
                .map(|&part_number| CompletedPart {
                    part_number,
                    etag: "\"e\"".into(),
                })
                .collect(),
        };
        assert_eq!(check_completion(&completion(&[1, 2])).unwrap().len(), 2);
        assert!(check_completion(&completion(&[])).is_err());
        assert!(check_completion(&completion(&[2, 1])).is_err());
        assert!(check_completion(&completion(&[1, 3])).is_err());
        let mut no_etag = completion(&[1]);
        no_etag.parts[0].etag.clear();
        assert!(check_completion(&no_etag).is_err());
    }
}
