//! Load benchmark: latency overhead of `agentsigna gate` on loopback.
//!
//! Starts an upstream (axum) and a gate in front of it, then measures per-request
//! latency with one keep-alive HTTP/1 client, one request in flight:
//!
//! * `direct`: straight to the upstream (the baseline);
//! * `gate, unbound`: through the gate with `Authorization: Passport <jws>`;
//! * `gate, key-bound`: a `cnf.jkt` passport plus an `AgentSigna-Proof` holder proof.
//!
//! Then the same scenarios with 4 clients in parallel (throughput), and, for reference,
//! the in-process cost of `Gate::check` alone (what the gate cannot avoid paying).
//!
//! Every passport and proof is signed before its scenario starts, so signing is never
//! measured; every measured response must be 200, or the run aborts.
//!
//! ```text
//! GATE_BENCH_N=2000 cargo bench -p agentsigna --bench gate
//! ```
//!
//! Target: gate overhead p99 < 1 ms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use axum::{Json, Router};
use ed25519_dalek::SigningKey;
use serde_json::json;

use agentsigna::gate::{GateOptions, RunningGate};
use agentsigna_verify::clock::{Clock, SystemClock};
use agentsigna_verify::gate::{Gate, GateRequest};
use agentsigna_verify::jwk::{Jwk, Jwks};
use agentsigna_verify::passport::{self, PassportClaims, Verifier};
use agentsigna_verify::proof;

const AUDIENCE: &str = "erp";
const PATH: &str = "/v1/orders";
const BODY: &str = r#"{"sku":"paper-a4","quantity":10,"unit_price":"4.20"}"#;
const PARALLEL_CLIENTS: usize = 4;

fn main() {
    let n: usize = std::env::var("GATE_BENCH_N").ok().map_or(5000, |v| v.parse().expect("GATE_BENCH_N: a number"));
    assert!(n >= PARALLEL_CLIENTS, "GATE_BENCH_N must be at least {PARALLEL_CLIENTS}");
    let warmup = (n / 10).clamp(50, 500);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_else(|_| "n/a".into());
    let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!("# agentsigna gate overhead (loopback)\n");
    println!("- load average at start: {}", loadavg.trim());
    println!("- cores: {cores}; tokio multi-thread runtime (client, gate and upstream share it)");
    println!("- {n} measured requests per scenario after {warmup} warm-up requests; 1 in flight\n");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(n, warmup));
}

/// One credential: a passport and, when key-bound, its holder proof.
#[derive(Clone)]
struct Credential {
    passport: String,
    proof: Option<String>,
}

/// The issuer and agent keys, and the URLs of the running servers.
struct Bench {
    issuer: SigningKey,
    agent: SigningKey,
    jkt: String,
    direct_url: String,
    gate_url: String,
    seq: std::sync::atomic::AtomicUsize,
}

impl Bench {
    /// `count` fresh credentials, unbound or key-bound (with proofs for the gate's URL).
    fn credentials(&self, count: usize, bound: bool) -> Vec<Credential> {
        let now = SystemClock.now_secs();
        (0..count)
            .map(|_| {
                let i = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut claims = claims(&format!("p-{i}"), now);
                if bound {
                    claims.cnf = Some(passport::Confirmation { jkt: self.jkt.clone() });
                }
                let token = passport::sign(&claims, &self.issuer).unwrap();
                let proof = bound
                    .then(|| proof::sign_proof(&self.agent, &token, "POST", &self.gate_url, now, &format!("q-{i}")));
                Credential { passport: token, proof }
            })
            .collect()
    }
}

fn claims(jti: &str, now: i64) -> PassportClaims {
    serde_json::from_value(json!({
        "iss": "agentsigna", "sub": "procurement-bot", "aud": AUDIENCE,
        "iat": now, "nbf": now, "exp": now + 600, "jti": jti,
        "authorization_details": [{
            "type": passport::AUTHORIZATION_DETAIL_TYPE, "action": "purchase_order.create",
            "counterparty": {"id": "acme", "name": "ACME Office Supplies", "risk": "low"},
            "amount": {"value": "42.00", "currency": "EUR"},
            "description": "10 reams of A4 paper"
        }],
        "approvals": [],
        "decision": {"verdict": "authorized", "policy": {"version": 1, "digest": "ab".repeat(32)},
            "rules": ["small-orders"], "decided_at": "2027-01-15T08:00:00.000Z",
            "trust": {"agent": 50, "counterparty": 50}},
        "case": {"id": format!("c-{jti}"), "seq": 0, "head": "cd".repeat(32)}
    }))
    .unwrap()
}

async fn start_upstream() -> SocketAddr {
    let app = Router::new().route(
        PATH,
        post(|body: Bytes| async move { Json(json!({"id": "PO-1", "status": "accepted", "received": body.len()})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn start_gate(upstream: SocketAddr, issuer: &SigningKey, jwks_file: &std::path::Path) -> RunningGate {
    let jwks = Jwks { keys: vec![Jwk::from_verifying_key(&issuer.verifying_key())] };
    let mut f = std::fs::File::create(jwks_file).unwrap();
    f.write_all(serde_json::to_string(&jwks).unwrap().as_bytes()).unwrap();
    agentsigna::gate::start(
        GateOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: format!("http://{upstream}"),
            jwks: jwks_file.to_str().unwrap().to_owned(),
            audience: AUDIENCE.into(),
            public_url: None,
            report_to: None,
            report_token: None,
            replay_store: None,
        },
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
}

/// Sends one request and reads the whole answer; panics unless it is 200.
async fn call(client: &reqwest::Client, url: &str, cred: Option<&Credential>) -> Duration {
    let mut req = client.post(url).header("content-type", "application/json").body(BODY);
    if let Some(c) = cred {
        req = req.header("authorization", format!("Passport {}", c.passport));
        if let Some(p) = &c.proof {
            req = req.header("agentsigna-proof", p.as_str());
        }
    }
    let start = Instant::now();
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let body = resp.bytes().await.unwrap();
    let elapsed = start.elapsed();
    assert!(status == 200, "{url} answered {status}: {}", String::from_utf8_lossy(&body));
    elapsed
}

/// Measures `count` sequential requests on `client`; credentials are used in order.
async fn sequential(client: &reqwest::Client, url: &str, creds: Option<&[Credential]>, count: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        out.push(call(client, url, creds.map(|c| &c[i])).await);
    }
    out
}

/// The latencies of one scenario and the wall time they took.
struct Run {
    name: String,
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Run {
    fn pct(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn signed_us(a: Duration, b: Duration) -> String {
    format!("{:+.0}", (a.as_secs_f64() - b.as_secs_f64()) * 1e6)
}

/// Warms up then measures one scenario with a single client (a fresh keep-alive
/// connection per scenario, opened during warm-up).
async fn scenario(b: &Bench, name: &str, gate: Option<bool>, n: usize, warmup: usize) -> Run {
    let client = reqwest::Client::new();
    let (url, creds) = match gate {
        None => (&b.direct_url, None),
        Some(bound) => (&b.gate_url, Some(b.credentials(warmup + n, bound))),
    };
    sequential(&client, url, creds.as_deref(), warmup).await;
    let rest = creds.as_deref().map(|c| &c[warmup..]);
    let start = Instant::now();
    let mut latencies = sequential(&client, url, rest, n).await;
    let wall = start.elapsed();
    latencies.sort_unstable();
    Run { name: name.into(), latencies, wall }
}

/// `PARALLEL_CLIENTS` clients (one connection each), each sending `n / PARALLEL_CLIENTS`
/// sequential requests, all at once.
async fn parallel(b: &Bench, name: &str, gate: Option<bool>, n: usize, warmup: usize) -> Run {
    let per = n / PARALLEL_CLIENTS;
    let url = if gate.is_some() { b.gate_url.clone() } else { b.direct_url.clone() };
    let mut clients = Vec::new();
    for _ in 0..PARALLEL_CLIENTS {
        let client = reqwest::Client::new();
        let creds = gate.map(|bound| b.credentials(warmup + per, bound));
        sequential(&client, &url, creds.as_deref(), warmup).await;
        clients.push((client, creds));
    }
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(client, creds)| {
            let url = url.clone();
            tokio::spawn(async move { sequential(&client, &url, creds.as_deref().map(|c| &c[warmup..]), per).await })
        })
        .collect();
    let mut latencies = Vec::with_capacity(per * PARALLEL_CLIENTS);
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let wall = start.elapsed();
    latencies.sort_unstable();
    Run { name: name.into(), latencies, wall }
}

/// In-process `Gate::check` alone (verification, proof, replay cache), no HTTP.
fn check_only(b: &Bench, name: &str, bound: bool, n: usize, warmup: usize) -> Run {
    let jwks = Jwks { keys: vec![Jwk::from_verifying_key(&b.issuer.verifying_key())] };
    let gate = Gate::new(Verifier::new(jwks, AUDIENCE));
    let creds = b.credentials(warmup + n, bound);
    let mut latencies = Vec::with_capacity(n);
    let wall = Instant::now();
    for (i, c) in creds.iter().enumerate() {
        let req = GateRequest { passport: &c.passport, proof: c.proof.as_deref(), method: "POST", url: &b.gate_url };
        let start = Instant::now();
        let verified = gate.check(&req, &SystemClock);
        let elapsed = start.elapsed();
        verified.unwrap();
        if i >= warmup {
            latencies.push(elapsed);
        }
    }
    let wall = wall.elapsed();
    latencies.sort_unstable();
    Run { name: name.into(), latencies, wall }
}

fn table(title: &str, runs: &[&Run]) {
    println!("## {title}\n");
    println!("| scenario | requests | p50 µs | p90 µs | p99 µs | max µs | req/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let rate = r.latencies.len() as f64 / r.wall.as_secs_f64();
        println!(
            "| {} | {} | {} | {} | {} | {} | {rate:.0} |",
            r.name,
            r.latencies.len(),
            us(r.pct(50.0)),
            us(r.pct(90.0)),
            us(r.pct(99.0)),
            us(r.pct(100.0)),
        );
    }
    println!();
}

fn overhead(title: &str, base: &Run, runs: &[&Run]) {
    println!("## {title} (minus `{}`; target p99 < 1000 µs)\n", base.name);
    println!("| scenario | Δ p50 µs | Δ p99 µs | p99 < 1 ms |");
    println!("|---|---:|---:|:---:|");
    for r in runs {
        let d99 = r.pct(99.0).saturating_sub(base.pct(99.0));
        println!(
            "| {} | {} | {} | {} |",
            r.name,
            signed_us(r.pct(50.0), base.pct(50.0)),
            signed_us(r.pct(99.0), base.pct(99.0)),
            if d99 < Duration::from_millis(1) { "yes" } else { "**no**" },
        );
    }
    println!();
}

async fn run(n: usize, warmup: usize) {
    let issuer = SigningKey::from_bytes(&[7; 32]);
    let agent = SigningKey::from_bytes(&[9; 32]);
    let jwks_file = tempfile::NamedTempFile::new().unwrap();
    let upstream = start_upstream().await;
    let gate = start_gate(upstream, &issuer, jwks_file.path()).await;
    let b = Bench {
        jkt: Jwk::public_only(&agent.verifying_key()).thumbprint(),
        issuer,
        agent,
        direct_url: format!("http://{upstream}{PATH}"),
        // The gate's default public URL is `http://<listen addr>`: the proofs' `htu`.
        gate_url: format!("http://{}{PATH}", gate.addr),
        seq: 0.into(),
    };

    let direct = scenario(&b, "direct", None, n, warmup).await;
    let unbound = scenario(&b, "gate, unbound", Some(false), n, warmup).await;
    let bound = scenario(&b, "gate, key-bound + proof", Some(true), n, warmup).await;
    table("Sequential, 1 client, keep-alive", &[&direct, &unbound, &bound]);
    overhead("Gate overhead, sequential", &direct, &[&unbound, &bound]);

    let name = format!("{PARALLEL_CLIENTS} clients");
    let p_direct = parallel(&b, &format!("direct, {name}"), None, n, warmup / PARALLEL_CLIENTS).await;
    let p_unbound = parallel(&b, &format!("gate, unbound, {name}"), Some(false), n, warmup / PARALLEL_CLIENTS).await;
    let p_bound = parallel(&b, &format!("gate, key-bound, {name}"), Some(true), n, warmup / PARALLEL_CLIENTS).await;
    table(&format!("Parallel, {name}"), &[&p_direct, &p_unbound, &p_bound]);
    overhead("Gate overhead, parallel", &p_direct, &[&p_unbound, &p_bound]);

    let c_unbound = check_only(&b, "Gate::check, unbound", false, n, warmup);
    let c_bound = check_only(&b, "Gate::check, key-bound + proof", true, n, warmup);
    table("In-process `Gate::check` only (no HTTP), for reference", &[&c_unbound, &c_bound]);

    gate.stop().await.unwrap();
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_else(|_| "n/a".into());
    println!("- load average at end: {}", loadavg.trim());
}
