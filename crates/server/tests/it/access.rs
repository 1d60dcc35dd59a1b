//! Authentication and who may read or do what.

use reqwest::Method;
use serde_json::json;

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_bad_credentials_get_401_with_a_challenge() {
    let s = Server::start().await;
    for (path, method) in [("/v1/requests", Method::POST), ("/v1/cases", Method::GET), ("/v1/reviews", Method::GET)] {
        let body = json!({});
        let r = s.call(method.clone(), None, path, Some(&body)).await;
        r.expect_problem(401, None);
        assert!(r.www_authenticate.as_deref().is_some_and(|v| v.starts_with("Bearer")), "{path}: {r:?}");
        let r = s.call(method.clone(), Some("not-a-token"), path, Some(&body)).await;
        r.expect_problem(401, None);
        assert!(r.www_authenticate.is_some());
    }
    // Not a bearer scheme.
    let r = s
        .client
        .get(format!("{}/v1/cases", s.base))
        .basic_auth("procurement-bot", Some(s.bot()))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
    // Public routes need nothing.
    s.get_public("/healthz").await.expect(200);
    s.get_public("/.well-known/jwks.json").await.expect(200);
    s.get_public("/v1/ledger/checkpoint").await.expect(200);
    s.get_public("/v1/ledger/key").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_see_only_what_they_may() {
    let s = Server::start().await;
    let r = s.po("acme", "100.00").await;
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    let esc = s.po("globex", "40000.00").await;
    let review_id = esc.json["review"]["id"].as_str().expect("review").to_owned();
    let payments = s.agent("payments-bot");
    let path = format!("/v1/cases/{case_id}");

    // Another agent: 404, so case ids do not leak; same for evidence and outcomes.
    s.get(&payments, &path).await.expect_problem(404, None);
    s.get(&payments, &format!("{path}/evidence")).await.expect_problem(404, None);
    s.outcome(&payments, &case_id, "disputed").await.expect_problem(404, None);
    let theirs = s.get(&payments, "/v1/cases").await;
    assert!(theirs.json["cases"].as_array().expect("cases").is_empty(), "{}", theirs.text);
    // A system reads only the cases addressed to it.
    s.get(&s.system("bank"), &path).await.expect_problem(404, None);
    s.get(&s.erp(), &path).await.expect(200);
    let erp_list = s.get(&s.erp(), "/v1/cases").await;
    assert_eq!(erp_list.json["cases"].as_array().expect("cases").len(), 2, "{}", erp_list.text);
    // Approvers and the admin read everything.
    s.get(&s.carol(), &path).await.expect(200);
    s.get(&s.admin, &path).await.expect(200);
    s.get(&s.admin, "/v1/cases/case-does-not-exist").await.expect_problem(404, None);

    // Reviews are for approvers (and the admin).
    s.get(&s.carol(), "/v1/reviews?status=pending").await.expect(200);
    s.get(&s.admin, "/v1/reviews").await.expect(200);
    s.get(&s.bot(), "/v1/reviews").await.expect_problem(403, None);
    s.get(&s.erp(), "/v1/reviews").await.expect_problem(403, None);
    s.get(&s.bot(), &format!("/v1/reviews/{review_id}")).await.expect_problem(403, None);
    s.get(&s.carol(), "/v1/reviews?status=bogus").await.expect_problem(400, Some("status"));
    s.get(&s.carol(), "/v1/reviews/rev-nope").await.expect_problem(404, None);

    // Agents read only their own record; counterparties are for approvers and the admin.
    s.get(&s.bot(), "/v1/agents/procurement-bot").await.expect(200);
    s.get(&s.bot(), "/v1/agents/payments-bot").await.expect_problem(403, None);
    s.get(&s.erp(), "/v1/agents/payments-bot").await.expect_problem(403, None);
    s.get(&s.carol(), "/v1/agents/payments-bot").await.expect(200);
    s.get(&s.bot(), "/v1/counterparties/acme").await.expect_problem(403, None);
    s.get(&s.carol(), "/v1/counterparties/acme").await.expect(200);
    s.get(&s.carol(), "/v1/agents/nobody").await.expect_problem(404, None);

    // Admin routes.
    let agent = json!({"id": "rogue", "owner": "x@example.com"});
    for token in [s.bot(), s.carol(), s.erp()] {
        s.post(&token, "/v1/agents", &agent).await.expect_problem(403, None);
        s.post(&token, "/v1/approvers", &json!({"id": "mallory@example.com", "roles": ["finance"]}))
            .await
            .expect_problem(403, None);
        s.post(&token, "/v1/systems", &json!({"id": "crm"})).await.expect_problem(403, None);
        s.put(&token, "/v1/counterparties/acme", &json!({"name": "Acme", "risk": "blocked"}))
            .await
            .expect_problem(403, None);
        s.put(&token, "/v1/actions/data.export", &json!({"description": "x"})).await.expect_problem(403, None);
        s.post(&token, "/v1/policies", &json!({"source": "", "activate": true})).await.expect_problem(403, None);
        s.post(&token, "/v1/policies/1/activate", &json!({})).await.expect_problem(403, None);
    }
    s.get(&s.bot(), "/v1/policies").await.expect_problem(403, None);
    // Only agents submit requests.
    s.submit(&s.carol(), &po_body("acme", "1.00")).await.expect_problem(403, None);
    s.submit(&s.admin, &po_body("acme", "1.00")).await.expect_problem(403, None);
    // The ledger is for approvers and the admin.
    s.get(&s.bot(), "/v1/ledger/entries?start=0&end=2").await.expect_problem(403, None);
    s.get(&s.erp(), "/v1/ledger/proof/inclusion?index=0&size=1").await.expect_problem(403, None);
    s.get(&s.carol(), "/v1/ledger/entries?start=0&end=2").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_types_are_listed_and_a_system_reads_only_itself() {
    let s = Server::start().await;
    // Every authenticated principal lists the declared action types; nobody else.
    s.call(Method::GET, None, "/v1/actions", None).await.expect_problem(401, None);
    for token in [s.bot(), s.carol(), s.erp(), s.admin.clone()] {
        let r = s.get(&token, "/v1/actions").await;
        r.expect(200);
        let types: Vec<&str> =
            r.json["actions"].as_array().expect("actions").iter().filter_map(|a| a["type"].as_str()).collect();
        assert!(types.contains(&"purchase_order.create") && types.contains(&"payment.send"), "{}", r.text);
        assert!(types.windows(2).all(|w| w[0] < w[1]), "sorted: {types:?}");
    }
    // A target system: the admin and the system itself read it; to anyone else it does not exist.
    let own = s.get(&s.erp(), "/v1/systems/erp").await;
    own.expect(200);
    assert_eq!(own.json["id"], "erp");
    s.get(&s.admin, "/v1/systems/erp").await.expect(200);
    s.get(&s.system("bank"), "/v1/systems/erp").await.expect_problem(404, None);
    s.get(&s.bot(), "/v1/systems/erp").await.expect_problem(404, None);
    s.get(&s.carol(), "/v1/systems/erp").await.expect_problem(404, None);
    s.get(&s.admin, "/v1/systems/nope").await.expect_problem(404, None);
    s.get(&s.erp(), "/v1/systems/nope").await.expect_problem(404, None);
}
