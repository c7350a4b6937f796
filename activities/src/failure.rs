//! Failures that retrying cannot fix.
//!
//! A plain error from an activity is retried with backoff (S3 down, worker trouble). Bad input
//! is not: it becomes a non-retryable Temporal application failure whose type names the problem
//! and whose message is a sentence the uploader can act on.

pub use pulse_workflows::contract::BadInputKind;
use temporalio_common::error::ApplicationFailure;
use temporalio_sdk::activities::ActivityError;

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
