//! The one place where errors become HTTP responses: RFC 9457 problem+json.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::documents::Problem;

use agentsigna_core::store::StoreError;
use agentsigna_core::Error;

/// An error answered as `application/problem+json`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, slug: &'static str, title: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, slug, title, detail: detail.into(), field: None }
    }

    pub fn bad_request(field: Option<String>, detail: impl Into<String>) -> ApiError {
        ApiError { field, ..ApiError::new(StatusCode::BAD_REQUEST, "invalid-request", "Invalid request", detail) }
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 503 with `Retry-After`: the request may succeed later, unchanged.
    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", detail)
    }

    /// 500: the details stay in the server log.
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server could not complete the request; see its log",
        )
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e {
            Error::Invalid { field, detail } => ApiError::bad_request(field, detail),
            Error::Unauthenticated(d) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Unauthenticated", d)
            }
            Error::Forbidden(d) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", d),
            Error::NotFound(d) => ApiError::not_found(d),
            Error::Conflict(d) => ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", d),
            Error::Unprocessable { field, detail } => ApiError {
                field,
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown-reference", "Unknown reference", detail)
            },
            Error::Policy(p) => {
                let mut detail = p.message.clone();
                if let (Some(l), Some(c)) = (p.line, p.column) {
                    detail = format!("{detail} (line {l}, column {c})");
                }
                if let Some(rule) = &p.rule {
                    detail = format!("rule {rule}: {detail}");
                }
                ApiError {
                    field: Some("source".into()),
                    ..ApiError::new(StatusCode::BAD_REQUEST, "invalid-policy", "Invalid policy", detail)
                }
            }
            Error::Data { .. } | Error::KeyFile { .. } | Error::Signing { .. } => {
                // Details of internal failures stay in the server log.
                let error: &dyn std::error::Error = &e;
                tracing::error!(error = %error, source = ?error.source(), "internal error");
                ApiError::internal()
            }
            Error::Store(e) => {
                let error: &dyn std::error::Error = &e;
                match e {
                    StoreError::Unavailable { .. } => {
                        tracing::warn!(error = %error, source = ?error.source(), "store unavailable");
                        ApiError::unavailable("the database is unavailable; retry later")
                    }
                    StoreError::Conflict(_) => {
                        tracing::warn!(error = %error, "decision kept conflicting with concurrent changes");
                        ApiError::unavailable("too many concurrent changes of the same records; retry later")
                    }
                    StoreError::Storage { .. } => {
                        tracing::error!(error = %error, source = ?error.source(), "storage error");
                        ApiError::internal()
                    }
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("urn:agentsigna:problem:{}", self.slug),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            field: self.field,
        };
        let text = serde_json::to_string(&body).unwrap_or_default();
        let mut resp = (self.status, text).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
