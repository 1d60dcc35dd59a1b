//! `agentsigna bench`: the load benchmark behind the design's quality targets: "authorized
//! requests/s (durable ledger, 2 cores, load generator included) ÷ a bare HTTP endpoint's
//! requests/s ≥ 0.10 on SQLite; verdict p99 ≤ 2 ms at 1,000 requests/s (open loop)", and
//! "800 agents waiting with `?wait` do not slow other requests measurably".
//!
//! # What runs
//!
//! * A real AgentSigna server, started in this process with [`app::start`] as
//!   `agentsigna serve` starts it: SQLite in WAL mode with `synchronous=FULL` and group
//!   commit (an answer is sent only after its transaction is fsync'd), the procurement
//!   org of `examples/procurement/` built in, the expiry sweeper on, a loopback port.
//! * A bare axum endpoint on another loopback port that reads the same request body and
//!   answers a fixed small JSON: the same HTTP stack doing no work, the baseline.
//! * The load generator: HTTP/1.1 keep-alive connections over hyper's connection API (the
//!   lightest client at hand, so that as little as possible of the shared CPU goes to it)
//!   on a tokio runtime of its own. It runs **in this process and shares the machine's
//!   cores** with both servers: every figure pays for the client's work too.
//!
//! # What is measured
//!
//! Every request is a small purchase order of `procurement-bot` to `acme` (`POST
//! /v1/requests`, each with its own idempotency key) that the example policy authorizes:
//! each one evaluates the Cedar policy, signs a passport and commits the new case with its
//! ledger entries and a new signed checkpoint. Every answer is checked (201, verdict
//! `authorized`, a passport; any 2xx from the bare endpoint): transport errors, other
//! statuses and other verdicts are counted and reported, and any of them makes the run
//! exit 1, as does a ledger that fails verification.
//!
//! 0. Warm-up: a few checked requests per connection, not measured.
//! 1. Open loop at `--rate` requests/s for `--duration-secs`: sends are scheduled at fixed
//!    intervals whatever the answers and queued to a pool of `--connections` connections;
//!    latency runs from each request's *scheduled* send time to the end of its answer, so
//!    a stalled server is charged for every request it delayed (no coordinated omission).
//!    Requests still queued long after the phase (the server cannot keep up) are dropped
//!    and counted as errors.
//! 2. Closed loop: `--connections` clients, each sending its next request as soon as the
//!    previous answer arrived, for `--duration-secs`: sustained authorized requests/s and
//!    the latency of each request from its actual send.
//! 3. The same closed loop against the bare endpoint; the ratio of 2 to 3 is the share of
//!    the HTTP stack's capacity AgentSigna keeps while doing its work.
//! 4. With `--waiters N`: N more agents' connections each hold a `?wait` long poll on an
//!    escalated case of their own while phase 2 runs again; the ratio of the two closed
//!    loops says what the waiting costs everyone else.
//!
//! At the end the servers are stopped and the whole ledger is verified as
//! `agentsigna ledger verify` does (every digest, chain and the Merkle root against the
//! signed checkpoint), so the figures cannot have been bought by losing durability.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use axum::routing::post;
use axum::Router;
use clap::Args;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use agentsigna_core::money::Grouped;
use agentsigna_core::org::OrgFile;
use agentsigna_core::SystemClock;

use crate::app::{self, Running, ServeOptions};

/// The reference org and its policy (their source is `examples/procurement/`).
const ORG: &str = include_str!("../../../examples/procurement/org.toml");
const POLICY: &str = include_str!("../../../examples/procurement/policy.cedar");

/// The agent that sends every request.
const AGENT: &str = "procurement-bot";
/// The bare endpoint's path and its whole answer.
const BARE_PATH: &str = "/bare";
const BARE_ANSWER: &str = r#"{"status":"ok"}"#;
/// Warm-up requests per connection.
const WARMUP_PER_CONNECTION: u64 = 5;
/// The design's targets.
const TARGET_P99_MS: f64 = 2.0;
const TARGET_P99_RATE: u32 = 1000;
const TARGET_RATIO: f64 = 0.10;

/// `agentsigna bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Phase 1 (open loop): requests per second, sent on schedule whatever the answers.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// Duration of each measured phase, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration_secs: u64,
    /// Keep-alive connections: the pool of phase 1, the concurrent clients of phases 2 and 3.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub connections: u32,
    /// Data directory (default: a fresh temporary directory, deleted afterwards). An
    /// existing one is reused: its ledger keeps growing from run to run.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON object with the figures instead of the markdown report.
    #[arg(long)]
    pub json: bool,
    /// Phase 4: long polls (`?wait`) held open on escalated cases while the closed loop
    /// runs again (0: skip the phase).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=4096))]
    pub waiters: u32,
}

// ---------------------------------------------------------------------------------------
// Results.

/// Latency percentiles (nearest rank) of the successful requests, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let n = samples.len();
        let at = |per_mille: usize| {
            // Nearest rank: the smallest sample with at least that share of the samples at
            // or below it (integer arithmetic: no rounding surprise at p99.9).
            let rank = (per_mille * n).div_ceil(1000);
            samples[rank.clamp(1, n) - 1].as_secs_f64() * 1e3
        };
        Some(Latency { p50: at(500), p90: at(900), p99: at(990), p99_9: at(999), max: at(1000) })
    }
}

/// Failed requests, by kind.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ErrorKinds {
    /// Connection or protocol failures.
    pub transport: u64,
    /// Answers with a status other than 2xx.
    pub status: u64,
    /// 2xx answers that are not an `authorized` verdict with a passport.
    pub verdict: u64,
    /// Open loop only: requests still queued at the drain deadline, never sent.
    pub dropped: u64,
}

impl ErrorKinds {
    fn total(&self) -> u64 {
        self.transport + self.status + self.verdict + self.dropped
    }
}

/// The figures of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub connections: usize,
    /// The open loop's schedule, in requests/s.
    pub target_rate: Option<u32>,
    /// Requests attempted (successful + failed, dropped included).
    pub requests: u64,
    /// Successful requests (authorized verdicts; 2xx from the bare endpoint).
    pub ok: u64,
    pub errors: u64,
    pub error_kinds: ErrorKinds,
    /// The first failure, as seen by the client.
    pub first_error: Option<String>,
    /// From the phase's start to its last answer, in seconds.
    pub wall_secs: f64,
    /// Successful requests per second of `wall_secs`.
    pub rate: f64,
    /// `null` when no request succeeded.
    pub latency_ms: Option<Latency>,
}

impl Phase {
    fn new(name: String, connections: usize, target_rate: Option<u32>, wall: Duration, tally: Tally) -> Phase {
        let ok = tally.latencies.len() as u64;
        let errors = tally.errors.total();
        let wall_secs = wall.as_secs_f64();
        Phase {
            name,
            connections,
            target_rate,
            requests: ok + errors,
            ok,
            errors,
            error_kinds: tally.errors,
            first_error: tally.first_error,
            wall_secs,
            rate: if wall_secs > 0.0 { ok as f64 / wall_secs } else { 0.0 },
            latency_ms: Latency::of(tally.latencies),
        }
    }
}

/// Whether the design's targets were met by this run.
#[derive(Debug, Clone, Serialize)]
pub struct Targets {
    /// Open-loop verdict p99 ≤ 2 ms (the target is stated at 1,000 requests/s).
    pub p99_le_2ms: bool,
    /// The open-loop rate the p99 was measured at.
    pub p99_measured_at_rate: u32,
    /// Closed-loop authorized requests/s ÷ bare endpoint requests/s ≥ 0.10.
    pub ratio_ge_0_10: bool,
}

/// The serial step (the store's writer) over the run.
#[derive(Debug, Clone, Serialize)]
pub struct Serial {
    #[serde(flatten)]
    pub figures: agentsigna_core::store::SerialFigures,
    /// Mean time of one batch in the serial step, µs (commit included).
    pub micros_per_batch: f64,
    /// Mean serial time per ledger entry, µs.
    pub micros_per_entry: f64,
    /// Mean write sets per batch (group commit).
    pub write_sets_per_batch: f64,
    /// Share of the run's wall time the serial step was busy.
    pub busy_share: f64,
}

impl Serial {
    fn of(f: agentsigna_core::store::SerialFigures, wall: Duration) -> Serial {
        let per = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Serial {
            figures: f,
            micros_per_batch: per(f.busy_micros, f.batches),
            micros_per_entry: per(f.busy_micros, f.entries),
            write_sets_per_batch: per(f.write_sets, f.batches),
            busy_share: per(f.busy_micros, u64::try_from(wall.as_micros()).unwrap_or(u64::MAX)),
        }
    }
}

/// The ledger after the run.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerFigures {
    pub entries: u64,
    pub cases: u64,
    /// `bytes_on_disk` ÷ `cases`.
    pub bytes_per_case: u64,
    /// Database, WAL and shared-memory files.
    pub bytes_on_disk: u64,
    pub verified: bool,
    /// What `agentsigna ledger verify` says (or why it failed).
    pub verification: String,
    pub verify_secs: f64,
}

/// Everything `agentsigna bench --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: &'static str,
    pub cores: usize,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the run started.
    pub load_average_start: String,
    pub load_generator: &'static str,
    pub storage: &'static str,
    /// `null` for the default temporary directory.
    pub data_dir: Option<PathBuf>,
    pub rate: u32,
    pub duration_secs: u64,
    pub connections: usize,
    pub warmup: Phase,
    pub open_loop: Phase,
    pub closed_loop: Phase,
    pub bare: Phase,
    /// Phase 4 (`--waiters`): the closed loop again while the long polls wait.
    pub with_waiters: Option<Phase>,
    pub waiters: u32,
    /// Closed-loop authorized requests/s ÷ bare requests/s.
    pub ratio: f64,
    /// Phase 4's authorized requests/s ÷ phase 2's (1.0: the waiters cost nothing).
    pub waiters_ratio: Option<f64>,
    /// The store's serial step over the whole run (warm-up included).
    pub serial: Serial,
    pub targets: Targets,
    pub ledger: LedgerFigures,
    /// Failed requests over every phase, warm-up included.
    pub errors: u64,
    /// No failed request and the ledger verified (the exit status is 0 exactly then).
    pub ok: bool,
}

/// What one worker saw.
#[derive(Debug, Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: ErrorKinds,
    first_error: Option<String>,
}

impl Tally {
    fn record(&mut self, result: Result<(), Failure>, latency: Duration) {
        match result {
            Ok(()) => self.latencies.push(latency),
            Err(f) => {
                match &f {
                    Failure::Transport(_) => self.errors.transport += 1,
                    Failure::Status(..) => self.errors.status += 1,
                    Failure::Verdict(_) => self.errors.verdict += 1,
                }
                self.first_error.get_or_insert_with(|| f.to_string());
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.errors.transport += other.errors.transport;
        self.errors.status += other.errors.status;
        self.errors.verdict += other.errors.verdict;
        self.errors.dropped += other.errors.dropped;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The client.

/// Why one request failed.
#[derive(Debug)]
enum Failure {
    Transport(String),
    Status(u16, String),
    Verdict(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(e) => write!(f, "transport: {e}"),
            Failure::Status(s, body) => write!(f, "HTTP {s}: {body}"),
            Failure::Verdict(e) => write!(f, "{e}"),
        }
    }
}

/// What every answer of an endpoint must be.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// An `authorized` verdict with a passport.
    Authorized,
    /// Any 2xx.
    Success,
}

/// An endpoint under load.
#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    path: &'static str,
    authorization: Option<HeaderValue>,
    expect: Expect,
}

impl Target {
    fn new(addr: SocketAddr, path: &'static str, token: Option<&str>, expect: Expect) -> anyhow::Result<Target> {
        let authorization = match token {
            Some(t) => Some(HeaderValue::from_str(&format!("Bearer {t}")).context("the agent's credential")?),
            None => None,
        };
        Ok(Target { addr, host: HeaderValue::from_str(&addr.to_string())?, path, authorization, expect })
    }

    /// `POST path` with a purchase order whose idempotency key is `key`. The bare
    /// endpoint gets the same body, so both parse the same bytes off the wire.
    fn request(&self, key: &str) -> Result<Request<Full<Bytes>>, Failure> {
        let body = format!(
            r#"{{"action":"purchase_order.create","counterparty":"acme","amount":{{"value":"480.00","currency":"USD"}},"audience":"erp","description":"Printer paper, 40 reams","context":{{"cost_center":"IT-7"}},"idempotency_key":"{key}"}}"#
        );
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.path)
            .header(header::HOST, self.host.clone())
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(a) = &self.authorization {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        req.body(Full::new(Bytes::from(body))).map_err(|e| Failure::Transport(format!("cannot build a request: {e}")))
    }
}

/// Opens a keep-alive HTTP/1.1 connection; its driver runs until the sender is dropped.
async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; a failure shows on the next request.
        let _ = conn.await;
    });
    Ok(sender)
}

/// One connection of the load generator: one request in flight at a time.
struct Conn {
    target: Arc<Target>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    async fn open(target: Arc<Target>) -> anyhow::Result<Conn> {
        let sender = connect(target.addr).await?;
        Ok(Conn { target, sender: Some(sender) })
    }

    /// Sends one request, reads the whole answer and checks it. A broken connection is
    /// replaced on the next call.
    async fn call(&mut self, key: &str) -> Result<(), Failure> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => connect(self.target.addr).await.map_err(|e| Failure::Transport(format!("{e:#}")))?,
        };
        let (status, body) =
            exchange(&mut sender, self.target.request(key)?).await.map_err(|e| Failure::Transport(e.to_string()))?;
        self.sender = Some(sender);
        if !status.is_success() {
            return Err(Failure::Status(status.as_u16(), snippet(&body)));
        }
        match self.target.expect {
            Expect::Success => Ok(()),
            Expect::Authorized => check_verdict(&body),
        }
    }
}

async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), hyper::Error> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// The members of a verdict the benchmark checks.
#[derive(Deserialize)]
struct VerdictBody<'a> {
    #[serde(borrow)]
    verdict: Cow<'a, str>,
    #[serde(borrow, default)]
    passport: Option<Cow<'a, str>>,
}

fn check_verdict(body: &[u8]) -> Result<(), Failure> {
    match serde_json::from_slice::<VerdictBody<'_>>(body) {
        Ok(v) if v.verdict == "authorized" && v.passport.as_deref().is_some_and(|p| !p.is_empty()) => Ok(()),
        Ok(v) => Err(Failure::Verdict(format!("verdict {} instead of authorized: {}", v.verdict, snippet(body)))),
        Err(e) => Err(Failure::Verdict(format!("not a verdict ({e}): {}", snippet(body)))),
    }
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
}

async fn open_all(target: &Arc<Target>, n: usize) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Conn::open(target.clone()).await?);
    }
    Ok(conns)
}

/// Waits for the workers; returns their merged tally and the instant of the last answer.
async fn join_workers(workers: Vec<JoinHandle<(Tally, Instant)>>, start: Instant) -> anyhow::Result<(Tally, Instant)> {
    let mut tally = Tally::default();
    let mut last = start;
    for w in workers {
        let (t, l) = w.await.context("a load-generator task failed")?;
        tally.merge(t);
        last = last.max(l);
    }
    Ok((tally, last))
}

/// Phase 1: `rate` requests/s for `duration`, scheduled at fixed intervals.
async fn open_loop(
    target: &Arc<Target>,
    prefix: &str,
    rate: u32,
    duration: Duration,
    connections: usize,
) -> anyhow::Result<Phase> {
    struct Job {
        seq: u64,
        at: Instant,
    }
    let conns = open_all(target, connections).await?;
    let total = u64::from(rate).saturating_mul(duration.as_secs());
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let start = Instant::now() + Duration::from_millis(10);
    // Past this, queued requests are dropped: the server cannot keep up with the rate.
    let drain_deadline = start + duration + duration.max(Duration::from_secs(10));
    let workers: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let (rx, prefix) = (rx.clone(), prefix.to_owned());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut last = start;
                loop {
                    let job = rx.lock().await.recv().await;
                    let Some(job) = job else { break };
                    if Instant::now() >= drain_deadline {
                        tally.errors.dropped += 1;
                        tally.first_error.get_or_insert_with(|| {
                            "requests still queued at the drain deadline were dropped: the server did not keep up with the rate".to_owned()
                        });
                        continue;
                    }
                    let result = conn.call(&format!("{prefix}-{}", job.seq)).await;
                    let done = Instant::now();
                    tally.record(result, done.saturating_duration_since(job.at));
                    last = last.max(done);
                }
                (tally, last)
            })
        })
        .collect();
    for seq in 0..total {
        let offset_ns = u128::from(seq) * 1_000_000_000 / u128::from(rate);
        let at = start + Duration::from_nanos(u64::try_from(offset_ns).unwrap_or(u64::MAX));
        if at > Instant::now() {
            tokio::time::sleep_until(at).await;
        }
        // Jobs already due (the timer woke late) are queued at once, with their own send time.
        if tx.send(Job { seq, at }).is_err() {
            break;
        }
    }
    drop(tx);
    let (tally, last) = join_workers(workers, start).await?;
    let name = format!("open loop, {} requests/s scheduled", thousands(u64::from(rate)));
    Ok(Phase::new(name, connections, Some(rate), last.saturating_duration_since(start), tally))
}

/// Phases 0, 2 and 3: `connections` clients back to back until `duration` has passed or
/// each has sent `limit` requests.
async fn closed_loop(
    target: &Arc<Target>,
    name: &str,
    prefix: &str,
    duration: Duration,
    limit: Option<u64>,
    connections: usize,
) -> anyhow::Result<Phase> {
    let conns = open_all(target, connections).await?;
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut conn)| {
            let prefix = format!("{prefix}-{i}");
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut last = start;
                let mut n = 0u64;
                while Instant::now() < deadline && limit.is_none_or(|l| n < l) {
                    let sent = Instant::now();
                    let result = conn.call(&format!("{prefix}-{n}")).await;
                    n += 1;
                    let failed = result.is_err();
                    last = Instant::now();
                    tally.record(result, last.saturating_duration_since(sent));
                    if failed {
                        // Do not spin on a server that is gone.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                (tally, last)
            })
        })
        .collect();
    let (tally, last) = join_workers(workers, start).await?;
    Ok(Phase::new(name.to_owned(), connections, None, last.saturating_duration_since(start), tally))
}

/// The four phases, in order.
struct Measured {
    warmup: Phase,
    open_loop: Phase,
    closed_loop: Phase,
    bare: Phase,
    with_waiters: Option<Phase>,
}

/// Holds `n` long polls: each on a connection of its own, on an escalated case of its own
/// (a purchase order the example policy sends to review), re-polling until aborted.
async fn start_waiters(target: &Arc<Target>, n: usize, prefix: &str) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let body = |key: &str| {
        format!(
            r#"{{"action":"purchase_order.create","counterparty":"globex","amount":{{"value":"40000.00","currency":"USD"}},"audience":"erp","description":"Servers","idempotency_key":"{key}"}}"#
        )
    };
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let mut sender = connect(target.addr).await?;
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/v1/requests")
            .header(header::HOST, target.host.clone())
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(a) = &target.authorization {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        let req = req.body(Full::new(Bytes::from(body(&format!("{prefix}-{i}")))))?;
        let (status, answer) = exchange(&mut sender, req).await?;
        let v: serde_json::Value = serde_json::from_slice(&answer)?;
        let case = match (status.is_success(), v["verdict"].as_str(), v["case_id"].as_str()) {
            (true, Some("escalated"), Some(c)) => c.to_owned(),
            _ => return Err(anyhow!("a waiter's request was not escalated: {status} {}", snippet(&answer))),
        };
        let (host, auth) = (target.host.clone(), target.authorization.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let mut req = Request::builder()
                    .method(Method::GET)
                    .uri(format!("/v1/cases/{case}?wait=60"))
                    .header(header::HOST, host.clone());
                if let Some(a) = &auth {
                    req = req.header(header::AUTHORIZATION, a.clone());
                }
                let Ok(req) = req.body(Full::new(Bytes::new())) else { return };
                if exchange(&mut sender, req).await.is_err() {
                    return;
                }
            }
        }));
    }
    // Let every poll reach the server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(handles)
}

async fn measure(a: &BenchArgs, signa: Arc<Target>, bare: Arc<Target>) -> anyhow::Result<Measured> {
    let duration = Duration::from_secs(a.duration_secs);
    let connections = usize::try_from(a.connections)?;
    // Idempotency keys unique across runs sharing a data directory.
    let run = format!("bench-{:x}-{}", agentsigna_core::Clock::now_ms(&SystemClock), std::process::id());
    eprintln!("bench: warm-up ({WARMUP_PER_CONNECTION} requests on each of {connections} connections)");
    let warmup = closed_loop(
        &signa,
        "warm-up",
        &format!("{run}-w"),
        Duration::from_secs(30),
        Some(WARMUP_PER_CONNECTION),
        connections,
    )
    .await?;
    eprintln!("bench: phase 1/3, open loop at {} requests/s for {} s", a.rate, a.duration_secs);
    let open = open_loop(&signa, &format!("{run}-o"), a.rate, duration, connections).await?;
    eprintln!("bench: phase 2/3, closed loop on {connections} connections for {} s", a.duration_secs);
    let closed =
        closed_loop(&signa, "closed loop, AgentSigna", &format!("{run}-c"), duration, None, connections).await?;
    eprintln!("bench: phase 3/3, closed loop against the bare endpoint for {} s", a.duration_secs);
    let bare =
        closed_loop(&bare, "closed loop, bare endpoint", &format!("{run}-b"), duration, None, connections).await?;
    let with_waiters = if a.waiters > 0 {
        let n = usize::try_from(a.waiters)?;
        eprintln!("bench: phase 4, {n} long polls held while the closed loop runs again for {} s", a.duration_secs);
        let waiters = start_waiters(&signa, n, &format!("{run}-wait")).await?;
        let name = format!("closed loop, AgentSigna, {n} long polls waiting");
        let phase = closed_loop(&signa, &name, &format!("{run}-cw"), duration, None, connections).await;
        for w in waiters {
            w.abort();
        }
        Some(phase?)
    } else {
        None
    };
    Ok(Measured { warmup, open_loop: open, closed_loop: closed, bare, with_waiters })
}

// ---------------------------------------------------------------------------------------
// The servers.

/// Starts AgentSigna on a loopback port with the built-in org; returns it and the agent's
/// credential (created now, or read from an existing data directory).
async fn start_server(data_dir: &Path, waiters: u32) -> anyhow::Result<(Running, String)> {
    let org = OrgFile::parse(ORG).context("the built-in org file")?;
    let mut opts = ServeOptions::new(data_dir, SocketAddr::from(([127, 0, 0, 1], 0)));
    // Every waiter of phase 4 really waits (beyond the cap a poll would be answered at once).
    opts.max_waits = opts.max_waits.max(usize::try_from(waiters)?.saturating_add(16));
    opts.org_inline = Some((org, Some(POLICY.to_owned())));
    let running = app::start(opts, Arc::new(SystemClock)).await.context("starting the server")?;
    let created = running.credentials.iter().find(|c| c.kind == "agent" && c.id == AGENT).map(|c| c.token.clone());
    let token = match created {
        Some(t) => t,
        None => {
            let path = data_dir.join("credentials").join(format!("agent-{AGENT}.token"));
            match std::fs::read_to_string(&path) {
                Ok(t) => t.trim().to_owned(),
                Err(e) => {
                    let _ = running.stop(Duration::from_secs(5)).await;
                    return Err(anyhow!("cannot read the credential of {AGENT} from {}: {e}", path.display()));
                }
            }
        }
    };
    Ok((running, token))
}

/// The bare endpoint: reads the body, answers a fixed small JSON.
struct Bare {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    join: JoinHandle<std::io::Result<()>>,
}

impl Bare {
    async fn start() -> anyhow::Result<Bare> {
        let router = Router::new().route(
            BARE_PATH,
            post(|_body: Bytes| async { ([(header::CONTENT_TYPE, "application/json")], BARE_ANSWER) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("bare endpoint")?;
        let addr = listener.local_addr()?;
        let (stop, join) = crate::http::serve_until_stopped(listener, router);
        Ok(Bare { addr, stop, join })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.join).await;
    }
}

// ---------------------------------------------------------------------------------------
// The run.

/// `agentsigna bench`; returns the exit code (1 when a request failed or the ledger did
/// not verify).
pub fn run(a: BenchArgs) -> anyhow::Result<i32> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_average_start = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".to_owned());
    let temp = match &a.data_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("agentsigna-bench-")
                .tempdir()
                .context("cannot create a temporary data dir")?,
        ),
    };
    let data_dir = match (&a.data_dir, &temp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_owned(),
        (None, None) => return Err(anyhow!("no data directory")),
    };

    // The servers and the load generator get a runtime each, as separate processes would;
    // they still share the same cores.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("agentsigna-server")
        .build()
        .context("cannot start the server runtime")?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(cores)
        .thread_name("agentsigna-bench")
        .build()
        .context("cannot start the load-generator runtime")?;
    let (running, token) = server_rt.block_on(start_server(&data_dir, a.waiters))?;
    let bare = match server_rt.block_on(Bare::start()) {
        Ok(b) => b,
        Err(e) => {
            let _ = server_rt.block_on(running.stop(Duration::from_secs(5)));
            return Err(e);
        }
    };
    eprintln!("bench: AgentSigna on {}, bare endpoint on http://{}", running.url(), bare.addr);
    let targets = Target::new(running.addr, "/v1/requests", Some(&token), Expect::Authorized)
        .and_then(|s| Ok((s, Target::new(bare.addr, BARE_PATH, None, Expect::Success)?)));
    let run_started = std::time::Instant::now();
    let measured = match targets {
        Ok((signa, bare_target)) => client_rt.block_on(measure(&a, Arc::new(signa), Arc::new(bare_target))),
        Err(e) => Err(e),
    };
    let serial = Serial::of(running.engine.serial_figures(), run_started.elapsed());
    // Closes the client's connections, so that the servers drain at once.
    client_rt.shutdown_timeout(Duration::from_secs(5));
    let stopped = server_rt.block_on(async {
        bare.stop().await;
        running.stop(Duration::from_secs(10)).await
    });
    server_rt.shutdown_timeout(Duration::from_secs(5));
    let m = measured?;
    stopped.context("stopping the server")?;

    eprintln!("bench: verifying the ledger");
    let ledger = ledger_figures(&data_dir)?;
    let errors = m.warmup.errors
        + m.open_loop.errors
        + m.closed_loop.errors
        + m.bare.errors
        + m.with_waiters.as_ref().map_or(0, |p| p.errors);
    let ratio = if m.bare.rate > 0.0 { m.closed_loop.rate / m.bare.rate } else { 0.0 };
    let waiters_ratio =
        m.with_waiters.as_ref().map(|p| if m.closed_loop.rate > 0.0 { p.rate / m.closed_loop.rate } else { 0.0 });
    let targets = Targets {
        p99_le_2ms: m.open_loop.latency_ms.is_some_and(|l| l.p99 <= TARGET_P99_MS),
        p99_measured_at_rate: a.rate,
        ratio_ge_0_10: ratio >= TARGET_RATIO,
    };
    let report = Report {
        version: env!("CARGO_PKG_VERSION"),
        cores,
        load_average_start,
        load_generator:
            "in process (own tokio runtime, hyper HTTP/1.1 keep-alive connections), sharing the cores with the servers",
        storage: "SQLite, WAL, synchronous=FULL, group commit: every answer waits for its fsync",
        data_dir: a.data_dir.clone(),
        rate: a.rate,
        duration_secs: a.duration_secs,
        connections: usize::try_from(a.connections)?,
        ok: errors == 0 && ledger.verified,
        warmup: m.warmup,
        open_loop: m.open_loop,
        closed_loop: m.closed_loop,
        bare: m.bare,
        with_waiters: m.with_waiters,
        waiters: a.waiters,
        ratio,
        waiters_ratio,
        serial,
        targets,
        ledger,
        errors,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", markdown(&report));
    }
    drop(temp);
    Ok(if report.ok { 0 } else { 1 })
}

/// Size of the ledger and `agentsigna ledger verify`'s verdict on it.
fn ledger_figures(data_dir: &Path) -> anyhow::Result<LedgerFigures> {
    let db = app::db_path(data_dir);
    let entries = agentsigna_store::sqlite::LedgerReader::open(&db)
        .and_then(|r| r.size())
        .with_context(|| format!("cannot read the ledger of {}", db.display()))?;
    let bytes_on_disk: u64 = ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            std::fs::metadata(name).ok().map(|m| m.len())
        })
        .sum();
    let started = std::time::Instant::now();
    let keys = agentsigna_core::keys::Keyring::load(&data_dir.join("keys"), None)
        .with_context(|| format!("cannot read the ledger key of {}", data_dir.display()))?;
    let audit = agentsigna_store::sqlite::LedgerReader::open(&db)
        .map_err(agentsigna_store::sqlite::AuditError::from)
        .and_then(|r| r.audit(&keys.ledger.verifier(), &[], |_| {}));
    let (verified, verification, cases) = match audit {
        Ok(r) => (
            true,
            format!("OK: {} entries, {} cases, every digest, chain and the Merkle root verified", r.entries, r.cases),
            r.cases,
        ),
        Err(e) => (false, format!("FAILED: {e}"), 0),
    };
    Ok(LedgerFigures {
        entries,
        cases,
        bytes_per_case: bytes_on_disk.checked_div(cases).unwrap_or(0),
        bytes_on_disk,
        verified,
        verification,
        verify_secs: started.elapsed().as_secs_f64(),
    })
}

// ---------------------------------------------------------------------------------------
// The markdown report.

/// `12345` → `12,345`.
fn thousands(n: u64) -> String {
    Grouped(&n.to_string()).to_string()
}

fn rate(r: f64) -> String {
    thousands(r.round() as u64)
}

fn row(out: &mut String, label: &str, p: &Phase) {
    let ms = |f: fn(&Latency) -> f64| p.latency_ms.as_ref().map_or("–".to_owned(), |l| format!("{:.2}", f(l)));
    let _ = writeln!(
        out,
        "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        p.connections,
        thousands(p.requests),
        if p.errors == 0 { "0".to_owned() } else { format!("**{}**", thousands(p.errors)) },
        rate(p.rate),
        ms(|l| l.p50),
        ms(|l| l.p90),
        ms(|l| l.p99),
        ms(|l| l.p99_9),
        ms(|l| l.max),
    );
}

fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "**not met**"
    }
}

fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# agentsigna bench\n");
    let dir = r
        .data_dir
        .as_ref()
        .map_or("a temporary directory, deleted after the run".to_owned(), |d| format!("{} (kept)", d.display()));
    let _ =
        writeln!(out, "- AgentSigna {}; {} cores; load average at start {}", r.version, r.cores, r.load_average_start);
    let _ = writeln!(out, "- Server: in process, as `agentsigna serve` runs it; {}; data in {dir}", r.storage);
    let _ = writeln!(
        out,
        "- Load generator: {}; **its CPU cost is inside every figure**",
        r.load_generator.replace("the cores", &format!("the {} cores", r.cores))
    );
    let _ = writeln!(
        out,
        "- Workload: `POST /v1/requests`, {AGENT} → acme, 480.00 USD purchase order: authorized by rule \
         `po-allowed` (Cedar), passport signed, case and ledger entries committed with a signed checkpoint; \
         every answer checked (201, `authorized`, passport)"
    );
    let _ = writeln!(
        out,
        "- {} s per phase after a checked warm-up of {} requests\n",
        r.duration_secs,
        thousands(r.warmup.requests)
    );
    let _ =
        writeln!(out, "| phase | conns | requests | errors | ok/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    row(&mut out, &format!("1. open loop at {}/s", thousands(u64::from(r.rate))), &r.open_loop);
    row(&mut out, "2. closed loop, AgentSigna", &r.closed_loop);
    row(&mut out, "3. closed loop, bare endpoint", &r.bare);
    if let Some(p) = &r.with_waiters {
        row(&mut out, &format!("4. closed loop, {} long polls waiting", thousands(u64::from(r.waiters))), p);
    }
    let _ = writeln!(
        out,
        "\nPhase 1 latency runs from each request's scheduled send time (no coordinated omission); \
         phases 2 and 3 from the actual send.\n"
    );
    let _ = writeln!(
        out,
        "- Ratio AgentSigna ÷ bare endpoint (closed loop): **{:.3}** ({} ÷ {} requests/s)",
        r.ratio,
        rate(r.closed_loop.rate),
        rate(r.bare.rate)
    );
    let p99 = r.open_loop.latency_ms.map_or("–".to_owned(), |l| format!("{:.2} ms", l.p99));
    let at = if r.rate == TARGET_P99_RATE {
        String::new()
    } else {
        format!(" (measured at {}/s, not at the target's 1,000/s)", thousands(u64::from(r.rate)))
    };
    let _ =
        writeln!(out, "- Target verdict p99 ≤ 2 ms at 1,000 requests/s: {} (p99 {p99}){at}", met(r.targets.p99_le_2ms));
    let _ = writeln!(
        out,
        "- Target ratio ≥ 0.10: {} ({:.3}; {} authorized requests/s)",
        met(r.targets.ratio_ge_0_10),
        r.ratio,
        rate(r.closed_loop.rate)
    );
    if let Some(w) = r.waiters_ratio {
        let _ = writeln!(
            out,
            "- With {} long polls waiting: {:.3} of the throughput without them",
            thousands(u64::from(r.waiters)),
            w
        );
    }
    let _ = writeln!(
        out,
        "- Ledger: {} entries, {} cases, {:.1} MiB on disk (database + WAL), {} bytes per case; verified in {:.1} s: {}",
        thousands(r.ledger.entries),
        thousands(r.ledger.cases),
        r.ledger.bytes_on_disk as f64 / (1024.0 * 1024.0),
        thousands(r.ledger.bytes_per_case),
        r.ledger.verify_secs,
        r.ledger.verification
    );
    let sf = &r.serial;
    let _ = writeln!(
        out,
        "- Serial step: {} batches, {:.1} write sets per batch, {:.0} µs per batch ({:.0} µs of it in COMMIT), {:.1} µs per entry, busy {:.0} % of the run",
        thousands(sf.figures.batches),
        sf.write_sets_per_batch,
        sf.micros_per_batch,
        if sf.figures.batches == 0 { 0.0 } else { sf.figures.commit_micros as f64 / sf.figures.batches as f64 },
        sf.micros_per_entry,
        sf.busy_share * 100.0
    );
    if r.errors == 0 {
        let _ = writeln!(out, "- Errors: none");
    } else {
        let _ = writeln!(out, "- **Errors: {}** (the run fails)", thousands(r.errors));
        for p in [&r.warmup, &r.open_loop, &r.closed_loop, &r.bare].into_iter().chain(r.with_waiters.as_ref()) {
            if p.errors > 0 {
                let k = &p.error_kinds;
                let _ = writeln!(
                    out,
                    "  - {}: {} transport, {} non-2xx, {} other verdicts, {} dropped; first: {}",
                    p.name,
                    k.transport,
                    k.status,
                    k.verdict,
                    k.dropped,
                    p.first_error.as_deref().unwrap_or("?")
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        let l = Latency::of(samples).unwrap_or(Latency { p50: 0.0, p90: 0.0, p99: 0.0, p99_9: 0.0, max: 0.0 });
        assert_eq!((l.p50, l.p90, l.p99, l.p99_9, l.max), (500.0, 900.0, 990.0, 999.0, 1000.0));
        assert!(Latency::of(Vec::new()).is_none());
    }

    #[test]
    fn verdicts_are_checked() {
        assert!(check_verdict(br#"{"verdict":"authorized","passport":"a.b.c","case_id":"x"}"#).is_ok());
        assert!(check_verdict(br#"{"verdict":"escalated","passport":null}"#).is_err());
        assert!(check_verdict(br#"{"verdict":"authorized"}"#).is_err());
        assert!(check_verdict(b"not json").is_err());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
