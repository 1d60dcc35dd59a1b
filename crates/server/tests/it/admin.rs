//! The admin API: principals, counterparties, actions, policy versions — and a new
//! organization built with it works end to end.

use serde_json::json;

use super::harness::*;

const DATA_POLICY: &str = r#"
@id("export-allowed")
@reason("Agents may export small data sets")
permit (principal, action == Action::"data.export", resource)
when { context.amount == 0 };

@id("export-to-medium-risk")
@verdict("escalate")
@approver_role("privacy")
@deadline("PT1H")
@reason("Exports to medium-risk processors need a privacy review")
forbid (principal, action == Action::"data.export", resource)
when { resource.risk == "medium" };

@id("po-allowed")
permit (principal, action == Action::"purchase_order.create", resource)
when { context.amount <= 25000000 };
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_builds_an_organization_through_the_api() {
    let s = Server::start().await;
    let admin = s.admin.clone();

    // Agents, with and without a holder key.
    let r = s
        .post(&admin, "/v1/agents", &json!({"id": "analytics-bot", "owner": "gina@example.com", "name": "Analytics"}))
        .await;
    r.expect(201);
    assert_eq!(r.get("id"), "analytics-bot");
    let analytics = r.get("api_key").as_str().expect("api_key, shown once").to_owned();
    assert!(analytics.len() >= 22, "at least 128 bits: {analytics}");

    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let jwk = agentsigna_verify::jwk::Jwk::public_only(&key.verifying_key());
    let r =
        s.post(&admin, "/v1/agents", &json!({"id": "bound-bot", "owner": "gina@example.com", "public_jwk": jwk})).await;
    r.expect(201);
    let bound = r.get("api_key").as_str().expect("api_key").to_owned();
    let rec = s.get(&bound, "/v1/agents/bound-bot").await;
    rec.expect(200);
    assert_eq!(rec.json["jkt"], json!(jwk.thumbprint()));
    assert_eq!(rec.json["owner"], "gina@example.com");
    assert_eq!(rec.json["trust"]["score"], json!(50));

    for bad in [
        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": "too-short"}),
        json!({"kty": "OKP", "crv": "X25519", "x": jwk.x}),
        json!("not an object"),
    ] {
        let r = s
            .post(&admin, "/v1/agents", &json!({"id": "bad-key-bot", "owner": "gina@example.com", "public_jwk": bad}))
            .await;
        r.expect_problem(400, Some("public_jwk"));
    }
    s.get(&admin, "/v1/agents/bad-key-bot").await.expect_problem(404, None);

    // An approver and a target system.
    let r = s
        .post(
            &admin,
            "/v1/approvers",
            &json!({"id": "hana@example.com", "name": "Hana (Privacy)", "roles": ["privacy"]}),
        )
        .await;
    r.expect(201);
    assert_eq!(r.get("id"), "hana@example.com");
    let hana = r.get("token").as_str().expect("token").to_owned();
    s.get(&hana, "/v1/reviews").await.expect(200);
    let r = s.post(&admin, "/v1/systems", &json!({"id": "warehouse", "name": "Data warehouse"})).await;
    r.expect(201);
    let warehouse = r.get("token").as_str().expect("token").to_owned();

    // Counterparties and actions (PUT is idempotent).
    let r =
        s.put(&admin, "/v1/counterparties/datacorp", &json!({"name": "DataCorp Processing", "risk": "medium"})).await;
    r.expect(200);
    assert_eq!(r.json, json!({"id": "datacorp", "name": "DataCorp Processing", "risk": "medium"}));
    s.put(&admin, "/v1/counterparties/datacorp", &json!({"name": "DataCorp Processing", "risk": "medium"}))
        .await
        .expect(200);
    let r = s.put(&admin, "/v1/actions/data.export", &json!({"description": "Export a data set"})).await;
    r.expect(200);
    assert_eq!(r.get("type"), "data.export");
    let cp = s.get(&hana, "/v1/counterparties/datacorp").await;
    assert_eq!(cp.get("risk"), "medium");
    assert_eq!(cp.json["trust"]["score"], json!(50));

    // Upload without activating, then activate.
    let r = s.post(&admin, "/v1/policies", &json!({"source": DATA_POLICY, "activate": false})).await;
    r.expect(201);
    assert_eq!(r.get("version"), &json!(2));
    let digest = r.get("digest").as_str().expect("digest").to_owned();
    assert!(digest.starts_with("sha256:"));
    let list = s.get(&admin, "/v1/policies").await;
    assert_eq!(list.json["active"], json!(1), "uploaded, not active yet: {}", list.text);
    let versions: Vec<_> =
        list.json["policies"].as_array().expect("policies").iter().map(|p| p["version"].clone()).collect();
    assert_eq!(versions, [json!(1), json!(2)]);
    let export = json!({"action": "data.export", "counterparty": "datacorp", "audience": "warehouse", "description": "Q3 churn"});
    let r = s.submit(&analytics, &export).await;
    assert_eq!(r.get("verdict"), "rejected", "policy 1 does not permit data.export: {}", r.text);
    assert_eq!(r.json["policy"]["version"], json!(1));

    let r = s.post(&admin, "/v1/policies/2/activate", &json!({})).await;
    r.expect(200);
    assert_eq!(r.get("version"), &json!(2));
    let p = s.get(&hana, "/v1/policies/2").await;
    p.expect(200);
    assert_eq!(p.get("active"), &json!(true));
    assert_eq!(p.get("source"), &json!(DATA_POLICY));
    assert_eq!(p.get("digest"), &json!(digest));
    assert_eq!(s.get(&admin, "/v1/policies/1").await.get("active"), &json!(false));

    let rule = s.get(&hana, "/v1/policies/2/rules/export-to-medium-risk").await;
    rule.expect(200);
    assert!(rule.text.contains("resource.risk == \\\"medium\\\""), "{}", rule.text);
    assert!(
        rule.json["source"]
            .as_str()
            .is_some_and(|src| src.contains("forbid") && src.contains("resource.risk == \"medium\"")),
        "{}",
        rule.text
    );
    s.get(&hana, "/v1/policies/2/rules/no-such-rule").await.expect_problem(404, None);
    s.get(&hana, "/v1/policies/1/rules/large-po").await.expect(200);

    // The new organization works end to end.
    let r = s.submit(&analytics, &export).await;
    r.expect(201);
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    assert_eq!(r.json["policy"], json!({"version": 2, "digest": digest}));
    assert_eq!(r.json["review"]["roles_required"], json!(["privacy"]));
    let review_id = r.json["review"]["id"].as_str().expect("review").to_owned();
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    // Carol (finance) cannot cover privacy alone.
    let d = s.decide(&s.carol(), &review_id, "approve", "").await;
    assert_eq!(d.json["review"]["status"], "pending", "{}", d.text);
    let d = s.decide(&hana, &review_id, "approve", "").await;
    assert_eq!(d.json["review"]["status"], "approved", "{}", d.text);
    let c = s.case(&analytics, &case_id).await;
    let claims = s.verify_passport(c.get("passport").as_str().expect("passport"), "warehouse").await;
    assert_eq!(claims.sub, "analytics-bot");
    assert!(claims.authorization_details[0].amount.is_none());
    assert_eq!(claims.decision.policy.version, 2);
    s.get(&warehouse, &format!("/v1/cases/{case_id}")).await.expect(200);

    // The key-bound agent's passport carries cnf.jkt.
    let r = s.submit(&bound, &po_body("acme", "10.00")).await;
    assert_eq!(r.get("verdict"), "authorized", "{}", r.text);
    let claims = s.verify_passport(r.get("passport").as_str().expect("passport"), "erp").await;
    assert_eq!(claims.cnf.expect("cnf").jkt, jwk.thumbprint());

    // Roll back to version 1.
    s.post(&admin, "/v1/policies/1/activate", &json!({})).await.expect(200);
    let r = s.submit(&analytics, &export).await;
    assert_eq!(r.get("verdict"), "rejected", "{}", r.text);

    // Every admin change is in the ledger's organization chain.
    let entries = s.get(&admin, "/v1/ledger/entries?start=0").await;
    let types: Vec<String> = entries
        .text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .filter(|e| e["case"].is_null())
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    for t in [
        "agent.registered",
        "approver.registered",
        "system.registered",
        "counterparty.updated",
        "action.declared",
        "policy.activated",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} in {types:?}");
    }
    assert_eq!(types.iter().filter(|t| *t == "policy.activated").count(), 3, "{types:?}");
    let cp_updates =
        entries.text.lines().filter(|l| l.contains("counterparty.updated") && l.contains("datacorp")).count();
    assert_eq!(cp_updates, 1, "an unchanged PUT records nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_agent_is_rejected_until_resumed() {
    let s = Server::start().await;
    s.post(&s.bot(), "/v1/agents/procurement-bot/suspend", &json!({})).await.expect_problem(403, None);
    let r = s.post(&s.admin, "/v1/agents/procurement-bot/suspend", &json!({})).await;
    r.expect(200);
    assert_eq!(r.get("suspended"), &json!(true));
    let r = s.po("acme", "10.00").await;
    assert_eq!(r.get("verdict"), "rejected", "{}", r.text);
    assert_eq!(rules(&r.json), ["agent-suspended"]);
    assert!(r.get("passport").is_null());
    s.post(&s.admin, "/v1/agents/procurement-bot/resume", &json!({})).await.expect(200);
    assert_eq!(s.po("acme", "10.00").await.get("verdict"), "authorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counterparty_risk_change_shows_in_open_reviews_and_decides_the_next_verdict() {
    let s = Server::start().await;
    let esc = s.po("globex", "40000.00").await;
    assert_eq!(esc.get("verdict"), "escalated", "{}", esc.text);
    let review_id = esc.json["review"]["id"].as_str().expect("review").to_owned();
    let r = s.put(&s.admin, "/v1/counterparties/globex", &json!({"name": "Globex Hardware", "risk": "blocked"})).await;
    r.expect(200);
    // The approver sees today's status next to the one the verdict used.
    let v = s.get(&s.carol(), &format!("/v1/reviews/{review_id}")).await;
    assert_eq!(v.json["counterparty"]["risk"], "blocked", "{}", v.text);
    assert_eq!(v.json["counterparty"]["risk_at_decision"], "medium");
    let next = s.po("globex", "10.00").await;
    assert_eq!(next.get("verdict"), "rejected", "{}", next.text);
    assert_eq!(rules(&next.json), ["blocked-counterparty"]);
    let entries = s.get(&s.admin, "/v1/ledger/entries?start=0").await;
    let update = entries
        .text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("line"))
        .rfind(|e| e["type"] == "counterparty.updated" && e["data"]["id"] == "globex")
        .expect("the change is in the ledger");
    assert_eq!(update["data"]["risk"], "blocked");
    assert_eq!(update["data"]["previous_risk"], "medium");
    assert_eq!(update["actor"], "admin");
}

/// What changed under a pending case reaches it: the kill switch and the blocklist are
/// re-checked at the approval and again when the passport is picked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_and_blocking_reach_pending_reviews_and_unpicked_passports() {
    let s = Server::start().await;
    let escalate = || async {
        let r = s.po("globex", "40000.00").await;
        assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
        (
            r.get("case_id").as_str().expect("case").to_owned(),
            r.json["review"]["id"].as_str().expect("review").to_owned(),
        )
    };
    let rechecked = |case: &serde_json::Value| -> Vec<String> {
        events_of(case, "decision.rechecked")
            .iter()
            .flat_map(|e| e["data"]["reasons"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["rule"].as_str().map(str::to_owned))
            .collect()
    };

    // 1. Suspended while pending: the approval rejects the case, recorded with the reason.
    let (case_id, review_id) = escalate().await;
    s.post(&s.admin, "/v1/agents/procurement-bot/suspend", &json!({})).await.expect(200);
    let v = s.decide(&s.carol(), &review_id, "approve", "budgeted").await;
    v.expect(200);
    assert_eq!(v.get("status"), "rejected", "the approver is told: {}", v.text);
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "rejected");
    assert!(c.get("passport").is_null());
    assert_eq!(rechecked(&c.json), ["agent-suspended"]);
    s.post(&s.admin, "/v1/agents/procurement-bot/resume", &json!({})).await.expect(200);

    // 2. Approved, then suspended before the agent picked its passport up: none is issued.
    let (case_id, review_id) = escalate().await;
    s.decide(&s.carol(), &review_id, "approve", "budgeted").await.expect(200);
    s.post(&s.admin, "/v1/agents/procurement-bot/suspend", &json!({})).await.expect(200);
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "rejected", "{}", c.text);
    assert!(c.get("passport").is_null());
    assert!(events_of(&c.json, "passport.issued").is_empty());
    let stages: Vec<_> = events_of(&c.json, "decision.rechecked").iter().map(|e| e["data"]["stage"].clone()).collect();
    assert_eq!(stages, [json!("passport")]);
    s.post(&s.admin, "/v1/agents/procurement-bot/resume", &json!({})).await.expect(200);

    // 3. The counterparty blocked while pending: the policy's reject tier decides.
    let (case_id, review_id) = escalate().await;
    s.put(&s.admin, "/v1/counterparties/globex", &json!({"name": "Globex Hardware", "risk": "blocked"}))
        .await
        .expect(200);
    s.decide(&s.carol(), &review_id, "approve", "budgeted").await.expect(200);
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "rejected", "{}", c.text);
    assert!(rechecked(&c.json).contains(&"blocked-counterparty".to_owned()), "{}", c.text);
}
