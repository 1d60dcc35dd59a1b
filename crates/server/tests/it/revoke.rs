//! Revoked credentials reach what they left pending: a revoked agent's cases are rejected
//! at the next approval or at passport pickup; a revoked approver's approvals stop
//! counting, and an approved review that loses its quorum by that gets no passport.

use serde_json::{json, Value};

use super::harness::*;

/// The rules named by a case's `decision.rechecked` events, with their stages.
fn rechecked(case: &Value) -> Vec<(String, String)> {
    events_of(case, "decision.rechecked")
        .iter()
        .flat_map(|e| {
            let stage = e["data"]["stage"].as_str().unwrap_or_default().to_owned();
            e["data"]["reasons"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |r| (r["rule"].as_str().unwrap_or_default().to_owned(), stage.clone()))
        })
        .collect()
}

/// The org events of a type in the whole ledger.
async fn org_events(s: &Server, kind: &str) -> Vec<Value> {
    let r = s.get(&s.admin, "/v1/ledger/entries?start=0").await;
    r.expect(200);
    r.text.lines().map(|l| serde_json::from_str::<Value>(l).expect("entry")).filter(|e| e["type"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_no_longer_authenticates_and_its_pending_case_is_rejected_at_approval() {
    let s = Server::start().await;
    let r = s.po("globex", "40000.00").await;
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    let review_id = r.json["review"]["id"].as_str().expect("review").to_owned();

    // Only the admin revokes; revoking twice is idempotent; unknown ids are 404.
    s.post(&s.carol(), "/v1/agents/procurement-bot/revoke", &json!({})).await.expect_problem(403, None);
    let first = s.post(&s.admin, "/v1/agents/procurement-bot/revoke", &json!({})).await;
    first.expect(200);
    assert_eq!(first.get("revoked"), &json!(true));
    let again = s.post(&s.admin, "/v1/agents/procurement-bot/revoke", &json!({})).await;
    assert_eq!(again.get("revoked_at"), first.get("revoked_at"), "idempotent: {}", again.text);
    s.post(&s.admin, "/v1/agents/nobody/revoke", &json!({})).await.expect_problem(404, None);
    assert_eq!(org_events(&s, "agent.revoked").await.len(), 1, "recorded once, in the organization chain");

    // Its key is refused at once (this process forgets cached lookups).
    s.get(&s.bot(), "/v1/cases").await.expect_problem(401, None);
    s.submit(&s.bot(), &po_body("acme", "10.00")).await.expect_problem(401, None);

    // The approval rejects the pending case with the reason, and the approver is told.
    let v = s.decide(&s.carol(), &review_id, "approve", "budgeted").await;
    v.expect(200);
    assert_eq!(v.get("status"), "rejected", "the approver is told: {}", v.text);
    let c = s.case(&s.admin, &case_id).await;
    assert_eq!(c.get("status"), "rejected");
    assert!(events_of(&c.json, "passport.issued").is_empty());
    assert_eq!(rechecked(&c.json), [("agent-revoked".to_owned(), "review".to_owned())], "{}", c.text);
    let reason = &events_of(&c.json, "decision.rechecked")[0]["data"]["reasons"][0]["reason"];
    assert!(reason.as_str().is_some_and(|r| r.contains("revoked")), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_approvers_approval_stops_counting_and_a_lost_quorum_gets_no_passport() {
    let s = Server::start().await;
    let payments = s.agent("payments-bot");
    // large-payment: two approvals with the finance role (carol, frank, alice hold it).
    let escalate = || async {
        let r = s.submit(&payments, &payment_body("acme", "6000.00")).await;
        assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
        assert_eq!(r.json["review"]["approvals_required"], json!(2), "{}", r.text);
        (
            r.get("case_id").as_str().expect("case").to_owned(),
            r.json["review"]["id"].as_str().expect("review").to_owned(),
        )
    };
    let frank = s.approver("frank@example.com");
    let alice = s.approver("alice@example.com");

    // 1. Revoked while the review is pending: the next approval does not complete it.
    let (case_id, review_id) = escalate().await;
    s.decide(&s.carol(), &review_id, "approve", "ok").await.expect(200);
    s.post(&s.admin, "/v1/approvers/carol@example.com/revoke", &json!({})).await.expect(200);
    s.get(&s.carol(), "/v1/reviews").await.expect_problem(401, None);
    s.decide(&s.carol(), &review_id, "approve", "again").await.expect_problem(401, None);
    let v = s.decide(&frank, &review_id, "approve", "ok").await;
    v.expect(200);
    assert_eq!(v.json["review"]["status"], "pending", "carol's approval no longer counts: {}", v.text);
    let carols: Vec<_> = v.json["review"]["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter(|d| d["approver"] == "carol@example.com")
        .cloned()
        .collect();
    assert!(carols[0]["withdrawn"].as_str().is_some_and(|w| w.contains("revoked")), "{carols:?}");
    let c = s.case(&s.admin, &case_id).await;
    let withdrawn = events_of(&c.json, "review.approval_withdrawn");
    assert_eq!(withdrawn.len(), 1, "{}", c.text);
    assert_eq!(withdrawn[0]["data"]["approver"], "carol@example.com");
    // A third approver completes it; the passport names only the approvals that count.
    let v = s.decide(&alice, &review_id, "approve", "ok").await;
    assert_eq!(v.json["review"]["status"], "approved", "{}", v.text);
    let c = s.case(&payments, &case_id).await;
    let token = c.get("passport").as_str().expect("a passport").to_owned();
    let claims = s.verify_passport(&token, "bank").await;
    let names: Vec<_> = claims.approvals.iter().map(|a| a.approver.as_str()).collect();
    assert_eq!(names, ["frank@example.com", "alice@example.com"]);

    // 2. Revoked after the review was approved, before the passport was picked up: the
    //    quorum is gone, the case is rejected with the reason, no passport.
    let (case_id, review_id) = escalate().await;
    s.decide(&frank, &review_id, "approve", "ok").await.expect(200);
    let v = s.decide(&alice, &review_id, "approve", "ok").await;
    assert_eq!(v.json["review"]["status"], "approved", "{}", v.text);
    s.post(&s.admin, "/v1/approvers/frank@example.com/revoke", &json!({})).await.expect(200);
    let c = s.case(&payments, &case_id).await;
    assert_eq!(c.get("status"), "rejected", "{}", c.text);
    assert!(c.get("passport").is_null());
    assert!(events_of(&c.json, "passport.issued").is_empty());
    assert_eq!(rechecked(&c.json), [("approver-revoked".to_owned(), "passport".to_owned())], "{}", c.text);
    assert_eq!(events_of(&c.json, "review.approval_withdrawn").len(), 1);
    assert_eq!(org_events(&s, "approver.revoked").await.len(), 2);
}
