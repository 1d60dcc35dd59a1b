//! The ERP of the demo: purchase orders only with a valid passport (audience "erp"),
//! checked offline with the `agentsigna-verify` [`Gate`], executions reported back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::anyhow;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use agentsigna_core::engine::views::CaseView;
use agentsigna_verify::gate::{Gate, GateRequest, MemoryReplayCache};
use agentsigna_verify::jwk::Jwks;
use agentsigna_verify::passport::Verifier;

use super::api::Api;
use super::DemoClock;

#[derive(Clone)]
pub(super) struct Erp {
    pub(super) gate: Arc<Gate>,
    pub(super) clock: Arc<DemoClock>,
    pub(super) agentsigna: Api,
    pub(super) token: String,
    pub(super) url: String,
    pub(super) next_po: Arc<AtomicU64>,
}

pub(super) type Refusal = (StatusCode, &'static str, String);

impl Erp {
    pub(super) async fn accept(&self, headers: &HeaderMap, body: &str) -> Result<Value, Refusal> {
        let passport = passport_header(headers).ok_or((
            StatusCode::UNAUTHORIZED,
            "missing",
            "no passport: send `Authorization: Passport <jws>`".to_owned(),
        ))?;
        let proof = headers.get("agentsigna-proof").and_then(|v| v.to_str().ok());
        let url = format!("{}/purchase-orders", self.url);
        let req = GateRequest { passport: &passport, proof, method: "POST", url: &url };
        // Signature, audience, expiry, single use (and holder proof): offline, no call back.
        let verified = self.gate.check(&req, self.clock.as_ref()).map_err(|e| {
            let status = match e.code() {
                "replayed" => StatusCode::CONFLICT,
                "wrong_audience" => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            (status, e.code(), e.to_string())
        })?;
        let po: Value =
            serde_json::from_str(body).map_err(|e| (StatusCode::BAD_REQUEST, "malformed", e.to_string()))?;
        let c = &verified.claims;
        let authorized = c.authorization_details.first().is_some_and(|d| {
            d.action == "purchase_order.create"
                && po["vendor"] == d.counterparty.id.as_str()
                && d.amount.as_ref().is_some_and(|a| {
                    po["amount"]["value"] == a.value.as_str() && po["amount"]["currency"] == a.currency.as_str()
                })
        });
        if !authorized {
            let detail = "this purchase order is not the action the passport authorizes".to_owned();
            return Err((StatusCode::FORBIDDEN, "passport_mismatch", detail));
        }
        let number = format!("PO-{}", self.next_po.fetch_add(1, Ordering::SeqCst));
        let report = json!({"passport_id": c.jti, "reference": number});
        let path = format!("/v1/cases/{}/execution", c.case.id);
        let case: CaseView = self
            .agentsigna
            .expect_doc(Method::POST, &path, &self.token, Some(&report), 200)
            .await
            .map_err(|e| (StatusCode::BAD_GATEWAY, "report_failed", format!("{e:#}")))?;
        Ok(json!({"po_number": number, "case": c.case.id, "passport_id": c.jti, "vendor": po["vendor"],
                  "amount": po["amount"], "agentsigna_case_status": case.core.status}))
    }
}

pub(super) fn passport_header(h: &HeaderMap) -> Option<String> {
    if let Some(v) = h.get("agentsigna-passport").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned());
    }
    let (scheme, token) = h.get(header::AUTHORIZATION)?.to_str().ok()?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("passport").then(|| token.trim().to_owned())
}

pub(super) async fn erp_purchase_order(State(erp): State<Erp>, headers: HeaderMap, body: String) -> Response {
    match erp.accept(&headers, &body).await {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err((status, code, detail)) => {
            let body = json!({"type": format!("urn:agentsigna:gate:{code}"), "title": "Passport refused",
                              "status": status.as_u16(), "detail": detail, "code": code});
            let mut resp = (status, Json(body)).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
            resp
        }
    }
}

/// A small HTTP service running in this process.
pub(super) struct Service {
    pub(super) url: String,
    pub(super) stop: oneshot::Sender<()>,
    pub(super) join: JoinHandle<std::io::Result<()>>,
}

pub(super) async fn start_erp(agentsigna: Api, clock: Arc<DemoClock>, token: String) -> anyhow::Result<Service> {
    let jwks = Jwks::from_json(&agentsigna.text("/.well-known/jwks.json").await?).map_err(|e| anyhow!("JWKS: {e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let gate = Gate::new(Verifier::new(jwks, "erp")).with_replay_cache(Arc::new(MemoryReplayCache::new(10_000)));
    let erp = Erp {
        gate: Arc::new(gate),
        clock,
        agentsigna,
        token,
        url: url.clone(),
        next_po: Arc::new(AtomicU64::new(1001)),
    };
    let router = Router::new().route("/purchase-orders", post(erp_purchase_order)).with_state(erp);
    let (stop, join) = crate::http::serve_until_stopped(listener, router);
    Ok(Service { url, stop, join })
}
