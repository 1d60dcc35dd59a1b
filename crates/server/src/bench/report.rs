//! The figures of a run (`--json` prints them) and the markdown report behind
//! BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use agentsigna_core::money::Grouped;

use super::load::Tally;
use super::{AGENT, TARGET_P99_RATE};

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
    pub(super) fn of(mut samples: Vec<Duration>) -> Option<Latency> {
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
    pub(super) fn total(&self) -> u64 {
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
    /// Open loop only (`null` otherwise): from each request's scheduled time to its
    /// handing to a connection, the part of `latency_ms` spent before the send.
    pub send_lag_ms: Option<Latency>,
    /// CPU time of the whole process (servers and load generator, every thread) over the
    /// phase, in seconds; `null` where the system does not say.
    pub cpu_secs: Option<f64>,
    /// `cpu_secs` per successful request, in microseconds.
    pub cpu_us_per_request: Option<f64>,
    /// `cpu_us_per_request` by thread: `server` (the servers' runtime), `writer` (SQLite's
    /// serial step), `wal_checkpoint` (SQLite's WAL copied into the database file),
    /// `load_generator`, and `other` (every other thread, and threads that ended during the
    /// phase); `null` where the system does not say.
    pub cpu_us_per_request_by_thread: Option<BTreeMap<String, f64>>,
    /// How busy each of the machine's CPUs was over the phase (every process, from
    /// `/proc/stat`): the share of its time neither idle, waiting for I/O nor stolen by the
    /// hypervisor; `null` where the system does not say. Shows where a phase left a CPU
    /// idle (one CPU busy and one half idle is not the same as both at 75 %).
    pub cpus_busy: Option<Vec<f64>>,
    /// Times a thread of the process was switched off its CPU (it waited, or the kernel
    /// preempted it), per successful request; threads that ended during the phase are not
    /// counted, and `null` where the system does not say. With the report's `thread_wake`,
    /// what the phase's hand-offs between threads cost on this machine.
    pub context_switches_per_request: Option<f64>,
}

impl Phase {
    pub(super) fn new(
        name: String,
        connections: usize,
        target_rate: Option<u32>,
        wall: Duration,
        tally: Tally,
    ) -> Phase {
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
            send_lag_ms: Latency::of(tally.send_lags),
            cpu_secs: None,
            cpu_us_per_request: None,
            cpu_us_per_request_by_thread: None,
            cpus_busy: None,
            context_switches_per_request: None,
        }
    }

    /// Records the process's CPU time over the phase, and its live threads' by group.
    pub(super) fn set_cpu(&mut self, cpu: Duration, threads: Option<BTreeMap<&'static str, Duration>>) {
        self.cpu_secs = Some(cpu.as_secs_f64());
        if self.ok == 0 {
            return;
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / self.ok as f64;
        self.cpu_us_per_request = Some(per(cpu));
        self.cpu_us_per_request_by_thread = threads.map(|threads| {
            let named: Duration = threads.values().sum();
            let mut by: BTreeMap<String, f64> = threads.into_iter().map(|(g, d)| (g.to_owned(), per(d))).collect();
            by.insert("other".to_owned(), per(cpu.saturating_sub(named)));
            by
        });
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
    pub(super) fn of(f: agentsigna_core::store::SerialFigures, wall: Duration) -> Serial {
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
    /// SQLite: the database, WAL and shared-memory files; PostgreSQL: the store's tables
    /// with their indexes and TOAST (not the WAL).
    pub bytes_on_disk: u64,
    /// What `bytes_on_disk` counts, in words.
    pub disk_scope: &'static str,
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
    /// The CPU's model name (`/proc/cpuinfo`); `null` where the system does not say.
    pub cpu_model: Option<String>,
    /// The kernel's release (`/proc/sys/kernel/osrelease`); `null` where the system does not say.
    pub kernel: Option<String>,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the run started.
    pub load_average_start: String,
    pub load_generator: &'static str,
    pub storage: String,
    /// Server nodes sharing the load (several only on PostgreSQL).
    pub nodes: u32,
    /// Rules added to the example policy (`--extra-rules`), none of them for the load's action.
    pub extra_rules: u32,
    /// The size of the policy's Cedar source, bytes.
    pub policy_bytes: usize,
    /// `null` for the default temporary directory.
    pub data_dir: Option<PathBuf>,
    pub rate: u32,
    pub duration_secs: u64,
    pub connections: usize,
    /// Phases 2 and 3 ran interleaved, A B B A …, in this many slices each (of
    /// `duration_secs / slices`); their figures add the slices up.
    pub closed_loop_slices: u32,
    pub warmup: Phase,
    pub open_loop: Phase,
    pub closed_loop: Phase,
    pub bare: Phase,
    /// Phase 4 (`--waiters`): the closed loop again while the long polls wait…
    pub with_waiters: Option<Phase>,
    /// … and in the slices interleaved with those, without them.
    pub without_waiters: Option<Phase>,
    pub waiters: u32,
    /// Closed-loop authorized requests/s ÷ bare requests/s.
    pub ratio: f64,
    /// Phase 4's authorized requests/s with the long polls ÷ without them, in its
    /// interleaved slices (1.0: the waiters cost nothing).
    pub waiters_ratio: Option<f64>,
    /// The data directory's own durable write at the open loop's rate (`null` on
    /// PostgreSQL, whose disk is not this process's).
    pub disk_floor: Option<super::floor::DiskFloor>,
    /// One raw Ed25519 signature of a passport-sized message, µs (servers idle).
    pub ed25519_sign_us: f64,
    /// One thread waking another that waits for it, on one CPU and across two (servers idle).
    pub thread_wake: super::floor::WakeFloor,
    /// The store's serial step over the whole run (warm-up included).
    pub serial: Serial,
    pub targets: Targets,
    pub ledger: LedgerFigures,
    /// Failed requests over every phase, warm-up included.
    pub errors: u64,
    /// No failed request and the ledger verified (the exit status is 0 exactly then).
    pub ok: bool,
}

/// `12345` → `12,345`.
pub(super) fn thousands(n: u64) -> String {
    Grouped(&n.to_string()).to_string()
}

pub(super) fn rate(r: f64) -> String {
    thousands(r.round() as u64)
}

pub(super) fn row(out: &mut String, label: &str, p: &Phase) {
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

pub(super) fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "**not met**"
    }
}

pub(super) fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# agentsigna bench\n");
    let dir = r
        .data_dir
        .as_ref()
        .map_or("a temporary directory, deleted after the run".to_owned(), |d| format!("{} (kept)", d.display()));
    let mut host = r.cpu_model.as_ref().map_or_else(String::new, |m| format!(" of {m}"));
    if let Some(k) = &r.kernel {
        host.push_str(&format!("; kernel {k}"));
    }
    let _ = writeln!(
        out,
        "- AgentSigna {}; {} cores{host}; load average at start {}",
        r.version, r.cores, r.load_average_start
    );
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
        "- Policy: the example procurement policy{}, {} bytes of Cedar",
        match r.extra_rules {
            0 => String::new(),
            n => format!(" and {} rules for an action the load never requests", thousands(u64::from(n))),
        },
        thousands(r.policy_bytes as u64)
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
    if let (Some(with), Some(without)) = (&r.with_waiters, &r.without_waiters) {
        row(&mut out, &format!("4. closed loop, {} long polls waiting", thousands(u64::from(r.waiters))), with);
        row(&mut out, "4. closed loop, the same slices without them", without);
    }
    let lag = r.open_loop.send_lag_ms.map_or(String::new(), |l| {
        format!(
            " Phase 1's requests left the generator {:.3} ms (p50), {:.3} ms (p99) after their scheduled time; \
             that is inside its latencies.",
            l.p50, l.p99
        )
    });
    let _ = writeln!(
        out,
        "\nPhase 1 latency runs from each request's scheduled send time (no coordinated omission); \
         phases 2 and 3 from the actual send. Phases 2 and 3 ran interleaved, in {} slices each of \
         {:.1} s (A B B A …), so that the host's drift during the run slows both alike.{lag}\n",
        r.closed_loop_slices,
        r.duration_secs as f64 / f64::from(r.closed_loop_slices.max(1))
    );
    let _ = writeln!(
        out,
        "- Ratio AgentSigna ÷ bare endpoint (closed loop): **{:.3}** ({} ÷ {} requests/s)",
        r.ratio,
        rate(r.closed_loop.rate),
        rate(r.bare.rate)
    );
    if let (Some(signa), Some(bare)) = (r.closed_loop.cpu_us_per_request, r.bare.cpu_us_per_request) {
        let _ = writeln!(
            out,
            "- CPU per request, closed loop (the whole process: servers and load generator, user + system): \
             AgentSigna {signa:.0} µs, bare endpoint {bare:.0} µs; ratio **{:.3}**",
            bare / signa
        );
    }
    if let Some(by) = &r.closed_loop.cpu_us_per_request_by_thread {
        let of = |g: &str| by.get(g).map_or("–".to_owned(), |c| format!("{c:.0} µs"));
        let _ = writeln!(
            out,
            "- Of AgentSigna's, by thread: server {}, writer (SQLite's serial step) {}, WAL checkpoints {}, \
             load generator {}, other {}",
            of("server"),
            of("writer"),
            of("wal_checkpoint"),
            of("load_generator"),
            of("other")
        );
    }
    if let (Some(signa), Some(bare)) = (&r.closed_loop.cpus_busy, &r.bare.cpus_busy) {
        let shares = |b: &[f64]| b.iter().map(|b| format!("{:.0} %", b * 100.0)).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            out,
            "- Each CPU busy over the closed loop (every process on the machine): AgentSigna {}; bare endpoint {}",
            shares(signa),
            shares(bare)
        );
    }
    if r.ed25519_sign_us > 0.0 {
        let per =
            |p: &Phase| p.cpu_us_per_request.map_or("–".to_owned(), |c| format!("{:.1}", c / r.ed25519_sign_us));
        let _ = writeln!(
            out,
            "- Raw Ed25519 signature (AWS-LC, as the server signs; one thread, servers idle): {:.1} µs; CPU per request in \
             signatures: AgentSigna {}, bare endpoint {}",
            r.ed25519_sign_us,
            per(&r.closed_loop),
            per(&r.bare)
        );
    }
    if let (Some(signa), Some(bare)) = (r.closed_loop.context_switches_per_request, r.bare.context_switches_per_request)
    {
        let us = |w: Option<f64>| w.map_or("–".to_owned(), |w| format!("{w:.1} µs"));
        let _ = writeln!(
            out,
            "- Context switches per request over the closed loop (the process's threads): AgentSigna {signa:.2}, bare \
             endpoint {bare:.2}; one thread waking another that waits for it (servers idle) costs {} on one CPU, {} \
             across two",
            us(r.thread_wake.same_cpu_us),
            us(r.thread_wake.across_cpus_us)
        );
    }
    let p99 = r.open_loop.latency_ms.map_or("–".to_owned(), |l| format!("{:.2} ms", l.p99));
    let at = if r.rate == TARGET_P99_RATE {
        String::new()
    } else {
        format!(" (measured at {}/s, not at the target's 1,000/s)", thousands(u64::from(r.rate)))
    };
    let _ =
        writeln!(out, "- Target verdict p99 ≤ 2 ms at 1,000 requests/s: {} (p99 {p99}){at}", met(r.targets.p99_le_2ms));
    if let Some(d) = &r.disk_floor {
        if let Some(l) = d.latency_ms {
            let times = r
                .open_loop
                .latency_ms
                .map_or(String::new(), |v| format!("; the verdict's p99 is {:.1}× the disk's", v.p99 / l.p99));
            let _ = writeln!(
                out,
                "- Disk floor (the data directory alone, no database, servers idle): {} writes of {} bytes, each followed by \
                 {}, at {}/s: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms{times}",
                thousands(d.writes),
                thousands(d.bytes_per_write as u64),
                d.sync,
                thousands(u64::from(d.rate)),
                l.p50,
                l.p99,
                l.p99_9,
                l.max
            );
        }
    }
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
        "- Ledger: {} entries, {} cases, {:.1} MiB on disk ({}), {} bytes per case; verified in {:.1} s: {}",
        thousands(r.ledger.entries),
        thousands(r.ledger.cases),
        r.ledger.bytes_on_disk as f64 / (1024.0 * 1024.0),
        r.ledger.disk_scope,
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
        for p in [&r.warmup, &r.open_loop, &r.closed_loop, &r.bare]
            .into_iter()
            .chain(r.with_waiters.as_ref())
            .chain(r.without_waiters.as_ref())
        {
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
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
