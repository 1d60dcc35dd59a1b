#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `agentsigna demo` is the end-to-end test of the whole loop: it runs the built binary
//! from an unrelated directory (the org and policy are built in) and checks what it tells.

use std::process::Command;

#[test]
fn demo_runs_all_seven_steps_and_exits_0() {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agentsigna"))
        .arg("demo")
        .current_dir(cwd.path())
        .env("AGENTSIGNA_LOG", "warn")
        .output()
        .expect("run agentsigna demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}", out.status);
    for needle in [
        "② verdict    authorized",
        "② verdict    escalated",
        "② verdict    rejected",
        "po-allowed",
        "large-po",
        "high-risk-counterparty",
        "blocked-counterparty",
        "low-trust-latitude",
        "403",
        "review approved",
        "\"approvals\"",
        "\"authorization_details\"",
        "ERP: 201 Created PO-1001",
        "401 missing",
        "409 replayed",
        "401 expired",
        "reports completed",
        "reports reversed",
        "reports disputed",
        "procurement-bot 50 → 67",
        "ledger verified",
        "OK: ",
    ] {
        assert!(
            stdout.contains(needle),
            "the demo output lacks {needle:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
    }
    // The temporary data dir is gone and nothing was written to the working directory.
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
}
