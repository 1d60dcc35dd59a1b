//! Crash safety: the server is killed with SIGKILL under concurrent load, several times;
//! every acknowledged case must still be there after a restart, and the ledger verifies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_agentsigna");
const ORG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/procurement/org.toml");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(dir: &Path, port: u16) -> Child {
    Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--org", ORG])
        // The load and the check afterwards come from one agent and the admin, far above
        // the default per-principal rate: this test is about durability, not rate limits.
        .args(["--rate-limit", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_ready(client: &reqwest::Client, port: u16) {
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_case() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    for round in 0..3u64 {
        let port = free_port();
        let mut child = spawn(dir.path(), port);
        wait_ready(&client, port).await;
        let token = std::fs::read_to_string(dir.path().join("credentials/agent-procurement-bot.token")).unwrap();
        let token = token.trim().to_owned();
        let mut tasks = Vec::new();
        for worker in 0..8u64 {
            let (client, token, acked) = (client.clone(), token.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let body = json!({"action": "purchase_order.create", "counterparty": "acme",
                        "amount": {"value": format!("{}.00", 10 + i % 50), "currency": "USD"},
                        "audience": "erp", "description": format!("round {round} worker {worker} #{i}")});
                    let resp = client
                        .post(format!("http://127.0.0.1:{port}/v1/requests"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    let Ok(resp) = resp else { return };
                    if resp.status().as_u16() != 201 {
                        return;
                    }
                    let Ok(v) = resp.json::<Value>().await else { return };
                    acked.lock().unwrap().insert(v["case_id"].as_str().unwrap().to_owned());
                }
            }));
        }
        // Let the load run, then pull the plug.
        tokio::time::sleep(Duration::from_millis(700 + round * 300)).await;
        Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
        child.wait().unwrap();
        for t in tasks {
            let _ = t.await;
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "too little load was acknowledged: {}", acked.len());

    // The ledger of the killed server verifies offline.
    let out = Command::new(BIN).args(["ledger", "verify", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "ledger verify failed: {}", String::from_utf8_lossy(&out.stderr));

    // Every acknowledged case is there after a restart.
    let port = free_port();
    let mut child = spawn(dir.path(), port);
    wait_ready(&client, port).await;
    let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    for id in &acked {
        let r = client
            .get(format!("http://127.0.0.1:{port}/v1/cases/{id}"))
            .bearer_auth(admin.trim())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "acknowledged case {id} was lost");
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM exit: {status:?}");
    eprintln!("{} acknowledged cases survived 3 SIGKILLs", acked.len());
}
