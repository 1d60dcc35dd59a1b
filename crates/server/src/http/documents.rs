//! The bodies the HTTP layer answers with beyond the engine's documents
//! (`agentsigna_core::engine::views`): what a registration returns once (credentials),
//! acknowledgements of admin changes, policy listings, proofs, probes and the RFC 9457
//! problem. Typed, so that `GET /openapi.json` describes exactly what the handlers send.

use serde::{Deserialize, Serialize};
use utoipa::{IntoResponses, ToSchema};

use agentsigna_core::engine::views::ShadowDivergence;
use agentsigna_core::model::Risk;

/// 201 of `POST /v1/agents`: the agent's API key, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentCreated {
    pub id: String,
    /// The agent's bearer credential; stored only as a hash, never shown again.
    pub api_key: String,
}

/// 201 of `POST /v1/approvers`: the approver's token, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApproverCreated {
    pub id: String,
    pub roles: Vec<String>,
    /// The approver's bearer credential (API and web sign-in); shown once.
    pub token: String,
}

/// 201 of `POST /v1/systems`: the target system's token, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SystemCreated {
    pub id: String,
    /// The target system's bearer credential; shown once.
    pub token: String,
}

/// An agent suspended or resumed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Suspension {
    pub id: String,
    pub suspended: bool,
}

/// A credential revoked (agent or approver): it authenticates nothing from now on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Revocation {
    pub id: String,
    /// Always `true`.
    pub revoked: bool,
    #[schema(format = DateTime)]
    pub revoked_at: String,
}

/// `GET /v1/systems/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SystemDoc {
    pub id: String,
    pub name: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A counterparty as saved.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CounterpartySaved {
    pub id: String,
    pub name: String,
    pub risk: Risk,
}

/// `PUT /v1/actions/{type}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    /// What the action does, for people.
    #[serde(default)]
    pub description: String,
}

/// A declared action type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActionDeclared {
    /// E.g. `purchase_order.create`.
    #[serde(rename = "type")]
    pub action_type: String,
    pub description: String,
}

/// `GET /v1/actions`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActionList {
    pub actions: Vec<ActionDeclared>,
}

/// `POST /v1/policies`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    /// The Cedar source (at most 1 MiB).
    pub source: String,
    /// Make it the active version at once.
    #[serde(default)]
    pub activate: bool,
}

/// A policy version uploaded or activated.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyVersion {
    pub version: u64,
    /// `sha256:<hex>` of the source.
    pub digest: String,
    pub active: bool,
}

/// A policy version in `GET /v1/policies`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicySummary {
    pub version: u64,
    pub digest: String,
    pub active: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: String,
}

/// `GET /v1/policies`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyList {
    /// The active version, if any.
    pub active: Option<u64>,
    pub policies: Vec<PolicySummary>,
}

/// `GET /v1/policies/{version}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyDoc {
    pub version: u64,
    pub digest: String,
    pub active: bool,
    /// The Cedar source.
    pub source: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: String,
}

/// `PUT /v1/policies/shadow`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowInput {
    /// The version evaluated beside the active one, never enforced.
    pub version: u64,
}

/// The shadow version after `PUT` or `DELETE /v1/policies/shadow`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Shadow {
    pub shadow: Option<u64>,
}

/// `GET /v1/policies/shadow`: the shadow version and where it disagreed with the active one.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ShadowReport {
    pub shadow: Option<u64>,
    /// Oldest first.
    pub divergences: Vec<ShadowDivergence>,
}

/// `GET /healthz` (`ok`) and `GET /readyz` (`ready`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub status: String,
}

/// `GET /v1/ledger/proof/inclusion` (RFC 9162).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InclusionProof {
    pub index: u64,
    pub size: u64,
    /// Standard base64 of each hash, leaf side first.
    pub hashes: Vec<String>,
}

/// `GET /v1/ledger/proof/consistency` (RFC 9162).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// Standard base64 of each hash.
    pub hashes: Vec<String>,
}

/// Every error: RFC 9457 `application/problem+json`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// `urn:agentsigna:problem:<slug>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// The offending member when one field is at fault (e.g. `amount.value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The errors an authenticated route may answer (RFC 9457 problem+json).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Problems {
    /// Malformed or invalid input; `field` names the member at fault.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No credential, or one that is unknown or revoked.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(Problem),
    /// Not allowed for this principal.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// Unknown (or a case the caller may not read: 404, so that ids do not leak).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The route does not take this method.
    #[response(status = 405, content_type = "application/problem+json")]
    MethodNotAllowed(Problem),
    /// The body did not arrive within the body timeout.
    #[response(status = 408, content_type = "application/problem+json")]
    RequestTimeout(Problem),
    /// Conflicting state (e.g. a review already closed, an idempotency key reused with
    /// another body).
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// The body is too large.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The body is not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// Well-formed, but it refers to something unknown (counterparty, action, audience).
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(Problem),
    /// Over the principal's request rate (`Retry-After`) or the long-poll cap.
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Problem),
    /// The database is unavailable or the decision kept conflicting; retry later
    /// (`Retry-After`).
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// The errors a public route may answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum PublicProblems {
    /// Malformed input.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// The route does not take this method.
    #[response(status = 405, content_type = "application/problem+json")]
    MethodNotAllowed(Problem),
    /// Over the request rate of the caller's address.
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Problem),
    /// Not ready, or the database is unavailable; retry later.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}
