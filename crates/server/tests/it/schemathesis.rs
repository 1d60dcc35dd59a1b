//! API tests generated from the OpenAPI document: schemathesis (`st`, installed beside
//! `$AGENTSIGNA_PYTHON` by `.ci/run`) runs against a live server on loopback once per
//! principal (agent, target system, approver, admin), with that principal's credential,
//! and checks that no answer is a 5xx and that every answer conforms to the document:
//! status, content type, headers and body schema. Every phase runs (examples, coverage,
//! fuzzing, and stateful sequences that follow the document's links from created agents,
//! cases and reviews); bounded by a few dozen examples per operation and a fixed seed.
//! The server's long-poll cap is 0, so `?wait` answers at once (as it does past the cap)
//! instead of holding a generated request for up to a minute. Skipped with the reason printed when schemathesis is absent, except
//! under CI=true, where it is required.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use super::harness::*;

/// The `st` executable beside `$AGENTSIGNA_PYTHON`, if schemathesis is installed there.
fn schemathesis() -> Option<PathBuf> {
    let py = PathBuf::from(std::env::var("AGENTSIGNA_PYTHON").unwrap_or_else(|_| "python3".to_owned()));
    let st = py.parent().map(|dir| dir.join("st")).filter(|st| st.exists());
    let runs =
        st.as_ref().is_some_and(|st| Command::new(st).arg("--version").output().is_ok_and(|o| o.status.success()));
    if !runs {
        let reason = "no schemathesis beside $AGENTSIGNA_PYTHON (`pip install 'schemathesis>=4,<5'` in its venv)";
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "under CI=true: {reason}");
        println!("skipped: {reason}");
        return None;
    }
    st
}

/// No 5xx, and status, content type, headers and body as the document says.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_no_5xx_and_answers_that_conform_for_every_principal() {
    let Some(st) = schemathesis() else { return };
    let s = Server::start_with(|o| o.max_waits = 0).await;
    // The admin last: what it creates and changes does not take the others' credentials
    // (generated ids are random), and the others see the org as it was applied.
    let principals = [("agent", s.bot()), ("system", s.erp()), ("approver", s.carol()), ("admin", s.admin.clone())];
    let work = tempfile::tempdir().expect("tempdir");
    for (who, token) in principals {
        let (st, base, dir) = (st.clone(), s.base.clone(), work.path().to_owned());
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(&st)
                .current_dir(&dir)
                .args(["--no-color", "run", &format!("{base}/openapi.json"), "--url", &base])
                .args(["--checks", CHECKS])
                .args(["--max-examples", "25", "--seed", "1"])
                // One worker: with two, its threads parse hypothesis' lambda sources with
                // `ast.parse` at once, and CPython 3.11 can fail that with "AST constructor
                // recursion depth mismatch" (seen with schemathesis 4.32, hypothesis 6.170).
                .args(["--workers", "1", "--request-timeout", "30", "--generation-database", "none"])
                .args(["--header", &format!("Authorization: Bearer {token}")])
                .output()
        })
        .await
        .expect("join")
        .expect("st runs");
        let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "schemathesis as the {who} found failures:\n{text}");
        let summary: Vec<&str> =
            text.lines().filter(|l| l.contains("passed") || l.contains("Test cases")).map(str::trim).collect();
        println!("schemathesis as the {who} ({:.0?}): {}", started.elapsed(), summary.join(" | "));
    }
}
