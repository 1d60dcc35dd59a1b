//! Ledger routes: checkpoint, verifier key, entries, proofs, case evidence.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::documents::{ConsistencyProof, InclusionProof, Problems, PublicProblems};
use super::extract::{Auth, P as Path, Q as Query};
use super::problem::{ApiError, ApiResult};
use super::table::Routes;
use crate::state::AppState;
use agentsigna_core::model::Principal;
use agentsigna_core::schema::{EvidenceSchema, LedgerEntrySchema};
use agentsigna_verify::evidence::{encode_hashes, Evidence};

/// Largest page of `/v1/ledger/entries`.
pub use agentsigna_core::engine::ledger::MAX_PAGE;

pub fn routes() -> Routes {
    Routes::new()
        .get("/v1/ledger/checkpoint", checkpoint)
        .get("/v1/ledger/key", key)
        .get("/v1/ledger/entries", entries)
        .get("/v1/ledger/proof/inclusion", inclusion)
        .get("/v1/ledger/proof/consistency", consistency)
        .get("/v1/cases/{id}/evidence", evidence)
}

fn text(body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// The latest checkpoint, or a signed empty one for a fresh ledger.
pub async fn latest_checkpoint(s: &AppState) -> ApiResult<String> {
    Ok(s.engine.latest_checkpoint().await?)
}

#[utoipa::path(
    get,
    path = "/v1/ledger/checkpoint",
    tag = "ledger",
    responses((status = 200, description = "The latest signed checkpoint (C2SP signed note)", body = String, content_type = "text/plain"), PublicProblems),
    security(())
)]
async fn checkpoint(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(text(latest_checkpoint(&s).await?))
}

#[utoipa::path(
    get,
    path = "/v1/ledger/key",
    tag = "ledger",
    responses((status = 200, description = "The checkpoint verifier key (`<name>+<keyid hex>+<base64>`)", body = String, content_type = "text/plain"), PublicProblems),
    security(())
)]
async fn key(State(s): State<AppState>) -> Response {
    text(format!("{}\n", s.engine.keys().ledger.verifier_key()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct Range {
    /// The first index.
    start: u64,
    /// One past the last index (a bounded page at most).
    end: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/ledger/entries",
    tag = "ledger",
    params(Range),
    responses((status = 200, description = "Entries `[start, end)`, one JSON object (a `LedgerEntry`) per line", body = LedgerEntrySchema, content_type = "application/x-ndjson"), Problems),
    security(("admin_token" = []), ("approver_token" = []))
)]
async fn entries(State(s): State<AppState>, Auth(p): Auth, Query(r): Query<Range>) -> ApiResult<Response> {
    let list = s.engine.ledger_entries(&p, r.start, r.end).await?;
    let mut body = String::new();
    for e in list {
        body.push_str(&serde_json::to_string(&e).map_err(|e| ApiError::bad_request(None, e.to_string()))?);
        body.push('\n');
    }
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(resp)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    /// The entry's index.
    index: u64,
    /// The tree size the proof is against.
    size: u64,
}

#[utoipa::path(
    get,
    path = "/v1/ledger/proof/inclusion",
    tag = "ledger",
    params(InclusionQuery),
    responses((status = 200, description = "RFC 9162 inclusion proof", body = InclusionProof), Problems),
    security(("admin_token" = []), ("approver_token" = []))
)]
async fn inclusion(
    State(s): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<InclusionQuery>,
) -> ApiResult<Json<InclusionProof>> {
    let hashes = s.engine.inclusion_proof(&p, q.index, q.size).await?;
    Ok(Json(InclusionProof { index: q.index, size: q.size, hashes: encode_hashes(&hashes) }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    /// The older tree size (at least 1).
    from: u64,
    /// The newer tree size.
    to: u64,
}

#[utoipa::path(
    get,
    path = "/v1/ledger/proof/consistency",
    tag = "ledger",
    params(ConsistencyQuery),
    responses((status = 200, description = "RFC 9162 consistency proof", body = ConsistencyProof), Problems),
    security(("admin_token" = []), ("approver_token" = []))
)]
async fn consistency(
    State(s): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult<Json<ConsistencyProof>> {
    let hashes = s.engine.consistency_proof(&p, q.from, q.to).await?;
    Ok(Json(ConsistencyProof { from: q.from, to: q.to, hashes: encode_hashes(&hashes) }))
}

/// One case's entries with inclusion proofs against the latest checkpoint.
pub async fn case_evidence(s: &AppState, by: &Principal, id: &str) -> ApiResult<Evidence> {
    Ok(s.engine.case_evidence(by, id).await?)
}

#[utoipa::path(
    get,
    path = "/v1/cases/{id}/evidence",
    tag = "ledger",
    params(("id" = String, Path, description = "Case id")),
    responses((status = 200, description = "The case's entries with inclusion proofs against the latest checkpoint, verifiable offline", body = EvidenceSchema), Problems),
    security(("admin_token" = []), ("approver_token" = []), ("agent_key" = []), ("system_token" = []))
)]
async fn evidence(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Evidence>> {
    Ok(Json(case_evidence(&s, &p, &id).await?))
}
