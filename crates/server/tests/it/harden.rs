//! Hardening (issue #13): slow and greedy clients (head and body timeouts, the connection
//! cap, the per-principal rate limit, the long-poll cap), file modes under umask 022,
//! start-up refusals (webhook secret file, out-of-range durations), small-order and
//! private JWKs, oversized web forms.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentsigna::http::limits::Rate;
use base64::Engine as _;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::harness::*;

/// Reads from `conn` until the peer closes it or `limit` passes; returns what came and
/// whether the connection was closed.
async fn read_until_closed(conn: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// Sends raw bytes on a new connection and reads the answer's head (and as much of the
/// body as arrives within a second).
async fn raw_exchange(addr: &str, request: &[u8]) -> String {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(request).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn addr_of(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_hundred_idle_partial_heads_do_not_stop_healthz() {
    // Default limits: at most 1,024 connections, the oldest idle ones make room.
    let s = Server::start().await;
    let addr = addr_of(&s.base);
    let mut idle = Vec::new();
    for _ in 0..1_100 {
        let mut c = TcpStream::connect(&addr).await.expect("connect");
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.expect("partial head");
        idle.push(c);
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let started = Instant::now();
    for _ in 0..5 {
        let r = client.get(format!("{}/healthz", s.base)).send().await.expect("healthz answers");
        assert_eq!(r.status().as_u16(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "healthz took {:?}", started.elapsed());
    // The server closed the oldest idle connections to stay within its cap.
    let mut closed = 0;
    for c in idle.iter_mut().take(200) {
        if read_until_closed(c, Duration::from_millis(20)).await.1 {
            closed += 1;
        }
    }
    assert!(closed >= 76, "only {closed} of the 200 oldest partial heads were closed");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_or_missing_head_is_closed_after_the_header_timeout() {
    let s = Server::start_with(|o| o.limits.header_timeout = Duration::from_secs(1)).await;
    let addr = addr_of(&s.base);
    let mut partial = TcpStream::connect(&addr).await.unwrap();
    partial.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut partial, Duration::from_secs(10)).await;
    assert!(closed, "a partial head must not keep its connection");
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(closed, "a connection that sends nothing must not stay open");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "closed after {took:?}");
    // A complete request still works, and so does a keep-alive connection used in time.
    let r = raw_exchange(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let s = Server::start_with(|o| o.limits.body_timeout = Duration::from_secs(1)).await;
    let addr = addr_of(&s.base);
    let head = format!(
        "POST /v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"action\":",
        s.bot()
    );
    let started = Instant::now();
    let r = raw_exchange(&addr, head.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
    assert!(r.contains("application/problem+json"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_429_with_retry_after_per_principal() {
    let s = Server::start_with(|o| o.rate = Some(Rate { per_second: 1, burst: 3 })).await;
    let bot = s.bot();
    for _ in 0..3 {
        s.get(&bot, "/v1/agents/procurement-bot").await.expect(200);
    }
    let r = s.client.get(format!("{}/v1/agents/procurement-bot", s.base)).bearer_auth(&bot).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["type"], "urn:agentsigna:problem:rate-limited");
    assert_eq!(body["status"], 429);
    // Another principal has its own budget; liveness is never limited.
    s.get(&s.carol(), "/v1/agents/procurement-bot").await.expect(200);
    for _ in 0..10 {
        s.get_public("/healthz").await.expect(200);
    }
    // Without a (valid) credential, requests count against the client address, so
    // inventing tokens buys no budget.
    for i in 0..3 {
        s.get(&format!("made-up-{i}"), "/v1/agents/procurement-bot").await.expect_problem(401, None);
    }
    s.get("made-up-4", "/v1/agents/procurement-bot").await.expect_problem(429, None);
    s.get_public("/.well-known/jwks.json").await.expect_problem(429, None);
    // After the advertised wait, the agent is served again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    s.get(&bot, "/v1/agents/procurement-bot").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_over_the_cap_are_answered_at_once() {
    let s = Server::start_with(|o| o.max_waits = 1).await;
    let r = s.po("globex", "40000.00").await;
    r.expect(201);
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    let case = r.get("case_id").as_str().unwrap().to_owned();
    let review = r.json["review"]["id"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/cases/{case}?wait=20", s.base);
    let (client, bot) = (s.client.clone(), s.bot());
    let first = tokio::spawn({
        let url = url.clone();
        async move {
            let started = Instant::now();
            let r = client.get(url).bearer_auth(bot).send().await.unwrap();
            let waited = r.headers().get("agentsigna-wait").is_none();
            let body: serde_json::Value = r.json().await.unwrap();
            (started.elapsed(), waited, body["status"].as_str().unwrap_or("").to_owned())
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let second = s.client.get(&url).bearer_auth(s.bot()).send().await.unwrap();
    assert_eq!(second.status().as_u16(), 200);
    assert_eq!(second.headers()["agentsigna-wait"], "unavailable");
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(body["status"], "pending_review");
    assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());
    // The waiting call is woken by the decision.
    s.decide(&s.carol(), &review, "approve", "budgeted").await.expect(200);
    let (took, waited, status) = first.await.unwrap();
    assert!(waited && took < Duration::from_secs(15), "{took:?}");
    assert_eq!(status, "authorized");
    // The slot is free again: a new long poll waits (and returns at once, decided).
    let r = s.client.get(&url).bearer_auth(s.bot()).send().await.unwrap();
    assert!(r.headers().get("agentsigna-wait").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_limits_requests_per_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, r#"{"keys":[]}"#).unwrap();
    let opts = agentsigna::gate::GateOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: "http://127.0.0.1:9".to_owned(),
        jwks: jwks.display().to_string(),
        audience: "erp".to_owned(),
        public_url: None,
        report_to: None,
        report_token: None,
        replay_store: None,
    };
    let limits = agentsigna::http::server::ServerLimits::default();
    let clock = std::sync::Arc::new(agentsigna_verify::clock::SystemClock);
    let gate =
        agentsigna::gate::start_limited(opts, limits, Some(Rate { per_second: 1, burst: 2 }), clock).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{}/orders", gate.addr);
    for _ in 0..2 {
        assert_eq!(client.post(&url).send().await.unwrap().status().as_u16(), 401);
    }
    let r = client.post(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    gate.stop().await.unwrap();
}

/// A known Ed25519 small-order point encoding (RFC 8032 points of order 1, 2, 4 and 8).
const SMALL_ORDER: [&str; 8] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_order_and_private_jwks_are_refused_at_registration() {
    let s = Server::start().await;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    for (i, hex_point) in SMALL_ORDER.iter().enumerate() {
        let x = b64(&hex::decode(hex_point).unwrap());
        let body = json!({"id": format!("weak-{i}"), "owner": "alice@example.com",
                          "public_jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}});
        let r = s.post(&s.admin, "/v1/agents", &body).await;
        r.expect_problem(400, Some("public_jwk"));
        assert!(r.text.contains("small order"), "{}", r.text);
    }
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let x = b64(key.verifying_key().as_bytes());
    let body = json!({"id": "leaky", "owner": "alice@example.com",
                      "public_jwk": {"kty": "OKP", "crv": "Ed25519", "x": x, "d": b64(&key.to_bytes())}});
    let r = s.post(&s.admin, "/v1/agents", &body).await;
    r.expect_problem(400, Some("public_jwk"));
    assert!(r.text.contains("private"), "{}", r.text);
    // The same key without `d` registers.
    let body = json!({"id": "sound", "owner": "alice@example.com",
                      "public_jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}});
    s.post(&s.admin, "/v1/agents", &body).await.expect(201);
}

/// The value of cookie `name` set by a raw answer.
fn set_cookie(answer: &str, name: &str) -> Option<String> {
    answer
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .filter_map(|l| l.split_once(':').map(|(_, v)| v.trim()))
        .filter_map(|v| v.split(';').next())
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_forms_of_10_mib_get_413() {
    let s = Server::start().await;
    let addr = addr_of(&s.base);
    let ten_mib = 10 * 1024 * 1024;
    let big = |path: &str, cookie: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nCookie: {cookie}\r\nContent-Length: {ten_mib}\r\n\r\n"
        )
    };
    let r = raw_exchange(&addr, big("/ui/login", "").as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    // Signed in, the decision and logout forms too.
    let form = raw_exchange(&addr, b"GET /ui/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let csrf = set_cookie(&form, "agentsigna_login").expect("login cookie");
    let body = format!("token={}&csrf={csrf}&next=%2Fui%2F", s.carol());
    let login = format!(
        "POST /ui/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nCookie: agentsigna_login={csrf}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(&addr, login.as_bytes()).await;
    let session = set_cookie(&answer, "agentsigna_session").unwrap_or_else(|| panic!("no session: {answer}"));
    let cookie = format!("agentsigna_session={session}");
    for path in ["/ui/reviews/rev_x/decision", "/ui/logout"] {
        let r = raw_exchange(&addr, big(path, &cookie).as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 413"), "{path}: {r}");
    }
}

// ---------------------------------------------------------------------------------------
// The binary: files, refusals at start

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// `agentsigna serve` under umask 022 with the procurement org; waits until ready.
fn spawn_serve(data: &Path, extra: &str) -> (std::process::Child, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let script = format!(
        "umask 022 && exec '{}' serve --data-dir '{}' --listen {listen} --org '{}' {extra}",
        bin(),
        data.display(),
        org_path().display()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .env("AGENTSIGNA_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let base = format!("http://{listen}");
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client.get(format!("{base}/healthz")).send().is_ok_and(|r| r.status().as_u16() == 200) {
        assert!(Instant::now() < deadline, "the server did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, base)
}

/// Runs `agentsigna serve` expecting it to refuse to start: (exit code, stderr).
fn serve_refused(data: &Path, extra: &[&str]) -> (i32, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--data-dir", data.to_str().unwrap(), "--listen", &listen]).args(extra);
    let out = cmd.env("AGENTSIGNA_LOG", "error").stdin(Stdio::null()).output().expect("run");
    let (code, _, err) = outcome(&out);
    (code, err)
}

#[test]
fn under_umask_022_the_data_dir_is_private_and_exposed_secrets_stop_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut child, base) = spawn_serve(&data, "");
    // A write, so that the WAL and shared memory exist and hold something.
    let bot = std::fs::read_to_string(data.join("credentials/agent-procurement-bot.token")).unwrap();
    let r = reqwest::blocking::Client::new()
        .post(format!("{base}/v1/requests"))
        .bearer_auth(bot.trim())
        .json(&po_body("acme", "10.00"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let mut seen = Vec::new();
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                seen.push(p.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    for f in ["agentsigna.db", "agentsigna.db-wal", "agentsigna.db-shm", "admin.token", "ledger.key", "passport.keys"] {
        assert!(seen.iter().any(|s| s == f), "{f} missing from {seen:?}");
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();

    // A secret file opened to others: refused, naming the file and the fix; nothing changed.
    for file in ["admin.token", "agentsigna.db", "keys/ledger.key", "credentials/system-erp.token"] {
        let path = data.join(file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, err) = serve_refused(&data, &[]);
        assert_eq!(code, 1, "{file}: {err}");
        assert!(err.contains(&path.display().to_string()) && err.contains("chmod 600"), "{file}: {err}");
        assert_eq!(mode(&path), 0o644, "the server does not change modes itself");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Fixed, it starts again.
    let (mut child, _) = spawn_serve(&data, "");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

#[test]
fn a_missing_webhook_secret_file_is_refused_and_the_value_is_never_a_path() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let missing = tmp.path().join("webhook.secret");
    let (code, err) = serve_refused(
        &data,
        &["--webhook", "https://hooks.example/x", "--webhook-secret-file", missing.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--webhook-secret-file") && err.contains(&missing.display().to_string()), "{err}");
    assert!(!data.exists(), "nothing is created when the start is refused");
    std::fs::write(&missing, "  \n").unwrap();
    let (code, err) = serve_refused(&data, &["--webhook-secret-file", missing.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("is empty"), "{err}");
    let (code, err) = serve_refused(&data, &["--webhook-secret", "x", "--webhook-secret-file", "y"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn durations_and_limits_out_of_range_are_refused_with_the_range() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cases: &[(&str, &str, &str)] = &[
        ("--passport-ttl", "0", "1..=3600"),
        ("--passport-ttl", "100000", "1..=3600"),
        ("--review-deadline", "0", "1..=2592000"),
        ("--pickup-window", "-5", "1..=2592000"),
        ("--header-timeout", "0", "1..=300"),
        ("--body-timeout", "0", "1..=3600"),
        ("--max-connections", "0", "1..=1000000"),
        ("--max-waits", "0", "1..=100000"),
    ];
    for (flag, value, range) in cases {
        let arg = format!("{flag}={value}");
        let (code, err) = serve_refused(&data, &[&arg]);
        assert_eq!(code, 2, "{flag} {value}: {err}");
        assert!(err.contains(range), "{flag} {value}: {err}");
    }
    assert!(!data.exists());
    // The gate's limits too, and a report token file that does not exist.
    let out = run_cli(&[
        "gate",
        "--upstream",
        "http://127.0.0.1:9",
        "--jwks",
        "x",
        "--audience",
        "erp",
        "--header-timeout",
        "0",
    ]);
    assert_eq!(outcome(&out).0, 2);
    let out = run_cli(&[
        "gate",
        "--upstream",
        "http://127.0.0.1:9",
        "--jwks",
        "/nonexistent/jwks.json",
        "--audience",
        "erp",
        "--report-to",
        "http://127.0.0.1:8080",
        "--report-token-file",
        "/nonexistent/token",
    ]);
    let (code, _, err) = outcome(&out);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/token"), "{err}");
}
