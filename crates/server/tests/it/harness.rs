//! The test harness: a real AgentSigna server in this process (HTTP on a loopback port,
//! SQLite in a temporary data directory, the procurement org applied, time driven by a
//! manual clock), and small HTTP helpers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use agentsigna::app::{self, Running, ServeOptions};
use agentsigna_core::ManualClock;
use agentsigna_verify::jwk::Jwks;
use agentsigna_verify::ledger::Entry;
use agentsigna_verify::passport::{PassportClaims, Verifier};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The procurement org of `examples/`.
pub fn org_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/procurement/org.toml")
}

/// The built `agentsigna` binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_agentsigna")
}

/// Runs the CLI to completion.
pub fn run_cli(args: &[&str]) -> Output {
    Command::new(bin()).args(args).env("AGENTSIGNA_LOG", "error").output().expect("cannot run agentsigna")
}

/// Exit code, stdout and stderr of a finished command.
pub fn outcome(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Whether `text` mentions `index N` (not `index N0`).
pub fn names_index(text: &str, n: u64) -> bool {
    let needle = format!("index {n}");
    text.match_indices(&needle).any(|(at, m)| !text[at + m.len()..].chars().next().is_some_and(|c| c.is_ascii_digit()))
}

/// Instant the manual clock starts at: now, to the second (so passports also verify
/// against the wall clock, e.g. with `agentsigna verify`).
pub fn start_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock before 1970");
    i64::try_from(now.as_secs()).expect("time") * 1000
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub www_authenticate: Option<String>,
    /// The `Connection` header, when there is one.
    pub connection: Option<String>,
    pub text: String,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: Value,
}

impl Resp {
    /// `json[key]`.
    pub fn get(&self, key: &str) -> &Value {
        &self.json[key]
    }

    /// Asserts the status, printing the body on failure.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Resp {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        self
    }

    /// Asserts an RFC 9457 problem with this status and (when given) this `field`.
    #[track_caller]
    pub fn expect_problem(&self, status: u16, field: Option<&str>) -> &Resp {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        assert!(
            self.content_type.starts_with("application/problem+json"),
            "content type {:?} is not problem+json; body: {}",
            self.content_type,
            self.text
        );
        for member in ["type", "title", "status", "detail"] {
            assert!(!self.json[member].is_null(), "problem without {member}: {}", self.text);
        }
        assert_eq!(self.json["status"], json!(status), "problem status member: {}", self.text);
        if let Some(f) = field {
            assert_eq!(self.json["field"], json!(f), "problem field: {}", self.text);
        }
        self
    }
}

/// A running server with its clock, data directory and credentials.
pub struct Server {
    pub running: Option<Running>,
    pub clock: Arc<ManualClock>,
    pub dir: TempDir,
    pub base: String,
    pub client: reqwest::Client,
    pub admin: String,
    /// `(kind, id)` → token, from the org file.
    pub creds: HashMap<(String, String), String>,
}

impl Server {
    /// The procurement org, sweeper off, clock at now.
    pub async fn start() -> Server {
        Server::start_with(|_| {}).await
    }

    /// Like [`Server::start`], with changed options.
    pub async fn start_with(change: impl FnOnce(&mut ServeOptions)) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(start_ms()));
        let mut opts = ServeOptions::new(dir.path().join("data"), "127.0.0.1:0".parse().expect("addr"));
        opts.org = Some(org_path());
        opts.sweeper = false;
        change(&mut opts);
        let running = app::start(opts, clock.clone()).await.expect("server start");
        let admin = running.admin_token.clone().expect("a fresh data dir creates the admin token");
        let creds = running.credentials.iter().map(|c| ((c.kind.to_owned(), c.id.clone()), c.token.clone())).collect();
        // Idle connections are dropped by the client before the server's 10 s keep-alive
        // timeout can close one under a request being sent on it.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        Server { base: running.url(), running: Some(running), clock, dir, client, admin, creds }
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server (the data directory stays until `self` is dropped).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop(Duration::from_secs(10)).await.expect("clean stop");
        }
    }

    /// Stops the server and starts it again on the same data directory and clock (the
    /// org file is applied again); credentials and the admin token stay the old ones.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut opts = ServeOptions::new(self.data_dir(), "127.0.0.1:0".parse().expect("addr"));
        opts.org = Some(org_path());
        opts.sweeper = false;
        let running = app::start(opts, self.clock.clone()).await.expect("server restart");
        assert!(running.admin_token.is_none(), "a restart keeps the admin credential");
        assert!(running.credentials.is_empty(), "a restart creates no credential");
        self.base = running.url();
        self.running = Some(running);
    }

    /// The credential of an org principal.
    #[track_caller]
    pub fn token(&self, kind: &str, id: &str) -> String {
        self.creds
            .get(&(kind.to_owned(), id.to_owned()))
            .cloned()
            .unwrap_or_else(|| panic!("no credential for {kind} {id}"))
    }

    pub fn agent(&self, id: &str) -> String {
        self.token("agent", id)
    }

    pub fn approver(&self, id: &str) -> String {
        self.token("approver", id)
    }

    pub fn system(&self, id: &str) -> String {
        self.token("system", id)
    }

    /// procurement-bot (owner alice@example.com).
    pub fn bot(&self) -> String {
        self.agent("procurement-bot")
    }

    /// carol@example.com (finance).
    pub fn carol(&self) -> String {
        self.approver("carol@example.com")
    }

    /// erin@example.com (risk).
    pub fn erin(&self) -> String {
        self.approver("erin@example.com")
    }

    /// The ERP system.
    pub fn erp(&self) -> String {
        self.system("erp")
    }

    /// Any request; `body` is sent as JSON.
    pub async fn call(&self, method: reqwest::Method, token: Option<&str>, path: &str, body: Option<&Value>) -> Resp {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        into_resp(req.send().await.expect("HTTP request")).await
    }

    /// A request with a raw body and content type.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        let mut req =
            self.client.request(method, format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        into_resp(req.send().await.expect("HTTP request")).await
    }

    pub async fn get(&self, token: &str, path: &str) -> Resp {
        self.call(reqwest::Method::GET, Some(token), path, None).await
    }

    pub async fn get_public(&self, path: &str) -> Resp {
        self.call(reqwest::Method::GET, None, path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: &Value) -> Resp {
        self.call(reqwest::Method::POST, Some(token), path, Some(body)).await
    }

    pub async fn put(&self, token: &str, path: &str, body: &Value) -> Resp {
        self.call(reqwest::Method::PUT, Some(token), path, Some(body)).await
    }

    /// `POST /v1/requests`.
    pub async fn submit(&self, agent_token: &str, body: &Value) -> Resp {
        self.post(agent_token, "/v1/requests", body).await
    }

    /// A purchase order of procurement-bot for the ERP.
    pub async fn po(&self, counterparty: &str, value: &str) -> Resp {
        self.submit(&self.bot(), &po_body(counterparty, value)).await
    }

    /// `GET /v1/cases/{id}` as `token`.
    pub async fn case(&self, token: &str, id: &str) -> Resp {
        self.get(token, &format!("/v1/cases/{id}")).await
    }

    /// `POST /v1/reviews/{id}/decisions`.
    pub async fn decide(&self, token: &str, review: &str, decision: &str, comment: &str) -> Resp {
        self.post(token, &format!("/v1/reviews/{review}/decisions"), &json!({"decision": decision, "comment": comment}))
            .await
    }

    /// `POST /v1/cases/{id}/outcome`.
    pub async fn outcome(&self, token: &str, case: &str, outcome: &str) -> Resp {
        self.post(
            token,
            &format!("/v1/cases/{case}/outcome"),
            &json!({"outcome": outcome, "detail": "reported by a test"}),
        )
        .await
    }

    /// The served JWK set.
    pub async fn jwks(&self) -> Jwks {
        let r = self.get_public("/.well-known/jwks.json").await;
        r.expect(200);
        Jwks::from_json(&r.text).expect("JWKS")
    }

    /// Verifies a passport for `audience` at the server clock's instant.
    pub async fn verify_passport(&self, token: &str, audience: &str) -> PassportClaims {
        let verifier = Verifier::new(self.jwks().await, audience);
        verifier.verify_at(token, self.now_secs()).expect("the passport verifies").claims
    }

    pub fn now_secs(&self) -> i64 {
        use agentsigna_core::Clock as _;
        self.clock.now_ms().div_euclid(1000)
    }
}

async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_type = header("content-type").unwrap_or_default();
    let www_authenticate = header("www-authenticate");
    let connection = header("connection");
    let text = r.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(status < 500, "the server answered {status}: {text}");
    Resp { status, content_type, www_authenticate, connection, text, json }
}

/// A purchase-order request body.
pub fn po_body(counterparty: &str, value: &str) -> Value {
    json!({
        "action": "purchase_order.create", "counterparty": counterparty,
        "amount": {"value": value, "currency": "USD"}, "audience": "erp",
        "description": "laptops for onboarding", "context": {"cost_center": "IT-7", "items": 12},
    })
}

/// A payment request body (to the bank).
pub fn payment_body(counterparty: &str, value: &str) -> Value {
    json!({
        "action": "payment.send", "counterparty": counterparty,
        "amount": {"value": value, "currency": "USD"}, "audience": "bank",
        "description": "invoice 2291",
    })
}

/// Recomputes a served entry's digest from the object without its `digest` member and
/// checks it equals the served one. Returns the entry.
#[track_caller]
pub fn check_entry_digest(served: &Value) -> Entry {
    let mut obj = served.as_object().expect("an entry is an object").clone();
    let digest = obj.remove("digest").expect("an entry carries its digest");
    obj.remove("index").expect("an entry is served with its index");
    let entry: Entry = serde_json::from_value(Value::Object(obj)).expect("an entry has exactly the ledger members");
    assert_eq!(json!(entry.digest_hex().expect("digest")), digest, "the digest recomputes: {served}");
    entry
}

/// The `type`s of a case's events, in order.
pub fn event_types(case: &Value) -> Vec<String> {
    case["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The events of a given type.
pub fn events_of<'a>(case: &'a Value, kind: &str) -> Vec<&'a Value> {
    case["events"].as_array().expect("events").iter().filter(|e| e["type"] == kind).collect()
}

/// The rule ids named by a verdict's `reasons`.
pub fn rules(body: &Value) -> Vec<String> {
    body["reasons"].as_array().expect("reasons").iter().filter_map(|r| r["rule"].as_str().map(str::to_owned)).collect()
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("dir entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
