//! Faults, started for real: a private PostgreSQL cluster (initdb into a temporary
//! directory, on a free loopback port: the shared cluster other tests use is never
//! touched) stopped and started again under load; a node killed with SIGKILL under load.
//! Skipped with the reason printed when the PostgreSQL 15 binaries are absent, except
//! under CI=true.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::harness::{outcome, run_cli, Server};
use super::multinode::fresh_database;
use super::pg_cluster::Cluster;

/// Held by the tests that put sustained load on PostgreSQL, so that they do not run at
/// the same time and push each other's pool waits (2 s) over their bound on a busy machine.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the load saw.
#[derive(Default)]
struct Seen {
    /// Case ids of acknowledged (201) requests.
    acknowledged: Vec<String>,
    /// 503 answers, each checked to be problem+json with `Retry-After`.
    unavailable: usize,
    /// Anything else (a 500, a timeout, a refused connection), with what it was.
    other: Vec<String>,
}

/// Submits purchase orders one after the other on each of `nodes` until `stop` is set;
/// a request may take at most `bound` (the client's timeout), or it counts as a hang.
fn load(nodes: Vec<(String, String)>, stop: Arc<AtomicBool>, bound: Duration) -> Vec<tokio::task::JoinHandle<Seen>> {
    nodes
        .into_iter()
        .enumerate()
        .map(|(n, (base, token))| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder().timeout(bound).build().expect("client");
                let mut seen = Seen::default();
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let body = super::harness::po_body("acme", &format!("{}.{:02}", 10 + n, i % 100));
                    match client.post(format!("{base}/v1/requests")).bearer_auth(&token).json(&body).send().await {
                        Ok(r) if r.status() == 201 => {
                            let v: serde_json::Value = r.json().await.expect("json");
                            seen.acknowledged.push(v["case_id"].as_str().expect("case id").to_owned());
                        }
                        Ok(r) if r.status() == 503 => {
                            let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
                            let retry = r.headers().get("retry-after").is_some();
                            if ct == "application/problem+json" && retry {
                                seen.unavailable += 1;
                            } else {
                                seen.other.push(format!("503 without problem+json/Retry-After ({ct}, {retry})"));
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Ok(r) => seen.other.push(format!("{}: {}", r.status(), r.text().await.unwrap_or_default())),
                        Err(e) if e.is_timeout() => seen.other.push(format!("no answer within {bound:?}")),
                        Err(e) => {
                            // A node killed on purpose refuses connections: the caller knows.
                            seen.other.push(format!("request failed: {e}"));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                seen
            })
        })
        .collect()
}

fn verify_ledger(data_dir: &Path, url: &str) {
    let o = run_cli(&["ledger", "verify", "--data-dir", data_dir.to_str().expect("dir"), "--database", url]);
    let (code, out, err) = outcome(&o);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK: "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_under_load_gives_503s_then_recovers_losing_nothing() {
    let _heavy = HEAVY.lock().await;
    let Some(cluster) = Cluster::start() else { return };
    let url = cluster.url();
    let node = Server::start_with(|o| o.database = Some(url.clone())).await;
    let stop = Arc::new(AtomicBool::new(false));
    let bound = Duration::from_secs(15);
    let tasks = load(vec![(node.base.clone(), node.bot()), (node.base.clone(), node.bot())], stop.clone(), bound);
    tokio::time::sleep(Duration::from_secs(1)).await;

    cluster.pg_ctl_stop("fast");
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.pg_ctl_start();
    let restarted = Instant::now();
    // The node reconnects by itself: requests succeed again.
    let client = reqwest::Client::builder().timeout(bound).build().expect("client");
    let mut firsts = Vec::new();
    loop {
        let t0 = Instant::now();
        let r = client
            .post(format!("{}/v1/requests", node.base))
            .bearer_auth(node.bot())
            .json(&super::harness::po_body("acme", "9.99"))
            .send()
            .await
            .expect("an answer within the bound");
        firsts.push((r.status().as_u16(), t0.elapsed()));
        if r.status() == 201 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(restarted.elapsed() < Duration::from_secs(60), "the node never reconnected: {firsts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("after the restart: {firsts:?}; recovered {:?} after pg_ctl start returned", restarted.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut seen = Seen::default();
    for t in tasks {
        let s = t.await.expect("load task");
        seen.acknowledged.extend(s.acknowledged);
        seen.unavailable += s.unavailable;
        seen.other.extend(s.other);
    }
    println!("acknowledged {}, 503 {}, other {:?}", seen.acknowledged.len(), seen.unavailable, seen.other);
    assert!(seen.other.is_empty(), "only 201 or 503 problem+json with Retry-After: {:?}", seen.other);
    assert!(seen.unavailable > 0, "requests during the outage were answered 503");
    assert!(!seen.acknowledged.is_empty());
    // Nothing acknowledged is lost, and the ledger verifies.
    for id in &seen.acknowledged {
        node.case(&node.bot(), id).await.expect(200);
    }
    verify_ledger(&node.data_dir(), &url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_leaves_the_other_serving_and_loses_nothing() {
    let Some(url) = fresh_database() else { return };
    let _heavy = HEAVY.lock().await;
    let a = Server::start_with(|o| o.database = Some(url.clone())).await;
    // Node B is a real `agentsigna serve` process on a copy of A's keys.
    let b_dir = tempfile::tempdir().expect("tempdir");
    let b_data = b_dir.path().join("data");
    super::harness::copy_dir(&a.data_dir().join("keys"), &b_data.join("keys"));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let mut child = Command::new(super::harness::bin())
        .args(["serve", "--data-dir", b_data.to_str().expect("dir"), "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database", &url])
        .env("AGENTSIGNA_LOG", "error")
        .spawn()
        .expect("node B starts");
    let b_base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(30);
    while !client.get(format!("{b_base}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < until, "node B never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let bound = Duration::from_secs(15);
    let on_a = load(vec![(a.base.clone(), a.bot())], stop.clone(), bound);
    let on_b = load(vec![(b_base.clone(), a.bot())], stop.clone(), bound);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // SIGKILL: no drain, no goodbye.
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for t in on_a {
        let s = t.await.expect("load on A");
        assert!(s.other.is_empty(), "A kept serving: {:?}", s.other);
        assert!(s.acknowledged.len() > 1);
        acknowledged.extend(s.acknowledged);
    }
    for t in on_b {
        // B's failures after the kill are refused connections; its acknowledgements count.
        let s = t.await.expect("load on B");
        acknowledged.extend(s.acknowledged);
    }
    println!("{} acknowledged; A served for {:?} after B was killed", acknowledged.len(), killed_at.elapsed());
    let lost = Arc::new(Mutex::new(Vec::new()));
    for id in &acknowledged {
        let r = a.case(&a.bot(), id).await;
        if r.status != 200 {
            lost.lock().expect("lock").push(id.clone());
        }
    }
    assert!(lost.lock().expect("lock").is_empty(), "acknowledged cases missing: {:?}", lost.lock());
    // A's checkpoints stay consistent with the one ledger both wrote.
    let r = a.po("acme", "1.00").await;
    r.expect(201);
    verify_ledger(&a.data_dir(), &url);
}
