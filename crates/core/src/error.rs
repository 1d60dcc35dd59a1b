//! The one error type of the core crate. The HTTP layer maps it to problem+json in one
//! place.

use std::path::PathBuf;

use crate::policy::PolicyError;
use crate::store::{Source, StoreError};

/// Result alias of the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, classified by who must act on it.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// Stored data that cannot be read, written or relied on (500): a corrupt record, a
    /// record a case refers to gone missing, a ledger that cannot produce a proof. Never
    /// carries secrets.
    #[error("data error: {detail}")]
    Data {
        detail: String,
        #[source]
        source: Option<Source>,
    },
    /// A key file that cannot be read, written or understood (500; the CLI prints it).
    #[error("key file {}: {detail}", path.display())]
    KeyFile {
        path: PathBuf,
        detail: String,
        #[source]
        source: Option<Source>,
    },
    /// Signing our own output (a passport, a checkpoint) failed (500).
    #[error("cannot sign the {what}")]
    Signing {
        what: &'static str,
        #[source]
        source: Source,
    },
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

    /// A data error without a source (a broken invariant of stored data).
    pub fn data(detail: impl Into<String>) -> Error {
        Error::Data { detail: detail.into(), source: None }
    }

    /// A data error caused by `source`.
    pub fn data_from(detail: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Data { detail: detail.into(), source: Some(std::sync::Arc::new(source)) }
    }

    /// A key file error caused by `source`.
    pub fn key_file(path: impl Into<PathBuf>, detail: impl Into<String>, source: Option<Source>) -> Error {
        Error::KeyFile { path: path.into(), detail: detail.into(), source }
    }

    /// A signing failure.
    pub fn signing(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Signing { what, source: std::sync::Arc::new(source) }
    }
}

/// Errors compare by kind and message (sources are not comparable).
impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        use Error::*;
        match (self, other) {
            (Invalid { field: a, detail: x }, Invalid { field: b, detail: y })
            | (Unprocessable { field: a, detail: x }, Unprocessable { field: b, detail: y }) => a == b && x == y,
            (Unauthenticated(a), Unauthenticated(b))
            | (Forbidden(a), Forbidden(b))
            | (NotFound(a), NotFound(b))
            | (Conflict(a), Conflict(b)) => a == b,
            (Policy(a), Policy(b)) => a == b,
            (Data { detail: a, .. }, Data { detail: b, .. }) => a == b,
            (KeyFile { path: p, detail: a, .. }, KeyFile { path: q, detail: b, .. }) => p == q && a == b,
            (Signing { what: a, .. }, Signing { what: b, .. }) => a == b,
            (Store(a), Store(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Error {}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Error {
        Error::Policy(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::data_from("corrupt record", e)
    }
}
