//! The logs of `agentsigna serve` at the most verbose level (`AGENTSIGNA_LOG=trace`,
//! every crate), in JSON: each line of a request carries its request id and case id, and
//! no credential, passport or webhook secret appears anywhere, after a whole loop with
//! webhooks, a rejected credential and a metrics scrape.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_carry_request_and_case_ids_and_never_a_secret() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // A webhook receiver that answers 200.
    let received = Arc::new(AtomicUsize::new(0));
    let hits = received.clone();
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook_addr = hook.local_addr().expect("addr");
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            hits.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        }),
    );
    tokio::spawn(async move { axum::serve(hook, app).await });
    let webhook_secret = "whsec-e2a1c0ffee9b7d3f-never-logged";
    let secret_file = tmp.path().join("webhook.secret");
    std::fs::write(&secret_file, webhook_secret).expect("secret file");

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = tmp.path().join("serve.log");
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(bin())
        .args(["serve", "--log-format", "json", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data)
        .arg("--org")
        .arg(org_path())
        .args(["--webhook", &format!("http://{hook_addr}/hook")])
        .arg("--webhook-secret-file")
        .arg(&secret_file)
        .env("AGENTSIGNA_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("spawn");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().as_u16() == 200) {
        assert!(Instant::now() < deadline, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = |name: &str| std::fs::read_to_string(data.join(name)).expect("credential file").trim().to_owned();
    let admin = token("admin.token");
    let agent = token("credentials/agent-procurement-bot.token");
    let carol = token("credentials/approver-carol@example.com.token");
    let erp = token("credentials/system-erp.token");
    let call = |method: reqwest::Method, tok: &str, path: &str, body: Option<Value>| {
        let mut req = client.request(method, format!("{base}{path}")).bearer_auth(tok).header("x-request-id", "walk-1");
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // The loop: an escalated request, the review, the passport, execution, outcome.
    let (st, r) = call(reqwest::Method::POST, &agent, "/v1/requests", Some(po_body("globex", "40000.00"))).await;
    assert_eq!(st, 201, "{r}");
    let case = r["case_id"].as_str().expect("case").to_owned();
    let review = r["review"]["id"].as_str().expect("review").to_owned();
    let decision = json!({"decision": "approve", "comment": "budgeted"});
    let (st, _) = call(reqwest::Method::POST, &carol, &format!("/v1/reviews/{review}/decisions"), Some(decision)).await;
    assert_eq!(st, 200);
    let (st, c) = call(reqwest::Method::GET, &agent, &format!("/v1/cases/{case}?wait=5"), None).await;
    assert_eq!(st, 200);
    let passport = c["passport"].as_str().expect("the agent's passport").to_owned();
    let passport_id = agentsigna_verify::passport::decode_unverified(&passport).expect("claims").jti;
    let report = json!({"passport_id": passport_id, "reference": "PO-1"});
    let (st, _) = call(reqwest::Method::POST, &erp, &format!("/v1/cases/{case}/execution"), Some(report)).await;
    assert_eq!(st, 200);
    let outcome = json!({"outcome": "completed", "detail": "delivered"});
    let (st, _) = call(reqwest::Method::POST, &erp, &format!("/v1/cases/{case}/outcome"), Some(outcome)).await;
    assert_eq!(st, 200);
    // A credential that does not authenticate, and a scrape.
    let wrong = "wrongtoken-5be1d7a2c4f9e8b6a3d0c1e2";
    let (st, _) = call(reqwest::Method::GET, wrong, "/v1/cases", None).await;
    assert_eq!(st, 401);
    let (st, _) = call(reqwest::Method::GET, &admin, "/metrics", None).await;
    assert_eq!(st, 200);
    // The web pages' sign-in carries the approver token in a form.
    let _ = client.post(format!("{base}/ui/login")).form(&[("token", carol.as_str())]).send().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the webhooks were not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(log.contains(r#""level":"TRACE""#), "logged at trace level:\n{log}");

    let signature = passport.rsplit('.').next().expect("a JWS has a signature").to_owned();
    for (what, secret) in [
        ("the admin token", admin.as_str()),
        ("the agent key", agent.as_str()),
        ("the approver token", carol.as_str()),
        ("the system token", erp.as_str()),
        ("a presented wrong credential", wrong),
        ("the passport", passport.as_str()),
        ("the passport's signature", signature.as_str()),
        ("the webhook secret", webhook_secret),
    ] {
        assert!(!log.contains(secret), "{what} appears in the logs");
    }

    // JSON lines; the request's lines carry its request id and the case id.
    let lines: Vec<Value> =
        log.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let of_case: Vec<&Value> =
        lines.iter().filter(|l| l["span"]["request_id"] == "walk-1" && l["span"]["case_id"] == json!(case)).collect();
    assert!(
        of_case
            .iter()
            .any(|l| l["fields"]["message"] == "request answered" && l["span"]["route"] == "/v1/cases/{id}/outcome"),
        "no access line of the outcome with its ids"
    );
    assert!(
        of_case.iter().any(|l| l["span"]["route"] == "/v1/requests"),
        "the creating request's lines name the case it created"
    );
}
