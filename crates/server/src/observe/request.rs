//! What every request of `serve` (and `gate`) goes through first: its request id, the
//! span every log line of the request carries, its access line and its metrics.
//!
//! - The request id is the client's `X-Request-Id` when it is sane (1 to 128 of
//!   `A-Z a-z 0-9 . _ : -`), else a new random one; it is returned in `X-Request-Id`.
//! - The span `request` holds `request_id`, `method`, `route` (the matched template, never
//!   the raw path) and `case_id` when the request names a case (`/v1/cases/{id}…`) or
//!   creates one (`POST /v1/requests`: from its `Location`).
//! - No header, body or query is logged: credentials, passports and secrets travel there.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

use super::metrics::{method_label, HttpLabels, Metrics, RouteLabels, VerdictLabels};

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// Whether a client's request id can be used as it is.
pub fn sane_request_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A new request id: 128 random bits, hex.
pub fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A case id as it may be logged: what ids look like, nothing longer.
fn loggable_id(v: &str) -> Option<&str> {
    sane_request_id(v).then_some(v).filter(|v| v.len() <= 64)
}

/// The middleware: `from_fn_with_state(Some(metrics), track)` (or `None` for a server
/// without metrics, such as the gate).
pub async fn track(State(metrics): State<Option<Arc<Metrics>>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane_request_id(v))
        .map_or_else(new_request_id, str::to_owned);
    let method = req.method().clone();
    let http1 = req.version() <= axum::http::Version::HTTP_11;
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = method_label(&method),
        route = %route,
        case_id = tracing::field::Empty,
    );
    if route.starts_with("/v1/cases/{id}") {
        if let Some(case) = req.uri().path().split('/').nth(3).and_then(loggable_id) {
            span.record("case_id", case);
        }
    }
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    let created_case = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.strip_prefix("/v1/cases/"))
        .and_then(loggable_id);
    if let Some(case) = created_case {
        span.record("case_id", case);
    }
    let elapsed = started.elapsed();
    if let Some(m) = &metrics {
        let label = method_label(&method).to_owned();
        m.http_requests
            .get_or_create(&HttpLabels {
                method: label.clone(),
                route: route.clone(),
                status: status.as_u16().to_string(),
            })
            .inc();
        m.http_duration
            .get_or_create(&RouteLabels { method: label, route: route.clone() })
            .observe(elapsed.as_secs_f64());
        if method == Method::POST && route == "/v1/requests" && status == StatusCode::CREATED {
            m.decision_duration.observe(elapsed.as_secs_f64());
            count_verdict(m, &resp);
        }
    }
    let ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics") {
            tracing::debug!(status = status.as_u16(), duration_ms = ms, "request answered");
        } else {
            tracing::info!(status = status.as_u16(), duration_ms = ms, "request answered");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    // A body refused before it was read (too large, too slow) leaves the rest of it on the
    // connection: say that the connection ends, so that no client sends its next request
    // on a connection the server is closing.
    if http1 && matches!(status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// What `POST /v1/requests` decided, put on its answer's extensions by the route for the
/// verdict counter (so that the counter never reads the body back).
#[derive(Debug, Clone)]
pub struct DecidedVerdict {
    /// The verdict's wire name.
    pub verdict: &'static str,
    /// The `@id` of the first reason that names a rule; `default` when none does.
    pub rule: String,
}

impl DecidedVerdict {
    /// The counter's labels of a verdict and its reasons.
    pub fn of(
        verdict: agentsigna_core::policy::Verdict,
        reasons: &[agentsigna_core::policy::Reason],
    ) -> DecidedVerdict {
        let rule = reasons.iter().find_map(|r| r.rule.clone()).unwrap_or_else(|| "default".to_owned());
        DecidedVerdict { verdict: verdict.as_str(), rule }
    }
}

/// Counts the verdict of a 201 answer to `POST /v1/requests`.
fn count_verdict(m: &Metrics, resp: &Response) {
    if let Some(v) = resp.extensions().get::<DecidedVerdict>() {
        m.verdicts.get_or_create(&VerdictLabels { verdict: v.verdict.to_owned(), rule: v.rule.clone() }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_used_only_when_sane() {
        assert!(sane_request_id("abc-123_x.y:z"));
        assert!(!sane_request_id(""));
        assert!(!sane_request_id("a b"));
        assert!(!sane_request_id("a\nb"));
        assert!(!sane_request_id(&"x".repeat(129)));
        assert_eq!(new_request_id().len(), 32);
        assert_ne!(new_request_id(), new_request_id());
    }

    #[test]
    fn a_verdict_is_counted_under_its_first_named_rule_or_default() {
        use agentsigna_core::policy::{Reason, RuleVerdict, Verdict};
        let reason = |rule: Option<&str>| Reason {
            rule: rule.map(str::to_owned),
            verdict: RuleVerdict::Reject,
            reason: "because".to_owned(),
        };
        let v =
            DecidedVerdict::of(Verdict::Escalated, &[reason(None), reason(Some("large-po")), reason(Some("other"))]);
        assert_eq!((v.verdict, v.rule.as_str()), ("escalated", "large-po"));
        let v = DecidedVerdict::of(Verdict::Rejected, &[reason(None)]);
        assert_eq!((v.verdict, v.rule.as_str()), ("rejected", "default"));
        let v = DecidedVerdict::of(Verdict::Authorized, &[]);
        assert_eq!((v.verdict, v.rule.as_str()), ("authorized", "default"));
    }
}
