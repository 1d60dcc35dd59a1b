//! Policy tools (check, test, simulate), shadow mode, trust replay, key rotation and the
//! enforcing gate, each as a user drives them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::harness::*;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/procurement");

#[test]
fn policy_check_accepts_the_example_and_names_the_error_of_a_broken_policy() {
    let (code, out, err) = outcome(&run_cli(&["policy", "check", &format!("{EXAMPLES}/policy.cedar")]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK: 12 rules") && out.contains("low-trust-latitude"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.cedar");
    std::fs::write(&bad, "@id(\"x\")\npermit (principal, action == Action::\"purchase_order.create\", resource)\nwhen { resource.colour == \"red\" };\n").unwrap();
    let org = format!("{EXAMPLES}/org.toml");
    let (code, _, err) = outcome(&run_cli(&["policy", "check", bad.to_str().unwrap(), "--org", &org]));
    assert_eq!(code, 1);
    assert!(err.contains("bad.cedar:") && err.contains("colour"), "{err}");
}

#[test]
fn policy_test_runs_the_example_suite_and_shows_a_readable_diff_on_failure() {
    let (code, out, err) = outcome(&run_cli(&["policy", "test", &format!("{EXAMPLES}/tests")]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("13 passed, 0 failed"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("wrong.toml");
    std::fs::write(
        &suite,
        format!(
            "policy = \"{EXAMPLES}/policy.cedar\"\nactions = [\"purchase_order.create\", \"payment.send\", \"contract.sign\"]\nroles = [\"finance\", \"risk\"]\n\n[[case]]\nname = \"a large PO is (wrongly) expected to pass\"\naction = \"purchase_order.create\"\namount = 4000000\nexpect = {{ verdict = \"authorized\", rules = [\"po-allowed\"] }}\n"
        ),
    )
    .unwrap();
    let (code, out, _) = outcome(&run_cli(&["policy", "test", suite.to_str().unwrap()]));
    assert_eq!(code, 1);
    assert!(out.contains("FAILED") && out.contains("escalated") && out.contains("large-po"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_simulate_replays_recorded_verdicts_under_a_candidate() {
    let mut s = Server::start().await;
    s.po("acme", "4800.00").await.expect(201);
    s.po("globex", "40000.00").await.expect(201);
    s.po("acme", "900.00").await.expect(201);
    s.stop().await;
    // The candidate lowers the finance threshold to 1,000.00.
    let source = std::fs::read_to_string(format!("{EXAMPLES}/policy.cedar"))
        .unwrap()
        .replace("context.amount > 1000000", "context.amount > 100000");
    let candidate = s.dir.path().join("candidate.cedar");
    std::fs::write(&candidate, source).unwrap();
    let data = s.data_dir();
    let args = [
        "policy",
        "simulate",
        "--candidate",
        candidate.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ];
    let (code, out, err) = outcome(&run_cli(&args));
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["replayed"], 3, "{report}");
    let changed = report["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "only the 4,800.00 order changes: {report}");
    assert_eq!(changed[0]["from"], "authorized");
    assert_eq!(changed[0]["to"], "escalated");
    assert_eq!(changed[0]["to_rules"], json!(["large-po"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_policy_is_evaluated_but_never_enforced_and_divergences_are_listed() {
    let s = Server::start().await;
    let source = std::fs::read_to_string(format!("{EXAMPLES}/policy.cedar"))
        .unwrap()
        .replace("context.amount > 1000000", "context.amount > 100000");
    let r = s.post(&s.admin, "/v1/policies", &json!({"source": source, "activate": false})).await;
    r.expect(201);
    let v2 = r.json["version"].as_u64().unwrap();
    s.put(&s.admin, "/v1/policies/shadow", &json!({"version": v2})).await.expect(200);
    // Enforced: the active version 1 authorizes; the shadow would escalate.
    let r = s.po("acme", "4800.00").await;
    assert_eq!(r.get("verdict"), "authorized");
    assert_eq!(r.json["policy"]["version"], 1);
    s.po("acme", "500.00").await.expect(201);
    let list = s.get(&s.carol(), "/v1/policies/shadow").await;
    list.expect(200);
    let divergences = list.json["divergences"].as_array().unwrap();
    assert_eq!(divergences.len(), 1, "{}", list.json);
    assert_eq!(divergences[0]["active"]["verdict"], "authorized");
    assert_eq!(divergences[0]["shadow"]["verdict"], "escalated");
    assert_eq!(divergences[0]["case_id"], r.json["case_id"]);
    // Agents cannot see it; only the admin sets it.
    s.get(&s.bot(), "/v1/policies/shadow").await.expect(403);
    s.put(&s.carol(), "/v1/policies/shadow", &json!({"version": v2})).await.expect(403);
    s.call(reqwest::Method::DELETE, Some(&s.admin), "/v1/policies/shadow", None).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_is_a_projection_of_the_ledger_and_a_rebuild_reproduces_it() {
    let mut s = Server::start().await;
    let mut cases = Vec::new();
    for v in ["100.00", "200.00", "300.00"] {
        let r = s.po("acme", v).await;
        cases.push(r.get("case_id").as_str().unwrap().to_owned());
    }
    s.outcome(&s.erp(), &cases[0], "completed").await.expect(200);
    s.clock.advance_secs(10 * 86_400);
    s.outcome(&s.erp(), &cases[1], "completed").await.expect(200);
    s.outcome(&s.erp(), &cases[1], "disputed").await.expect(200);
    s.outcome(&s.bot(), &cases[2], "rejected").await.expect(200);
    let engine = s.running.as_ref().unwrap().engine.clone();
    let check = engine.rebuild_trust(false).await.unwrap();
    assert!(check.differing.is_empty(), "stored standings differ from the replay: {check:?}");
    assert_eq!(check.subjects, 2);
    s.stop().await;
    let data = s.data_dir();
    let (code, out, err) = outcome(&run_cli(&["trust", "rebuild", "--check", "--data-dir", data.to_str().unwrap()]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("every stored standing equals the replay"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_signs_new_passports_and_the_old_one_stays_published_until_its_passports_expire() {
    let mut s = Server::start().await;
    let old = s.po("acme", "10.00").await.get("passport").as_str().unwrap().to_owned();
    let old_kid = s.jwks().await.keys[0].kid.clone().unwrap();
    s.stop().await;
    let data = s.data_dir();
    let (code, out, err) = outcome(&run_cli(&["keys", "rotate", "--data-dir", data.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("new active passport key"), "{out}");
    s.restart().await;
    let jwks = s.jwks().await;
    assert_eq!(jwks.keys.len(), 2, "both keys are published");
    let new = s.po("acme", "11.00").await.get("passport").as_str().unwrap().to_owned();
    let header: Value =
        serde_json::from_slice(&agentsigna_verify::b64::url_decode(new.split('.').next().unwrap()).unwrap()).unwrap();
    assert_ne!(header["kid"].as_str().unwrap(), old_kid, "new passports are signed by the new key");
    s.verify_passport(&old, "erp").await;
    s.verify_passport(&new, "erp").await;
    let (_, list, _) = outcome(&run_cli(&["keys", "list", "--data-dir", data.to_str().unwrap()]));
    assert!(list.contains("rotated out; published until") && list.contains("active"), "{list}");
    // Once every passport of the old key has expired (max lifetime 1 h), it retires. The
    // CLI rotated on the wall clock, a little after the server's clock started: move the
    // server's clock to 1 h past a wall-clock instant taken after the rotation.
    let rotated_by = agentsigna_verify::Clock::now_ms(&agentsigna_verify::SystemClock);
    s.clock.advance_secs(1);
    let jwks = s.jwks().await;
    assert_eq!(jwks.keys.len(), 2, "still published while its passports may be valid");
    s.clock.set_ms(rotated_by + 3_601_000);
    let jwks = s.jwks().await;
    assert_eq!(jwks.keys.len(), 1);
    assert_ne!(jwks.keys[0].kid.as_deref(), Some(old_kid.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_forwards_only_valid_unused_passports_for_its_audience() {
    use axum::routing::post;
    let s = Server::start().await;
    // A real upstream that counts what reaches it.
    let hits = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let h = hits.clone();
    let upstream = axum::Router::new().route(
        "/purchase-orders",
        post(move |headers: axum::http::HeaderMap| {
            let h = h.clone();
            async move {
                let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                h.lock().unwrap().push((get("agentsigna-case"), get("agentsigna-action")));
                (axum::http::StatusCode::CREATED, "PO-1")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await.unwrap() });
    let gate = agentsigna::gate::start(
        agentsigna::gate::GateOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: format!("http://{up_addr}"),
            jwks: format!("{}/.well-known/jwks.json", s.base),
            audience: "erp".into(),
            public_url: None,
            report_to: Some(s.base.clone()),
            report_token: Some(s.erp()),
            replay_store: None,
        },
        s.clock.clone(),
    )
    .await
    .unwrap();
    let url = format!("http://{}/purchase-orders", gate.addr);
    let r = s.po("acme", "10.00").await;
    let case = r.get("case_id").as_str().unwrap().to_owned();
    let passport = r.get("passport").as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    let send = |auth: Option<String>| {
        let mut req = client.post(&url).json(&json!({"sku": "paper"}));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send()
    };
    // No passport, garbage, wrong audience: refused, the upstream sees nothing.
    assert_eq!(send(None).await.unwrap().status().as_u16(), 401);
    assert_eq!(send(Some("Passport abc.def.ghi".into())).await.unwrap().status().as_u16(), 401);
    let bank = s.submit(&s.agent("payments-bot"), &payment_body("acme", "10.00")).await;
    let bank_passport = bank.get("passport").as_str().unwrap().to_owned();
    let wrong = send(Some(format!("Passport {bank_passport}"))).await.unwrap();
    assert_eq!(wrong.status().as_u16(), 403);
    assert_eq!(wrong.headers()["content-type"], "application/problem+json");
    assert_eq!(wrong.json::<Value>().await.unwrap()["code"], "wrong_audience");
    assert!(hits.lock().unwrap().is_empty());
    // Concurrent replays of one passport: exactly one is forwarded.
    let attempts: Vec<_> = (0..8).map(|_| send(Some(format!("Passport {passport}")))).collect();
    let statuses: Vec<u16> = futures_join(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 7, "{statuses:?}");
    assert_eq!(hits.lock().unwrap().clone(), vec![(case.clone(), "purchase_order.create".to_owned())]);
    // Expired: refused with 401.
    let late = s.po("acme", "12.00").await.get("passport").as_str().unwrap().to_owned();
    s.clock.advance_secs(400);
    let r = client.post(&url).header("AgentSigna-Passport", late).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The execution was reported back asynchronously, by the gate, as the ERP.
    let mut reported = false;
    for _ in 0..100 {
        let c = s.case(&s.admin, &case).await;
        if c.json["executions"].as_array().is_some_and(|e| !e.is_empty()) {
            assert_eq!(c.json["executions"][0]["actor"], "system:erp");
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reported, "the gate did not report the execution");
    gate.stop().await.unwrap();
}

async fn futures_join(
    reqs: Vec<impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static>,
) -> Vec<u16> {
    let handles: Vec<_> = reqs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap().unwrap().status().as_u16());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_protects_an_axum_service_with_holder_bound_single_use_passports() {
    use agentsigna_verify::gate::Gate;
    use agentsigna_verify::passport::{VerifiedPassport, Verifier};
    use agentsigna_verify::tower::GateLayer;
    use axum::routing::post;
    use axum::Extension;

    let s = Server::start().await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let jwk = agentsigna_verify::jwk::Jwk::public_only(&key.verifying_key());
    let r =
        s.post(&s.admin, "/v1/agents", &json!({"id": "erp-bot", "owner": "gina@example.com", "public_jwk": jwk})).await;
    r.expect(201);
    let bot = r.get("api_key").as_str().unwrap().to_owned();

    // The ERP is a Rust service: the layer sits in front of its routes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let gate = Gate::new(Verifier::new(s.jwks().await, "erp"));
    let layer = GateLayer::new(gate, base.clone()).with_clock(s.clock.clone());
    let hits = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let h = hits.clone();
    let erp = axum::Router::new()
        .route(
            "/purchase-orders",
            post(move |Extension(v): Extension<VerifiedPassport>| {
                let h = h.clone();
                async move {
                    h.lock().unwrap().push(v.claims.case.id.clone());
                    (axum::http::StatusCode::CREATED, v.claims.authorization_details[0].action.clone())
                }
            }),
        )
        .layer(layer);
    tokio::spawn(async move { axum::serve(listener, erp).await.unwrap() });

    let url = format!("{base}/purchase-orders");
    let client = reqwest::Client::new();
    let send = |passport: &str, proof: Option<&str>| {
        let mut req = client.post(&url).header("Authorization", format!("Passport {passport}"));
        if let Some(p) = proof {
            req = req.header("AgentSigna-Proof", p);
        }
        req.send()
    };
    let now = s.now_secs();
    let first = s.submit(&bot, &po_body("acme", "10.00")).await;
    let case = first.get("case_id").as_str().unwrap().to_owned();
    let passport = first.get("passport").as_str().unwrap().to_owned();
    let second = s.submit(&bot, &po_body("acme", "11.00")).await.get("passport").as_str().unwrap().to_owned();

    // Without its proof, with another key's proof, with a proof for another passport:
    // refused with the reason, and none of it burns the passport.
    let r = send(&passport, None).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "proof_missing");
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    let foreign = agentsigna_verify::proof::sign_proof(&stranger, &passport, "POST", &url, now, "n-1");
    assert_eq!(send(&passport, Some(&foreign)).await.unwrap().json::<Value>().await.unwrap()["code"], "proof_invalid");
    let other = agentsigna_verify::proof::sign_proof(&key, &second, "POST", &url, now, "n-2");
    assert_eq!(send(&passport, Some(&other)).await.unwrap().json::<Value>().await.unwrap()["code"], "proof_invalid");
    assert!(hits.lock().unwrap().is_empty(), "the service saw a refused request");

    // With its proof: the handler runs, with the verified passport in its extensions.
    let proof = agentsigna_verify::proof::sign_proof(&key, &passport, "POST", &url, now, "n-3");
    let r = send(&passport, Some(&proof)).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.text().await.unwrap(), "purchase_order.create");
    assert_eq!(*hits.lock().unwrap(), [case]);
    // Replayed, even with a fresh proof: 409.
    let fresh = agentsigna_verify::proof::sign_proof(&key, &passport, "POST", &url, now, "n-4");
    let r = send(&passport, Some(&fresh)).await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "replayed");
    assert_eq!(hits.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_refetches_its_jwks_on_an_unknown_key_at_most_every_30_seconds() {
    use agentsigna_verify::clock::{Clock, ManualClock};
    use agentsigna_verify::jwk::{Jwk, Jwks};
    use axum::routing::{get, post};

    let old = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let new = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    // The JWKS endpoint: publishes the old key only until the rotation below.
    let published = Arc::new(std::sync::Mutex::new(vec![Jwk::from_verifying_key(&old.verifying_key())]));
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (p, f) = (published.clone(), fetches.clone());
    let keys = axum::Router::new()
        .route(
            "/.well-known/jwks.json",
            get(move || {
                f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let keys = p.lock().unwrap().clone();
                async move { axum::Json(Jwks { keys }) }
            }),
        )
        .route("/orders", post(|| async { "accepted" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, keys).await.unwrap() });

    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let gate = start_gate(&base, &format!("{base}/.well-known/jwks.json"), clock.clone()).await;
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    let passport = |jti: &str| signed_passport(&new, jti, clock.now_secs());
    let client = reqwest::Client::new();
    let url = format!("http://{}/orders", gate.addr);
    let send = |token: String| client.post(&url).header("AgentSigna-Passport", token).send();

    // The issuer rotated to a key the gate has not seen; the JWKS now publishes it.
    published.lock().unwrap().push(Jwk::from_verifying_key(&new.verifying_key()));
    // Within 30 s of the last fetch: no refetch, however many unknown kids arrive.
    for i in 0..5 {
        let r = send(passport(&format!("early-{i}"))).await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "unknown_key");
    }
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1, "refetches are rate-limited");
    // 30 s later the unknown kid triggers one refetch, and the passport passes.
    clock.advance_secs(30);
    let r = send(passport("late")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Known keys never cause a fetch.
    assert_eq!(send(passport("later")).await.unwrap().status().as_u16(), 200);
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
    gate.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_never_forwards_a_truncated_upstream_answer() {
    use agentsigna_verify::clock::{Clock, ManualClock};
    use agentsigna_verify::jwk::{Jwk, Jwks};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // An upstream that announces 100 bytes, sends 5 and hangs up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello").await;
        }
    });
    let issuer = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let set = Jwks { keys: vec![Jwk::from_verifying_key(&issuer.verifying_key())] };
    std::fs::write(&jwks, serde_json::to_string(&set).unwrap()).unwrap();
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let gate = start_gate(&upstream, jwks.to_str().unwrap(), clock.clone()).await;
    let token = signed_passport(&issuer, "p-1", clock.now_secs());
    let r = reqwest::Client::new()
        .post(format!("http://{}/orders", gate.addr))
        .header("Authorization", format!("Passport {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("answered 200 but its answer was cut off"), "{body}");

    // A body larger than the gate forwards is refused before its passport is used.
    // (A raw request announcing the length without sending the body: a client still
    // writing a large body may see the gate's answer or a broken pipe, depending on timing.)
    let token = signed_passport(&issuer, "p-2", clock.now_secs());
    let mut conn = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let head = format!(
        "POST /orders HTTP/1.1\r\nhost: {}\r\nauthorization: Passport {token}\r\ncontent-length: {}\r\n\r\n",
        gate.addr,
        agentsigna::gate::MAX_FORWARD_BODY + 1
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 12];
    conn.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413", "{}", String::from_utf8_lossy(&answer));
    let r = reqwest::Client::new()
        .post(format!("http://{}/orders", gate.addr))
        .header("Authorization", format!("Passport {token}"))
        .body("small")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 502, "the passport was still unused, so it reached the upstream");
    gate.stop().await.unwrap();
}

/// A gate for audience `erp` in front of `upstream`, with no execution reports.
async fn start_gate(
    upstream: &str,
    jwks: &str,
    clock: Arc<agentsigna_verify::clock::ManualClock>,
) -> agentsigna::gate::RunningGate {
    let opts = agentsigna::gate::GateOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.to_owned(),
        jwks: jwks.to_owned(),
        audience: "erp".into(),
        public_url: None,
        report_to: None,
        report_token: None,
        replay_store: None,
    };
    agentsigna::gate::start(opts, clock).await.unwrap()
}

/// A minimal passport for audience `erp`, valid for 300 s from `now`, signed by `key`.
fn signed_passport(key: &ed25519_dalek::SigningKey, jti: &str, now: i64) -> String {
    let claims: agentsigna_verify::passport::PassportClaims = serde_json::from_value(json!({
        "iss": "agentsigna", "sub": "bot", "aud": "erp", "iat": now, "nbf": now, "exp": now + 300,
        "jti": jti, "authorization_details": [], "approvals": [],
        "decision": {"verdict": "authorized", "policy": {"version": 1, "digest": "ab"}, "rules": [],
            "decided_at": "x", "trust": {"agent": 50, "counterparty": 50}},
        "case": {"id": "c-1", "seq": 0, "head": "cd"}
    }))
    .unwrap();
    agentsigna_verify::passport::sign(&claims, key).unwrap()
}
