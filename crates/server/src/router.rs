//! The whole HTTP surface of `serve`: the JSON API ([`crate::http`], described by
//! [`crate::openapi`]) and the approver web pages ([`crate::ui`]) under one router, behind
//! the request limits.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;

use crate::http::extract::{bearer_token, Authenticated};
use crate::http::table::Routes;
use crate::http::{ledger, limits, routes};
use crate::state::AppState;

/// Every route of the API and the web pages, from the one list ([`Routes`]).
pub fn all_routes() -> Routes {
    routes::routes()
        .merge(ledger::routes())
        .merge(crate::openapi::routes())
        .merge(crate::ui::routes())
        .merge(crate::observe::health::routes())
}

/// What the server serves: `(method, path template)` of every route (the authorization
/// matrix test compares it with its table).
pub fn route_list() -> Vec<(axum::http::Method, &'static str)> {
    all_routes().list().to_vec()
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    routes::fallbacks(all_routes().into_router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), identify_and_limit))
        .layer(axum::middleware::from_fn_with_state(Some(state.metrics.clone()), crate::observe::request::track))
        .with_state(state)
}

/// Middleware: authenticates once (the handlers' [`crate::http::extract::Auth`] reuses
/// it), then applies the request limits ([`limits::apply`]) to that principal.
async fn identify_and_limit(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let mut principal = None;
    if let Ok(Some(token)) = bearer_token(req.headers()) {
        match s.engine.authenticate(token).await {
            Ok(p) => {
                principal = Some(p.clone());
                req.extensions_mut().insert(Authenticated(Ok(p)));
            }
            Err(agentsigna_core::Error::Unauthenticated(d)) => {
                req.extensions_mut().insert(Authenticated(Err(d)));
            }
            // A storage failure: the handler's own authentication reports it.
            Err(_) => {}
        }
    } else if req.uri().path().starts_with("/ui") {
        // A storage failure: the page's own session lookup reports it.
        principal = s.sessions.current(req.headers()).await.ok().flatten().map(|c| c.principal);
    }
    limits::apply(&s.limits, principal, req, next).await
}
