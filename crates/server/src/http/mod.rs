//! The HTTP API (axum): routes, authentication, problem+json.
//!
//! API boundary: handlers only parse, authenticate and call the engine; every rule of the
//! loop lives in `agentsigna-core`.

pub mod extract;
pub mod ledger;
pub mod limits;
pub mod problem;
pub mod routes;
pub mod server;

use std::sync::Arc;

use agentsigna_core::engine::Engine;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Sessions of the approver web pages (`/ui/`).
    pub sessions: Arc<crate::ui::session::Sessions>,
    /// Set when the server shuts down: long polls return at once.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Per-principal request rate and the cap on concurrent long polls.
    pub limits: Arc<limits::RequestLimits>,
}

impl AppState {
    pub fn new(engine: Arc<Engine>) -> AppState {
        AppState {
            engine,
            sessions: Arc::new(crate::ui::session::Sessions::default()),
            stopping: Arc::default(),
            limits: Arc::default(),
        }
    }
}

impl AppState {
    /// Ends every long poll: called when the server starts draining.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        self.engine.wake_all_waiters();
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    routes::router()
        .merge(ledger::router())
        .merge(crate::ui::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::limit))
        .with_state(state)
}

/// Serves `router` on `listener` with the default [`server::ServerLimits`] in a task until
/// the returned sender fires or is dropped; requests in flight then finish before the
/// task ends.
pub fn serve_until_stopped(
    listener: TcpListener,
    router: Router,
) -> (oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    server::serve(listener, router, server::ServerLimits::default())
}
