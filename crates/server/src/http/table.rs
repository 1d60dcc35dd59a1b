//! The one list of routes: every route of the API and of the web pages is added to the
//! router through [`Routes`], which records its method and path as it goes.
//!
//! The authorization matrix test (`tests/it/matrix.rs`) compares [`crate::router::route_list`]
//! with its route × principal table, so a route added here without a row there fails
//! the test: new routes are covered by construction.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::state::AppState;

/// A router being built, with the list of what it serves.
pub struct Routes {
    router: Router<AppState>,
    list: Vec<(Method, &'static str)>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes::new()
    }
}

impl Routes {
    /// No route yet.
    pub fn new() -> Routes {
        Routes { router: Router::new(), list: Vec::new() }
    }

    fn add(mut self, method: Method, path: &'static str, route: axum::routing::MethodRouter<AppState>) -> Routes {
        self.router = self.router.route(path, route);
        self.list.push((method, path));
        self
    }

    /// `GET path`.
    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add(Method::GET, path, get(h))
    }

    /// `POST path`.
    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add(Method::POST, path, post(h))
    }

    /// `PUT path`.
    pub fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add(Method::PUT, path, put(h))
    }

    /// `DELETE path`.
    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add(Method::DELETE, path, delete(h))
    }

    /// Both sets of routes.
    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.list.extend(other.list);
        self
    }

    /// Changes the router (layers, fallbacks) without adding routes.
    pub fn map(mut self, f: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Routes {
        self.router = f(self.router);
        self
    }

    /// What it serves: `(method, path template)`, in the order added.
    pub fn list(&self) -> &[(Method, &'static str)] {
        &self.list
    }

    /// The router.
    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}
