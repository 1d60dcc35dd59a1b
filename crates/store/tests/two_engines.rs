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

/// Two engines (two nodes) on one fresh SQLite store, the procurement org applied through
/// the first. A test keeps `dir` bound (`dir: _dir`) for as long as the store is used.
struct TwoNodes {
    dir: tempfile::TempDir,
    keys: Keyring,
    store: Arc<SqliteStore>,
    a: Arc<Engine>,
    b: Arc<Engine>,
}

async fn two_nodes() -> TwoNodes {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keyring::load_or_create(&dir.path().join("keys"), None, 0).unwrap();
    let store =
        Arc::new(SqliteStore::open(&dir.path().join("db"), keys.ledger.clone(), SqliteOptions::default()).unwrap());
    let node = || Arc::new(Engine::new(store.clone(), Arc::new(SystemClock), keys.clone(), Config::default()));
    let (a, b) = (node(), node());
    a.apply_org(&OrgFile::parse(ORG).unwrap(), Some(POLICY.to_owned())).await.unwrap();
    TwoNodes { dir, keys, store, a, b }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_and_outcomes_on_two_engines_commit_once_each() {
    let TwoNodes { dir, keys, store, a, b } = two_nodes().await;
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

/// Each node caches the records its decisions read (agents, counterparties, trust,
/// settings). What another node changes meanwhile is never decided on stale: the write set
/// built on the cached copy is refused by its precondition and decided again from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_another_node_changed_is_never_decided_on_from_the_cache() {
    use agentsigna_core::engine::admin::CounterpartyInput;
    use agentsigna_core::model::Risk;
    let TwoNodes { a, b, dir: _dir, .. } = two_nodes().await;
    let bot = Principal::Agent("procurement-bot".into());

    // B decides twice: the second decision reads the agent and acme from B's cache.
    for i in 0..2 {
        let s = b.submit_request(&bot, request(i, None)).await.unwrap();
        assert_eq!(s.body.verdict, Verdict::Authorized);
    }
    // A suspends the agent: B's next decision is a rejection, not a passport.
    a.set_suspended(&Principal::Admin, "procurement-bot".into(), true).await.unwrap();
    let s = b.submit_request(&bot, request(2, None)).await.unwrap();
    assert_eq!(s.body.verdict, Verdict::Rejected, "{:?}", s.body);
    assert_eq!(s.body.reasons[0].rule.as_deref(), Some("agent-suspended"));
    a.set_suspended(&Principal::Admin, "procurement-bot".into(), false).await.unwrap();
    assert_eq!(b.submit_request(&bot, request(3, None)).await.unwrap().body.verdict, Verdict::Authorized);

    // A blocks acme: B does not authorize from its cached low-risk copy.
    let blocked = CounterpartyInput { name: "Acme Corp".into(), risk: Risk::Blocked };
    a.put_counterparty(&Principal::Admin, "acme".into(), blocked).await.unwrap();
    let s = b.submit_request(&bot, request(4, None)).await.unwrap();
    assert_ne!(s.body.verdict, Verdict::Authorized, "{:?}", s.body);

    // A counterparty A registers is known to B at once (an absence is never cached).
    let mut other = request(5, None);
    other.counterparty = "hooli".into();
    let err = b.submit_request(&bot, other.clone()).await.unwrap_err();
    assert!(err.to_string().contains("not registered"), "{err}");
    let hooli = CounterpartyInput { name: "Hooli".into(), risk: Risk::Low };
    a.put_counterparty(&Principal::Admin, "hooli".into(), hooli).await.unwrap();
    assert_eq!(b.submit_request(&bot, other).await.unwrap().body.verdict, Verdict::Authorized);
}

/// A standing another node creates (an agent's first outcome) is weighed by this node's
/// next decision, never the default this node's earlier decisions used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_standing_another_node_creates_is_weighed_at_once() {
    let TwoNodes { a, b, dir: _dir, .. } = two_nodes().await;
    let bot = Principal::Agent("procurement-bot".into());

    // B decides twice with no standing yet.
    let mut first = Vec::new();
    for i in 0..2 {
        let s = b.submit_request(&bot, request(i, None)).await.unwrap();
        first.push((s.case_id, s.body.trust));
    }
    assert_eq!(first[0].1, first[1].1, "the default standing, twice");

    // A records a dispute: the agent's and acme's standings now exist, lower.
    let erp = Principal::System("erp".into());
    a.record_outcome(&erp, &first[0].0, OutcomeInput { outcome: Outcome::Disputed, detail: None }).await.unwrap();
    let now = a.agent_view(&Principal::Admin, "procurement-bot").await.unwrap().trust.score;
    assert!(now < first[0].1.agent, "a dispute lowers the score: {now} from {}", first[0].1.agent);

    // B's next decision weighs the standing A created.
    let s = b.submit_request(&bot, request(2, None)).await.unwrap();
    assert_eq!(s.body.trust.agent, now, "{:?}", s.body);
    assert!(s.body.trust.counterparty < first[0].1.counterparty, "{:?}", s.body);
}
