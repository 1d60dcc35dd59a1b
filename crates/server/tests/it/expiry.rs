//! Deadlines driven by the injected clock: review expiry, passport expiry, pickup window.

use serde_json::json;

use super::harness::*;

const HOUR: i64 = 3600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_review_expires_into_a_rejection_at_its_deadline() {
    let s = Server::start().await;
    let r = s.po("globex", "40000.00").await;
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    let review_id = r.json["review"]["id"].as_str().expect("review").to_owned();

    s.clock.advance_secs(24 * HOUR - 60);
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "pending_review", "not yet due: {}", c.text);

    s.clock.advance_secs(61);
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "rejected", "{}", c.text);
    assert_eq!(c.json["review"]["status"], "expired");
    let expired = events_of(&c.json, "review.expired");
    assert_eq!(expired.len(), 1, "{}", c.text);
    assert_eq!(expired[0]["actor"], "server");
    for e in c.json["events"].as_array().expect("events") {
        check_entry_digest(e);
    }
    assert!(c.get("passport").is_null());
    s.decide(&s.carol(), &review_id, "approve", "").await.expect_problem(409, None);
    let q = s.get(&s.carol(), "/v1/reviews?status=pending").await;
    assert!(q.json["reviews"].as_array().expect("reviews").is_empty(), "{}", q.text);
    let q = s.get(&s.carol(), "/v1/reviews?status=expired").await;
    assert_eq!(q.json["reviews"].as_array().expect("reviews").len(), 1, "{}", q.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_decision_loses_to_the_deadline() {
    let s = Server::start().await;
    let r = s.po("globex", "40000.00").await;
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    let review_id = r.json["review"]["id"].as_str().expect("review").to_owned();
    s.clock.advance_secs(24 * HOUR + 1);
    // Nobody looked at the case: the decision itself finds the deadline passed.
    s.decide(&s.carol(), &review_id, "approve", "").await.expect_problem(409, None);
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "rejected");
    assert_eq!(events_of(&c.json, "review.expired").len(), 1);
    assert!(events_of(&c.json, "review.decided").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_risk_review_has_a_four_hour_deadline_and_the_sweep_expires_it() {
    let s = Server::start().await;
    let r = s.submit(&s.agent("payments-bot"), &payment_body("initech", "1000.00")).await;
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    let running = s.running.as_ref().expect("running");

    s.clock.advance_secs(4 * HOUR - 10);
    assert_eq!(running.engine.process_due().await.expect("sweep"), 0);
    s.clock.advance_secs(11);
    assert_eq!(running.engine.process_due().await.expect("sweep"), 1);
    let c = s.case(&s.carol(), &case_id).await;
    assert_eq!(c.get("status"), "rejected", "{}", c.text);
    assert_eq!(events_of(&c.json, "review.expired").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_passport_expires_after_five_minutes_and_is_never_reissued() {
    let s = Server::start().await;
    let r = s.po("acme", "100.00").await;
    assert_eq!(r.get("verdict"), "authorized", "{}", r.text);
    let case_id = r.get("case_id").as_str().expect("case").to_owned();

    s.clock.advance_secs(299);
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "authorized");
    assert!(c.get("passport").is_string());

    s.clock.advance_secs(2);
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "expired", "{}", c.text);
    assert!(c.get("passport").is_null(), "an expired passport is not served: {}", c.text);
    let expired = events_of(&c.json, "passport.expired");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["data"]["passport_id"], r.json["passport_id"]);
    // Fetching again changes nothing.
    let again = s.case(&s.bot(), &case_id).await;
    assert_eq!(again.get("status"), "expired");
    assert_eq!(again.json["events"], c.json["events"]);
    assert_eq!(events_of(&again.json, "passport.issued").len(), 1, "never re-issued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_passport_lives_two_minutes() {
    let s = Server::start().await;
    let r = s.submit(&s.agent("payments-bot"), &payment_body("acme", "100.00")).await;
    assert_eq!(r.get("verdict"), "authorized", "{}", r.text);
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    s.clock.advance_secs(121);
    let c = s.case(&s.agent("payments-bot"), &case_id).await;
    assert_eq!(c.get("status"), "expired", "@ttl(\"PT2M\"): {}", c.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_passport_not_picked_up_within_the_window_expires() {
    let s = Server::start().await;
    let r = s.po("globex", "40000.00").await;
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    let review_id = r.json["review"]["id"].as_str().expect("review").to_owned();
    s.clock.advance_secs(HOUR);
    s.decide(&s.carol(), &review_id, "approve", "").await.expect(200);

    // Approvers and the ERP looking at the case do not issue the passport.
    let seen = s.case(&s.carol(), &case_id).await;
    assert_eq!(seen.get("status"), "authorized");
    assert!(seen.get("passport").is_null());
    assert!(events_of(&seen.json, "passport.issued").is_empty(), "{}", seen.text);
    assert!(seen.get("pickup_deadline").is_string());
    s.case(&s.erp(), &case_id).await.expect(200);

    s.clock.advance_secs(24 * HOUR + 1);
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "expired", "{}", c.text);
    assert!(c.get("passport").is_null());
    assert!(events_of(&c.json, "passport.issued").is_empty(), "{}", c.text);
    let expired = events_of(&c.json, "passport.expired");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["data"]["passport_id"], json!(null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_passport_picked_up_late_is_still_issued_with_a_fresh_lifetime() {
    let s = Server::start().await;
    let r = s.po("globex", "40000.00").await;
    let case_id = r.get("case_id").as_str().expect("case").to_owned();
    let review_id = r.json["review"]["id"].as_str().expect("review").to_owned();
    s.decide(&s.carol(), &review_id, "approve", "").await.expect(200);
    // An agent restarted hours later still gets it.
    s.clock.advance_secs(20 * HOUR);
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "authorized", "{}", c.text);
    let token = c.get("passport").as_str().expect("passport");
    let claims = s.verify_passport(token, "erp").await;
    assert_eq!(claims.iat, s.now_secs(), "lifetime counted from issuance");
}
