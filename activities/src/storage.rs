//! The bucket: sources in, renditions out, through the AWS SDK's standard configuration
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).

use crate::{
    cache_policy::ObjectKind,
    failure::{BadInput, BadInputKind},
};
use anyhow::Context;
use aws_sdk_s3::{
    Client,
    config::{RequestChecksumCalculation, ResponseChecksumValidation},
    error::ProvideErrorMetadata,
    presigning::PresigningConfig,
    primitives::ByteStream,
    types::{
        CompletedMultipartUpload, CompletedPart, CorsConfiguration, CorsRule, MetadataDirective,
    },
};
use std::{collections::HashMap, path::Path, time::Duration};
use tokio::io::AsyncReadExt;

/// Default bucket (SPEC section 1).
pub const DEFAULT_BUCKET: &str = "pulse-media";
/// Part size of multipart uploads: 10,000 parts of 16 MiB cover 156 GiB.
pub const PART_SIZE: usize = 16 << 20;
/// Object metadata that keeps the name a source was uploaded as.
const FILENAME_METADATA: &str = "filename";

/// One bucket, with the operations Pulse needs.
#[derive(Clone, Debug)]
pub struct Storage {
    client: Client,
    /// Signs the URLs browsers upload parts to; the same client unless the store is reached
    /// under another address from outside (see [`Storage::with_browser_endpoint`]).
    browser_signer: Client,
    bucket: String,
}

impl Storage {
    /// Connects to `bucket` as the AWS environment variables say. Path-style addressing keeps
    /// self-hosted stores (Garage, MinIO) working without wildcard DNS.
    pub async fn from_env(bucket: impl Into<String>) -> Self {
        Self::from_shared(&aws_config::load_from_env().await, bucket)
    }

    /// Connects to `bucket` at `endpoint` with a fixed key, whatever the environment says.
    pub async fn with_key(
        endpoint: &str,
        region: &str,
        key_id: &str,
        secret: &str,
        bucket: impl Into<String>,
    ) -> Self {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_sdk_s3::config::Region::new(region.to_owned()))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                key_id, secret, None, None, "pulse",
            ))
            .load()
            .await;
        Self::from_shared(&shared, bucket)
    }

    fn from_shared(shared: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        let config = aws_sdk_s3::config::Builder::from(shared)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let client = Client::from_conf(config);
        Self {
            browser_signer: client.clone(),
            client,
            bucket: bucket.into(),
        }
    }

    /// Signs upload URLs for browsers with `endpoint`, the store's address as browsers reach it,
    /// when it differs from the one this service uses (a store inside a private network).
    pub fn with_browser_endpoint(mut self, endpoint: &str) -> Self {
        let config = self
            .client
            .config()
            .to_builder()
            .endpoint_url(endpoint)
            .build();
        self.browser_signer = Client::from_conf(config);
        self
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Size of the source at `key`; a missing source is bad input, not a reason to retry.
    pub async fn source_size(&self, key: &str) -> anyhow::Result<u64> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(head.content_length().unwrap_or(0).max(0) as u64),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => {
                Err(BadInput::new(
                    BadInputKind::MissingSource,
                    format!(
                        "there is no source at s3://{}/{key}; upload the video first",
                        self.bucket
                    ),
                )
                .into())
            }
            Err(error) => {
                Err(anyhow::Error::new(error).context(format!("reading the size of {key}")))
            }
        }
    }

    /// A URL that lets its holder GET `key` for `ttl`, without other credentials.
    pub async fn presign_get(&self, key: &str, ttl: Duration) -> anyhow::Result<String> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(PresigningConfig::expires_in(ttl)?)
            .await
            .with_context(|| format!("presigning {key}"))?;
        Ok(request.uri().to_owned())
    }

    /// Uploads the file at `path` as `key`; returns its size.
    pub async fn put_file(&self, key: &str, path: &Path, kind: ObjectKind) -> anyhow::Result<u64> {
        let size = tokio::fs::metadata(path).await?.len();
        let body = ByteStream::from_path(path).await?;
        self.put(key, body, kind).await?;
        Ok(size)
    }

    /// Uploads `text` as `key`.
    pub async fn put_text(&self, key: &str, text: String, kind: ObjectKind) -> anyhow::Result<()> {
        self.put(key, ByteStream::from(text.into_bytes()), kind)
            .await
    }

    async fn put(&self, key: &str, body: ByteStream, kind: ObjectKind) -> anyhow::Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .content_type(kind.content_type())
            .cache_control(kind.cache_control())
            .send()
            .await
            .map_err(|e| describe(e, "uploading", key))?;
        Ok(())
    }

    /// Rewrites the headers of `key` in place (a copy onto itself with replaced metadata).
    pub async fn set_kind(&self, key: &str, kind: ObjectKind) -> anyhow::Result<()> {
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(key)
            .copy_source(format!("{}/{key}", self.bucket))
            .metadata_directive(MetadataDirective::Replace)
            .content_type(kind.content_type())
            .cache_control(kind.cache_control())
            .send()
            .await
            .map_err(|e| describe(e, "updating the headers of", key))?;
        Ok(())
    }

    /// Uploads the file at `path` as `key` in parts, the way browsers upload large videos, and
    /// completes the multipart upload. Returns the size.
    pub async fn upload_multipart(
        &self,
        key: &str,
        path: &Path,
        content_type: &str,
    ) -> anyhow::Result<u64> {
        if tokio::fs::metadata(path).await?.len() == 0 {
            // A multipart upload needs at least one non-empty part; an empty file is stored as
            // it is, so the pipeline can refuse it with a clear error.
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from_static(b""))
                .send()
                .await
                .map_err(|e| describe(e, "uploading", key))?;
            return Ok(0);
        }
        let filename = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        let upload_id = self
            .start_multipart(key, content_type, filename.as_deref())
            .await?;
        match self.upload_parts(key, path, &upload_id).await {
            Ok((parts, size)) => {
                self.complete_multipart(key, &upload_id, &parts).await?;
                Ok(size)
            }
            Err(error) => {
                self.abort_multipart(key, &upload_id).await;
                Err(error)
            }
        }
    }

    /// Starts a multipart upload of `key`, remembering the uploader's `filename`; returns its id.
    pub async fn start_multipart(
        &self,
        key: &str,
        content_type: &str,
        filename: Option<&str>,
    ) -> anyhow::Result<String> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_metadata(
                filename
                    .map(|name| HashMap::from([(FILENAME_METADATA.to_owned(), name.to_owned())])),
            )
            .send()
            .await
            .map_err(|e| describe(e, "starting the upload of", key))?;
        Ok(upload
            .upload_id()
            .context("the store returned no upload id")?
            .to_owned())
    }

    /// A URL that lets its holder PUT part `part_number` of a multipart upload for `ttl`.
    pub async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let request = self
            .browser_signer
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .presigned(PresigningConfig::expires_in(ttl)?)
            .await
            .with_context(|| format!("presigning part {part_number} of {key}"))?;
        Ok(request.uri().to_owned())
    }

    /// Completes a multipart upload from its uploaded parts.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<(), UploadError> {
        let parts = parts
            .iter()
            .map(|part| {
                CompletedPart::builder()
                    .part_number(part.part_number)
                    .e_tag(&part.etag)
                    .build()
            })
            .collect();
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => match error.as_service_error().and_then(|e| e.code()) {
                Some("NoSuchUpload") => Err(UploadError::NoSuchUpload),
                Some("InvalidPart" | "InvalidPartOrder" | "EntityTooSmall") => {
                    Err(UploadError::InvalidParts(
                        error
                            .as_service_error()
                            .and_then(|e| e.message())
                            .unwrap_or("invalid parts")
                            .to_owned(),
                    ))
                }
                _ => Err(UploadError::Store(describe(
                    error,
                    "completing the upload of",
                    key,
                ))),
            },
        }
    }

    /// Gives up a multipart upload, dropping its parts (best effort).
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) {
        let _ = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
    }

    /// The file name the source at `key` was uploaded as, if it is there and was named.
    pub async fn uploaded_filename(&self, key: &str) -> anyhow::Result<Option<String>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(head
                .metadata()
                .and_then(|m| m.get(FILENAME_METADATA))
                .cloned()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(error) => Err(describe(error, "reading", key)),
        }
    }

    /// The object at `key` with its headers, or `None` if there is none.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<StoredObject>> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(object) => Ok(Some(StoredObject {
                content_type: object.content_type().map(str::to_owned),
                cache_control: object.cache_control().map(str::to_owned),
                length: object.content_length().map(|l| l.max(0) as u64),
                body: object.body,
            })),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(error) => Err(describe(error, "reading", key)),
        }
    }

    /// Deletes every object under `prefix` and every unfinished upload of it; returns how many
    /// objects were deleted.
    pub async fn delete_prefix(&self, prefix: &str) -> anyhow::Result<usize> {
        let uploads = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await
            .map_err(|e| describe(e, "listing the uploads under", prefix))?;
        for upload in uploads.uploads() {
            if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                self.abort_multipart(key, id).await;
            }
        }
        let mut deleted = 0;
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| describe(e, "listing", prefix))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    self.client
                        .delete_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .send()
                        .await
                        .map_err(|e| describe(e, "deleting", key))?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    /// Lets browsers on `origins` PUT upload parts straight to the bucket and read their ETags
    /// (a CORS rule on the bucket).
    pub async fn allow_browser_uploads(&self, origins: &[String]) -> anyhow::Result<()> {
        let rule = CorsRule::builder()
            .set_allowed_origins(Some(origins.to_vec()))
            .allowed_methods("PUT")
            .allowed_methods("GET")
            .allowed_methods("HEAD")
            .allowed_headers("*")
            .expose_headers("ETag")
            .max_age_seconds(3600)
            .build()?;
        self.client
            .put_bucket_cors()
            .bucket(&self.bucket)
            .cors_configuration(CorsConfiguration::builder().cors_rules(rule).build()?)
            .send()
            .await
            .map_err(|e| describe(e, "setting the CORS rule of bucket", &self.bucket))?;
        Ok(())
    }

    async fn upload_parts(
        &self,
        key: &str,
        path: &Path,
        upload_id: &str,
    ) -> anyhow::Result<(Vec<UploadedPart>, u64)> {
        let mut file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let mut parts = Vec::new();
        let mut size = 0u64;
        loop {
            let mut chunk = Vec::with_capacity(PART_SIZE);
            (&mut file)
                .take(PART_SIZE as u64)
                .read_to_end(&mut chunk)
                .await?;
            if chunk.is_empty() && !parts.is_empty() {
                break;
            }
            let part_number = parts.len() as i32 + 1;
            size += chunk.len() as u64;
            let last = chunk.len() < PART_SIZE;
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(|e| describe(e, "uploading a part of", key))?;
            parts.push(UploadedPart {
                part_number,
                etag: part.e_tag().unwrap_or_default().to_owned(),
            });
            if last {
                break;
            }
        }
        Ok((parts, size))
    }
}

/// A part of a multipart upload, as the uploader reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedPart {
    /// 1 to 10,000.
    pub part_number: i32,
    /// The ETag the store answered the part's PUT with.
    pub etag: String,
}

/// Why a multipart upload could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The upload id is unknown: never started, aborted, or already completed.
    #[error("there is no such upload in progress")]
    NoSuchUpload,
    /// The parts do not match what was uploaded.
    #[error("the parts do not match the upload: {0}")]
    InvalidParts(String),
    /// The store failed.
    #[error(transparent)]
    Store(anyhow::Error),
}

/// An object read from the bucket.
pub struct StoredObject {
    /// The body, streamed.
    pub body: ByteStream,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Length`.
    pub length: Option<u64>,
}

/// An S3 error with the store's own code and message, which the SDK's `Display` leaves out.
fn describe<E>(error: aws_sdk_s3::error::SdkError<E>, doing: &str, key: &str) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = match error.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("no message")
        ),
        None => format!("{}", aws_sdk_s3::error::DisplayErrorContext(&error)),
    };
    anyhow::anyhow!("{doing} s3 object {key} failed: {detail}")
}
