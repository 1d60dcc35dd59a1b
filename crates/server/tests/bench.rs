//! `agentsigna bench` end to end, in a tiny configuration: it must finish, exit 0 and
//! print plausible figures as JSON. (The figures themselves are measured by running it in
//! release, not asserted here.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

/// Runs `agentsigna bench ARGS --json`, which must exit 0, and returns what it printed.
fn bench_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_agentsigna"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .env("AGENTSIGNA_LOG", "error")
        .output()
        .expect("cannot run agentsigna");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"))
}

#[test]
fn bench_runs_and_reports_plausible_figures() {
    let r = bench_json(&["--rate", "50", "--duration-secs", "1", "--connections", "2"]);

    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["errors"], 0, "{r:#}");
    assert!(r["cores"].as_u64().unwrap() >= 1);
    assert!(r["load_average_start"].is_string());
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        // The host the figures were read on (x86's /proc/cpuinfo names its model).
        assert!(r["cpu_model"].as_str().is_some_and(|m| !m.is_empty()), "{}", r["cpu_model"]);
        assert!(
            r["kernel"].as_str().is_some_and(|k| k.chars().next().is_some_and(|c| c.is_ascii_digit())),
            "{}",
            r["kernel"]
        );
    }
    assert_eq!(r["extra_rules"], 0);
    let example_policy = include_str!("../../../examples/procurement/policy.cedar");
    assert_eq!(r["policy_bytes"].as_u64(), Some(example_policy.len() as u64));
    for phase in ["warmup", "open_loop", "closed_loop", "bare"] {
        let p = &r[phase];
        let requests = p["requests"].as_u64().unwrap();
        assert!(requests > 0, "{phase}: no request: {p:#}");
        assert_eq!(p["errors"], 0, "{phase}: {p:#}");
        assert_eq!(p["ok"].as_u64(), Some(requests), "{phase}: {p:#}");
        assert!(p["rate"].as_f64().unwrap() > 0.0, "{phase}: {p:#}");
        let l = &p["latency_ms"];
        let (p50, p90, p99, p999, max) = (
            l["p50"].as_f64().unwrap(),
            l["p90"].as_f64().unwrap(),
            l["p99"].as_f64().unwrap(),
            l["p99_9"].as_f64().unwrap(),
            l["max"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max, "{phase}: {l}");
        assert!(max < 30_000.0, "{phase}: implausible latency: {l}");
    }
    // 50 requests/s for 1 s: all 50 sent on schedule.
    assert_eq!(r["open_loop"]["requests"], 50, "{:#}", r["open_loop"]);
    assert_eq!(r["open_loop"]["target_rate"], 50);
    // The open loop reports how late its requests left (part of its latencies); the
    // closed loops send at once and have none.
    let lag = &r["open_loop"]["send_lag_ms"];
    let (lag_p99, lag_max) = (lag["p99"].as_f64().unwrap(), lag["max"].as_f64().unwrap());
    assert!(0.0 <= lag_p99 && lag_p99 <= lag_max, "{lag}");
    assert!(lag_max <= r["open_loop"]["latency_ms"]["max"].as_f64().unwrap(), "{:#}", r["open_loop"]);
    assert!(r["closed_loop"]["send_lag_ms"].is_null(), "{:#}", r["closed_loop"]);
    // Phases 2 and 3 interleave (two slices each for a 1-s phase: A B B A): each side's
    // wall time adds up its two slices of 0.5 s, each from its start to its last answer
    // (at most one request's latency past the slice's end).
    assert_eq!(r["closed_loop_slices"], 2, "{r:#}");
    for phase in ["closed_loop", "bare"] {
        let wall = r[phase]["wall_secs"].as_f64().unwrap();
        let slowest = r[phase]["latency_ms"]["max"].as_f64().unwrap() / 1e3;
        assert!(wall >= 0.99 && wall <= 1.0 + 2.0 * slowest + 0.01, "{phase}: wall {wall} s: {:#}", r[phase]);
    }
    // Each measured phase reports the process's CPU time, and per request.
    for phase in ["open_loop", "closed_loop", "bare"] {
        let p = &r[phase];
        let (cpu, per) = (p["cpu_secs"].as_f64().unwrap(), p["cpu_us_per_request"].as_f64().unwrap());
        assert!(cpu > 0.0 && per > 0.0, "{phase}: {p:#}");
        assert!((per - cpu * 1e6 / p["ok"].as_f64().unwrap()).abs() < 1e-6 * per.max(1.0), "{phase}: {p:#}");
        // And that CPU by thread: the named groups, and the rest as `other`, so that
        // together they hold all of it.
        let by = p["cpu_us_per_request_by_thread"].as_object().unwrap();
        let groups: Vec<&str> = by.keys().map(String::as_str).collect();
        assert_eq!(groups, ["load_generator", "other", "server", "wal_checkpoint", "writer"], "{phase}: {p:#}");
        let sum: f64 = by.values().map(|v| v.as_f64().unwrap()).sum();
        assert!(by.values().all(|v| v.as_f64().unwrap() >= 0.0), "{phase}: {p:#}");
        assert!(sum >= per * (1.0 - 1e-9), "{phase}: the groups hold {sum} of {per} µs: {p:#}");
        // And how busy each of the machine's CPUs was: a share of each one's time, at least
        // one of them busy with the phase's requests.
        let busy: Vec<f64> = p["cpus_busy"].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).collect();
        assert!(!busy.is_empty() && busy.iter().all(|b| (0.0..=1.0).contains(b)), "{phase}: {p:#}");
        assert!(busy.iter().any(|b| *b > 0.0), "{phase}: {p:#}");
        // And how often the process's threads were switched off a CPU, per request.
        let switches = p["context_switches_per_request"].as_f64().unwrap();
        assert!(switches.is_finite() && switches >= 0.0, "{phase}: {p:#}");
    }
    // An authorized request waits for its commit: at least one hand-off to the serial step
    // and back for every batch of them.
    assert!(r["closed_loop"]["context_switches_per_request"].as_f64().unwrap() > 0.0, "{:#}", r["closed_loop"]);
    let ratio = r["ratio"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio.is_finite(), "ratio {ratio}");
    let expected = r["closed_loop"]["rate"].as_f64().unwrap() / r["bare"]["rate"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9, "ratio {ratio} is not closed ÷ bare ({expected})");

    // Every authorized request left entries in the ledger, and it verified.
    let ledger = &r["ledger"];
    assert_eq!(ledger["verified"], true, "{ledger:#}");
    assert!(ledger["verification"].as_str().unwrap().starts_with("OK"), "{ledger:#}");
    let authorized: u64 = ["warmup", "open_loop", "closed_loop"].iter().map(|p| r[*p]["ok"].as_u64().unwrap()).sum();
    assert!(ledger["entries"].as_u64().unwrap() >= authorized, "{ledger:#} for {authorized} authorized requests");
    assert!(ledger["bytes_on_disk"].as_u64().unwrap() > 0);
    assert_eq!(ledger["disk_scope"], "database + WAL", "{ledger:#}");

    // The floors of the same run: the data directory's durable write, at the open loop's
    // rate (every scheduled write made), and a raw signature.
    let disk = &r["disk_floor"];
    assert_eq!(disk["rate"], 50, "{disk:#}");
    assert_eq!(disk["writes"], 50, "{disk:#}");
    assert_eq!(disk["sync"], "fsync", "{disk:#}");
    assert!(disk["bytes_per_write"].as_u64().unwrap() > 4096, "{disk:#}");
    let l = &disk["latency_ms"];
    assert!(0.0 < l["p50"].as_f64().unwrap() && l["p99"].as_f64().unwrap() <= l["max"].as_f64().unwrap(), "{l}");
    let sign = r["ed25519_sign_us"].as_f64().unwrap();
    assert!(sign > 0.0 && sign.is_finite(), "{sign}");
    // One thread waking another, on one CPU and (on a machine with two or more) across two.
    let wake = &r["thread_wake"];
    let same = wake["same_cpu_us"].as_f64().unwrap();
    assert!(same > 0.0 && same.is_finite(), "{wake:#}");
    if r["cores"].as_u64().unwrap() > 1 {
        assert!(wake["across_cpus_us"].as_f64().is_some_and(|us| us > 0.0 && us.is_finite()), "{wake:#}");
    }
}

#[test]
fn the_markdown_report_sets_the_floors_beside_the_figures() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agentsigna"))
        .args(["bench", "--rate", "20", "--duration-secs", "1", "--connections", "2", "--extra-rules", "300"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("AGENTSIGNA_LOG", "error")
        .output()
        .expect("cannot run agentsigna");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("- Disk floor (the data directory alone"), "{stdout}");
    assert!(stdout.contains("20 writes of 49,440 bytes, each followed by fsync, at 20/s"), "{stdout}");
    assert!(stdout.contains("the verdict's p99 is"), "{stdout}");
    assert!(stdout.contains("- Raw Ed25519 signature"), "{stdout}");
    assert!(stdout.contains("CPU per request in signatures: AgentSigna"), "{stdout}");
    assert!(stdout.contains("- Of AgentSigna's, by thread: server "), "{stdout}");
    assert!(
        stdout.contains("- Each CPU busy over the closed loop (every process on the machine): AgentSigna "),
        "{stdout}"
    );
    assert!(
        stdout.contains("- Context switches per request over the closed loop (the process's threads): AgentSigna "),
        "{stdout}"
    );
    assert!(stdout.contains("one thread waking another that waits for it (servers idle) costs "), "{stdout}");
    // The extra rules are in the policy, and every request was still answered `authorized`
    // (the load checks each answer; the run exits 0 only if none failed).
    assert!(
        stdout
            .contains("- Policy: the example procurement policy and 300 rules for an action the load never requests, "),
        "{stdout}"
    );
    // The floor's scratch file is gone; the database stays.
    assert!(!dir.path().join(".bench-disk-floor").exists());
    assert!(std::fs::read_dir(dir.path()).unwrap().count() > 0);
}

#[test]
fn phase_4_interleaves_the_closed_loop_with_and_without_long_polls() {
    let r = bench_json(&["--rate", "20", "--duration-secs", "1", "--connections", "2", "--waiters", "20"]);
    assert_eq!(
        (r["ok"].as_bool(), r["errors"].as_u64(), r["waiters"].as_u64()),
        (Some(true), Some(0), Some(20)),
        "{r:#}"
    );
    let (with, without) = (&r["with_waiters"], &r["without_waiters"]);
    for p in [with, without] {
        assert!(p["ok"].as_u64().unwrap() > 0 && p["errors"] == 0, "{p:#}");
        // Two slices of 0.5 s each, like phases 2 and 3.
        assert!(p["wall_secs"].as_f64().unwrap() >= 0.99, "{p:#}");
        assert!(p["cpu_us_per_request"].as_f64().unwrap() > 0.0, "{p:#}");
    }
    assert!(with["name"].as_str().unwrap().contains("20 long polls waiting"), "{with:#}");
    let expected = with["rate"].as_f64().unwrap() / without["rate"].as_f64().unwrap();
    let ratio = r["waiters_ratio"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9, "waiters_ratio {ratio} is not with ÷ without ({expected})");
    // The 20 escalated cases are in the ledger beside the authorized ones, and it verified.
    let authorized: u64 = ["warmup", "open_loop", "closed_loop", "with_waiters", "without_waiters"]
        .iter()
        .map(|p| r[*p]["ok"].as_u64().unwrap())
        .sum();
    assert_eq!(r["ledger"]["verified"], true, "{:#}", r["ledger"]);
    assert_eq!(r["ledger"]["cases"].as_u64(), Some(authorized + 20), "{:#}", r["ledger"]);
}

#[test]
fn bench_refuses_a_zero_rate() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentsigna"))
        .args(["bench", "--rate", "0", "--json"])
        .output()
        .expect("cannot run agentsigna");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A fresh database in the server `AGENTSIGNA_TEST_POSTGRES` names, or `None` (printing
/// why) when PostgreSQL tests are skipped.
fn fresh_database() -> Option<String> {
    let base = match std::env::var("AGENTSIGNA_TEST_POSTGRES") {
        Ok(u) if !u.is_empty() => u,
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("AGENTSIGNA_TEST_POSTGRES must be set under CI=true")
        }
        _ => {
            println!("skipped: AGENTSIGNA_TEST_POSTGRES not set");
            return None;
        }
    };
    let name = format!("agentsigna_bench{}_{}", std::process::id(), rand::random::<u32>());
    let out = Command::new("psql")
        .args([base.as_str(), "-v", "ON_ERROR_STOP=1", "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (head, query) = base.split_once('?').map_or((base.as_str(), String::new()), |(h, q)| (h, format!("?{q}")));
    let prefix = head.rsplit_once('/').map_or(head, |(p, _)| p);
    Some(format!("{prefix}/{name}{query}"))
}

#[test]
fn bench_runs_on_two_postgres_nodes_and_needs_a_database_for_several() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentsigna"))
        .args(["bench", "--nodes", "2", "--json"])
        .env("AGENTSIGNA_LOG", "error")
        .output()
        .expect("cannot run agentsigna");
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nodes needs --database"));

    let Some(url) = fresh_database() else { return };
    let r =
        bench_json(&["--rate", "50", "--duration-secs", "1", "--connections", "4", "--database", &url, "--nodes", "2"]);
    assert_eq!(r["nodes"], 2);
    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["ledger"]["verified"], true, "{r:#}");
    assert!(r["serial"]["batches"].as_u64().unwrap() > 0, "the sequencers' figures are reported: {r:#}");
    assert!(r["serial"]["busy_micros"].as_u64().unwrap() > 0, "{r:#}");
    // The store's tables are measured, and every case takes some of them.
    let ledger = &r["ledger"];
    let (bytes, cases) = (ledger["bytes_on_disk"].as_u64().unwrap(), ledger["cases"].as_u64().unwrap());
    assert!(cases > 0 && bytes > 0, "{ledger:#}");
    assert_eq!(ledger["bytes_per_case"].as_u64(), Some(bytes / cases), "{ledger:#}");
    assert!(ledger["disk_scope"].as_str().unwrap().contains("tables"), "{ledger:#}");
    // PostgreSQL's disk is not this process's: no floor for it.
    assert!(r["disk_floor"].is_null(), "{r:#}");
}
