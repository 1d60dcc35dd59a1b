//! The one error type of the core crate. The HTTP layer maps it to problem+json in one
//! place.

use crate::policy::PolicyError;
use crate::store::StoreError;

/// Result alias of the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, classified by who must act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Malformed or invalid input (400). `field` names the offending member.
    #[error("{detail}")]
    Invalid { field: Option<String>, detail: String },
    /// No or bad credential (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown resource (404).
    #[error("{0}")]
    NotFound(String),
    /// Conflicting state (409).
    #[error("{0}")]
    Conflict(String),
    /// Well-formed, but refers to something unknown (422).
    #[error("{detail}")]
    Unprocessable { field: Option<String>, detail: String },
    /// A refused policy (400), with Cedar's message and location.
    #[error("invalid policy: {0}")]
    Policy(PolicyError),
    /// An internal failure (500): a broken invariant, unreadable data, a signing or key
    /// failure. Never carries secrets.
    #[error("storage error: {0}")]
    Storage(String),
    /// The store failed: [`StoreError::Unavailable`] is a 503 (retry later), a
    /// [`StoreError::Conflict`] left after the engine's retries is a 503 too, and
    /// [`StoreError::Storage`] is a 500.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// A 400 naming the field.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::Invalid { field: Some(field.into()), detail: detail.into() }
    }

    /// A 422 naming the field.
    pub fn unknown(field: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::Unprocessable { field: Some(field.into()), detail: detail.into() }
    }

    /// A storage failure.
    pub fn storage(detail: impl std::fmt::Display) -> Error {
        Error::Storage(detail.to_string())
    }
}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Error {
        Error::Policy(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::Storage(format!("corrupt record: {e}"))
    }
}
