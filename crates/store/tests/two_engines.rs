//! Two engines (as two nodes would be) on one store: their decisions race only through
//! the store's preconditions (they share no in-process lock), and every request and
//! outcome still commits once, into one ledger without gap or fork.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agentsigna_core::engine::outcome::OutcomeInput;
use agentsigna_core::engine::request::RequestInput;
use agentsigna_core::engine::{Config, Engine};
use agentsigna_core::keys::Keyring;
use agentsigna_core::model::Principal;
use agentsigna_core::money::Amount;
use agentsigna_core::org::OrgFile;
use agentsigna_core::policy::Verdict;
use agentsigna_core::trust::Outcome;
use agentsigna_core::SystemClock;
use agentsigna_store::sqlite::{LedgerReader, SqliteOptions, SqliteStore};

const ORG: &str = include_str!("../../../examples/procurement/org.toml");
const POLICY: &str = include_str!("../../../examples/procurement/policy.cedar");

fn request(i: usize, key: Option<String>) -> RequestInput {
    RequestInput {
        action: "purchase_order.create".into(),
        counterparty: "acme".into(),
        amount: Some(Amount { value: "100.00".into(), currency: "USD".into() }),
        audience: "erp".into(),
        description: format!("order {i}"),
        context: None,
        idempotency_key: key,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_and_outcomes_on_two_engines_commit_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keyring::load_or_create(&dir.path().join("keys"), None, 0).unwrap();
    let store =
        Arc::new(SqliteStore::open(&dir.path().join("db"), keys.ledger.clone(), SqliteOptions::default()).unwrap());
    let node = |k: &Keyring| Arc::new(Engine::new(store.clone(), Arc::new(SystemClock), k.clone(), Config::default()));
    let (a, b) = (node(&keys), node(&keys));
    a.apply_org(&OrgFile::parse(ORG).unwrap(), Some(POLICY.to_owned())).await.unwrap();
    let bot = Principal::Agent("procurement-bot".into());

    // 40 requests, half on each node, plus one idempotency key raced on both.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let e = if i % 2 == 0 { a.clone() } else { b.clone() };
        let bot = bot.clone();
        tasks.push(tokio::spawn(async move { e.submit_request(&bot, request(i, None)).await }));
    }
    let mut twice = Vec::new();
    for e in [a.clone(), b.clone()] {
        let bot = bot.clone();
        twice.push(tokio::spawn(async move { e.submit_request(&bot, request(99, Some("po-race".into()))).await }));
    }
    let mut cases = Vec::new();
    for t in tasks {
        let s = t.await.unwrap().unwrap();
        assert!(s.created);
        assert_eq!(s.body.verdict, Verdict::Authorized, "{:?}", s.body);
        cases.push(s.case_id);
    }
    let raced: Vec<_> = {
        let mut v = Vec::new();
        for t in twice {
            v.push(t.await.unwrap().unwrap());
        }
        v
    };
    assert_eq!(raced[0].case_id, raced[1].case_id, "one idempotency key, one case");
    assert_eq!(raced.iter().filter(|s| s.created).count(), 1);

    // Outcomes racing on the same agent's and counterparty's trust, from both nodes.
    let erp = Principal::System("erp".into());
    let mut tasks = Vec::new();
    for (i, id) in cases.iter().enumerate() {
        let e = if i % 2 == 0 { b.clone() } else { a.clone() };
        let (erp, id) = (erp.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            e.record_outcome(&erp, &id, OutcomeInput { outcome: Outcome::Completed, detail: None }).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let agent = a.agent_view(&Principal::Admin, "procurement-bot").await.unwrap();
    assert_eq!(agent.trust.outcomes.completed, 40, "every outcome counted once: {:?}", agent.trust);

    // One ledger: every digest, chain and the root verify.
    drop((a, b));
    drop(store);
    let reader = LedgerReader::open(&dir.path().join("db")).unwrap();
    let report = reader.audit(&keys.ledger.verifier(), &[], |_| {}).unwrap();
    assert_eq!(report.cases, 41);
}
