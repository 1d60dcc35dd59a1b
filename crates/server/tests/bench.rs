//! `agentsigna bench` end to end, in a tiny configuration: it must finish, exit 0 and
//! print plausible figures as JSON. (The figures themselves are measured by running it in
//! release, not asserted here.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

#[test]
fn bench_runs_and_reports_plausible_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentsigna"))
        .args(["bench", "--rate", "50", "--duration-secs", "1", "--connections", "2", "--json"])
        .env("AGENTSIGNA_LOG", "error")
        .output()
        .expect("cannot run agentsigna");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let r: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"));

    assert_eq!(r["ok"], true, "{r:#}");
    assert_eq!(r["errors"], 0, "{r:#}");
    assert!(r["cores"].as_u64().unwrap() >= 1);
    assert!(r["load_average_start"].is_string());
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
}

#[test]
fn bench_refuses_a_zero_rate() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentsigna"))
        .args(["bench", "--rate", "0", "--json"])
        .output()
        .expect("cannot run agentsigna");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
