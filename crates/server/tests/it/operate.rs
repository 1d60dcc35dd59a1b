//! Operating the server: `GET /metrics` (who may read it, what it counts), `GET /readyz`
//! with a database that goes away, request ids, and the request span in log lines.

use serde_json::json;

use super::harness::*;
use super::multinode::fresh_database;

/// The value of the series `name` (with its labels exactly as written), if present.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_need_the_admin_credential_and_count_the_loop() {
    let s = Server::start().await;
    let small = s.po("acme", "480.00").await;
    small.expect(201);
    assert_eq!(small.get("verdict"), "authorized");
    let large = s.po("globex", "40000.00").await;
    large.expect(201);
    assert_eq!(large.get("verdict"), "escalated");
    let escalating_rule = rules(&large.json)[0].clone();
    let mut euro = po_body("acme", "480.00");
    euro["amount"]["currency"] = json!("EUR");
    euro["idempotency_key"] = json!("metrics-euro");
    let rejected = s.submit(&s.bot(), &euro).await;
    rejected.expect(201);
    assert_eq!(rejected.get("verdict"), "rejected", "{}", rejected.text);
    assert_eq!(rules(&rejected.json)[0], "usd-only", "{}", rejected.text);
    // The same request again is answered from the case it made (200): not a new verdict.
    s.submit(&s.bot(), &euro).await.expect(200);
    let case = large.get("case_id").as_str().expect("case id").to_owned();
    s.case(&s.bot(), &case).await.expect(200);
    s.get(&s.bot(), "/v1/cases/nonexistent-case").await.expect(404);

    s.get_public("/metrics").await.expect_problem(401, None);
    s.get(&s.bot(), "/metrics").await.expect_problem(403, None);
    let m = s.get(&s.admin, "/metrics").await;
    m.expect(200);
    assert!(m.content_type.starts_with("application/openmetrics-text"), "{}", m.content_type);
    let t = &m.text;
    let permit = rules(&small.json)[0].clone();
    assert_eq!(series(t, &format!(r#"agentsigna_verdicts_total{{verdict="authorized",rule="{permit}"}}"#)), Some(1.0));
    assert_eq!(
        series(t, &format!(r#"agentsigna_verdicts_total{{verdict="escalated",rule="{escalating_rule}"}}"#)),
        Some(1.0),
        "{t}"
    );
    assert_eq!(series(t, r#"agentsigna_verdicts_total{verdict="rejected",rule="usd-only"}"#), Some(1.0), "{t}");
    assert_eq!(series(t, "agentsigna_decision_duration_seconds_count"), Some(3.0), "{t}");
    assert_eq!(
        series(t, r#"agentsigna_http_requests_total{method="POST",route="/v1/requests",status="201"}"#),
        Some(3.0)
    );
    assert_eq!(
        series(t, r#"agentsigna_http_requests_total{method="POST",route="/v1/requests",status="200"}"#),
        Some(1.0)
    );
    // Route templates, never raw paths: neither case id appears anywhere.
    assert_eq!(
        series(t, r#"agentsigna_http_requests_total{method="GET",route="/v1/cases/{id}",status="200"}"#),
        Some(1.0)
    );
    assert_eq!(
        series(t, r#"agentsigna_http_requests_total{method="GET",route="/v1/cases/{id}",status="404"}"#),
        Some(1.0)
    );
    assert!(!t.contains(&case) && !t.contains("nonexistent-case"), "a case id leaked into a label");
    assert_eq!(series(t, r#"agentsigna_http_requests_total{method="GET",route="/metrics",status="401"}"#), Some(1.0));
    assert_eq!(series(t, "agentsigna_review_queue_depth"), Some(1.0));
    assert_eq!(series(t, "agentsigna_review_oldest_age_seconds"), Some(0.0), "the clock has not moved");
    assert!(series(t, "agentsigna_ledger_entries").is_some_and(|n| n >= 4.0), "{t}");
    assert!(series(t, "agentsigna_checkpoint_age_seconds").is_some(), "{t}");
    assert_eq!(series(t, "agentsigna_store_up"), Some(1.0));
    assert!(series(t, "agentsigna_webhook_outbox_depth").is_some(), "{t}");
    assert!(series(t, "agentsigna_store_batches_total").is_some_and(|n| n >= 1.0), "{t}");
    assert!(series(t, "agentsigna_store_write_sets_total").is_some_and(|n| n >= 2.0), "{t}");
    assert!(series(t, "agentsigna_store_commit_seconds_total").is_some(), "{t}");
    assert_eq!(series(t, "agentsigna_webhook_delivery_failures_total"), Some(0.0));
    assert!(t.trim_end().ends_with("# EOF"), "OpenMetrics ends with # EOF");

    // The review queue ages with the clock, and empties when decided.
    s.clock.advance_ms(90_000);
    let t = s.get(&s.admin, "/metrics").await.text;
    assert_eq!(series(&t, "agentsigna_review_oldest_age_seconds"), Some(90.0), "{t}");
    let review = large.json["review"]["id"].as_str().expect("review id").to_owned();
    s.decide(&s.carol(), &review, "approve", "budgeted").await.expect(200);
    let t = s.get(&s.admin, "/metrics").await.text;
    assert_eq!(series(&t, "agentsigna_review_queue_depth"), Some(0.0), "{t}");
}

#[tokio::test]
async fn metrics_listen_serves_metrics_without_a_credential_and_nothing_else() {
    let s = Server::start_with(|o| o.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let addr = s.running.as_ref().and_then(|r| r.metrics_addr).expect("metrics address");
    s.po("acme", "480.00").await.expect(201);
    let get = |path: &str| s.client.get(format!("http://{addr}{path}")).send();
    let m = get("/metrics").await.expect("metrics");
    assert_eq!(m.status().as_u16(), 200);
    let t = m.text().await.expect("text");
    assert!(
        series(&t, r#"agentsigna_http_requests_total{method="POST",route="/v1/requests",status="201"}"#) == Some(1.0)
    );
    assert_eq!(get("/readyz").await.expect("readyz").status().as_u16(), 200);
    assert_eq!(get("/v1/requests").await.expect("api").status().as_u16(), 404, "the API is not on this port");
    // On the API port the metrics still need the admin credential.
    s.get_public("/metrics").await.expect_problem(401, None);
}

#[tokio::test]
async fn request_ids_are_returned_and_a_sane_one_from_the_client_is_kept() {
    let s = Server::start().await;
    let r = s.client.get(format!("{}/healthz", s.base)).header("x-request-id", "lb-7f3a.91:x_y").send().await;
    let r = r.expect("healthz");
    assert_eq!(r.headers()["x-request-id"], "lb-7f3a.91:x_y");
    for bad in ["has space", "x".repeat(129).as_str(), "semi;colon"] {
        let r = s.client.get(format!("{}/healthz", s.base)).header("x-request-id", bad).send().await.expect("healthz");
        let id = r.headers()["x-request-id"].to_str().expect("ascii").to_owned();
        assert_ne!(id, bad);
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "a fresh id: {id}");
    }
    // Every answer has one, problems included.
    let r = s.client.post(format!("{}/v1/requests", s.base)).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn readyz_is_503_when_the_database_goes_away_while_healthz_stays_200() {
    let Some(url) = fresh_database() else { return };
    let s = Server::start_with(|o| o.database = Some(url.clone())).await;
    let r = s.get_public("/readyz").await;
    r.expect(200);
    assert_eq!(r.json, json!({"status": "ready"}));
    // The database is dropped under the running server (its connections are ended).
    let name = url.rsplit('/').next().and_then(|n| n.split('?').next()).expect("db name").to_owned();
    let base = std::env::var("AGENTSIGNA_TEST_POSTGRES").expect("set when fresh_database returned a URL");
    // psql runs off the runtime: the server shares it, and a pool connection caught in the
    // middle of authentication would otherwise hold DROP DATABASE for authentication_timeout.
    let drop = format!("DROP DATABASE {name} WITH (FORCE)");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("psql").args([base.as_str(), "-v", "ON_ERROR_STOP=1", "-qc", &drop]).output()
    })
    .await
    .expect("psql task")
    .expect("psql runs");
    assert!(out.status.success(), "cannot drop the test database: {}", String::from_utf8_lossy(&out.stderr));
    // (The harness refuses any 5xx: this one is read directly.)
    let r = s.client.get(format!("{}/readyz", s.base)).send().await.expect("readyz");
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers()["content-type"].to_str().is_ok_and(|c| c.starts_with("application/problem+json")));
    let body: serde_json::Value = r.json().await.expect("problem");
    assert!(body["type"].as_str().is_some_and(|t| t.ends_with("not-ready")), "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("unavailable")), "{body}");
    s.get_public("/healthz").await.expect(200);
}
