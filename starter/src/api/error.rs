//! Errors the API answers with: a status code and `{"error": {"code", "message"}}`.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// 400: the request is malformed or a field is invalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401: no or a wrong bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the API token as `Authorization: Bearer <token>`",
        )
    }

    /// 404: no such asset or upload.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: the request does not fit the asset's state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 502: Temporal or the object store failed.
    pub fn upstream(error: impl std::fmt::Display) -> Self {
        tracing::warn!("upstream failure: {error}");
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream_failure",
            format!("{error}"),
        )
    }

    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::StarterError> for ApiError {
    fn from(error: crate::StarterError) -> Self {
        use crate::StarterError::*;
        match error {
            UnknownAsset(_) => Self::not_found(error.to_string()),
            InvalidSourceKey(_) => Self::invalid(error.to_string()),
            NotRetryable(message) => Self::conflict(message),
            Other(error) => Self::upstream(format!("{error:#}")),
        }
    }
}
