//! Interoperability: Python's PyJWT verifies fresh passports against the served JWKS.
//!
//! Needs a Python with `jwt` (PyJWT + cryptography): `$AGENTSIGNA_PYTHON`, else
//! `python3`. Skipped with a printed reason when absent, except under CI (`.ci/run`
//! installs it), where it is required.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;

use agentsigna::app::{start, ServeOptions};
use agentsigna_core::SystemClock;
use serde_json::{json, Value};

fn python() -> Option<String> {
    let candidates = [std::env::var("AGENTSIGNA_PYTHON").ok(), Some("python3".to_owned())];
    for p in candidates.into_iter().flatten() {
        let ok = Command::new(&p).args(["-c", "import jwt, cryptography"]).output().is_ok_and(|o| o.status.success());
        if ok {
            return Some(p);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_verifies_passports_with_the_served_jwks() {
    let Some(py) = python() else {
        assert!(std::env::var("CI").is_err(), "PyJWT is required under CI (.ci/run installs it)");
        eprintln!("SKIPPED pyjwt interop: no python with PyJWT (set AGENTSIGNA_PYTHON or pip install 'pyjwt[crypto]')");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ServeOptions::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    opts.org = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/procurement/org.toml").into());
    let server = start(opts, Arc::new(SystemClock)).await.unwrap();
    let token =
        |kind: &str, id: &str| server.credentials.iter().find(|c| c.kind == kind && c.id == id).unwrap().token.clone();
    let client = reqwest::Client::new();
    let resp: Value = client
        .post(format!("{}/v1/requests", server.url()))
        .bearer_auth(token("agent", "procurement-bot"))
        .json(&json!({"action": "purchase_order.create", "counterparty": "acme",
                      "amount": {"value": "120.00", "currency": "USD"}, "audience": "erp",
                      "description": "printer paper"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["verdict"], "authorized", "{resp}");
    let passport = resp["passport"].as_str().unwrap().to_owned();
    let jwks =
        client.get(format!("{}/.well-known/jwks.json", server.url())).send().await.unwrap().text().await.unwrap();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/verify_pyjwt.py");

    let ok = Command::new(&py).arg(script).arg(&jwks_path).arg(&passport).arg("erp").output().unwrap();
    assert!(ok.status.success(), "PyJWT refused a valid passport: {}", String::from_utf8_lossy(&ok.stderr));
    let claims: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(claims["sub"], "procurement-bot");
    assert_eq!(claims["case"]["id"], resp["case_id"]);
    assert_eq!(claims["authorization_details"][0]["amount"]["value"], "120.00");

    // PyJWT refuses it for another audience and when a claim was altered.
    let wrong = Command::new(&py).arg(script).arg(&jwks_path).arg(&passport).arg("bank").output().unwrap();
    assert!(!wrong.status.success());
    let mut parts: Vec<String> = passport.split('.').map(str::to_owned).collect();
    let mut payload: Value = serde_json::from_slice(&agentsigna_verify::b64::url_decode(&parts[1]).unwrap()).unwrap();
    payload["authorization_details"][0]["amount"]["value"] = json!("99999.00");
    parts[1] = agentsigna_verify::b64::url_encode(serde_json::to_vec(&payload).unwrap());
    let altered = parts.join(".");
    let bad = Command::new(&py).arg(script).arg(&jwks_path).arg(&altered).arg("erp").output().unwrap();
    assert!(!bad.status.success(), "PyJWT accepted an altered passport");
    server.stop(std::time::Duration::from_secs(5)).await.unwrap();
}
