//! The state every handler shares, of the JSON API and of the web pages alike.

use std::sync::Arc;

use agentsigna_core::engine::Engine;

use crate::http::limits;
use crate::ui::session::Sessions;

/// Shared state of every handler: one reference-counted pointer, so that the clone axum
/// makes for every middleware and handler of a request is one atomic increment, not one
/// per shared part.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] points to.
pub struct Shared {
    pub engine: Arc<Engine>,
    /// Sessions of the approver web pages (`/ui/`).
    pub sessions: Sessions,
    /// Set when the server shuts down: long polls return at once.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Per-principal request rate and the cap on concurrent long polls.
    pub limits: limits::RequestLimits,
    /// The series of `GET /metrics`.
    pub metrics: Arc<crate::observe::metrics::Metrics>,
    /// Settings of the approver pages.
    pub ui: crate::ui::UiOptions,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The state of a server with default limits and page settings.
    pub fn new(engine: Arc<Engine>) -> AppState {
        AppState::with(engine, limits::RequestLimits::default(), crate::ui::UiOptions::default())
    }

    /// The state of a server with these request limits and page settings.
    pub fn with(engine: Arc<Engine>, limits: limits::RequestLimits, ui: crate::ui::UiOptions) -> AppState {
        AppState(Arc::new(Shared {
            sessions: Sessions::new(engine.clone()),
            engine,
            stopping: Default::default(),
            limits,
            metrics: Arc::default(),
            ui,
        }))
    }

    /// Ends every long poll: called when the server starts draining.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        self.engine.wake_all_waiters();
    }
}
