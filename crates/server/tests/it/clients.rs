//! The client examples of `examples/clients/` (a Python agent on requests + PyJWT, a
//! TypeScript agent on fetch + jose under Node 20) walk request → wait → passport →
//! outcome against a live server, the review approved by the test meanwhile. Skipped with
//! the reason printed when Python (with requests and PyJWT: `$AGENTSIGNA_PYTHON`) or Node
//! (with the example built: `npm ci && npm run build` in its directory) is missing, except
//! under CI=true (`.ci/run` installs both), where they are required.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use super::harness::*;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/clients")
}

/// `None` (with the reason printed) when the tool is missing outside CI.
fn required(found: Option<Vec<String>>, reason: &str) -> Option<Vec<String>> {
    if found.is_none() {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "under CI=true: {reason}");
        println!("skipped: {reason}");
    }
    found
}

fn python_agent() -> Option<Vec<String>> {
    let py = std::env::var("AGENTSIGNA_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let ok =
        Command::new(&py).args(["-c", "import requests, jwt, cryptography"]).output().is_ok_and(|o| o.status.success());
    let script = examples().join("python/agent.py");
    required(
        ok.then(|| vec![py, script.to_str().expect("path").to_owned()]),
        "no Python with requests and PyJWT (set AGENTSIGNA_PYTHON)",
    )
}

fn typescript_agent() -> Option<Vec<String>> {
    let dir = examples().join("typescript");
    let node_ok = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let built = dir.join("dist/agent.js").exists() && dir.join("node_modules/jose").exists();
    required(
        (node_ok && built)
            .then(|| vec!["node".to_owned(), dir.join("dist/agent.js").to_str().expect("path").to_owned()]),
        "no node, or examples/clients/typescript not built (npm ci && npm run build)",
    )
}

/// Runs the agent for an escalated purchase order, approving its review meanwhile.
async fn walk(command: Vec<String>) {
    let s = Server::start().await;
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .args(["globex", "40000.00"])
        .env("AGENTSIGNA_URL", &s.base)
        .env("AGENTSIGNA_API_KEY", s.bot())
        .env("AGENTSIGNA_SYSTEM_TOKEN", s.erp())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the agent");
    // The approver decides the review the agent's request opened.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let review = loop {
        let q = s.get(&s.carol(), "/v1/reviews?status=pending").await;
        if let Some(r) = q.json["reviews"].as_array().and_then(|a| a.first()).cloned() {
            break r;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the agent ended before its review opened: {status}");
        }
        assert!(std::time::Instant::now() < deadline, "no review opened");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let review_id = review["id"].as_str().expect("review id");
    s.decide(&s.carol(), review_id, "approve", "budgeted").await.expect(200);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the agent failed: {stdout}\n{stderr}");
    let line: Value = serde_json::from_str(stdout.lines().last().expect("a line")).expect("JSON");
    assert_eq!(line["verdict"], "escalated");
    let case_id = line["case_id"].as_str().expect("case id");
    assert_eq!(review["case_id"], json!(case_id));
    let case = s.case(&s.admin, case_id).await;
    case.expect(200);
    assert_eq!(line["status"], case.json["status"]);
    let kinds = event_types(&case.json);
    for kind in ["review.opened", "passport.issued", "execution.reported", "outcome.recorded"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    let executed = events_of(&case.json, "execution.reported");
    assert_eq!(executed[0]["data"]["passport_id"], line["passport_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_agent_walks_the_loop() {
    if let Some(cmd) = python_agent() {
        walk(cmd).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_agent_walks_the_loop() {
    if let Some(cmd) = typescript_agent() {
        walk(cmd).await;
    }
}
