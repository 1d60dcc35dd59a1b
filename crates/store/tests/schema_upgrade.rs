//! One-off generator of `testdata/schema-2/`: a small SQLite database of schema version 2
//! with cases in every state, and what the engine served from it. Run on the commit that
//! still wrote schema 2:
//! `cargo test -p agentsigna-store --test schema_upgrade -- --ignored write_fixture`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use agentsigna_core::engine::outcome::{ExecutionInput, OutcomeInput};
use agentsigna_core::engine::request::RequestInput;
use agentsigna_core::engine::review::DecisionInput;
use agentsigna_core::engine::{Config, Engine};
use agentsigna_core::keys::Keyring;
use agentsigna_core::model::Principal;
use agentsigna_core::money::Amount;
use agentsigna_core::org::OrgFile;
use agentsigna_core::trust::Outcome;
use agentsigna_core::ManualClock;
use agentsigna_store::sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;

const ORG: &str = include_str!("../../../examples/procurement/org.toml");
const POLICY: &str = include_str!("../../../examples/procurement/policy.cedar");
const T0: i64 = 1_800_000_000_000;

fn po(agent_cp: &str, value: &str, key: Option<&str>) -> RequestInput {
    RequestInput {
        action: "purchase_order.create".into(),
        counterparty: agent_cp.into(),
        amount: Some(Amount { value: value.into(), currency: "USD".into() }),
        audience: "erp".into(),
        description: format!("order of {value}"),
        context: Some(json!({"cost_center": "IT-7", "items": 3})),
        idempotency_key: key.map(str::to_owned),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "generates testdata/schema-2 with the code that wrote schema 2"]
async fn write_fixture() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/schema-2");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let keys = Keyring::load_or_create(&out.join("keys"), None, 0).unwrap();
    let db = out.join("agentsigna.db");
    let store = Arc::new(SqliteStore::open(&db, keys.ledger.clone(), SqliteOptions::default()).unwrap());
    let clock = Arc::new(ManualClock::new(T0));
    let engine = Engine::new(store.clone(), clock.clone(), keys.clone(), Config::default());
    engine.apply_org(&OrgFile::parse(ORG).unwrap(), Some(POLICY.to_owned())).await.unwrap();
    let bot = Principal::Agent("procurement-bot".into());
    let payments = Principal::Agent("payments-bot".into());
    let carol = Principal::Approver("carol@example.com".into());
    let frank = Principal::Approver("frank@example.com".into());
    let erp = Principal::System("erp".into());
    let tick = || clock.advance_ms(1_234);
    let decide = |d: &str, c: &str| DecisionInput { decision: d.into(), comment: c.into() };
    let mut cases = serde_json::Map::new();

    // Authorized, its passport expired unused.
    let f = engine.submit_request(&bot, po("acme", "100.00", None)).await.unwrap();
    clock.advance_ms(3_600_000);
    assert_eq!(engine.process_due().await.unwrap(), 1);
    cases.insert("expired".into(), json!(f.case_id));
    tick();
    // Authorized at once, with an idempotency key.
    let a = engine.submit_request(&bot, po("acme", "480.00", Some("po-1"))).await.unwrap();
    assert_eq!(a.body["verdict"], "authorized");
    cases.insert("authorized".into(), json!(a.case_id));
    tick();
    // Escalated, approved, picked up, executed, completed.
    let b = engine.submit_request(&bot, po("globex", "12000.00", None)).await.unwrap();
    let review = b.body["review"]["id"].as_str().unwrap().to_owned();
    tick();
    engine.decide_review(&carol, &review, decide("approve", "ok")).await.unwrap();
    tick();
    let picked = engine.get_case(&bot, &b.case_id).await.unwrap();
    let passport_id = picked["passport_info"]["id"].as_str().unwrap().to_owned();
    tick();
    engine.report_execution(&erp, &b.case_id, ExecutionInput { passport_id, reference: Some("PO-77".into()) })
        .await
        .unwrap();
    tick();
    engine
        .record_outcome(&erp, &b.case_id, OutcomeInput { outcome: Outcome::Completed, detail: Some("delivered".into()) })
        .await
        .unwrap();
    cases.insert("closed".into(), json!(b.case_id));
    tick();
    // Rejected by the policy.
    let c = engine.submit_request(&bot, po("sanctioned-co", "90.00", None)).await.unwrap();
    assert_eq!(c.body["verdict"], "rejected");
    cases.insert("rejected".into(), json!(c.case_id));
    tick();
    // A payment waiting for its second approval.
    let mut pay = po("initech", "6000.00", None);
    pay.action = "payment.send".into();
    pay.audience = "bank".into();
    let d = engine.submit_request(&payments, pay).await.unwrap();
    let review = d.body["review"]["id"].as_str().unwrap().to_owned();
    tick();
    engine.decide_review(&carol, &review, decide("approve", "first")).await.unwrap();
    cases.insert("pending".into(), json!(d.case_id));
    tick();
    // Rejected by an approver.
    let e = engine.submit_request(&bot, po("globex", "15000.00", None)).await.unwrap();
    let review = e.body["review"]["id"].as_str().unwrap().to_owned();
    tick();
    engine.decide_review(&carol, &review, decide("reject", "too much")).await.unwrap();
    cases.insert("declined".into(), json!(e.case_id));
    tick();
    // Approved, not picked up yet.
    let g = engine.submit_request(&bot, po("globex", "11000.00", Some("po-2"))).await.unwrap();
    let review = g.body["review"]["id"].as_str().unwrap().to_owned();
    tick();
    engine.decide_review(&frank, &review, decide("approve", "")).await.unwrap();
    cases.insert("approved".into(), json!(g.case_id));
    tick();

    // What the engine serves at this instant.
    let mut views = serde_json::Map::new();
    let admin = Principal::Admin;
    for (name, id) in &cases {
        let id = id.as_str().unwrap();
        views.insert(format!("case {name} as admin"), engine.get_case(&admin, id).await.unwrap());
        views.insert(
            format!("evidence {name}"),
            serde_json::to_value(engine.case_evidence(&admin, id).await.unwrap()).unwrap(),
        );
    }
    for name in ["authorized", "closed", "rejected", "declined", "expired"] {
        let id = cases[name].as_str().unwrap();
        views.insert(format!("case {name} as its agent"), engine.get_case(&bot, id).await.unwrap());
    }
    views.insert("cases as admin".into(), engine.list_cases(&admin, None, 100).await.unwrap());
    views.insert("cases as procurement-bot".into(), engine.list_cases(&bot, None, 100).await.unwrap());
    views.insert("cases as erp".into(), engine.list_cases(&erp, None, 100).await.unwrap());
    views.insert("reviews".into(), engine.list_reviews(&carol, None).await.unwrap());
    views.insert("reviews pending".into(), engine.list_reviews(&carol, Some("pending".into())).await.unwrap());
    for name in ["closed", "pending", "declined", "approved"] {
        let review = views[&format!("case {name} as admin")]["review"]["id"].as_str().unwrap().to_owned();
        views.insert(format!("review {name}"), engine.get_review(&carol, &review).await.unwrap());
    }
    let retry = engine.submit_request(&bot, po("acme", "480.00", Some("po-1"))).await.unwrap();
    assert!(!retry.created);
    views.insert("retry of authorized".into(), retry.body);
    views.insert("figures".into(), json!(format!("{:?}", engine.figures().await.unwrap())));

    use agentsigna_core::Clock as _;
    let fixture = json!({"now_ms": clock.now_ms(), "cases": cases, "views": views});
    std::fs::write(out.join("served.json"), serde_json::to_string_pretty(&fixture).unwrap() + "\n").unwrap();
    drop(engine);
    drop(store);
}
