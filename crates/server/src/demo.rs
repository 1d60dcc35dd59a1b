//! `agentsigna demo`: the procurement scenario of `examples/procurement/`, end to end.
//!
//! A real server (temporary data dir, loopback port) with the built-in org and Cedar
//! policy; agents and approvers that talk to it over HTTP only; and a small ERP that
//! accepts purchase orders only with a valid passport, checked offline with the
//! `agentsigna-verify` [`Gate`]. The narration walks the seven steps of the loop. Every
//! verdict and status is checked: anything unexpected fails the demo (exit 1), so it
//! doubles as an end-to-end test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use agentsigna_core::money::Amount;
use agentsigna_core::org::OrgFile;
use agentsigna_core::{Clock, SystemClock};
use agentsigna_verify::clock::rfc3339_ms;
use agentsigna_verify::evidence::{verify_evidence, Evidence};
use agentsigna_verify::gate::{Gate, GateRequest, MemoryReplayCache};
use agentsigna_verify::jwk::Jwks;
use agentsigna_verify::note::{verify_checkpoint, NoteVerifier};
use agentsigna_verify::passport::{decode_unverified, Verifier};

use crate::app::{self, ServeOptions};
use crate::cli::{DemoArgs, LedgerVerifyArgs};

/// The reference org and its policy, built into the binary (their source is `examples/procurement/`).
const ORG: &str = include_str!("../../../examples/procurement/org.toml");
const POLICY: &str = include_str!("../../../examples/procurement/policy.cedar");

/// How far part 5 moves the demo clock: beyond a passport's 5 minutes plus 30 s leeway.
const JUMP_MS: i64 = 6 * 60 * 1000;

/// Wall-clock time plus an offset the demo moves forward ("demo clock +6 min"). The
/// server and the ERP share it, so a passport can expire without waiting. It starts
/// [`JUMP_MS`] behind real time, so after the jump it is on time again: with `--serve`,
/// passports issued while browsing verify against any real clock.
#[derive(Debug)]
struct DemoClock {
    offset_ms: AtomicI64,
}

impl Clock for DemoClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

/// A JSON-over-HTTP client of one base URL.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| format!("{method} {path}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// The call must answer `want`; anything else fails the demo, naming what came back.
    async fn expect(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.call(method.clone(), path, token, body).await?;
        if status != want {
            bail!("{method} {path}: expected HTTP {want}, got {status}: {v}");
        }
        Ok(v)
    }

    async fn text(&self, path: &str) -> anyhow::Result<String> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await?.error_for_status()?;
        Ok(resp.text().await?)
    }
}

// ---------------------------------------------------------------------------------------
// The ERP: purchase orders only with a valid passport (audience "erp").

#[derive(Clone)]
struct Erp {
    gate: Arc<Gate>,
    clock: Arc<DemoClock>,
    agentsigna: Api,
    token: String,
    url: String,
    next_po: Arc<AtomicU64>,
}

type Refusal = (StatusCode, &'static str, String);

impl Erp {
    async fn accept(&self, headers: &HeaderMap, body: &str) -> Result<Value, Refusal> {
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
        let case = self
            .agentsigna
            .expect(Method::POST, &path, &self.token, Some(&report), 200)
            .await
            .map_err(|e| (StatusCode::BAD_GATEWAY, "report_failed", format!("{e:#}")))?;
        Ok(json!({"po_number": number, "case": c.case.id, "passport_id": c.jti, "vendor": po["vendor"],
                  "amount": po["amount"], "agentsigna_case_status": case["status"]}))
    }
}

fn passport_header(h: &HeaderMap) -> Option<String> {
    if let Some(v) = h.get("agentsigna-passport").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned());
    }
    let (scheme, token) = h.get(header::AUTHORIZATION)?.to_str().ok()?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("passport").then(|| token.trim().to_owned())
}

async fn erp_purchase_order(State(erp): State<Erp>, headers: HeaderMap, body: String) -> Response {
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
struct Service {
    url: String,
    stop: oneshot::Sender<()>,
    join: JoinHandle<std::io::Result<()>>,
}

async fn start_erp(agentsigna: Api, clock: Arc<DemoClock>, token: String) -> anyhow::Result<Service> {
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

// ---------------------------------------------------------------------------------------
// Narration.

const W: usize = 12;

fn say(label: &str, text: impl std::fmt::Display) {
    println!("  {label:<W$} {text}");
}

fn more(text: impl std::fmt::Display) {
    say("", text);
}

fn section(n: u32, title: &str) {
    println!("\n{n}. {title}\n{}", "-".repeat(title.chars().count() + 3));
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// JSON on one line, spaced: `{"a": 1, "b": [2, 3]}`.
fn flat(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let items: Vec<String> =
                m.iter().map(|(k, x)| format!("{}: {}", Value::String(k.clone()), flat(x))).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(flat).collect::<Vec<_>>().join(", ")),
        _ => v.to_string(),
    }
}

/// Pretty JSON that keeps any member fitting in the line on one line.
fn layout(v: &Value, pad: usize, head: &str, tail: &str, out: &mut Vec<String>) {
    let indent = " ".repeat(pad);
    let items: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, x)| (format!("{}: ", Value::String(k.clone())), x)).collect(),
        Value::Array(a) => a.iter().map(|x| (String::new(), x)).collect(),
        _ => Vec::new(),
    };
    let one_line = format!("{indent}{head}{}{tail}", flat(v));
    if items.is_empty() || one_line.chars().count() <= 86 {
        out.push(one_line);
        return;
    }
    let (open, close) = if v.is_object() { ("{", "}") } else { ("[", "]") };
    out.push(format!("{indent}{head}{open}"));
    let n = items.len();
    for (i, (key, x)) in items.into_iter().enumerate() {
        layout(x, pad + 2, &key, if i + 1 < n { "," } else { "" }, out);
    }
    out.push(format!("{indent}{close}{tail}"));
}

fn needs(n: &Value) -> String {
    format!("needs {n} approval{}", if n.as_u64() == Some(1) { "" } else { "s" })
}

fn roles(v: &Value) -> String {
    let roles: Vec<&str> = v.as_array().map(|a| a.iter().map(s).collect()).unwrap_or_default();
    if roles.is_empty() {
        "any approver".to_owned()
    } else {
        format!("role {}", roles.join(" + "))
    }
}

/// The trust moves the last outcome of a case caused (its `trust.updated` ledger entries).
fn trust_moves(case: &Value) -> String {
    let events = case["events"].as_array().map(Vec::as_slice).unwrap_or_default();
    let last = events.iter().rposition(|e| e["type"] == "outcome.recorded").map_or(0, |i| i + 1);
    let moves: Vec<String> = events[last.min(events.len())..]
        .iter()
        .filter(|e| e["type"] == "trust.updated")
        .map(|e| {
            let who = s(&e["data"]["subject"]).split_once(':').map_or("?", |(_, id)| id);
            format!("{who} {} → {}", e["data"]["before"], e["data"]["after"])
        })
        .collect();
    if moves.is_empty() {
        "unchanged (this case already counted a worse outcome)".to_owned()
    } else {
        moves.join(", ")
    }
}

/// One request of an agent.
#[derive(Clone, Copy)]
struct Ask<'a> {
    agent: &'a str,
    action: &'a str,
    counterparty: &'a str,
    value: &'a str,
    audience: &'a str,
    description: &'a str,
    key: &'a str,
}

impl<'a> Ask<'a> {
    fn po(counterparty: &'a str, value: &'a str, description: &'a str, key: &'a str) -> Ask<'a> {
        Ask {
            agent: "procurement-bot",
            action: "purchase_order.create",
            counterparty,
            value,
            audience: "erp",
            description,
            key,
        }
    }
}

struct Demo {
    api: Api,
    erp_url: String,
    clock: Arc<DemoClock>,
    admin: String,
    creds: HashMap<String, String>,
    data_dir: PathBuf,
}

impl Demo {
    fn token(&self, kind: &str, id: &str) -> anyhow::Result<&str> {
        self.creds
            .get(&format!("{kind}:{id}"))
            .map(String::as_str)
            .ok_or_else(|| anyhow!("no credential for {kind} {id}"))
    }

    /// ① and ②: the agent asks; the verdict must be `want`, produced by `rule`.
    async fn ask(&self, a: Ask<'_>, want: &str, rule: &str) -> anyhow::Result<Value> {
        say(
            "① request",
            format!(
                "{} asks: {} with {}, {} → {}",
                a.agent,
                a.action,
                a.counterparty,
                Amount { value: a.value.to_owned(), currency: "USD".to_owned() },
                a.audience
            ),
        );
        more(format!("\"{}\"", a.description));
        let body = json!({"action": a.action, "counterparty": a.counterparty, "amount": {"value": a.value, "currency": "USD"},
                          "audience": a.audience, "description": a.description, "context": {"cost_center": "IT-7"},
                          "idempotency_key": a.key});
        let v = self.api.expect(Method::POST, "/v1/requests", self.token("agent", a.agent)?, Some(&body), 201).await?;
        let verdict = s(&v["verdict"]);
        say(
            "② verdict",
            format!(
                "{verdict}   case {}   (trust: agent {}, {} {}; policy v{})",
                s(&v["case_id"]),
                v["trust"]["agent"],
                a.counterparty,
                v["trust"]["counterparty"],
                v["policy"]["version"]
            ),
        );
        let reasons = v["reasons"].as_array().cloned().unwrap_or_default();
        for r in &reasons {
            more(format!("{} [{}]: {}", r["rule"].as_str().unwrap_or("(no rule)"), s(&r["verdict"]), s(&r["reason"])));
        }
        if verdict != want || !reasons.iter().any(|r| r["rule"] == rule) {
            bail!("expected verdict {want} by rule {rule}, got {verdict} with {}", Value::Array(reasons));
        }
        Ok(v)
    }

    /// ⑤: the agent sends the purchase order to the ERP, with or without its passport.
    async fn send_po(&self, passport: Option<(&str, String)>, a: Ask<'_>) -> anyhow::Result<(u16, Value)> {
        let mut req = self.api.http.post(format!("{}/purchase-orders", self.erp_url));
        if let Some((name, value)) = passport {
            req = req.header(name, value);
        }
        let po = json!({"vendor": a.counterparty, "amount": {"value": a.value, "currency": "USD"}, "description": a.description});
        let resp = req.json(&po).send().await.context("POST to the ERP")?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// ⑤ the ERP must accept the passport; returns the PO number.
    async fn execute(&self, passport: &str, a: Ask<'_>) -> anyhow::Result<String> {
        let (status, v) = self.send_po(Some(("authorization", format!("Passport {passport}"))), a).await?;
        if status != 201 || v["agentsigna_case_status"] != "executed" {
            bail!("the ERP should have accepted the passport: {status} {v}");
        }
        say(
            "⑤ execution",
            format!(
                "ERP: 201 Created {} (checked offline; it reported the execution: case executed)",
                s(&v["po_number"])
            ),
        );
        Ok(s(&v["po_number"]).to_owned())
    }

    /// ⑤ the ERP must refuse with `status` and the error `code`.
    async fn refused(
        &self,
        passport: Option<(&str, String)>,
        a: Ask<'_>,
        status: u16,
        code: &str,
        what: &str,
    ) -> anyhow::Result<()> {
        let (got, v) = self.send_po(passport, a).await?;
        if got != status || v["code"] != code {
            bail!("the ERP should have refused {what} with {status} {code}: got {got} {v}");
        }
        more(format!("{what}: ERP {got} {code} ({}) — refused", s(&v["detail"])));
        Ok(())
    }

    /// ⑥ and ⑦: the ERP reports an outcome with its system token.
    async fn outcome(&self, case: &str, outcome: &str, detail: &str) -> anyhow::Result<()> {
        let body = json!({"outcome": outcome, "detail": detail});
        let v = self
            .api
            .expect(Method::POST, &format!("/v1/cases/{case}/outcome"), self.token("system", "erp")?, Some(&body), 200)
            .await?;
        if v["status"] != "closed" {
            bail!("case {case} should be closed after its outcome: {}", v["status"]);
        }
        say("⑥ outcome", format!("ERP reports {outcome}: \"{detail}\" → case closed"));
        say("⑦ trust", trust_moves(&v));
        Ok(())
    }

    async fn review_context(&self, approver: &str, review: &str) -> anyhow::Result<()> {
        let r = self
            .api
            .expect(Method::GET, &format!("/v1/reviews/{review}"), self.token("approver", approver)?, None, 200)
            .await?;
        let (t, o) = (&r["agent"]["trust"], &r["agent"]["trust"]["outcomes"]);
        more(format!("{approver} opens the review and sees:"));
        more(format!(
            "  agent {} (owner {}), trust {}: {} completed, {} reversed, {} disputed",
            s(&r["agent"]["id"]),
            s(&r["agent"]["owner"]),
            t["score"],
            o["completed"],
            o["reversed"],
            o["disputed"]
        ));
        more(format!(
            "  vendor {}, risk {}, trust {}",
            s(&r["counterparty"]["name"]),
            s(&r["counterparty"]["risk"]),
            r["counterparty"]["trust"]["score"]
        ));
        for rule in r["rules"].as_array().map(Vec::as_slice).unwrap_or_default() {
            more(format!("  rule {}: {}", s(&rule["rule"]), s(&rule["reason"])));
        }
        Ok(())
    }

    async fn decide(
        &self,
        approver: &str,
        review: &str,
        decision: &str,
        comment: &str,
        want: u16,
    ) -> anyhow::Result<Value> {
        let body = json!({"decision": decision, "comment": comment});
        let path = format!("/v1/reviews/{review}/decisions");
        self.api.expect(Method::POST, &path, self.token("approver", approver)?, Some(&body), want).await
    }

    async fn trust_of(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.api.expect(Method::GET, path, &self.admin, None, 200).await?["trust"].clone())
    }

    fn show_passport(&self, token: &str) -> anyhow::Result<()> {
        let c = serde_json::to_value(decode_unverified(token)?)?;
        let shown = json!({"sub": c["sub"], "aud": c["aud"], "jti": c["jti"], "exp": c["exp"],
                           "authorization_details": c["authorization_details"], "decision": c["decision"],
                           "approvals": c["approvals"], "case": c["case"]});
        let secs = c["exp"].as_i64().unwrap_or(0) - self.clock.now_secs();
        say(
            "④ passport",
            format!(
                "compact JWS, {} bytes, EdDSA; expires {} (in {secs} s). Its claims:",
                token.len(),
                rfc3339_ms(c["exp"].as_i64().unwrap_or(0) * 1000)
            ),
        );
        let mut lines = Vec::new();
        layout(&shown, 2, "", "", &mut lines);
        lines.iter().for_each(more);
        Ok(())
    }

    /// The seven parts; returns the review left open in part 6.
    async fn scenario(&self, org: &OrgFile) -> anyhow::Result<String> {
        let agent_paths: Vec<String> = org.agents.iter().map(|a| format!("/v1/agents/{}", a.id)).collect();
        let cp_paths: Vec<String> = org.counterparties.iter().map(|c| format!("/v1/counterparties/{}", c.id)).collect();
        let mut before = Vec::new();
        for p in agent_paths.iter().chain(&cp_paths) {
            before.push(self.trust_of(p).await?["score"].clone());
        }

        section(1, "A routine purchase order: authorized at once");
        let a1 = Ask::po("acme", "4800.00", "Toner, paper and desk supplies for Q3", "po-4411");
        let r1 = self.ask(a1, "authorized", "po-allowed").await?;
        let case1 = s(&r1["case_id"]).to_owned();
        let pass1 = s(&r1["passport"]).to_owned();
        self.show_passport(&pass1)?;
        let po1 = self.execute(&pass1, a1).await?;
        self.refused(None, a1, 401, "missing", "the same order without a passport").await?;
        self.refused(Some(("agentsigna-passport", pass1.clone())), a1, 409, "replayed", "the same passport again")
            .await?;
        self.outcome(&case1, "completed", "Delivered and invoiced as ordered").await?;

        section(2, "A large purchase order: escalated to finance");
        let a2 = Ask::po("globex", "40000.00", "40 laptops for the new onboarding cohort", "po-4412");
        let r2 = self.ask(a2, "escalated", "large-po").await?;
        let case2 = s(&r2["case_id"]).to_owned();
        let review2 = s(&r2["review"]["id"]).to_owned();
        say(
            "③ review",
            format!(
                "{review2} {} ({}), deadline {}",
                needs(&r2["review"]["approvals_required"]),
                roles(&r2["review"]["roles_required"]),
                s(&r2["review"]["deadline"])
            ),
        );
        let waiter = {
            let (api, token) = (self.api.clone(), self.token("agent", "procurement-bot")?.to_owned());
            let path = format!("/v1/cases/{case2}?wait=10");
            tokio::spawn(async move { (api.expect(Method::GET, &path, &token, None, 200).await, Instant::now()) })
        };
        more(format!("procurement-bot waits for the decision: GET /v1/cases/{case2}?wait=10"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let denied = self.decide("alice@example.com", &review2, "approve", "Looks fine to me", 403).await?;
        more("alice@example.com (finance, owner of procurement-bot) tries to approve → 403 Forbidden:");
        more(format!("  {}", s(&denied["detail"])));
        self.review_context("carol@example.com", &review2).await?;
        let d = self.decide("carol@example.com", &review2, "approve", "Budget line IT-7 confirmed", 200).await?;
        let approved_at = Instant::now();
        if d["review"]["status"] != "approved" {
            bail!("carol's approval should close review {review2}: {}", d["review"]);
        }
        more("carol@example.com (finance) approves → review approved");
        let (waited, returned_at) = waiter.await.context("the waiting agent")?;
        let waited = waited?;
        if waited["status"] != "authorized" || !waited["passport"].is_string() {
            bail!(
                "the waiting agent should have got its passport: status {} passport {}",
                waited["status"],
                waited["passport"]
            );
        }
        let pass2 = s(&waited["passport"]).to_owned();
        let c2 = decode_unverified(&pass2)?;
        let approvals: Vec<String> =
            c2.approvals.iter().map(|a| format!("{} [{}] at {}", a.approver, a.roles.join(","), a.at)).collect();
        say(
            "④ passport",
            format!(
                "the waiting request returned {} ms after the approval, with the passport:",
                returned_at.saturating_duration_since(approved_at).as_millis()
            ),
        );
        more(format!(
            "decision {} by rules [{}]; approvals: {}",
            c2.decision.verdict,
            c2.decision.rules.join(", "),
            approvals.join("; ")
        ));
        let po2 = self.execute(&pass2, a2).await?;
        self.outcome(&case2, "completed", "40 laptops received").await?;

        section(3, "A payment to a high-risk vendor: rejected by risk");
        let a3 = Ask {
            agent: "payments-bot",
            action: "payment.send",
            counterparty: "initech",
            value: "2000.00",
            audience: "bank",
            description: "Advance for the ERP integration workshop",
            key: "pay-981",
        };
        let r3 = self.ask(a3, "escalated", "high-risk-counterparty").await?;
        let review3 = s(&r3["review"]["id"]).to_owned();
        say(
            "③ review",
            format!(
                "{review3} {} ({}), deadline {}",
                needs(&r3["review"]["approvals_required"]),
                roles(&r3["review"]["roles_required"]),
                s(&r3["review"]["deadline"])
            ),
        );
        self.review_context("erin@example.com", &review3).await?;
        let comment = "Initech is under a fraud investigation; no advances until it is closed";
        let d3 = self.decide("erin@example.com", &review3, "reject", comment, 200).await?;
        if d3["status"] != "rejected" {
            bail!("erin's rejection should reject the case: {}", d3["status"]);
        }
        more("erin@example.com (risk) rejects → case rejected, no passport:");
        more(format!("  \"{comment}\""));

        section(4, "A contract with a blocked vendor: rejected by policy");
        let a4 = Ask {
            agent: "contracts-bot",
            action: "contract.sign",
            counterparty: "sanctioned-co",
            value: "12000.00",
            audience: "clm",
            description: "Annual supply framework agreement",
            key: "ctr-77",
        };
        let r4 = self.ask(a4, "rejected", "blocked-counterparty").await?;
        if !r4["passport"].is_null() || !r4["review"].is_null() {
            bail!("a rejected case gets neither a review nor a passport: {r4}");
        }
        more("no review, no passport: nothing reaches the contract system");

        section(5, "A passport used too late: expired");
        let a5 = Ask::po("acme", "900.00", "Replacement chairs for meeting room 2", "po-4413");
        let r5 = self.ask(a5, "authorized", "po-allowed").await?;
        let case5 = s(&r5["case_id"]).to_owned();
        say("④ passport", format!("{}, expires {}", s(&r5["passport_id"]), s(&r5["passport_expires_at"])));
        self.clock.offset_ms.fetch_add(JUMP_MS, Ordering::SeqCst);
        say("⑤ execution", "the agent dawdles: demo clock +6 min, then it sends the order");
        self.refused(
            Some(("authorization", format!("Passport {}", s(&r5["passport"])))),
            a5,
            401,
            "expired",
            "the late order",
        )
        .await?;
        let c5 = self
            .api
            .expect(Method::GET, &format!("/v1/cases/{case5}"), self.token("agent", "procurement-bot")?, None, 200)
            .await?;
        if c5["status"] != "expired"
            || !c5["events"].as_array().is_some_and(|e| e.iter().any(|e| e["type"] == "passport.expired"))
        {
            bail!("case {case5} should be expired: {}", c5["status"]);
        }
        more(format!(
            "case {case5} is now expired (passport.expired recorded); an expired passport is never re-issued"
        ));
        let a5b = Ask { key: "po-4413-retry", ..a5 };
        let r5b = self.ask(a5b, "authorized", "po-allowed").await?;
        self.execute(s(&r5b["passport"]), a5b).await?;
        self.outcome(s(&r5b["case_id"]), "completed", "Chairs delivered").await?;

        section(6, "Later outcomes: a reversal, a dispute, and lost latitude");
        more(format!("case {case2} ({po2}, globex laptops):"));
        self.outcome(&case2, "reversed", "Laptops returned as defective; order cancelled and refunded").await?;
        more(format!("case {case1} ({po1}, acme supplies):"));
        self.outcome(&case1, "disputed", "Acme invoiced 6,100.00 USD for a 4,800.00 USD order").await?;
        more("procurement-bot repeats the order of part 1:");
        let a6 = Ask::po("acme", "4800.00", "Toner, paper and desk supplies for Q4", "po-4414");
        let r6 = self.ask(a6, "escalated", "low-trust-latitude").await?;
        let review6 = s(&r6["review"]["id"]).to_owned();
        say(
            "③ review",
            format!("{review6} waits for a risk approver (left open: browse it with `agentsigna demo --serve`)"),
        );

        section(7, "Trust and the ledger");
        say(
            "⑦ trust",
            format!(
                "{:<16} {:>6}   {:>5}   outcomes counted (completed/reversed/rejected/disputed)",
                "", "before", "after"
            ),
        );
        let ids = org.agents.iter().map(|a| a.id.as_str()).chain(org.counterparties.iter().map(|c| c.id.as_str()));
        for ((id, path), b) in ids.zip(agent_paths.iter().chain(&cp_paths)).zip(&before) {
            let t = self.trust_of(path).await?;
            let o = &t["outcomes"];
            more(format!(
                "{id:<16} {b:>6} → {:>5}   {}/{}/{}/{}",
                t["score"], o["completed"], o["reversed"], o["rejected"], o["disputed"]
            ));
        }
        let note = self.api.text("/v1/ledger/checkpoint").await?;
        let key_text = self.api.text("/v1/ledger/key").await?;
        let key = NoteVerifier::parse(key_text.trim()).map_err(|e| anyhow!("ledger key: {e}"))?;
        let cp = verify_checkpoint(&note, &key).map_err(|e| anyhow!("checkpoint: {e}"))?;
        say("ledger", format!("checkpoint {} size {} (signature checked with GET /v1/ledger/key)", cp.origin, cp.size));
        let ev: Evidence = serde_json::from_value(
            self.api.expect(Method::GET, &format!("/v1/cases/{case1}/evidence"), &self.admin, None, 200).await?,
        )?;
        let chain: Vec<&str> = ev.entries.iter().map(|e| e.entry.entry.kind.as_str()).collect();
        let at = verify_evidence(&ev, &key).map_err(|e| anyhow!("evidence of case {case1}: {e}"))?;
        more(format!(
            "case {case1}: {} linked entries, each proven included in the tree of size {}:",
            chain.len(),
            at.size
        ));
        for part in chain.chunks(4) {
            more(format!("  {}", part.join(" → ")));
        }
        let saved = self.data_dir.join("checkpoint.txt");
        std::fs::write(&saved, &note)?;
        let args = LedgerVerifyArgs {
            data_dir: Some(self.data_dir.clone()),
            bundle: None,
            evidence: None,
            key: Some(key_text.trim().to_owned()),
            checkpoint: Some(saved),
            db: Default::default(),
        };
        let verdict = tokio::task::spawn_blocking(move || crate::cli::ledger_verify_inner(args)).await??;
        more("agentsigna ledger verify --data-dir DIR --checkpoint <the checkpoint above>:");
        more(format!("  {verdict}"));
        println!(
            "\nledger verified: {} entries written by this demo, every digest, chain and the Merkle root recomputed.",
            cp.size
        );
        Ok(review6)
    }
}

/// `agentsigna demo`.
pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let org = OrgFile::parse(ORG).context("the built-in org file")?;
    let dir =
        tempfile::Builder::new().prefix("agentsigna-demo-").tempdir().context("cannot create a temporary data dir")?;
    let clock = Arc::new(DemoClock { offset_ms: AtomicI64::new(-JUMP_MS) });
    let listen = a.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut opts = ServeOptions::new(dir.path(), listen);
    opts.org_inline = Some((org.clone(), Some(POLICY.to_owned())));
    opts.sweeper = true;
    let running = app::start(opts, clock.clone()).await.context("starting the server")?;
    let admin = running.admin_token.clone().ok_or_else(|| anyhow!("the fresh data dir has no admin token"))?;
    let creds: HashMap<String, String> =
        running.credentials.iter().map(|c| (format!("{}:{}", c.kind, c.id), c.token.clone())).collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let api = Api { http, base: running.url() };

    println!("AgentSigna demo: the procurement scenario of examples/procurement/ (built in)");
    say("server", format!("{}   data dir {}", running.url(), dir.path().display()));
    let erp = match creds.get("system:erp") {
        Some(token) => start_erp(api.clone(), clock.clone(), token.clone()).await,
        None => Err(anyhow!("the org created no credential for the erp")),
    };
    let result = match erp {
        Ok(erp) => {
            say(
                "ERP",
                format!("{}/purchase-orders   (audience erp; verifies passports offline with the JWKS)", erp.url),
            );
            say(
                "org",
                format!(
                    "{} agents, {} approvers, {} target systems, {} vendors, Cedar policy of {} rules",
                    org.agents.len(),
                    org.approvers.len(),
                    org.systems.len(),
                    org.counterparties.len(),
                    POLICY.matches("@id(").count()
                ),
            );
            say("loop", "① request  ② verdict  ③ review  ④ passport  ⑤ execution  ⑥ outcome  ⑦ trust");
            let demo = Demo {
                api: api.clone(),
                erp_url: erp.url.clone(),
                clock,
                admin,
                creds,
                data_dir: dir.path().to_owned(),
            };
            let r = demo.scenario(&org).await;
            if let (Ok(review), true) = (&r, a.serve) {
                serve_hint(&api, &running.data_dir, &org, review).await;
                app::shutdown_signal().await;
                println!("stopping");
            }
            let _ = erp.stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), erp.join).await;
            r.map(|_| ())
        }
        Err(e) => Err(e),
    };
    let stopped = running.stop(Duration::from_secs(5)).await;
    result?;
    stopped?;
    println!("done: the server and the ERP stopped; the temporary data dir is removed.");
    Ok(())
}

async fn serve_hint(api: &Api, data_dir: &std::path::Path, org: &OrgFile, review: &str) {
    println!("\nThe server keeps running for browsing; Ctrl-C stops it (and removes the data dir).");
    say("API", &api.base);
    if api
        .http
        .get(format!("{}/ui/", api.base))
        .send()
        .await
        .is_ok_and(|r| r.status() != reqwest::StatusCode::NOT_FOUND)
    {
        say("approver UI", format!("{}/ui/  (log in with an approver token below)", api.base));
    }
    say("admin token", data_dir.join("admin.token").display());
    for (i, a) in org.approvers.iter().enumerate() {
        let label = if i == 0 { "approvers" } else { "" };
        say(
            label,
            format!("{:<18} {}", a.id, data_dir.join("credentials").join(format!("approver-{}.token", a.id)).display()),
        );
    }
    say(
        "pending",
        format!("review {review} (procurement-bot, acme 4,800.00 USD) awaits a risk approver: erin or frank"),
    );
}
