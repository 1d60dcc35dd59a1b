//! `GET /readyz` (the readiness probe) and `GET /metrics`, on the API port and on the
//! separate `--metrics-listen` address.
//!
//! Who may read the metrics: on the API port only the admin credential (`Authorization:
//! Bearer <admin token>`; anyone else gets 401/403); with `--metrics-listen ADDR`, anyone
//! who can reach that address (meant for a loopback or an internal interface that only
//! the Prometheus server reaches), without a credential. `/readyz` and `/healthz` need
//! none: probes carry no credentials and they reveal nothing.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use agentsigna_core::access::{self, Op};

use crate::http::extract::Auth;
use crate::http::problem::ApiError;
use crate::http::table::Routes;
use crate::state::AppState;

/// `/readyz` and the admin-only `/metrics` of the API port.
pub fn routes() -> Routes {
    Routes::new().get("/readyz", readyz).get("/metrics", metrics_for_admin)
}

/// The router of `--metrics-listen`: `/metrics` without a credential, and the probes.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

/// 200 when the store answers and the keys are loaded; 503 problem+json otherwise.
async fn readyz(State(s): State<AppState>) -> Response {
    match s.engine.ready().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", format!("not ready: {e}"))
                .into_response()
        }
    }
}

async fn metrics_for_admin(s: State<AppState>, Auth(p): Auth) -> Response {
    if let Err(e) = access::check(&p, Op::ReadMetrics) {
        return ApiError::from(e).into_response();
    }
    metrics(s).await
}

async fn metrics(State(s): State<AppState>) -> Response {
    let body = s.metrics.render(&s.engine).await;
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(super::metrics::CONTENT_TYPE));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
