//! What survives a restart: cases, reviews, credentials, keys and the ledger.

use serde_json::json;

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_cases_reviews_credentials_and_the_ledger() {
    let mut s = Server::start().await;
    let done = s.po("acme", "100.00").await;
    let token = done.get("passport").as_str().expect("passport").to_owned();
    let esc = s.po("globex", "40000.00").await;
    let case_id = esc.get("case_id").as_str().expect("case").to_owned();
    let review_id = esc.json["review"]["id"].as_str().expect("review").to_owned();
    let checkpoint_before = s.get_public("/v1/ledger/checkpoint").await.text;

    s.restart().await;
    // Same keys: the passport issued before still verifies; same ledger key.
    s.verify_passport(&token, "erp").await;
    assert_eq!(
        s.get_public("/v1/ledger/checkpoint").await.text,
        checkpoint_before,
        "re-applying the org writes nothing"
    );
    // The pending review is still in the queue and can be decided.
    let q = s.get(&s.carol(), "/v1/reviews?status=pending").await;
    assert!(q.json["reviews"].as_array().expect("reviews").iter().any(|r| r["id"] == json!(review_id)), "{}", q.text);
    s.decide(&s.carol(), &review_id, "approve", "").await.expect(200);
    let c = s.case(&s.bot(), &case_id).await;
    assert_eq!(c.get("status"), "authorized");
    s.verify_passport(c.get("passport").as_str().expect("passport"), "erp").await;
    // The case chain continues across the restart.
    for e in c.json["events"].as_array().expect("events") {
        check_entry_digest(e);
    }
    s.stop().await;
    let (code, out, err) = outcome(&run_cli(&["ledger", "verify", "--data-dir", s.data_dir().to_str().expect("path")]));
    assert_eq!(code, 0, "{out} {err}");
}
