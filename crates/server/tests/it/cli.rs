//! The `agentsigna` binary: `serve` as a child process (files, modes, SIGTERM, restart)
//! and `verify`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::harness::*;

struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn start(data: &Path) -> Serve {
        Serve::start_logging(data, Stdio::null())
    }

    /// Starts with the server's standard error going to `stderr`.
    fn start_logging(data: &Path, stderr: impl Into<Stdio>) -> Serve {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(bin())
            .args(["serve", "--data-dir", data.to_str().expect("path"), "--listen", &listen])
            .arg("--org")
            .arg(org_path())
            .env("AGENTSIGNA_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn agentsigna serve");
        let s = Serve { child, base: format!("http://{listen}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", s.base)).send() {
                if r.status().as_u16() == 200 {
                    return s;
                }
            }
            assert!(Instant::now() < deadline, "the server did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM; returns the exit code, which must come within 10 s.
    fn terminate(mut self) -> i32 {
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("agentsigna serve did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

fn read_token(p: &Path) -> String {
    std::fs::read_to_string(p).expect("token file").trim().to_owned()
}

#[test]
fn serve_creates_secret_files_drains_on_sigterm_and_restarts_idempotently() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");

    let log_path = tmp.path().join("serve.log");
    let serve = Serve::start_logging(&data, std::fs::File::create(&log_path).expect("log file"));
    let keys: Vec<_> =
        std::fs::read_dir(data.join("keys")).expect("keys dir").map(|e| e.expect("entry").path()).collect();
    assert!(!keys.is_empty(), "keys are created on first start");
    for k in &keys {
        assert_eq!(mode(k), 0o600, "{} mode", k.display());
    }
    assert_eq!(mode(&data.join("admin.token")), 0o600);
    let admin = read_token(&data.join("admin.token"));
    let creds_dir = data.join("credentials");
    let bot_file = creds_dir.join("agent-procurement-bot.token");
    for f in ["agent-procurement-bot", "approver-carol@example.com", "system-erp"] {
        assert_eq!(mode(&creds_dir.join(format!("{f}.token"))), 0o600, "{f}");
    }
    let bot = read_token(&bot_file);
    let r = client.get(format!("{}/v1/agents/procurement-bot", serve.base)).bearer_auth(&bot).send().expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let r = client.get(format!("{}/v1/policies", serve.base)).bearer_auth(&admin).send().expect("get");
    assert_eq!(r.status().as_u16(), 200);
    // A passport to verify below.
    let r = client
        .post(format!("{}/v1/requests", serve.base))
        .bearer_auth(&bot)
        .json(&po_body("acme", "10.00"))
        .send()
        .expect("post");
    assert_eq!(r.status().as_u16(), 201);
    let body: serde_json::Value = r.json().expect("json");
    let passport = body["passport"].as_str().expect("passport").to_owned();
    let jwks_text =
        client.get(format!("{}/.well-known/jwks.json", serve.base)).send().expect("jwks").text().expect("text");
    let snapshot: Vec<(String, String)> = std::fs::read_dir(&creds_dir)
        .expect("credentials")
        .map(|e| {
            let p = e.expect("entry").path();
            (p.display().to_string(), std::fs::read_to_string(&p).expect("read"))
        })
        .collect();
    assert_eq!(serve.terminate(), 0, "SIGTERM drains and exits 0");
    // Secrets are never logged, not even at debug level.
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(log.contains("listening"), "the log is captured: {log}");
    for secret in [&admin, &bot] {
        assert!(!log.contains(secret.as_str()), "a credential appears in the server log");
    }
    // …and stored only as hashes.
    let stored = std::fs::read_dir(&data)
        .expect("data dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("agentsigna.db")))
        .map(|p| std::fs::read(p).expect("db file"))
        .collect::<Vec<_>>();
    assert!(!stored.is_empty());
    for bytes in &stored {
        for secret in [&admin, &bot] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "a credential is stored in clear");
        }
    }

    // Restart with the same org: nothing is re-created, old credentials still work.
    let serve = Serve::start(&data);
    assert_eq!(read_token(&data.join("admin.token")), admin);
    for (p, content) in &snapshot {
        assert_eq!(&std::fs::read_to_string(p).expect("read"), content, "{p} is unchanged");
    }
    assert_eq!(std::fs::read_dir(&creds_dir).expect("credentials").count(), snapshot.len(), "no new credential files");
    let r = client.get(format!("{}/v1/agents/procurement-bot", serve.base)).bearer_auth(&bot).send().expect("get");
    assert_eq!(r.status().as_u16(), 200, "the old agent key still works");
    let r = client.get(format!("{}/v1/policies", serve.base)).bearer_auth(&admin).send().expect("get");
    let policies: serde_json::Value = r.json().expect("json");
    assert_eq!(
        policies["policies"].as_array().expect("policies").len(),
        1,
        "the same policy is not uploaded twice: {policies}"
    );
    assert_eq!(policies["active"], json!(1));
    // Same keys: the old passport still verifies against the new JWKS.
    let jwks_after =
        client.get(format!("{}/.well-known/jwks.json", serve.base)).send().expect("jwks").text().expect("text");
    assert_eq!(jwks_after, jwks_text);
    // `verify --jwks URL` fetches the set.
    let jwks_url = format!("{}/.well-known/jwks.json", serve.base);
    let (code, _, err) = outcome(&run_cli(&["verify", &passport, "--jwks", &jwks_url, "--audience", "erp"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(serve.terminate(), 0);
    let (code, out, err) = outcome(&run_cli(&["ledger", "verify", "--data-dir", data.to_str().expect("path")]));
    assert_eq!(code, 0, "the ledger verifies after two runs: {out} {err}");

    // `agentsigna verify`.
    let jwks = tmp.path().join("jwks.json");
    std::fs::write(&jwks, &jwks_text).expect("write");
    let jwks = jwks.to_str().expect("path");
    let (code, out, err) = outcome(&run_cli(&["verify", &passport, "--jwks", jwks, "--audience", "erp"]));
    assert_eq!(code, 0, "{err}");
    let record: serde_json::Value = serde_json::from_str(&out).expect("the decision record on stdout");
    assert_eq!(record["sub"], "procurement-bot");
    assert_eq!(record["decision"]["verdict"], "authorized");
    let (code, _, err) = outcome(&run_cli(&["verify", &passport, "--jwks", jwks, "--audience", "bank"]));
    assert_eq!((code, err.trim()), (1, "wrong_audience"));
    let (code, _, err) = outcome(&run_cli(&["verify", "garbage", "--jwks", jwks, "--audience", "erp"]));
    assert_eq!((code, err.trim()), (1, "malformed"));
    let (code, _, err) =
        outcome(&run_cli(&["verify", &passport, "--jwks", jwks, "--audience", "erp", "--at", "2999-01-01T00:00:00Z"]));
    assert_eq!((code, err.trim()), (1, "expired"));
    let (code, _, err) =
        outcome(&run_cli(&["verify", &passport, "--jwks", jwks, "--audience", "erp", "--at", "2000-01-01T00:00:00Z"]));
    assert_eq!((code, err.trim()), (1, "not_yet_valid"));
    // A passport whose signature was changed.
    let sig_at = passport.rfind('.').expect("compact JWS") + 10;
    let flipped = if passport.as_bytes()[sig_at] == b'A' { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &passport[..sig_at], &passport[sig_at + 1..]);
    let (code, _, err) = outcome(&run_cli(&["verify", &forged, "--jwks", jwks, "--audience", "erp"]));
    assert_eq!((code, err.trim()), (1, "bad_signature"));
    // Unknown key.
    let empty = tmp.path().join("empty.json");
    std::fs::write(&empty, "{\"keys\": []}").expect("write");
    let (code, _, err) =
        outcome(&run_cli(&["verify", &passport, "--jwks", empty.to_str().expect("path"), "--audience", "erp"]));
    assert_eq!((code, err.trim()), (1, "unknown_key"));
    // Standard input.
    let mut child = Command::new(bin())
        .args(["verify", "-", "--jwks", jwks, "--audience", "erp"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(passport.as_bytes()).expect("write");
    }
    assert_eq!(child.wait_with_output().expect("wait").status.code(), Some(0));
    // Usage errors.
    assert_eq!(run_cli(&["verify"]).status.code(), Some(2));
    assert_eq!(run_cli(&["verify", &passport, "--audience", "erp"]).status.code(), Some(2));
    assert_eq!(run_cli(&["verify", &passport, "--jwks", jwks]).status.code(), Some(2));
    assert_eq!(
        run_cli(&["verify", &passport, "--jwks", jwks, "--audience", "erp", "--at", "yesterday"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run_cli(&["verify", &passport, "--jwks", "/nonexistent/jwks.json", "--audience", "erp"]).status.code(),
        Some(2)
    );
    assert_eq!(run_cli(&["no-such-command"]).status.code(), Some(2));
}

#[test]
fn sigterm_does_not_wait_for_long_polling_agents() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let serve = Serve::start(&data);
    let bot = read_token(&data.join("credentials/agent-procurement-bot.token"));
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(90)).build().expect("client");
    let r = client
        .post(format!("{}/v1/requests", serve.base))
        .bearer_auth(&bot)
        .json(&po_body("globex", "40000.00"))
        .send()
        .expect("post");
    let body: serde_json::Value = r.json().expect("json");
    assert_eq!(body["verdict"], "escalated", "{body}");
    let url = format!("{}/v1/cases/{}?wait=60", serve.base, body["case_id"].as_str().expect("case"));
    // An agent long-polls for its verdict (a documented, normal use of ?wait)…
    let waiter = std::thread::spawn(move || client.get(url).bearer_auth(bot).send().map(|r| r.status().as_u16()));
    std::thread::sleep(Duration::from_millis(500));
    // …and the operator stops the server: it must still exit promptly.
    let started = Instant::now();
    assert_eq!(serve.terminate(), 0, "exit 0 within 10 s of SIGTERM");
    assert!(started.elapsed() < Duration::from_secs(10));
    let _ = waiter.join();
}

#[test]
fn ledger_commands_on_a_mistyped_data_dir_fail_without_creating_anything() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("agentsigna-dta");
    let (code, _, err) = outcome(&run_cli(&["ledger", "verify", "--data-dir", missing.to_str().expect("path")]));
    assert_eq!(code, 1, "{err}");
    assert!(!missing.exists(), "a read-only check must not create {} (with fresh keys)", missing.display());
    let out = tmp.path().join("bundle.json");
    let (code, _, err) = outcome(&run_cli(&[
        "ledger",
        "export",
        "--data-dir",
        missing.to_str().expect("path"),
        "--out",
        out.to_str().expect("path"),
    ]));
    assert_eq!(code, 1, "{err}");
    assert!(!missing.exists(), "export must not create {}", missing.display());
}

/// `agentsigna verify` prints the passport's request text for people with every hidden
/// character as a marker; `--json` keeps the claims exactly as signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_shows_hidden_characters_of_the_description_as_markers() {
    let s = Server::start().await;
    let mut body = po_body("acme", "10.00");
    body["description"] = json!("Total \u{202E}00.005,49\u{202C} USD");
    let r = s.submit(&s.bot(), &body).await;
    assert_eq!(r.get("verdict"), "authorized", "{}", r.text);
    let passport = r.get("passport").as_str().expect("passport").to_owned();
    let jwks = s.dir.path().join("jwks.json");
    std::fs::write(&jwks, s.get_public("/.well-known/jwks.json").await.text).expect("write jwks");
    let jwks = jwks.to_str().expect("path");
    let (code, out, err) = outcome(&run_cli(&["verify", &passport, "--jwks", jwks, "--audience", "erp"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Total ⟨U+202E⟩00.005,49⟨U+202C⟩ USD"), "{out}");
    assert!(!out.contains('\u{202E}'), "{out}");
    let (code, out, err) = outcome(&run_cli(&["verify", &passport, "--jwks", jwks, "--audience", "erp", "--json"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains('\u{202E}'), "--json is the claims as signed: {out}");
}
