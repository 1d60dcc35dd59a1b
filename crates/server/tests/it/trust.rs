//! Execution, outcomes and trust: who may report what, and how scores move the next verdict.

use std::sync::Arc;

use serde_json::json;

use super::harness::*;

async fn authorized(s: &Server, token: &str, body: &serde_json::Value) -> (String, String) {
    let r = s.submit(token, body).await;
    r.expect(201);
    assert_eq!(r.get("verdict"), "authorized", "{}", r.text);
    (
        r.get("case_id").as_str().expect("case").to_owned(),
        r.get("passport_id").as_str().expect("passport_id").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_move_trust_and_the_next_verdict_uses_the_new_score() {
    let s = Server::start().await;
    let admin = s.admin.clone();

    // An agent's own failure report counts against the agent only.
    let payments = s.agent("payments-bot");
    let (pay_case, _) = authorized(&s, &payments, &payment_body("acme", "100.00")).await;
    let r = s.outcome(&payments, &pay_case, "disputed").await;
    r.expect(200);
    assert_eq!(r.get("status"), "closed", "{}", r.text);
    let a = s.get(&admin, "/v1/agents/payments-bot").await;
    assert_eq!(a.json["trust"]["score"], json!(20), "{}", a.text);
    assert_eq!(a.json["trust"]["outcomes"]["disputed"], json!(1));
    let acme = s.get(&admin, "/v1/counterparties/acme").await;
    acme.expect(200);
    assert_eq!(acme.json["trust"]["score"], json!(50), "an agent cannot smear a counterparty: {}", acme.text);
    assert!(acme.json["trust"]["updated_at"].is_null());

    // procurement-bot: baseline verdict at trust 50.
    let base = s.po("globex", "2000.00").await;
    assert_eq!(base.get("verdict"), "authorized", "{}", base.text);

    let bot = s.bot();
    let erp = s.erp();
    let (case_id, passport_id) = authorized(&s, &bot, &po_body("acme", "100.00")).await;
    // The agent's success is not evidence; another system may not even learn the case exists.
    s.outcome(&bot, &case_id, "completed").await.expect_problem(403, None);
    s.outcome(&s.system("bank"), &case_id, "completed").await.expect_problem(404, None);
    s.outcome(&erp, &case_id, "great").await.expect_problem(400, Some("outcome"));
    // Execution with the wrong passport id is refused; with the right one, recorded.
    s.post(&erp, &format!("/v1/cases/{case_id}/execution"), &json!({"passport_id": "psp-nope"}))
        .await
        .expect_problem(400, Some("passport_id"));
    let ex = s
        .post(
            &erp,
            &format!("/v1/cases/{case_id}/execution"),
            &json!({"passport_id": passport_id, "reference": "PO-77"}),
        )
        .await;
    ex.expect(200);
    assert_eq!(ex.get("status"), "executed", "{}", ex.text);

    s.clock.advance_secs(5);
    let done = s.outcome(&erp, &case_id, "completed").await;
    done.expect(200);
    assert_eq!(done.get("status"), "closed");
    let a = s.get(&admin, "/v1/agents/procurement-bot").await;
    a.expect(200);
    assert_eq!(a.json["trust"]["score"], json!(67), "{}", a.text);
    assert_eq!(a.json["trust"]["outcomes"], json!({"completed": 1, "reversed": 0, "rejected": 0, "disputed": 0}));
    assert!(a.json["trust"]["updated_at"].is_string());
    assert!(a.json["trust"]["confidence"].as_f64().is_some_and(|c| c > 0.0));
    let c = s.get(&s.carol(), "/v1/counterparties/acme").await;
    assert_eq!(c.json["trust"]["score"], json!(67), "{}", c.text);
    assert_eq!(c.json["trust"]["outcomes"]["completed"], json!(1));
    assert!(c.json["trust"]["updated_at"].is_string());

    let case = s.case(&bot, &case_id).await;
    assert_eq!(
        event_types(&case.json),
        [
            "request.submitted",
            "decision.made",
            "passport.issued",
            "execution.reported",
            "outcome.recorded",
            "trust.updated",
            "trust.updated"
        ]
    );
    let subjects: Vec<_> =
        events_of(&case.json, "trust.updated").iter().map(|e| e["data"]["subject"].clone()).collect();
    assert_eq!(subjects, [json!("agent:procurement-bot"), json!("counterparty:acme")]);
    assert_eq!(events_of(&case.json, "trust.updated")[0]["data"]["before"], json!(50));
    assert_eq!(events_of(&case.json, "trust.updated")[0]["data"]["after"], json!(67));
    for e in case.json["events"].as_array().expect("events") {
        check_entry_digest(e);
    }
    let n_events = case.json["events"].as_array().expect("events").len();

    // The same outcome again from the same party: nothing new.
    s.outcome(&erp, &case_id, "completed").await.expect(200);
    let again = s.case(&bot, &case_id).await;
    assert_eq!(again.json["events"].as_array().expect("events").len(), n_events, "a repeated outcome is idempotent");
    assert_eq!(s.get(&admin, "/v1/agents/procurement-bot").await.json["trust"]["score"], json!(67));

    // A dispute later replaces the completion: the worse outcome counts.
    s.clock.advance_secs(60);
    s.outcome(&erp, &case_id, "disputed").await.expect(200);
    let a = s.get(&admin, "/v1/agents/procurement-bot").await;
    assert_eq!(a.json["trust"]["score"], json!(20), "{}", a.text);
    assert_eq!(a.json["trust"]["outcomes"], json!({"completed": 0, "reversed": 0, "rejected": 0, "disputed": 1}));
    let c = s.get(&admin, "/v1/counterparties/acme").await;
    assert_eq!(c.json["trust"]["score"], json!(20));
    let case = s.case(&bot, &case_id).await;
    let updates = events_of(&case.json, "trust.updated");
    assert_eq!(updates.len(), 4);
    assert_eq!(updates[2]["data"]["replaces"], "completed");
    assert_eq!(updates[2]["data"]["outcome"], "disputed");
    assert_eq!(case.json["outcomes"].as_array().expect("outcomes").len(), 2);
    // A better outcome after the dispute does not raise the score back.
    s.outcome(&s.carol(), &case_id, "completed").await.expect(200);
    assert_eq!(s.get(&admin, "/v1/agents/procurement-bot").await.json["trust"]["score"], json!(20));

    // The next verdict sees trust 20: a 2,000.00 PO that was authorized now loses
    // auto-approval (low-trust-latitude).
    let next = s.po("globex", "2000.00").await;
    assert_eq!(next.json["trust"]["agent"], json!(20), "{}", next.text);
    assert_eq!(next.get("verdict"), "escalated", "{}", next.text);
    assert_eq!(rules(&next.json), ["low-trust-latitude"]);
    assert_eq!(next.json["review"]["roles_required"], json!(["risk"]));
    // A small one still passes.
    let small = s.po("globex", "900.00").await;
    assert_eq!(small.get("verdict"), "authorized", "{}", small.text);
    // acme's trust fell below 30: its requests now need a risk review.
    let acme_po = s.submit(&s.agent("contracts-bot"), &po_body("acme", "50.00")).await;
    assert_eq!(acme_po.json["trust"]["counterparty"], json!(20));
    assert_eq!(rules(&acme_po.json), ["untrusted-counterparty"], "{}", acme_po.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_agent_is_rejected_outright() {
    let s = Server::start().await;
    let bot = s.bot();
    // Two disputed cases: α = 1, β = 7 → 13 < 20.
    for cp in ["acme", "globex"] {
        let (case_id, _) = authorized(&s, &bot, &po_body(cp, "10.00")).await;
        s.outcome(&s.erp(), &case_id, "disputed").await.expect(200);
    }
    let a = s.get(&s.admin, "/v1/agents/procurement-bot").await;
    assert_eq!(a.json["trust"]["score"], json!(13), "{}", a.text);
    let r = s.po("acme", "10.00").await;
    assert_eq!(r.get("verdict"), "rejected", "{}", r.text);
    assert!(rules(&r.json).contains(&"untrusted-agent".to_owned()), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_evidence_decays_and_latitude_comes_back() {
    let s = Server::start().await;
    let (case_id, _) = authorized(&s, &s.bot(), &po_body("acme", "10.00")).await;
    s.outcome(&s.erp(), &case_id, "disputed").await.expect(200);
    assert_eq!(s.get(&s.admin, "/v1/agents/procurement-bot").await.json["trust"]["score"], json!(20));
    // One half-life later the dispute weighs half: α = 1, β = 1 + 1.5 → 29.
    s.clock.advance_secs(90 * 86_400);
    let a = s.get(&s.admin, "/v1/agents/procurement-bot").await;
    assert_eq!(a.json["trust"]["score"], json!(29), "{}", a.text);
    let r = s.po("globex", "2000.00").await;
    assert_eq!(r.json["trust"]["agent"], json!(29));
    assert_eq!(r.get("verdict"), "escalated", "{}", r.text);
    // After a year it barely counts: 1 / (1 + 1 + 3·2^(-365/90)) → 46 ≥ 45.
    s.clock.advance_secs(275 * 86_400);
    let r = s.po("globex", "2000.00").await;
    assert_eq!(r.json["trust"]["agent"], json!(46), "{}", r.text);
    assert_eq!(r.get("verdict"), "authorized", "{}", r.text);
}

/// `trust rebuild --check` after 10,000 outcomes recorded concurrently, with time moving
/// so that evidence decays between them (non-trivial floating-point state): every stored
/// standing equals the replay of the ledger, bit for bit. Driven through the engine (HTTP
/// would only add time); the check runs through the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_rebuild_check_holds_after_ten_thousand_concurrent_outcomes() {
    use agentsigna_core::engine::admin::{CounterpartyInput, NewAgent};
    use agentsigna_core::engine::outcome::OutcomeInput;
    use agentsigna_core::engine::request::RequestInput;
    use agentsigna_core::model::{Principal, Risk};
    use agentsigna_core::money::Amount;
    use agentsigna_core::policy::Verdict;
    use agentsigna_core::trust::Outcome;

    let outcomes_wanted: usize =
        std::env::var("AGENTSIGNA_TEST_OUTCOMES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    const LANES: usize = 16;
    let mut s = Server::start().await;
    let engine = s.running.as_ref().expect("running").engine.clone();
    let admin = Principal::Admin;
    for i in 0..LANES {
        let agent =
            NewAgent { id: format!("load-bot-{i}"), owner: "owner@example.com".into(), name: None, public_jwk: None };
        engine.register_agent(&admin, agent).await.expect("agent");
        let cp = CounterpartyInput { name: format!("Vendor {i}"), risk: Risk::Low };
        engine.put_counterparty(&admin, format!("load-vendor-{i}"), cp).await.expect("counterparty");
    }
    // Time moves while outcomes are recorded: 40 s of clock per millisecond.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (clock, stop) = (s.clock.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                clock.advance_secs(40);
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
    };
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut recorded = 0;
    let mut i = 0usize;
    while recorded < outcomes_wanted {
        let permit = limit.clone().acquire_owned().await.expect("semaphore");
        let engine = engine.clone();
        // A case with a second outcome now and then (a completed one later reversed).
        // Bad outcomes only once every agent and vendor has a good history (the first
        // 1,024 cases), then by blocks of 256 cases, in which every agent and every vendor
        // has 16 cases: no standing falls under the policy's review or reject thresholds,
        // so every request stays authorized.
        let outcomes: &[Outcome] = match (i / 256) % 8 {
            6 if i >= 1024 => &[Outcome::Completed, Outcome::Reversed],
            7 if i >= 1024 => &[Outcome::Completed, Outcome::Rejected],
            _ => &[Outcome::Completed],
        };
        recorded += outcomes.len();
        let (agent, vendor) = (format!("load-bot-{}", i % LANES), format!("load-vendor-{}", (i / LANES) % LANES));
        tasks.spawn(async move {
            let _permit = permit;
            let request = RequestInput {
                action: "purchase_order.create".into(),
                counterparty: vendor,
                amount: Some(Amount { value: "10.00".into(), currency: "USD".into() }),
                audience: "erp".into(),
                description: String::new(),
                context: None,
                idempotency_key: None,
            };
            let out = engine.submit_request(&Principal::Agent(agent), request).await.expect("request");
            assert_eq!(out.body.verdict, Verdict::Authorized, "{:?}", out.body);
            for o in outcomes {
                let input = OutcomeInput { outcome: *o, detail: None };
                engine.record_outcome(&Principal::System("erp".into()), &out.case_id, input).await.expect("outcome");
            }
        });
        i += 1;
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    ticker.await.expect("ticker");
    eprintln!("{recorded} outcomes on {i} cases in {:.1?}", started.elapsed());
    let stored = engine.agent_view(&admin, "load-bot-0").await.expect("agent");
    let o = stored.trust.outcomes;
    let counted = o.completed + o.reversed + o.rejected + o.disputed;
    assert_eq!(counted as usize, i.div_ceil(LANES), "every case of the lane counts once: {o:?}");
    drop(engine);
    s.stop().await;
    let data = s.data_dir();
    let (code, out, err) =
        outcome(&run_cli(&["trust", "rebuild", "--check", "--data-dir", data.to_str().expect("path")]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("{} standings", 2 * LANES)), "{out}");
    assert!(out.contains("every stored standing equals the replay"), "{out}");
}
