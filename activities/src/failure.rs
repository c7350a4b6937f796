//! Failures that retrying cannot fix.
//!
//! A plain error from an activity is retried with backoff (S3 down, worker trouble). Bad input
//! is not: it becomes a non-retryable Temporal application failure whose type names the problem
//! and whose message is a sentence the uploader can act on.

use temporalio_common::error::ApplicationFailure;
use temporalio_sdk::activities::ActivityError;

/// What is wrong with an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadInputKind {
    /// The source object does not exist.
    MissingSource,
    /// The source is empty, unreadable or not a video.
    NotAVideo,
    /// The source is larger, longer or bigger in pixels than allowed.
    OverLimit,
    /// The source could be read but not transcoded.
    Undecodable,
}

impl BadInputKind {
    /// The Temporal application failure type.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::MissingSource => "MissingSource",
            Self::NotAVideo => "NotAVideo",
            Self::OverLimit => "OverLimit",
            Self::Undecodable => "Undecodable",
        }
    }
}

/// An input the pipeline refuses, with the sentence that explains why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadInput {
    /// What kind of problem.
    pub kind: BadInputKind,
    /// The explanation for a person.
    pub message: String,
}

impl BadInput {
    /// A bad input of `kind`, explained by `message`.
    pub fn new(kind: BadInputKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Turns an activity's error into an [`ActivityError`]: [`BadInput`] is non-retryable and typed,
/// anything else is retried.
pub fn into_activity_error(error: anyhow::Error) -> ActivityError {
    match error.downcast::<BadInput>() {
        Ok(bad) => ActivityError::application(
            ApplicationFailure::builder(bad.message)
                .type_name(bad.kind.type_name().to_owned())
                .non_retryable(true)
                .build(),
        ),
        Err(other) => ActivityError::application(ApplicationFailure::new(format!("{other:#}"))),
    }
}
