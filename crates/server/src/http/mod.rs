//! The HTTP API (axum): routes, authentication, problem+json.
//!
//! API boundary: handlers only parse, authenticate and call the engine; every rule of the
//! loop lives in `agentsigna-core`.

pub mod documents;
pub mod extract;
pub mod ledger;
pub mod limits;
pub mod problem;
pub mod routes;
pub mod server;
pub mod table;
pub mod tls;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Serves `router` on `listener` with the default [`server::ServerLimits`] in a task until
/// the returned sender fires or is dropped; requests in flight then finish before the
/// task ends.
pub fn serve_until_stopped(
    listener: TcpListener,
    router: Router,
) -> (oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    server::serve(listener, router, server::ServerLimits::default())
}
