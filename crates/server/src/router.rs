//! The whole HTTP surface of `serve`: the JSON API ([`crate::http`]) and the approver
//! web pages ([`crate::ui`]) under one router, behind the request limits.

use axum::Router;

use crate::http::table::Routes;
use crate::http::{ledger, limits, routes};
use crate::state::AppState;

/// Every route of the API and the web pages, from the one list ([`Routes`]).
pub fn all_routes() -> Routes {
    routes::routes().merge(ledger::routes()).merge(crate::ui::routes()).merge(crate::observe::health::routes())
}

/// What the server serves: `(method, path template)` of every route (the authorization
/// matrix test compares it with its table).
pub fn route_list() -> Vec<(axum::http::Method, &'static str)> {
    all_routes().list().to_vec()
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    routes::fallbacks(all_routes().into_router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::limit))
        .layer(axum::middleware::from_fn_with_state(Some(state.metrics.clone()), crate::observe::request::track))
        .with_state(state)
}
