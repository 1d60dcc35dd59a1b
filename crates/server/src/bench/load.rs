//! The load generator: keep-alive HTTP/1.1 connections over hyper's connection API, the
//! open and closed loops, the long polls of phase 4, and the check of every answer.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use agentsigna_core::SystemClock;

use super::cpu::{with_cpu, CpuMark, CpuUsed, PACER_THREAD};
use super::floor::{self, FLOOR_WRITE_BYTES};
use super::report::{thousands, ErrorKinds, Phase};
use super::{BenchArgs, WARMUP_PER_CONNECTION};

/// What one worker saw.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) latencies: Vec<Duration>,
    /// Open loop only: from each request's scheduled time to its handing to a connection
    /// (the generator's own lateness, plus waiting for a free connection).
    pub(super) send_lags: Vec<Duration>,
    pub(super) errors: ErrorKinds,
    pub(super) first_error: Option<String>,
}

impl Tally {
    pub(super) fn record(&mut self, result: Result<(), Failure>, latency: Duration) {
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

    pub(super) fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.send_lags.extend(other.send_lags);
        self.errors.transport += other.errors.transport;
        self.errors.status += other.errors.status;
        self.errors.verdict += other.errors.verdict;
        self.errors.dropped += other.errors.dropped;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Why one request failed.
#[derive(Debug)]
pub(super) enum Failure {
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
pub(super) enum Expect {
    /// An `authorized` verdict with a passport.
    Authorized,
    /// Any 2xx.
    Success,
}

/// An endpoint under load.
#[derive(Debug)]
pub(super) struct Target {
    /// The first node (long polls, single connections).
    pub(super) addr: SocketAddr,
    /// Every node: new connections go to them in turn (round robin).
    pub(super) addrs: Vec<SocketAddr>,
    next: std::sync::atomic::AtomicUsize,
    pub(super) host: HeaderValue,
    pub(super) path: &'static str,
    pub(super) authorization: Option<HeaderValue>,
    pub(super) expect: Expect,
}

impl Target {
    pub(super) fn new(
        addr: SocketAddr,
        path: &'static str,
        token: Option<&str>,
        expect: Expect,
    ) -> anyhow::Result<Target> {
        let authorization = match token {
            Some(t) => Some(HeaderValue::from_str(&format!("Bearer {t}")).context("the agent's credential")?),
            None => None,
        };
        Ok(Target {
            addr,
            addrs: vec![addr],
            next: std::sync::atomic::AtomicUsize::new(0),
            host: HeaderValue::from_str(&addr.to_string())?,
            path,
            authorization,
            expect,
        })
    }

    /// The same endpoint on several nodes, connections spread over them in turn.
    pub(super) fn on_nodes(mut self, addrs: Vec<SocketAddr>) -> Target {
        if !addrs.is_empty() {
            self.addrs = addrs;
        }
        self
    }

    /// The node of the next new connection.
    fn pick(&self) -> SocketAddr {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.addrs[i % self.addrs.len()]
    }

    /// `POST path` with a purchase order whose idempotency key is `key`. The bare
    /// endpoint gets the same body, so both parse the same bytes off the wire.
    pub(super) fn request(&self, key: &str) -> Result<Request<Full<Bytes>>, Failure> {
        self.post(format!(
            r#"{{"action":"purchase_order.create","counterparty":"acme","amount":{{"value":"480.00","currency":"USD"}},"audience":"erp","description":"Printer paper, 40 reams","context":{{"cost_center":"IT-7"}},"idempotency_key":"{key}"}}"#
        ))
    }

    /// `POST path` with the JSON `body`, as this endpoint's client.
    fn post(&self, body: String) -> Result<Request<Full<Bytes>>, Failure> {
        let req = self
            .with_headers(Request::builder().method(Method::POST).uri(self.path))
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        req.body(Full::new(Bytes::from(body))).map_err(|e| Failure::Transport(format!("cannot build a request: {e}")))
    }

    /// `GET uri`, as this endpoint's client.
    fn get(&self, uri: &str) -> Result<Request<Full<Bytes>>, Failure> {
        self.with_headers(Request::builder().method(Method::GET).uri(uri))
            .body(Full::new(Bytes::new()))
            .map_err(|e| Failure::Transport(format!("cannot build a request: {e}")))
    }

    /// The host and, where the endpoint needs one, the credential.
    fn with_headers(&self, req: hyper::http::request::Builder) -> hyper::http::request::Builder {
        let req = req.header(header::HOST, self.host.clone());
        match &self.authorization {
            Some(a) => req.header(header::AUTHORIZATION, a.clone()),
            None => req,
        }
    }
}

/// Opens a keep-alive HTTP/1.1 connection; its driver runs until the sender is dropped.
pub(super) async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
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
pub(super) struct Conn {
    pub(super) target: Arc<Target>,
    /// The node this connection talks to.
    addr: SocketAddr,
    pub(super) sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub(super) async fn open(target: Arc<Target>) -> anyhow::Result<Conn> {
        let addr = target.pick();
        let sender = connect(addr).await?;
        Ok(Conn { target, addr, sender: Some(sender) })
    }

    /// Sends one request, reads the whole answer and checks it. A broken connection is
    /// replaced on the next call.
    pub(super) async fn call(&mut self, key: &str) -> Result<(), Failure> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => connect(self.addr).await.map_err(|e| Failure::Transport(format!("{e:#}")))?,
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

pub(super) async fn exchange(
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
pub(super) struct VerdictBody<'a> {
    #[serde(borrow)]
    pub(super) verdict: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(super) passport: Option<Cow<'a, str>>,
}

pub(super) fn check_verdict(body: &[u8]) -> Result<(), Failure> {
    match serde_json::from_slice::<VerdictBody<'_>>(body) {
        Ok(v) if v.verdict == "authorized" && v.passport.as_deref().is_some_and(|p| !p.is_empty()) => Ok(()),
        Ok(v) => Err(Failure::Verdict(format!("verdict {} instead of authorized: {}", v.verdict, snippet(body)))),
        Err(e) => Err(Failure::Verdict(format!("not a verdict ({e}): {}", snippet(body)))),
    }
}

pub(super) fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
}

pub(super) async fn open_all(target: &Arc<Target>, n: usize) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Conn::open(target.clone()).await?);
    }
    Ok(conns)
}

/// Waits for the workers; returns their merged tally and the instant of the last answer.
pub(super) async fn join_workers(
    workers: Vec<JoinHandle<(Tally, Instant)>>,
    start: Instant,
) -> anyhow::Result<(Tally, Instant)> {
    let mut tally = Tally::default();
    let mut last = start;
    for w in workers {
        let (t, l) = w.await.context("a load-generator task failed")?;
        tally.merge(t);
        last = last.max(l);
    }
    Ok((tally, last))
}

/// The time of the `seq`th event of a schedule of `rate` per second from `start`.
pub(super) fn scheduled_at(start: std::time::Instant, seq: u64, rate: u32) -> std::time::Instant {
    let offset_ns = u128::from(seq) * 1_000_000_000 / u128::from(rate.max(1));
    start + Duration::from_nanos(u64::try_from(offset_ns).unwrap_or(u64::MAX))
}

/// Sleeps the thread until `at` (at once when it has passed): a thread's sleep wakes
/// within tens of microseconds, tokio's timer only to the millisecond.
pub(super) fn sleep_until(at: std::time::Instant) {
    let now = std::time::Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

/// Phase 1: `rate` requests/s for `duration`, scheduled at fixed intervals.
pub(super) async fn open_loop(
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
                    tally.send_lags.push(Instant::now().saturating_duration_since(job.at));
                    let result = conn.call(&format!("{prefix}-{}", job.seq)).await;
                    let done = Instant::now();
                    tally.record(result, done.saturating_duration_since(job.at));
                    last = last.max(done);
                }
                (tally, last)
            })
        })
        .collect();
    // The schedule runs on a thread of its own: tokio's timer has a resolution of one
    // millisecond and would send each request up to a millisecond late, a delay the
    // latencies (measured from the scheduled time) would blame on the server. A thread's
    // sleep wakes within tens of microseconds.
    let pacer = std::thread::Builder::new()
        .name(PACER_THREAD.into())
        .spawn(move || {
            for seq in 0..total {
                let at = scheduled_at(start.into_std(), seq, rate);
                sleep_until(at);
                let at = Instant::from_std(at);
                // Jobs already due (the thread woke late) are queued at once, with their own send time.
                if tx.send(Job { seq, at }).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the open loop's pacer")?;
    let (tally, last) = join_workers(workers, start).await?;
    pacer.join().map_err(|_| anyhow!("the open loop's pacer panicked"))?;
    let name = format!("open loop, {} requests/s scheduled", thousands(u64::from(rate)));
    Ok(Phase::new(name, connections, Some(rate), last.saturating_duration_since(start), tally))
}

/// Phase 0 (the warm-up): `connections` clients back to back until `duration` has passed or
/// each has sent `limit` requests.
pub(super) async fn closed_loop(
    target: &Arc<Target>,
    name: &str,
    prefix: &str,
    duration: Duration,
    limit: Option<u64>,
    connections: usize,
) -> anyhow::Result<Phase> {
    let conns = open_all(target, connections).await?;
    let (_, tally, wall) = back_to_back(conns, prefix, duration, limit).await?;
    Ok(Phase::new(name.to_owned(), connections, None, wall, tally))
}

/// Each of `conns` sends its next request as soon as the previous answer arrived, until
/// `duration` has passed or it has sent `limit`; returns the connections, their merged
/// tally and the time from the start to the last answer.
async fn back_to_back(
    conns: Vec<Conn>,
    prefix: &str,
    duration: Duration,
    limit: Option<u64>,
) -> anyhow::Result<(Vec<Conn>, Tally, Duration)> {
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
                (conn, tally, last)
            })
        })
        .collect();
    let (mut conns, mut tally, mut last) = (Vec::with_capacity(workers.len()), Tally::default(), start);
    for w in workers {
        let (c, t, l) = w.await.context("a load-generator task failed")?;
        conns.push(c);
        tally.merge(t);
        last = last.max(l);
    }
    Ok((conns, tally, last.saturating_duration_since(start)))
}

/// Slices per side of phases 2 and 3 for phases of `duration_secs`: about a second each,
/// two at least.
pub(super) fn slices_of(duration_secs: u64) -> u32 {
    u32::try_from(duration_secs.max(2)).unwrap_or(u32::MAX)
}

/// Which side runs the `k`th slice of the interleaved closed loops: 0, 1, 1, 0, 0, 1, 1, 0, …
/// (each pair mirrors the one before, so a steady drift favours neither side).
fn side_of_slice(k: u32) -> usize {
    usize::from(matches!(k % 4, 1 | 2))
}

/// One side of two interleaved closed loops: its connections and what its slices added up to.
struct Side {
    name: String,
    conns: Vec<Conn>,
    tally: Tally,
    wall: Duration,
    cpu: CpuUsed,
}

/// Two closed loops measured in alternating slices, A B B A A B B A … (see
/// [`side_of_slice`]), each side on its own connections throughout; each side's figures add
/// its slices up (requests, latencies, wall time, CPU).
struct Interleaved {
    sides: [Side; 2],
    slices: u32,
    slice: Duration,
    prefix: String,
}

impl Interleaved {
    fn new(sides: [(String, Vec<Conn>); 2], duration: Duration, slices: u32, prefix: &str) -> Interleaved {
        let slices = slices.max(1);
        Interleaved {
            sides: sides.map(|(name, conns)| Side {
                name,
                conns,
                tally: Tally::default(),
                wall: Duration::ZERO,
                cpu: CpuUsed::zero(),
            }),
            slices,
            slice: duration / slices,
            prefix: prefix.to_owned(),
        }
    }

    /// The number of slices of both sides together.
    fn total(&self) -> u32 {
        2 * self.slices
    }

    /// Runs slice `k` (of [`Interleaved::total`]) on its side.
    async fn run_slice(&mut self, k: u32) -> anyhow::Result<()> {
        let side = &mut self.sides[side_of_slice(k)];
        let mark = CpuMark::now();
        let (conns, tally, wall) =
            back_to_back(std::mem::take(&mut side.conns), &format!("{}-{k}", self.prefix), self.slice, None).await?;
        side.cpu.add(&mark.used());
        side.conns = conns;
        side.tally.merge(tally);
        side.wall += wall;
        Ok(())
    }

    /// Each side's phase.
    fn phases(self, connections: usize) -> [Phase; 2] {
        self.sides.map(|side| {
            let mut phase = Phase::new(side.name, connections, None, side.wall, side.tally);
            side.cpu.record_in(&mut phase);
            phase
        })
    }
}

/// Phases 2 and 3: the closed loop against AgentSigna and against the bare endpoint,
/// `slices` slices of `duration / slices` each, interleaved. The host's speed drifts by
/// tens of percent over a minute here (other tenants, the hypervisor); one phase after the
/// other, the ratio of the two carried that drift, while interleaved, each side sees the
/// same host to first order (the mirrored order cancels a steady drift).
pub(super) async fn interleaved_closed_loops(
    signa: &Arc<Target>,
    bare: &Arc<Target>,
    prefix: &str,
    duration: Duration,
    connections: usize,
    slices: u32,
) -> anyhow::Result<(Phase, Phase)> {
    let sides = [
        ("closed loop, AgentSigna".to_owned(), open_all(signa, connections).await?),
        ("closed loop, bare endpoint".to_owned(), open_all(bare, connections).await?),
    ];
    let mut loops = Interleaved::new(sides, duration, slices, prefix);
    for k in 0..loops.total() {
        loops.run_slice(k).await?;
    }
    let [signa, bare] = loops.phases(connections);
    Ok((signa, bare))
}

/// How long the long polls are given to reach the server, or to be gone from it, before a
/// slice starts.
const WAITERS_SETTLE: Duration = Duration::from_millis(300);

/// Phase 4: the closed loop against AgentSigna with `n` long polls held and without them,
/// interleaved like phases 2 and 3 (the polls held through each "with" slice, dropped
/// before each "without" one, outside the measured spans), so that the ratio of the two
/// is not the host's drift.
pub(super) async fn waiters_interleaved(
    signa: &Arc<Target>,
    n: usize,
    prefix: &str,
    duration: Duration,
    connections: usize,
    slices: u32,
) -> anyhow::Result<(Phase, Phase)> {
    let cases = escalated_cases(signa, n, &format!("{prefix}-wait")).await?;
    let sides = [
        (
            format!("closed loop, AgentSigna, {} long polls waiting", thousands(n as u64)),
            open_all(signa, connections).await?,
        ),
        ("closed loop, AgentSigna, in the same slices without them".to_owned(), open_all(signa, connections).await?),
    ];
    let mut loops = Interleaved::new(sides, duration, slices, &format!("{prefix}-c"));
    let mut polls: Option<HeldPolls> = None;
    for k in 0..loops.total() {
        match (side_of_slice(k), polls.take()) {
            (0, None) => polls = Some(hold_polls(signa, &cases).await?),
            (1, Some(held)) => {
                drop(held);
                tokio::time::sleep(WAITERS_SETTLE).await;
            }
            (_, held) => polls = held,
        }
        loops.run_slice(k).await?;
    }
    drop(polls);
    let [with, without] = loops.phases(connections);
    Ok((with, without))
}

/// The four phases, in order.
pub(super) struct Measured {
    /// Phases 2 and 3: slices per side.
    pub(super) slices: u32,
    pub(super) warmup: Phase,
    pub(super) open_loop: Phase,
    pub(super) closed_loop: Phase,
    pub(super) bare: Phase,
    pub(super) with_waiters: Option<Phase>,
    /// Phase 4's slices without the long polls.
    pub(super) without_waiters: Option<Phase>,
    pub(super) disk_floor: Option<floor::DiskFloor>,
    pub(super) ed25519_sign_us: f64,
    pub(super) thread_wake: floor::WakeFloor,
}

/// `n` escalated cases (purchase orders the example policy sends to review), one per
/// long poll of phase 4, submitted on one connection.
async fn escalated_cases(target: &Arc<Target>, n: usize, prefix: &str) -> anyhow::Result<Vec<String>> {
    let body = |key: &str| {
        format!(
            r#"{{"action":"purchase_order.create","counterparty":"globex","amount":{{"value":"40000.00","currency":"USD"}},"audience":"erp","description":"Servers","idempotency_key":"{key}"}}"#
        )
    };
    let mut sender = connect(target.addr).await?;
    let mut cases = Vec::with_capacity(n);
    for i in 0..n {
        let req = target.post(body(&format!("{prefix}-{i}"))).map_err(|e| anyhow!("{e}"))?;
        let (status, answer) = exchange(&mut sender, req).await?;
        let v: serde_json::Value = serde_json::from_slice(&answer)?;
        match (status.is_success(), v["verdict"].as_str(), v["case_id"].as_str()) {
            (true, Some("escalated"), Some(c)) => cases.push(c.to_owned()),
            _ => return Err(anyhow!("a waiter's request was not escalated: {status} {}", snippet(&answer))),
        }
    }
    Ok(cases)
}

/// Long polls held by tasks of the load generator; dropping them ends the tasks (and
/// closes their connections).
struct HeldPolls(Vec<JoinHandle<()>>);

impl Drop for HeldPolls {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}

/// Holds a `?wait` long poll on each of `cases`, each on a connection of its own,
/// re-polling until dropped; returns once every poll has had time to reach the server.
async fn hold_polls(target: &Arc<Target>, cases: &[String]) -> anyhow::Result<HeldPolls> {
    let mut handles = HeldPolls(Vec::with_capacity(cases.len()));
    for case in cases {
        let mut sender = connect(target.addr).await?;
        let (target, uri) = (target.clone(), format!("/v1/cases/{case}?wait=60"));
        handles.0.push(tokio::spawn(async move {
            loop {
                let Ok(req) = target.get(&uri) else { return };
                if exchange(&mut sender, req).await.is_err() {
                    return;
                }
            }
        }));
    }
    tokio::time::sleep(WAITERS_SETTLE).await;
    Ok(handles)
}

/// The phases, in order; `disk`: the directory whose disk floor to measure (`None` on
/// PostgreSQL, whose disk is not this process's).
pub(super) async fn measure(
    a: &BenchArgs,
    signa: Arc<Target>,
    bare: Arc<Target>,
    disk: Option<PathBuf>,
) -> anyhow::Result<Measured> {
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
    // The floors run with the servers idle, between the warm-up and the open loop.
    let rate = a.rate;
    let disk_floor = match disk {
        Some(dir) => {
            let length = duration.min(floor::MAX_FLOOR_DURATION);
            eprintln!("bench: disk floor, {FLOOR_WRITE_BYTES} bytes + fsync at {rate}/s for {} s", length.as_secs());
            Some(tokio::task::spawn_blocking(move || floor::disk_floor(&dir, rate, length)).await??)
        }
        None => None,
    };
    eprintln!("bench: raw Ed25519 signatures");
    let ed25519_sign_us = tokio::task::spawn_blocking(floor::ed25519_sign_micros).await?;
    eprintln!("bench: thread wake-ups, on one CPU and across two");
    let thread_wake = tokio::task::spawn_blocking(floor::thread_wake).await?;
    eprintln!("bench: phase 1/3, open loop at {} requests/s for {} s", a.rate, a.duration_secs);
    let open = with_cpu(open_loop(&signa, &format!("{run}-o"), a.rate, duration, connections)).await?;
    let slices = slices_of(a.duration_secs);
    eprintln!(
        "bench: phases 2 and 3 of 3, closed loops on {connections} connections against AgentSigna and the bare \
         endpoint, {} s each, interleaved in {slices} slices each",
        a.duration_secs
    );
    let (closed, bare) =
        interleaved_closed_loops(&signa, &bare, &format!("{run}-c"), duration, connections, slices).await?;
    let (with_waiters, without_waiters) = if a.waiters > 0 {
        let n = usize::try_from(a.waiters)?;
        eprintln!(
            "bench: phase 4, the closed loop with {n} long polls held and without them, {} s each, interleaved in \
             {slices} slices each",
            a.duration_secs
        );
        let (with, without) =
            waiters_interleaved(&signa, n, &format!("{run}-w4"), duration, connections, slices).await?;
        (Some(with), Some(without))
    } else {
        (None, None)
    };
    Ok(Measured {
        slices,
        warmup,
        open_loop: open,
        closed_loop: closed,
        bare,
        with_waiters,
        without_waiters,
        disk_floor,
        ed25519_sign_us,
        thread_wake,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closed_loops_interleave_in_mirrored_pairs_of_slices_of_about_a_second() {
        let order: Vec<usize> = (0..8).map(side_of_slice).collect();
        assert_eq!(order, [0, 1, 1, 0, 0, 1, 1, 0]);
        // Over any whole number of pairs, each side's slices sit at the same mean position.
        let mean = |side: usize| {
            let at: Vec<u32> = (0..8).filter(|&k| side_of_slice(k) == side).collect();
            f64::from(at.iter().sum::<u32>()) / at.len() as f64
        };
        assert_eq!(mean(0), mean(1));
        assert_eq!((slices_of(1), slices_of(2), slices_of(10)), (2, 2, 10));
    }

    #[test]
    fn verdicts_are_checked() {
        assert!(check_verdict(br#"{"verdict":"authorized","passport":"a.b.c","case_id":"x"}"#).is_ok());
        assert!(check_verdict(br#"{"verdict":"escalated","passport":null}"#).is_err());
        assert!(check_verdict(br#"{"verdict":"authorized"}"#).is_err());
        assert!(check_verdict(b"not json").is_err());
    }
}
