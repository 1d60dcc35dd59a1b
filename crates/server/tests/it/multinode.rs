//! Two `serve` nodes in this process on one PostgreSQL database (a fresh database per
//! test, created in the server named by `AGENTSIGNA_TEST_POSTGRES`; skipped when unset,
//! except under CI=true): one ledger under concurrent load on both, idempotency across
//! nodes, a review opened on one node and decided on the other, a `?wait` on one node
//! woken by a decision on the other; webhooks delivered once by two nodes, and again by
//! the survivor when the node delivering one is stopped mid-delivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentsigna::app::{self, ServeOptions};
use serde_json::{json, Value};

use super::harness::{copy_dir, org_path, outcome, po_body, run_cli, Server};

/// The URL of a fresh database, or `None` (with the reason printed) when skipped.
pub fn fresh_database() -> Option<String> {
    let base = match std::env::var("AGENTSIGNA_TEST_POSTGRES") {
        Ok(u) if !u.is_empty() => u,
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("AGENTSIGNA_TEST_POSTGRES must be set under CI=true (.ci/run starts PostgreSQL and sets it)")
        }
        _ => {
            println!("skipped: AGENTSIGNA_TEST_POSTGRES not set");
            return None;
        }
    };
    let name = format!("agentsigna_t{}_{}", std::process::id(), hex::encode(rand::random::<[u8; 4]>()));
    let out = std::process::Command::new("psql")
        .args([base.as_str(), "-v", "ON_ERROR_STOP=1", "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "cannot create a test database: {}", String::from_utf8_lossy(&out.stderr));
    // Replace the database name (the last path segment, before any query).
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h.to_owned(), format!("?{q}")),
        None => (base.clone(), String::new()),
    };
    let prefix = head.rsplit_once('/').map_or(head.as_str(), |(p, _)| p).to_owned();
    Some(format!("{prefix}/{name}{query}"))
}

/// Node A (a fresh data directory) and node B (a copy of A's keys), on `url`.
pub async fn two_nodes(url: &str) -> (Server, Server) {
    two_nodes_with(url, |_| {}).await
}

/// [`two_nodes`], both with changed options.
pub async fn two_nodes_with(url: &str, change: impl Fn(&mut ServeOptions)) -> (Server, Server) {
    nodes(url, change, false).await
}

/// Two nodes whose key files are one directory (B's `keys` is a link to A's), as on a
/// shared volume.
async fn two_nodes_sharing_key_files(url: &str) -> (Server, Server) {
    nodes(url, |_| {}, true).await
}

async fn nodes(url: &str, change: impl Fn(&mut ServeOptions), link_keys: bool) -> (Server, Server) {
    let a = Server::start_with(|o| {
        o.database = Some(url.to_owned());
        change(o);
    })
    .await;
    let b_dir = tempfile::tempdir().expect("tempdir");
    if link_keys {
        std::fs::create_dir_all(b_dir.path().join("data")).expect("data dir");
        std::os::unix::fs::symlink(a.data_dir().join("keys"), b_dir.path().join("data").join("keys")).expect("link");
    } else {
        copy_dir(&a.data_dir().join("keys"), &b_dir.path().join("data").join("keys"));
    }
    let mut opts = ServeOptions::new(b_dir.path().join("data"), "127.0.0.1:0".parse().expect("addr"));
    opts.database = Some(url.to_owned());
    opts.org = Some(org_path());
    opts.sweeper = false;
    change(&mut opts);
    let running = app::start(opts, a.clock.clone()).await.expect("node B starts");
    assert!(running.admin_token.is_none(), "node B shares node A's admin credential");
    assert!(running.credentials.is_empty(), "node B shares node A's credentials");
    let b = Server {
        base: running.url(),
        running: Some(running),
        clock: a.clock.clone(),
        dir: b_dir,
        client: a.client.clone(),
        admin: a.admin.clone(),
        creds: a.creds.clone(),
    };
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_one_ledger_one_product() {
    let Some(url) = fresh_database() else { return };
    let _heavy = super::faults::HEAVY.lock().await;
    let (a, b) = two_nodes(&url).await;
    let (a, b) = (Arc::new(a), Arc::new(b));

    // Concurrent requests on both nodes.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let r = node.po("acme", &format!("{}.00", 100 + i)).await;
            r.expect(201);
            assert_eq!(r.get("verdict"), "authorized", "{}", r.text);
            r.get("case_id").as_str().expect("case").to_owned()
        }));
    }
    let mut cases = Vec::new();
    for t in tasks {
        cases.push(t.await.expect("task"));
    }
    // Every case is readable on the other node.
    for (i, id) in cases.iter().enumerate() {
        let other = if i % 2 == 0 { &b } else { &a };
        other.case(&other.bot(), id).await.expect(200);
    }

    // One idempotency key used on both nodes: one case.
    let mut body = po_body("acme", "77.00");
    body["idempotency_key"] = json!("cross-node");
    let bot = a.bot();
    let (ra, rb) = tokio::join!(a.submit(&bot, &body), b.submit(&bot, &body));
    let mut statuses = [ra.status, rb.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 201], "{} / {}", ra.text, rb.text);
    assert_eq!(ra.get("case_id"), rb.get("case_id"));

    // A review opened on A, waited for on A, decided on B.
    let r = a.po("globex", "40000.00").await;
    r.expect(201);
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    let review_id = r.json["review"]["id"].as_str().expect("review").to_owned();
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    let waiter = {
        let client = a.client.clone();
        let url = format!("{}/v1/cases/{case_id}?wait=30", a.base);
        let token = a.bot();
        tokio::spawn(async move {
            let r = client.get(url).bearer_auth(token).send().await.expect("wait request");
            let status = r.status().as_u16();
            let body: Value = r.json().await.expect("json");
            (status, body, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = b.decide(&b.carol(), &review_id, "approve", "decided on node B").await;
    d.expect(200);
    let decided = Instant::now();
    let (status, waited, returned) = waiter.await.expect("waiter");
    assert_eq!(status, 200);
    assert_eq!(waited["status"], "authorized", "{waited}");
    // The waiter's own fallback re-read is every 2 s: sooner means the notification woke it.
    let lag = returned.saturating_duration_since(decided);
    assert!(lag < Duration::from_millis(1800), "?wait on A returned {lag:?} after B's decision");
    println!("?wait on node A returned {lag:?} after the decision on node B");

    // One ledger, verified offline from either data directory.
    for node in [&a, &b] {
        let dir = node.data_dir();
        let o = run_cli(&["ledger", "verify", "--data-dir", dir.to_str().expect("dir"), "--database", &url]);
        let (code, out, err) = outcome(&o);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.starts_with("OK: "), "{out}");
    }
    let size_a = a.get(&a.admin, "/v1/ledger/checkpoint").await;
    let size_b = b.get(&b.admin, "/v1/ledger/checkpoint").await;
    assert_eq!(size_a.text, size_b.text, "both nodes serve the same checkpoint");
}

/// A webhook receiver shared by the nodes: the delivery ids it accepted, in order. While
/// `hold` is set, the next delivery is held (never answered) instead.
#[derive(Clone, Default)]
struct Hooks {
    accepted: Arc<Mutex<Vec<String>>>,
    hold: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<String>>>,
}

impl Hooks {
    async fn start() -> (Hooks, String) {
        async fn receive(
            axum::extract::State(h): axum::extract::State<Hooks>,
            headers: axum::http::HeaderMap,
        ) -> axum::http::StatusCode {
            let id = headers.get("agentsigna-delivery").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            if h.hold.swap(false, Ordering::SeqCst) {
                h.held.lock().expect("lock").push(id);
                tokio::time::sleep(Duration::from_secs(120)).await;
                return axum::http::StatusCode::SERVICE_UNAVAILABLE;
            }
            h.accepted.lock().expect("lock").push(id);
            axum::http::StatusCode::OK
        }
        let hooks = Hooks::default();
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(hooks.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (hooks, url)
    }

    fn accepted(&self) -> Vec<String> {
        self.accepted.lock().expect("lock").clone()
    }
}

async fn outbox_empty(node: &Server) -> bool {
    node.running.as_ref().expect("running").engine.outbox_items().await.expect("outbox").is_empty()
}

/// Waits (at most `limit`) until `done` holds.
macro_rules! eventually {
    ($limit:expr, $what:expr, $done:expr) => {{
        let until = Instant::now() + $limit;
        while !$done {
            assert!(Instant::now() < until, "never happened: {}", $what);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_deliver_each_webhook_once() {
    let Some(url) = fresh_database() else { return };
    let (hooks, hook) = Hooks::start().await;
    let (a, b) = two_nodes_with(&url, |o| o.webhooks = vec![hook.clone()]).await;

    // Reviews opened on both nodes, each decided on the other: two notifications each,
    // every one of them announced to both nodes' workers.
    let mut expected = 0;
    for i in 0..8 {
        let (opener, decider) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let r = opener.po("globex", &format!("{}.00", 40_000 + i)).await;
        r.expect(201);
        let review = r.json["review"]["id"].as_str().expect("review").to_owned();
        decider.decide(&decider.carol(), &review, "approve", "ok").await.expect(200);
        expected += 2;
    }
    eventually!(
        Duration::from_secs(30),
        "every notification accepted",
        hooks.accepted().len() >= expected && outbox_empty(&a).await && outbox_empty(&b).await
    );
    // Both workers pass over the outbox every second: give them a few more passes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in hooks.accepted() {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.len(), expected, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "each notification delivered once: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_of_a_stopped_node_is_retaken_by_the_other_after_its_lease() {
    let Some(url) = fresh_database() else { return };
    let (hooks, hook) = Hooks::start().await;
    // POSTs time out after 3 s: a delivery lease lasts 3 s + 5 s.
    let retry = agentsigna::notify::RetryPolicy { timeout: Duration::from_secs(3), ..Default::default() };
    let (mut a, mut b) = two_nodes_with(&url, |o| {
        o.webhooks = vec![hook.clone()];
        o.webhook_retry = retry;
    })
    .await;
    hooks.hold.store(true, Ordering::SeqCst);
    a.po("globex", "40000.00").await.expect(201);
    eventually!(Duration::from_secs(10), "a node started delivering", !hooks.held.lock().expect("lock").is_empty());
    let held = hooks.held.lock().expect("lock")[0].clone();
    // The node holding the lease stops (its worker dies mid-POST, the lease stays).
    let out = std::process::Command::new("psql")
        .args([url.as_str(), "-Atc", &format!("SELECT holder FROM leases WHERE key = 'outbox:{held}'")])
        .output()
        .expect("psql runs");
    let holder = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let engine_of = |s: &Server| s.running.as_ref().expect("running").engine.node_id().to_owned();
    let stopped_at = Instant::now();
    let survivor = if holder == engine_of(&a) {
        a.stop().await;
        &b
    } else {
        assert_eq!(holder, engine_of(&b), "the lease is held by one of the nodes");
        b.stop().await;
        &a
    };
    eventually!(Duration::from_secs(30), "the survivor delivered it", hooks.accepted() == [held.clone()]);
    // The receiver has answered; the survivor removes the item once it reads that answer.
    eventually!(Duration::from_secs(10), "the delivered item left the outbox", outbox_empty(survivor).await);
    assert_eq!(hooks.accepted(), [held], "delivered once");
    println!("retaken and delivered {:?} after the holder stopped", stopped_at.elapsed());
}

/// The value of the `Set-Cookie` named `name` of a response.
fn set_cookie_value(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn csrf_field(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = html.find(marker).expect("a CSRF field") + marker.len();
    html[at..].split('"').next().expect("value").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_session_opened_on_one_node_works_on_the_other_and_logout_ends_it_on_both() {
    let Some(url) = fresh_database() else { return };
    let (a, b) = two_nodes(&url).await;
    let r = a.po("globex", "40000.00").await;
    r.expect(201);
    let review = r.json["review"]["id"].as_str().expect("review").to_owned();
    let web = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");

    // Sign in on A.
    let form = web.get(format!("{}/ui/login", a.base)).send().await.expect("login form");
    let login_cookie = set_cookie_value(&form, "agentsigna_login").expect("login cookie");
    let csrf = csrf_field(&form.text().await.expect("body"));
    let carol = a.carol();
    let resp = web
        .post(format!("{}/ui/login", a.base))
        .header("cookie", format!("agentsigna_login={login_cookie}"))
        .form(&[("token", carol.as_str()), ("csrf", csrf.as_str()), ("next", "/ui/")])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 303);
    let session = set_cookie_value(&resp, "agentsigna_session").expect("session cookie");
    let cookie = format!("agentsigna_session={session}");

    // The session works on B, and a decision made in B's pages is recorded.
    let page = web.get(format!("{}/ui/reviews/{review}", b.base)).header("cookie", &cookie).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let csrf = csrf_field(&page.text().await.expect("body"));
    let resp = web
        .post(format!("{}/ui/reviews/{review}/decision", b.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("decision", "approve"), ("comment", "approved in B's pages")])
        .send()
        .await
        .expect("decision");
    assert_eq!(resp.status(), 303);
    let r = a.get(&a.carol(), &format!("/v1/reviews/{review}")).await;
    assert_eq!(r.json["review"]["status"], "approved", "{}", r.text);
    // B's confirmation is shown once, by A.
    let page = web.get(format!("{}/ui/reviews/{review}", a.base)).header("cookie", &cookie).send().await.expect("page");
    let body = page.text().await.expect("body");
    assert!(body.contains("Your approval is recorded"), "{body}");

    // Logout on B ends the session on A too.
    let resp = web
        .post(format!("{}/ui/logout", b.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), 303);
    for node in [&a, &b] {
        let page = web.get(format!("{}/ui/", node.base)).header("cookie", &cookie).send().await.expect("page");
        assert_eq!(page.status(), 303, "logged out on every node");
        let to = page.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(to.starts_with("/ui/login"), "{to}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_made_on_one_node_and_a_key_rotated_there_are_used_by_the_other() {
    let Some(url) = fresh_database() else { return };
    let (a, b) = two_nodes_sharing_key_files(&url).await;
    // A credential created on A works on B at once (only found credentials are cached).
    let r = a.post(&a.admin, "/v1/agents", &json!({"id": "new-bot", "owner": "ops@example.com"})).await;
    r.expect(201);
    let key = r.get("api_key").as_str().expect("api key").to_owned();
    b.get(&key, "/v1/cases").await.expect(200);

    // `agentsigna keys rotate` on the shared key files: both nodes publish the new key and
    // sign with it, without a restart.
    let old_kid = b.jwks().await.keys[0].kid.clone().expect("kid");
    let dir = a.data_dir();
    let (code, out, err) = outcome(&run_cli(&["keys", "rotate", "--data-dir", dir.to_str().expect("dir")]));
    assert_eq!(code, 0, "{out}{err}");
    for node in [&a, &b] {
        let until = Instant::now() + Duration::from_secs(10);
        while node.jwks().await.keys.len() < 2 {
            assert!(Instant::now() < until, "the rotated key was never published");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let passport = b.po("acme", "12.00").await.get("passport").as_str().expect("passport").to_owned();
    let header: Value = serde_json::from_slice(
        &agentsigna_verify::b64::url_decode(passport.split('.').next().expect("header")).expect("b64"),
    )
    .expect("json");
    assert_ne!(header["kid"].as_str().expect("kid"), old_kid, "B signs with the key rotated through A's files");
    a.verify_passport(&passport, "erp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gates_on_one_replay_store_forward_each_passport_once() {
    let Some(url) = fresh_database() else { return };
    let s = Server::start().await;
    let hits = Arc::new(Mutex::new(Vec::<String>::new()));
    let h = hits.clone();
    let upstream = axum::Router::new().route(
        "/purchase-orders",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let h = h.clone();
            async move {
                let case = headers.get("agentsigna-case").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                h.lock().expect("lock").push(case);
                axum::http::StatusCode::CREATED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let up = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, upstream).await });
    let mut gates = Vec::new();
    for _ in 0..2 {
        let opts = agentsigna::gate::GateOptions {
            listen: "127.0.0.1:0".parse().expect("addr"),
            upstream: format!("http://{up}"),
            jwks: format!("{}/.well-known/jwks.json", s.base),
            audience: "erp".into(),
            public_url: None,
            report_to: None,
            report_token: None,
            replay_store: Some(url.clone()),
        };
        gates.push(agentsigna::gate::start(opts, s.clock.clone()).await.expect("gate starts"));
    }
    let client = reqwest::Client::new();
    let mut cases = Vec::new();
    for i in 0..5 {
        let r = s.po("acme", &format!("{}.00", 10 + i)).await;
        cases.push(r.get("case_id").as_str().expect("case").to_owned());
        let passport = r.get("passport").as_str().expect("passport").to_owned();
        // Eight concurrent uses, four through each gate.
        let tries: Vec<_> = (0..8)
            .map(|n| {
                let req = client
                    .post(format!("http://{}/purchase-orders", gates[n % 2].addr))
                    .header("Authorization", format!("Passport {passport}"));
                tokio::spawn(async move { req.send().await.expect("gate answers").status().as_u16() })
            })
            .collect();
        let mut statuses = Vec::new();
        for t in tries {
            statuses.push(t.await.expect("task"));
        }
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409], "one use forwarded, seven replays refused");
    }
    let mut forwarded = hits.lock().expect("lock").clone();
    forwarded.sort();
    cases.sort();
    assert_eq!(forwarded, cases, "the upstream saw each case once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_first_nodes_keys_is_refused_and_keys_list_says_which_fit() {
    let Some(url) = fresh_database() else { return };
    let a = Server::start_with(|o| o.database = Some(url.clone())).await;
    a.po("acme", "4800.00").await.expect(201);
    // A second node started on a fresh data directory creates keys of its own: it must
    // not sign checkpoints of the same ledger with them.
    let b_dir = tempfile::tempdir().expect("tempdir");
    let b_data = b_dir.path().join("data");
    let mut opts = ServeOptions::new(b_data.clone(), "127.0.0.1:0".parse().expect("addr"));
    opts.database = Some(url.clone());
    opts.sweeper = false;
    let refused = app::start(opts, a.clock.clone()).await.err().expect("a node with other keys is refused");
    let msg = format!("{refused:#}");
    assert!(msg.contains("signed by another ledger key") && msg.contains("copy the first node's keys/"), "{msg}");

    let list = |dir: &std::path::Path| {
        outcome(&run_cli(&["keys", "list", "--data-dir", dir.to_str().expect("dir"), "--database", &url]))
    };
    let (code, out, err) = list(&a.data_dir());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("is signed by this ledger key"), "{out}");
    let (code, out, err) = list(&b_data);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("signed by another ledger key"), "{err}");
}
