//! The whole HTTP surface of `serve`: the JSON API ([`crate::http`]) and the approver
//! web pages ([`crate::ui`]) under one router, behind the request limits.

use axum::Router;

use crate::http::{ledger, limits, routes};
use crate::state::AppState;

/// The whole API.
pub fn router(state: AppState) -> Router {
    routes::router()
        .merge(ledger::router())
        .merge(crate::ui::router())
        .merge(crate::observe::health::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::limit))
        .layer(axum::middleware::from_fn_with_state(Some(state.metrics.clone()), crate::observe::request::track))
        .with_state(state)
}
