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

use agentsigna_core::access::{self, Op};

use crate::http::documents::{Problems, PublicProblems, Status};
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
        .route("/healthz", get(|| async { Json(Status { status: "ok".to_owned() }) }))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

/// 200 when the store answers and the keys are loaded; 503 problem+json otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    responses((status = 200, description = "Ready: the store answers a read and the passport keys are loaded (`{\"status\": \"ready\"}`)", body = Status), PublicProblems),
    security(())
)]
async fn readyz(State(s): State<AppState>) -> Response {
    match s.engine.ready().await {
        Ok(()) => Json(Status { status: "ready".to_owned() }).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", format!("not ready: {e}"))
                .into_response()
        }
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "probes",
    responses((status = 200, description = "Prometheus text exposition (on the API port for the admin; `--metrics-listen` serves it without a credential)", body = String, content_type = "application/openmetrics-text"), Problems),
    security(("admin_token" = []))
)]
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
