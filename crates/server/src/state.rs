//! The state every handler shares, of the JSON API and of the web pages alike.

use std::sync::Arc;

use agentsigna_core::engine::Engine;

use crate::http::limits;
use crate::ui::session::Sessions;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Sessions of the approver web pages (`/ui/`).
    pub sessions: Arc<Sessions>,
    /// Set when the server shuts down: long polls return at once.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Per-principal request rate and the cap on concurrent long polls.
    pub limits: Arc<limits::RequestLimits>,
    /// The series of `GET /metrics`.
    pub metrics: Arc<crate::observe::metrics::Metrics>,
    /// Settings of the approver pages.
    pub ui: Arc<crate::ui::UiOptions>,
}

impl AppState {
    pub fn new(engine: Arc<Engine>) -> AppState {
        AppState {
            sessions: Arc::new(Sessions::new(engine.clone())),
            engine,
            stopping: Arc::default(),
            limits: Arc::default(),
            metrics: Arc::default(),
            ui: Arc::default(),
        }
    }

    /// Ends every long poll: called when the server starts draining.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        self.engine.wake_all_waiters();
    }
}
