//! The loop: request → verdict → review → passport, as agents and approvers see it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::harness::*;

/// Checks the served case: every event's digest recomputes, chain links (`seq`, `prev`)
/// hold, and returns the events.
fn check_chain(case: &Value) -> Vec<Value> {
    let events = case["events"].as_array().expect("events").clone();
    let mut prev: Option<String> = None;
    for (seq, e) in events.iter().enumerate() {
        let entry = check_entry_digest(e);
        assert_eq!(entry.seq, seq as u64, "seq runs 0, 1, …");
        assert_eq!(entry.prev, prev, "prev links to the previous event's digest");
        assert_eq!(entry.case.as_deref(), case["case_id"].as_str());
        prev = Some(e["digest"].as_str().expect("digest").to_owned());
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_po_gets_a_verifiable_passport_bound_to_the_case_chain() {
    let s = Server::start().await;
    let r = s.po("acme", "4800.00").await;
    r.expect(201);
    assert_eq!(r.get("verdict"), "authorized", "{}", r.text);
    assert!(rules(&r.json).contains(&"po-allowed".to_owned()), "reasons name po-allowed: {}", r.text);
    assert!(r.json["reasons"].as_array().expect("reasons").iter().all(|x| x["verdict"] == "authorize"), "{}", r.text);
    assert_eq!(r.json["policy"]["version"], json!(1));
    assert!(r.json["policy"]["digest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{}", r.text);
    assert_eq!(r.json["trust"], json!({"agent": 50, "counterparty": 50}));
    assert!(r.json.get("review").is_none_or(Value::is_null), "no review when authorized: {}", r.text);
    let case_id = r.get("case_id").as_str().expect("case_id").to_owned();
    let token = r.get("passport").as_str().expect("a passport when authorized").to_owned();

    let jwks = s.jwks().await;
    assert!(!jwks.keys.is_empty());
    for k in &jwks.keys {
        assert_eq!(k.kid.as_deref(), Some(k.thumbprint().as_str()), "kid is the RFC 7638 thumbprint");
    }
    let header: Value = serde_json::from_slice(
        &agentsigna_verify::b64::url_decode(token.split('.').next().expect("header")).expect("base64url"),
    )
    .expect("header JSON");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "passport+jwt");
    assert!(jwks.find(header["kid"].as_str().expect("kid")).is_some());
    let claims = s.verify_passport(&token, "erp").await;
    assert_eq!(claims.iss, "agentsigna");
    assert_eq!(claims.sub, "procurement-bot");
    assert_eq!(claims.aud, "erp");
    assert_eq!(claims.exp - claims.iat, 300, "default lifetime 5 minutes");
    assert_eq!(claims.authorization_details.len(), 1);
    let d = &claims.authorization_details[0];
    assert_eq!(d.kind, "agentsigna_action");
    assert_eq!(d.action, "purchase_order.create");
    assert_eq!(d.counterparty.id, "acme");
    assert_eq!(d.counterparty.name, "Acme Office Supplies");
    assert_eq!(d.counterparty.risk, "low");
    let amount = d.amount.as_ref().expect("amount");
    assert_eq!((amount.value.as_str(), amount.currency.as_str()), ("4800.00", "USD"));
    assert_eq!(claims.decision.verdict, "authorized");
    assert_eq!(json!(claims.decision.policy.version), r.json["policy"]["version"]);
    assert_eq!(json!(claims.decision.policy.digest), r.json["policy"]["digest"]);
    assert!(claims.decision.rules.contains(&"po-allowed".to_owned()));
    assert!(claims.approvals.is_empty(), "no approvals when authorized directly");
    assert_eq!(claims.case.id, case_id);
    assert!(claims.cnf.is_none(), "procurement-bot registered no key");
    // The wrong audience is refused.
    let other = agentsigna_verify::passport::Verifier::new(s.jwks().await, "bank");
    assert_eq!(other.verify_at(&token, s.now_secs()).expect_err("wrong audience").code(), "wrong_audience");

    let c = s.case(&s.bot(), &case_id).await;
    c.expect(200);
    assert_eq!(c.get("status"), "authorized");
    assert_eq!(c.get("passport"), &json!(token), "the agent sees its unexpired passport");
    assert_eq!(event_types(&c.json), ["request.submitted", "decision.made", "passport.issued"]);
    let events = check_chain(&c.json);
    // The passport is bound to the last event before passport.issued.
    let before = &events[1];
    assert_eq!(json!(claims.case.head), before["digest"]);
    assert_eq!(json!(claims.case.seq), before["seq"]);
    assert_eq!(events[2]["data"]["passport_id"], json!(claims.jti));
    assert_eq!(events[0]["actor"], "agent:procurement-bot");
    assert_eq!(events[0]["data"]["amount"], json!({"value": "4800.00", "currency": "USD"}));
    assert_eq!(c.json["request"]["context"], json!({"cost_center": "IT-7", "items": 12}));
    // Others see the case, never the bearer passport itself.
    let seen_by_carol = s.case(&s.carol(), &case_id).await;
    seen_by_carol.expect(200);
    assert!(seen_by_carol.get("passport").is_null(), "only the agent sees the token: {}", seen_by_carol.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalated_po_is_approved_by_finance_and_the_agent_picks_up_its_passport() {
    let s = Server::start().await;
    let r = s.po("globex", "40000.00").await;
    r.expect(201);
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    assert_eq!(rules(&r.json), ["large-po"], "{}", r.text);
    assert!(r.get("passport").is_null(), "no passport while escalated: {}", r.text);
    let review = &r.json["review"];
    assert_eq!(review["approvals_required"], json!(1));
    assert_eq!(review["roles_required"], json!(["finance"]));
    assert!(review["deadline"].is_string());
    let review_id = review["id"].as_str().expect("review id").to_owned();
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "pending_review");
    assert_eq!(event_types(&c.json), ["request.submitted", "decision.made", "review.opened"]);

    // The queue.
    let q = s.get(&s.carol(), "/v1/reviews?status=pending").await;
    q.expect(200);
    let listed = q.json["reviews"].as_array().expect("reviews");
    let mine = listed.iter().find(|x| x["id"] == json!(review_id)).expect("the review is in the queue");
    assert_eq!(mine["case_id"], json!(case_id));
    assert_eq!(mine["agent"], "procurement-bot");

    // Full context.
    let v = s.get(&s.carol(), &format!("/v1/reviews/{review_id}")).await;
    v.expect(200);
    assert_eq!(v.json["agent"]["id"], "procurement-bot");
    assert_eq!(v.json["agent"]["owner"], "alice@example.com");
    assert_eq!(v.json["agent"]["trust"]["score"], json!(50));
    assert_eq!(v.json["counterparty"]["id"], "globex");
    assert_eq!(v.json["counterparty"]["risk"], "medium");
    assert_eq!(v.json["counterparty"]["trust"]["score"], json!(50));
    assert_eq!(v.json["request"]["amount"], json!({"value": "40000.00", "currency": "USD"}));
    assert_eq!(v.json["request"]["context"]["cost_center"], "IT-7");
    let rule = v.json["rules"].as_array().expect("rules").iter().find(|x| x["rule"] == "large-po").expect("large-po");
    assert_eq!(rule["verdict"], "escalate");
    assert!(rule["reason"].as_str().is_some_and(|t| t.contains("finance approval")), "{rule}");
    let source = rule["source"].as_str().expect("the rule's Cedar source");
    assert!(source.contains("forbid") && source.contains("1000000"), "source: {source}");
    assert_eq!(event_types(&v.json), ["request.submitted", "decision.made", "review.opened"]);

    // Who may not decide.
    s.decide(&s.approver("alice@example.com"), &review_id, "approve", "").await.expect_problem(403, None);
    s.decide(&s.bot(), &review_id, "approve", "").await.expect_problem(403, None);
    s.decide(&s.erp(), &review_id, "approve", "").await.expect_problem(403, None);
    s.decide(&s.carol(), &review_id, "maybe", "").await.expect_problem(400, Some("decision"));

    // A waiting agent gets the passport as soon as carol approves.
    let waiter = {
        let client = s.client.clone();
        let url = format!("{}/v1/cases/{case_id}?wait=5", s.base);
        let token = s.bot();
        tokio::spawn(async move {
            let t = Instant::now();
            let r = client.get(url).bearer_auth(token).send().await.expect("wait request");
            let status = r.status().as_u16();
            let body: Value = r.json().await.expect("json");
            (status, body, t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = s.decide(&s.carol(), &review_id, "approve", "ok, budgeted").await;
    d.expect(200);
    assert_eq!(d.json["review"]["status"], "approved", "{}", d.text);
    let (status, waited, elapsed) = waiter.await.expect("waiter");
    assert_eq!(status, 200);
    assert!(elapsed < Duration::from_secs(3), "?wait returned after {elapsed:?}, not promptly after the approval");
    assert_eq!(waited["status"], "authorized", "{waited}");
    let token = waited["passport"].as_str().expect("the waiting agent gets the passport").to_owned();

    let claims = s.verify_passport(&token, "erp").await;
    assert_eq!(claims.decision.verdict, "approved");
    assert_eq!(claims.approvals.len(), 1);
    assert_eq!(claims.approvals[0].approver, "carol@example.com");
    assert_eq!(claims.approvals[0].roles, ["finance"]);
    assert_eq!(claims.approvals[0].decision, "approve");
    assert!(claims.decision.rules.contains(&"large-po".to_owned()));

    // The same passport on a later fetch; the chain links it to the approval.
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("passport"), &json!(token), "one passport per case");
    assert_eq!(
        event_types(&c.json),
        ["request.submitted", "decision.made", "review.opened", "review.decided", "passport.issued"]
    );
    let events = check_chain(&c.json);
    assert_eq!(json!(claims.case.head), events[3]["digest"]);
    assert_eq!(events[3]["actor"], "approver:carol@example.com");
    // The review has left the queue.
    let q = s.get(&s.carol(), "/v1/reviews?status=pending").await;
    assert!(q.json["reviews"].as_array().expect("reviews").iter().all(|x| x["id"] != json!(review_id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalated_po_rejected_by_an_approver_needs_a_comment_and_is_final() {
    let s = Server::start().await;
    let r = s.po("globex", "40000.00").await;
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    let review_id = r.json["review"]["id"].as_str().expect("review").to_owned();
    let case_id = r.get("case_id").as_str().expect("case").to_owned();

    s.decide(&s.erin(), &review_id, "reject", "").await.expect_problem(400, Some("comment"));
    s.decide(&s.erin(), &review_id, "reject", "   ").await.expect_problem(400, Some("comment"));
    let d = s.decide(&s.erin(), &review_id, "reject", "vendor not on the approved list").await;
    d.expect(200);
    assert_eq!(d.json["review"]["status"], "rejected", "{}", d.text);

    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "rejected");
    assert!(c.get("passport").is_null());
    let decided = events_of(&c.json, "review.decided");
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["data"]["comment"], "vendor not on the approved list");
    assert_eq!(decided[0]["actor"], "approver:erin@example.com");
    check_chain(&c.json);

    s.decide(&s.carol(), &review_id, "approve", "").await.expect_problem(409, None);
    s.decide(&s.erin(), &review_id, "reject", "again").await.expect_problem(409, None);
    assert!(!event_types(&c.json).contains(&"passport.issued".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_risk_payment_needs_two_approvals_one_from_risk() {
    let s = Server::start().await;
    let r = s.submit(&s.agent("payments-bot"), &payment_body("initech", "1000.00")).await;
    r.expect(201);
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    assert_eq!(rules(&r.json), ["high-risk-counterparty"], "{}", r.text);
    assert_eq!(r.json["review"]["approvals_required"], json!(2));
    assert_eq!(r.json["review"]["roles_required"], json!(["risk"]));
    let review_id = r.json["review"]["id"].as_str().expect("review").to_owned();
    let case_id = r.get("case_id").as_str().expect("case").to_owned();

    let d = s.decide(&s.carol(), &review_id, "approve", "").await;
    d.expect(200);
    assert_eq!(d.json["review"]["status"], "pending", "{}", d.text);
    assert_eq!(d.json["review"]["roles_missing"], json!(["risk"]), "{}", d.text);
    assert_eq!(s.case(&s.agent("payments-bot"), &case_id).await.get("status"), "pending_review");
    s.decide(&s.carol(), &review_id, "approve", "").await.expect_problem(409, None);

    let d = s.decide(&s.erin(), &review_id, "approve", "known vendor").await;
    d.expect(200);
    assert_eq!(d.json["review"]["status"], "approved", "{}", d.text);
    assert_eq!(d.json["review"]["roles_missing"], json!([]));

    let c = s.case(&s.agent("payments-bot"), &case_id).await;
    assert_eq!(c.get("status"), "authorized");
    let claims = s.verify_passport(c.get("passport").as_str().expect("passport"), "bank").await;
    assert_eq!(claims.decision.verdict, "approved");
    let approvers: Vec<&str> = claims.approvals.iter().map(|a| a.approver.as_str()).collect();
    assert_eq!(approvers, ["carol@example.com", "erin@example.com"]);
    assert_eq!(claims.exp - claims.iat, 120, "payment-allowed has @ttl(\"PT2M\")");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payment_needs_finance_and_two_distinct_approvers() {
    let s = Server::start().await;
    let r = s.submit(&s.agent("payments-bot"), &payment_body("acme", "6000.00")).await;
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    assert_eq!(r.json["review"]["approvals_required"], json!(2));
    assert_eq!(r.json["review"]["roles_required"], json!(["finance"]));
    let review_id = r.json["review"]["id"].as_str().expect("review").to_owned();
    // Erin (risk) alone does not cover finance, and one approval is not two.
    let d = s.decide(&s.erin(), &review_id, "approve", "").await;
    assert_eq!(d.json["review"]["status"], "pending", "{}", d.text);
    assert_eq!(d.json["review"]["roles_missing"], json!(["finance"]));
    // Alice owns procurement-bot, not payments-bot: she may approve this one.
    let d = s.decide(&s.approver("alice@example.com"), &review_id, "approve", "").await;
    assert_eq!(d.json["review"]["status"], "approved", "{}", d.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_counterparty_is_rejected_without_passport_and_takes_no_outcome() {
    let s = Server::start().await;
    let r = s.po("sanctioned-co", "10.00").await;
    r.expect(201);
    assert_eq!(r.get("verdict"), "rejected", "{}", r.text);
    assert!(rules(&r.json).contains(&"blocked-counterparty".to_owned()), "{}", r.text);
    let reason = r.json["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .find(|x| x["rule"] == "blocked-counterparty")
        .expect("rule");
    assert_eq!(reason["verdict"], "reject");
    assert!(r.get("passport").is_null());
    assert!(r.get("review").is_null());
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "rejected");
    assert_eq!(event_types(&c.json), ["request.submitted", "decision.made"]);
    s.outcome(&s.erp(), &case_id, "completed").await.expect_problem(409, None);
    s.outcome(&s.bot(), &case_id, "disputed").await.expect_problem(409, None);
    s.post(&s.erp(), &format!("/v1/cases/{case_id}/execution"), &json!({"passport_id": "psp-x"}))
        .await
        .expect_problem(409, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_verdicts_of_the_procurement_policy() {
    let s = Server::start().await;
    // Non-USD amounts are rejected by usd-only; a PO over the limit has no permit.
    let mut eur = po_body("acme", "100.00");
    eur["amount"]["currency"] = json!("EUR");
    let r = s.submit(&s.bot(), &eur).await;
    assert_eq!(r.get("verdict"), "rejected", "{}", r.text);
    assert!(rules(&r.json).contains(&"usd-only".to_owned()), "{}", r.text);
    let r = s.po("acme", "300000.00").await;
    assert_eq!(r.get("verdict"), "rejected", "{}", r.text);
    assert_eq!(
        r.json["reasons"],
        json!([{"rule": null, "verdict": "reject", "reason": "no rule permits this action"}])
    );
    // Every contract signature is reviewed by finance.
    let contract = json!({"action": "contract.sign", "counterparty": "acme", "audience": "clm", "description": "NDA"});
    let r = s.submit(&s.agent("contracts-bot"), &contract).await;
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    assert_eq!(rules(&r.json), ["contracts-need-review"]);
    // Exactly at the large-po threshold is still authorized.
    let r = s.po("acme", "10000.00").await;
    assert_eq!(r.get("verdict"), "authorized", "{}", r.text);
    let r = s.po("acme", "10000.01").await;
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_same_case() {
    let s = Server::start().await;
    let mut body = po_body("acme", "120.00");
    body["idempotency_key"] = json!("po-4411");
    let first = s.submit(&s.bot(), &body).await;
    first.expect(201);
    let again = s.submit(&s.bot(), &body).await;
    again.expect(200);
    assert_eq!(again.json, first.json, "a retry returns the same body");

    let mut changed = body.clone();
    changed["amount"]["value"] = json!("121.00");
    s.submit(&s.bot(), &changed).await.expect_problem(409, None);

    // Another agent may use the same key for its own request.
    let mut other = payment_body("acme", "120.00");
    other["idempotency_key"] = json!("po-4411");
    let theirs = s.submit(&s.agent("payments-bot"), &other).await;
    theirs.expect(201);
    assert_ne!(theirs.get("case_id"), first.get("case_id"));

    // Still one case for procurement-bot with that key.
    let list = s.get(&s.bot(), "/v1/cases").await;
    list.expect(200);
    assert_eq!(list.json["cases"].as_array().expect("cases").len(), 1, "{}", list.text);
}

/// A new request's key is taken to be free, without a lookup, and checked when its write
/// set commits: a retry whose fresh decision would differ (its agent suspended since) still
/// gets the case its key made, and a changed body still gets 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_gets_its_case_even_when_a_fresh_decision_would_differ() {
    let s = Server::start().await;
    let mut body = po_body("acme", "120.00");
    body["idempotency_key"] = json!("po-after-suspend");
    let first = s.submit(&s.bot(), &body).await;
    first.expect(201);
    assert_eq!(first.get("verdict"), "authorized", "{}", first.text);
    s.post(&s.admin, "/v1/agents/procurement-bot/suspend", &json!({})).await.expect(200);

    let again = s.submit(&s.bot(), &body).await;
    again.expect(200);
    assert_eq!(again.json, first.json, "the retry is answered with the case it made, not decided again");
    let mut changed = body.clone();
    changed["amount"]["value"] = json!("121.00");
    s.submit(&s.bot(), &changed).await.expect_problem(409, None);

    // A new key is decided afresh: rejected, since the agent is suspended.
    body["idempotency_key"] = json!("po-new-after-suspend");
    let fresh = s.submit(&s.bot(), &body).await;
    fresh.expect(201);
    assert_eq!(fresh.get("verdict"), "rejected", "{}", fresh.text);
    let list = s.get(&s.bot(), "/v1/cases").await;
    assert_eq!(list.json["cases"].as_array().expect("cases").len(), 2, "{}", list.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_one_idempotency_key_make_one_case() {
    let s = Server::start().await;
    let mut body = po_body("acme", "75.00");
    body["idempotency_key"] = json!("retry-storm");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = s.client.clone();
        let url = format!("{}/v1/requests", s.base);
        let token = s.bot();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).bearer_auth(token).json(&body).send().await.expect("request");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, body) = t.await.expect("task");
        assert!(status == 200 || status == 201, "{status}: {body}");
        if status == 201 {
            created += 1;
        }
        ids.insert(body["case_id"].as_str().expect("case").to_owned());
    }
    assert_eq!(created, 1, "exactly one request creates the case");
    assert_eq!(ids.len(), 1, "every retry names the same case");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_on_one_review_have_one_outcome() {
    let s = Server::start().await;
    let r = s.po("globex", "40000.00").await;
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    let review_id = r.json["review"]["id"].as_str().expect("review").to_owned();
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    // carol approves while frank rejects: one of them decides, the other gets 409.
    let (carol, frank) = (s.carol(), s.approver("frank@example.com"));
    let approve = s.decide(&carol, &review_id, "approve", "");
    let reject = s.decide(&frank, &review_id, "reject", "no budget");
    let (a, b) = tokio::join!(approve, reject);
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", a.text, b.text);
    let c = s.case(&s.bot(), &case_id).await;
    let decided = events_of(&c.json, "review.decided");
    assert_eq!(decided.len(), 1, "one decision is recorded: {}", c.text);
    let expected = if a.status == 200 { "authorized" } else { "rejected" };
    assert_eq!(c.get("status"), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_at_once_for_decided_cases_and_at_the_end_of_the_wait_otherwise() {
    let s = Server::start().await;
    let done = s.po("acme", "10.00").await;
    let t = Instant::now();
    let c = s.get(&s.bot(), &format!("/v1/cases/{}?wait=5", done.get("case_id").as_str().expect("case"))).await;
    c.expect(200);
    assert!(t.elapsed() < Duration::from_secs(2), "an authorized case returns at once");
    let pending = s.po("globex", "40000.00").await;
    let t = Instant::now();
    let c = s.get(&s.bot(), &format!("/v1/cases/{}?wait=1", pending.get("case_id").as_str().expect("case"))).await;
    c.expect(200);
    assert_eq!(c.get("status"), "pending_review");
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(4), "waited {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_agent_learns_at_once_that_its_review_expired() {
    let s = Server::start().await;
    let r = s.po("globex", "40000.00").await;
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    let waiter = {
        let client = s.client.clone();
        let url = format!("{}/v1/cases/{case_id}?wait=10", s.base);
        let token = s.bot();
        tokio::spawn(async move {
            let t = Instant::now();
            let body: Value =
                client.get(url).bearer_auth(token).send().await.expect("wait").json().await.expect("json");
            (body, t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.clock.advance_secs(24 * 3600 + 1);
    let (body, elapsed) = waiter.await.expect("waiter");
    assert_eq!(body["status"], "rejected", "{body}");
    assert!(elapsed < Duration::from_secs(4), "returned after {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_escalations_combine_and_one_approver_counts_once() {
    use agentsigna_core::Clock as _;
    let s = Server::start().await;
    let opened = s.clock.now_ms();
    let r = s.submit(&s.agent("payments-bot"), &payment_body("initech", "6000.00")).await;
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    let mut named = rules(&r.json);
    named.sort();
    assert_eq!(named, ["high-risk-counterparty", "large-payment"]);
    let review = &r.json["review"];
    assert_eq!(review["approvals_required"], json!(2));
    let mut roles: Vec<String> = serde_json::from_value(review["roles_required"].clone()).expect("roles");
    roles.sort();
    assert_eq!(roles, ["finance", "risk"]);
    assert_eq!(
        review["deadline"],
        json!(agentsigna_verify::clock::rfc3339_ms(opened + 4 * 3600 * 1000)),
        "the shortest @deadline applies"
    );
    let review_id = review["id"].as_str().expect("review").to_owned();
    // Frank holds both roles, but is one approver.
    let d = s.decide(&s.approver("frank@example.com"), &review_id, "approve", "").await;
    assert_eq!(d.json["review"]["status"], "pending", "{}", d.text);
    assert_eq!(d.json["review"]["roles_missing"], json!([]));
    let d = s.decide(&s.carol(), &review_id, "approve", "").await;
    assert_eq!(d.json["review"]["status"], "approved", "{}", d.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_deadline_is_24_hours_after_the_verdict() {
    use agentsigna_core::Clock as _;
    let s = Server::start().await;
    let opened = s.clock.now_ms();
    let r = s.po("globex", "40000.00").await;
    assert_eq!(r.json["review"]["deadline"], json!(agentsigna_verify::clock::rfc3339_ms(opened + 24 * 3600 * 1000)));
}
