//! Ledger routes: checkpoint, verifier key, entries, proofs, case evidence.

use std::cell::RefCell;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::extract::{Auth, P as Path, Q as Query};
use super::problem::{ApiError, ApiResult};
use super::AppState;
use agentsigna_core::model::Principal;
use agentsigna_core::store::{StoreExt, Tx};
use agentsigna_verify::evidence::{encode_hashes, Evidence};
use agentsigna_verify::merkle::{self, Hash, NodeSource};
use agentsigna_verify::note::{self, Checkpoint};

/// Largest page of `/v1/ledger/entries`.
pub const MAX_PAGE: u64 = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/ledger/checkpoint", get(checkpoint))
        .route("/v1/ledger/key", get(key))
        .route("/v1/ledger/entries", get(entries))
        .route("/v1/ledger/proof/inclusion", get(inclusion))
        .route("/v1/ledger/proof/consistency", get(consistency))
        .route("/v1/cases/{id}/evidence", get(evidence))
}

fn text(body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// Merkle nodes read through a transaction.
pub struct TxNodes<'a>(pub RefCell<&'a mut dyn Tx>);

impl NodeSource for TxNodes<'_> {
    fn node(&self, level: u32, index: u64) -> Result<Hash, agentsigna_verify::Error> {
        self.0.borrow_mut().merkle_node(level, index).map_err(|e| agentsigna_verify::Error::BadProof(e.to_string()))
    }
}

/// The latest checkpoint, or a signed empty one for a fresh ledger.
pub async fn latest_checkpoint(s: &AppState) -> ApiResult<String> {
    let stored = s.engine.store().read_tx(|tx| tx.checkpoint()).await?;
    match stored {
        Some(c) => Ok(c),
        None => {
            let keys = s.engine.keys();
            let cp = Checkpoint {
                origin: keys.ledger.name().to_owned(),
                size: 0,
                root: merkle::empty_root(),
                extensions: vec![],
            };
            note::sign_checkpoint(&cp, &keys.ledger).map_err(|e| ApiError::from(agentsigna_core::Error::storage(e)))
        }
    }
}

async fn checkpoint(State(s): State<AppState>) -> ApiResult<Response> {
    Ok(text(latest_checkpoint(&s).await?))
}

async fn key(State(s): State<AppState>) -> Response {
    text(format!("{}\n", s.engine.keys().ledger.verifier_key()))
}

fn require_reader(p: &Principal) -> ApiResult<()> {
    match p {
        Principal::Admin | Principal::Approver(_) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            "only approvers and the admin read the ledger",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    start: u64,
    end: Option<u64>,
}

async fn entries(State(s): State<AppState>, Auth(p): Auth, Query(r): Query<Range>) -> ApiResult<Response> {
    require_reader(&p)?;
    let end = r.end.unwrap_or(r.start.saturating_add(MAX_PAGE));
    if r.start > end {
        return Err(ApiError::bad_request(Some("start".into()), format!("start ({}) is after end ({end})", r.start)));
    }
    if end - r.start > MAX_PAGE {
        return Err(ApiError::bad_request(Some("end".into()), format!("at most {MAX_PAGE} entries per page")));
    }
    let start = r.start;
    let list = s
        .engine
        .store()
        .read_tx(move |tx| {
            let size = tx.ledger_size()?;
            if start > size {
                return Err(agentsigna_core::Error::invalid(
                    "start",
                    format!("start ({start}) is beyond the ledger size ({size})"),
                ));
            }
            tx.ledger_entries(start, end.min(size))
        })
        .await?;
    let mut body = String::new();
    for e in list {
        body.push_str(&serde_json::to_string(&e).map_err(|e| ApiError::bad_request(None, e.to_string()))?);
        body.push('\n');
    }
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    index: u64,
    size: u64,
}

async fn inclusion(
    State(s): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<InclusionQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    require_reader(&p)?;
    let hashes = s
        .engine
        .store()
        .read_tx(move |tx| {
            let tree = tx.ledger_size()?;
            if q.size == 0 || q.size > tree {
                return Err(agentsigna_core::Error::invalid(
                    "size",
                    format!("size must be between 1 and the tree size {tree} (got {})", q.size),
                ));
            }
            if q.index >= q.size {
                return Err(agentsigna_core::Error::invalid(
                    "index",
                    format!("index must be below size {} (got {})", q.size, q.index),
                ));
            }
            let nodes = TxNodes(RefCell::new(tx));
            merkle::inclusion_proof(&nodes, q.index, q.size).map_err(agentsigna_core::Error::storage)
        })
        .await?;
    Ok(Json(json!({"index": q.index, "size": q.size, "hashes": encode_hashes(&hashes)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

async fn consistency(
    State(s): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    require_reader(&p)?;
    let hashes = s
        .engine
        .store()
        .read_tx(move |tx| {
            let tree = tx.ledger_size()?;
            if q.from == 0 {
                return Err(agentsigna_core::Error::invalid("from", "from must be at least 1"));
            }
            if q.from > q.to {
                return Err(agentsigna_core::Error::invalid(
                    "from",
                    format!("from ({}) is after to ({})", q.from, q.to),
                ));
            }
            if q.to > tree {
                return Err(agentsigna_core::Error::invalid(
                    "to",
                    format!("to ({}) is beyond the tree size {tree}", q.to),
                ));
            }
            let nodes = TxNodes(RefCell::new(tx));
            merkle::consistency_proof(&nodes, q.from, q.to).map_err(agentsigna_core::Error::storage)
        })
        .await?;
    Ok(Json(json!({"from": q.from, "to": q.to, "hashes": encode_hashes(&hashes)})))
}

/// One case's entries with inclusion proofs against the latest checkpoint.
pub async fn case_evidence(s: &AppState, by: &Principal, id: &str) -> ApiResult<Evidence> {
    // Same visibility as the case itself.
    s.engine.case_status(by, id).await?;
    let keys = s.engine.keys();
    let key = keys.ledger.verifier_key();
    let verifier = keys.ledger.verifier();
    let id = id.to_owned();
    let ev = s
        .engine
        .store()
        .read_tx(move |tx| {
            let note = tx.checkpoint()?.ok_or_else(|| agentsigna_core::Error::storage("no checkpoint"))?;
            let cp = note::verify_checkpoint(&note, &verifier).map_err(agentsigna_core::Error::storage)?;
            let entries: Vec<_> = tx.case_entries(Some(&id))?.into_iter().filter(|e| e.entry.index < cp.size).collect();
            let nodes = TxNodes(RefCell::new(tx));
            Evidence::build(&id, &cp, note, key, entries, &nodes).map_err(agentsigna_core::Error::storage)
        })
        .await?;
    Ok(ev)
}

async fn evidence(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Evidence>> {
    Ok(Json(case_evidence(&s, &p, &id).await?))
}
