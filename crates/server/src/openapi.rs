//! `GET /openapi.json`: the OpenAPI 3.1 description of the HTTP API, generated (utoipa)
//! from the handlers' `#[utoipa::path]` attributes and the typed documents they send and
//! accept (`agentsigna_core::engine::views`, [`crate::http::documents`]), with the problem+json
//! errors and the four bearer credentials. `agentsigna openapi` prints the same document.
//!
//! The web pages under `/ui` are HTML for people, not part of the API, and are not
//! described; `tests/it/openapi.rs` checks that every other route of
//! [`crate::router::route_list`] is described and that nothing else is.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::documents::{Problem, PublicProblems, Status};
use crate::http::table::Routes;
use crate::http::{ledger, routes};
use crate::observe::health;

/// The four bearer credentials (`Authorization: Bearer <secret>`).
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, who) in [
            ("agent_key", "An agent's API key (`POST /v1/agents`)."),
            ("approver_token", "An approver's token (`POST /v1/approvers`); the web pages sign in with it."),
            ("system_token", "A target system's token (`POST /v1/systems`)."),
            ("admin_token", "The admin token (`DATA_DIR/admin.token`)."),
        ] {
            let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(who)).build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// The API's description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "AgentSigna",
        description = "Authorization gateway for software agents: verdicts (Cedar), human review, signed passports (JWS), a tamper-evident ledger. Every error is RFC 9457 `application/problem+json`; every JSON body is I-JSON (a duplicate member name is refused)."
    ),
    paths(
        routes::healthz, routes::jwks, openapi_json, health::readyz, health::metrics_for_admin,
        routes::create_agent, routes::get_agent, routes::suspend_agent, routes::resume_agent, routes::revoke_agent,
        routes::create_approver, routes::revoke_approver, routes::create_system, routes::get_system,
        routes::put_counterparty, routes::get_counterparty, routes::list_actions, routes::put_action,
        routes::create_policy, routes::list_policies, routes::set_shadow, routes::clear_shadow, routes::get_shadow,
        routes::get_policy, routes::activate_policy, routes::get_rule,
        routes::submit_request, routes::list_cases, routes::get_case, routes::report_execution, routes::record_outcome,
        routes::list_reviews, routes::get_review, routes::decide_review,
        ledger::checkpoint, ledger::key, ledger::entries, ledger::inclusion, ledger::consistency, ledger::evidence,
    ),
    components(schemas(Problem, Status)),
    modifiers(&Credentials),
)]
pub struct ApiDoc;

/// The document as served and printed: pretty JSON with one trailing newline (built once).
pub fn document() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        name_link_members(&mut doc);
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    })
}

/// utoipa 5.5 writes the members of a Link Object in snake case (`operation_id`,
/// `operation_ref`, `request_body`); OpenAPI names them `operationId`, `operationRef` and
/// `requestBody`, and tools ignore links otherwise.
fn name_link_members(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(serde_json::Value::as_object_mut) else { return };
    let operations = paths.values_mut().filter_map(serde_json::Value::as_object_mut).flat_map(|item| item.values_mut());
    let responses = operations.filter_map(|op| op.get_mut("responses")?.as_object_mut()).flat_map(|r| r.values_mut());
    for links in responses.filter_map(|r| r.get_mut("links")?.as_object_mut()) {
        for link in links.values_mut().filter_map(serde_json::Value::as_object_mut) {
            for (from, to) in
                [("operation_id", "operationId"), ("operation_ref", "operationRef"), ("request_body", "requestBody")]
            {
                if let Some(v) = link.remove(from) {
                    link.insert(to.to_owned(), v);
                }
            }
        }
    }
}

/// `GET /openapi.json`.
pub fn routes() -> Routes {
    Routes::new().get("/openapi.json", openapi_json)
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "probes",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object), PublicProblems),
    security(())
)]
async fn openapi_json() -> Response {
    let mut resp = document().into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
