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
//! exit 1, as does a ledger that fails verification. `--extra-rules N` grows the policy
//! by N rules for an action the load never requests (`contract.sign`): the stored policy
//! is as large as an organization's while each decision weighs the same rules.
//!
//! 0. Warm-up: a few checked requests per connection, not measured. Then, with the
//!    servers idle, the floors of the same machine (`floor.rs`): on SQLite, the data
//!    directory's own durable write (a group commit's bytes and an `fsync`, at `--rate`
//!    per second for `--duration-secs`, at most 10 s, no database), a raw Ed25519
//!    signature, and one thread waking another (pinned to one CPU, then to two). The
//!    report sets the verdict's p99 beside the disk's, the CPU per request beside a
//!    signature's and the context switches per request beside a wake-up's cost.
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
//!    the HTTP stack's capacity AgentSigna keeps while doing its work. Phases 2 and 3 run
//!    interleaved in slices of about a second (A B B A A B B A …, on the same
//!    connections), so that a host whose speed drifts during the run (by tens of percent
//!    over a minute on shared machines) slows both sides alike; each side's figures add
//!    its slices up.
//! 4. With `--waiters N`: N more connections each hold a `?wait` long poll on an escalated
//!    case of their own while the closed loop of phase 2 runs again, interleaved in the
//!    same way with slices of that loop without them (the polls are dropped before each
//!    "without" slice and held again before each "with" one, outside the measured spans);
//!    the ratio of the two says what the waiting costs everyone else.
//!
//! At the end the servers are stopped and the whole ledger is verified as
//! `agentsigna ledger verify` does (every digest, chain and the Merkle root against the
//! signed checkpoint), so the figures cannot have been bought by losing durability.

mod cpu;
mod floor;
mod load;
mod report;
mod servers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;

use crate::app;
use load::{measure, Expect, Target};
use report::{markdown, LedgerFigures, Report, Serial, Targets};
use servers::{start_node, start_server, Bare, BARE_PATH};

/// The reference org and its policy (their source is `examples/procurement/`).
const ORG: &str = include_str!("../../../../examples/procurement/org.toml");
const POLICY: &str = include_str!("../../../../examples/procurement/policy.cedar");

/// The agent that sends every request.
const AGENT: &str = "procurement-bot";
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
    /// PostgreSQL database to run on (postgres://…; use an empty one: its ledger grows
    /// with every run); default: the data directory's SQLite file.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Nodes on the `--database` (each an in-process server with its own sequencer);
    /// the load generator spreads its connections over them in turn.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub nodes: u32,
    /// Rules added to the example policy, each for an action the load never requests
    /// (`contract.sign`): the policy's source grows to an organization's size while every
    /// decision weighs the same rules as without them.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=20_000))]
    pub extra_rules: u32,
}

/// The example policy with `extra` rules that no request of the load matches (see
/// [`BenchArgs::extra_rules`]).
fn bench_policy(extra: u32) -> String {
    let mut policy = POLICY.to_owned();
    for i in 0..extra {
        policy.push_str(&format!(
            "\n@id(\"bench-extra-{i}\")\n@reason(\"Contracts of exactly {i} cents (a rule of the bench's extra rules)\")\n\
             permit (principal, action == Action::\"contract.sign\", resource)\nwhen {{ context.amount == {i} }};\n"
        ));
    }
    policy
}

/// `agentsigna bench`; returns the exit code (1 when a request failed or the ledger did
/// not verify).
pub fn run(a: BenchArgs) -> anyhow::Result<i32> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_average_start = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".to_owned());
    let (cpu_model, kernel) = cpu::host();
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
        .thread_name(cpu::SERVER_THREAD)
        .build()
        .context("cannot start the server runtime")?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(cores)
        .thread_name(cpu::BENCH_THREAD)
        .build()
        .context("cannot start the load-generator runtime")?;
    let database = match &a.database {
        Some(url) if !agentsigna_store::postgres::is_postgres_url(url) => {
            return Err(anyhow!("--database must be a PostgreSQL URL (postgres://…)"))
        }
        Some(url) => Some(url.clone()),
        None if a.nodes > 1 => {
            return Err(anyhow!("--nodes needs --database postgres://… (one SQLite file has one writer)"))
        }
        None => None,
    };
    let policy = bench_policy(a.extra_rules);
    let (running, token) = server_rt.block_on(start_server(&data_dir, a.waiters, database.as_deref(), &policy))?;
    let mut others = Vec::new();
    for n in 1..a.nodes {
        let url = database.as_deref().unwrap_or_default();
        match server_rt.block_on(start_node(&data_dir, n, url)) {
            Ok(r) => others.push(r),
            Err(e) => {
                let _ = server_rt.block_on(stop_all(running, others));
                return Err(e);
            }
        }
    }
    let bare = match server_rt.block_on(Bare::start()) {
        Ok(b) => b,
        Err(e) => {
            let _ = server_rt.block_on(stop_all(running, others));
            return Err(e);
        }
    };
    let addrs: Vec<_> = std::iter::once(running.addr).chain(others.iter().map(|r| r.addr)).collect();
    eprintln!("bench: AgentSigna on {addrs:?}, bare endpoint on http://{}", bare.addr);
    let targets = Target::new(running.addr, "/v1/requests", Some(&token), Expect::Authorized)
        .map(|t| t.on_nodes(addrs.clone()))
        .and_then(|s| Ok((s, Target::new(bare.addr, BARE_PATH, None, Expect::Success)?)));
    let run_started = std::time::Instant::now();
    let measured = match targets {
        Ok((signa, bare_target)) => {
            let disk = database.is_none().then(|| data_dir.clone());
            client_rt.block_on(measure(&a, Arc::new(signa), Arc::new(bare_target), disk))
        }
        Err(e) => Err(e),
    };
    let serial = Serial::of(
        std::iter::once(&running).chain(&others).map(|r| r.engine.serial_figures()).fold(Default::default(), add),
        run_started.elapsed(),
    );
    // Closes the client's connections, so that the servers drain at once.
    client_rt.shutdown_timeout(Duration::from_secs(5));
    let stopped = server_rt.block_on(async {
        bare.stop().await;
        stop_all(running, others).await
    });
    server_rt.shutdown_timeout(Duration::from_secs(5));
    let m = measured?;
    stopped.context("stopping the server")?;

    eprintln!("bench: verifying the ledger");
    let ledger = match &database {
        None => ledger_figures(&data_dir)?,
        Some(url) => pg_ledger_figures(&data_dir, url)?,
    };
    let errors = m.warmup.errors
        + m.open_loop.errors
        + m.closed_loop.errors
        + m.bare.errors
        + m.with_waiters.as_ref().map_or(0, |p| p.errors)
        + m.without_waiters.as_ref().map_or(0, |p| p.errors);
    let ratio = if m.bare.rate > 0.0 { m.closed_loop.rate / m.bare.rate } else { 0.0 };
    let waiters_ratio = m.with_waiters.as_ref().zip(m.without_waiters.as_ref()).map(|(with, without)| {
        if without.rate > 0.0 {
            with.rate / without.rate
        } else {
            0.0
        }
    });
    let targets = Targets {
        p99_le_2ms: m.open_loop.latency_ms.is_some_and(|l| l.p99 <= TARGET_P99_MS),
        p99_measured_at_rate: a.rate,
        ratio_ge_0_10: ratio >= TARGET_RATIO,
    };
    let report = Report {
        version: env!("CARGO_PKG_VERSION"),
        cores,
        cpu_model,
        kernel,
        load_average_start,
        load_generator:
            "in process (own tokio runtime, hyper HTTP/1.1 keep-alive connections), sharing the cores with the servers",
        storage: match &database {
            None => "SQLite, WAL, synchronous=FULL, group commit: every answer waits for its fsync".to_owned(),
            Some(_) => format!(
                "PostgreSQL (local server, same cores), {} node(s) in process, each with its sequencer \
                 (one batch per transaction under the `ledger_head` lock); connections spread over the nodes in turn",
                a.nodes
            ),
        },
        nodes: a.nodes,
        extra_rules: a.extra_rules,
        policy_bytes: policy.len(),
        data_dir: a.data_dir.clone(),
        rate: a.rate,
        duration_secs: a.duration_secs,
        connections: usize::try_from(a.connections)?,
        closed_loop_slices: m.slices,
        ok: errors == 0 && ledger.verified,
        warmup: m.warmup,
        open_loop: m.open_loop,
        closed_loop: m.closed_loop,
        bare: m.bare,
        with_waiters: m.with_waiters,
        without_waiters: m.without_waiters,
        waiters: a.waiters,
        ratio,
        waiters_ratio,
        disk_floor: m.disk_floor,
        ed25519_sign_us: m.ed25519_sign_us,
        thread_wake: m.thread_wake,
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

/// Stops the nodes; the first failure is returned.
async fn stop_all(first: app::Running, others: Vec<app::Running>) -> anyhow::Result<()> {
    let mut result = first.stop(Duration::from_secs(10)).await;
    for r in others {
        let stopped = r.stop(Duration::from_secs(10)).await;
        if result.is_ok() {
            result = stopped;
        }
    }
    result
}

/// Sums the serial figures of several nodes.
fn add(
    a: agentsigna_core::store::SerialFigures,
    b: agentsigna_core::store::SerialFigures,
) -> agentsigna_core::store::SerialFigures {
    agentsigna_core::store::SerialFigures {
        batches: a.batches + b.batches,
        write_sets: a.write_sets + b.write_sets,
        entries: a.entries + b.entries,
        busy_micros: a.busy_micros + b.busy_micros,
        commit_micros: a.commit_micros + b.commit_micros,
    }
}

/// The ledger in PostgreSQL, the size of the store's tables, and `agentsigna ledger
/// verify`'s verdict on it.
fn pg_ledger_figures(data_dir: &Path, url: &str) -> anyhow::Result<LedgerFigures> {
    use agentsigna_store::LedgerSource as _;
    let src = agentsigna_store::postgres::PgLedgerReader::open(url, &Default::default())?;
    let entries = src.size()?;
    let bytes_on_disk = src.table_bytes()?;
    let started = std::time::Instant::now();
    let keys = agentsigna_core::keys::Keyring::load(&data_dir.join("keys"), None)
        .with_context(|| format!("cannot read the ledger key of {}", data_dir.display()))?;
    let (verified, verification, cases) =
        match agentsigna_store::ledger::audit(&src, &keys.ledger.verifier(), &[], |_| {}) {
            Ok(r) => (
                true,
                format!(
                    "OK: {} entries, {} cases, every digest, chain and the Merkle root verified",
                    r.entries, r.cases
                ),
                r.cases,
            ),
            Err(e) => (false, format!("FAILED: {e}"), 0),
        };
    Ok(LedgerFigures {
        entries,
        cases,
        bytes_per_case: bytes_on_disk.checked_div(cases).unwrap_or(0),
        bytes_on_disk,
        disk_scope: "the store's tables with their indexes and TOAST, not the WAL",
        verified,
        verification,
        verify_secs: started.elapsed().as_secs_f64(),
    })
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
        disk_scope: "database + WAL",
        verified,
        verification,
        verify_secs: started.elapsed().as_secs_f64(),
    })
}
