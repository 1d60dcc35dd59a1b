//! The `Store` contract, one suite for every backend: `sqlite.rs` and `postgres.rs` each
//! instantiate it with [`suite!`] and a function opening a fresh store.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;

use agentsigna_core::engine::ledger::SnapshotNodes;
use agentsigna_core::store::{
    CaseFilter, CaseRow, ChainHead, Committed, Precondition, RecordKind, ReviewFilter, SealedEntry, Snapshot, Store,
    StoreError, StoreExt, StoredCase, Write, WriteSet,
};
use agentsigna_verify::evidence::LedgerVerifier;
use agentsigna_verify::ledger::{DigestedEntry, Entry};
use agentsigna_verify::merkle::{self, Hash};
use agentsigna_verify::note::{verify_checkpoint, NoteSigner, NoteVerifier};

/// A fresh store and the key its checkpoints verify with.
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub key: NoteVerifier,
}

/// The checkpoint signer of every test.
pub fn signer() -> NoteSigner {
    NoteSigner::new("agentsigna/test", ed25519_dalek::SigningKey::from_bytes(&[7; 32])).unwrap()
}

/// Instantiates every test of the suite for a backend: `$open` is an async fn returning
/// `Option<Fixture>` (`None`: the backend is not available here, the test is skipped).
#[macro_export]
macro_rules! suite {
    ($open:path) => {
        $crate::suite!(@tests $open;
            preconditions_each_kind, stale_precondition_fails_alone_in_its_batch,
            a_write_set_invalidated_earlier_in_its_batch_is_stale, failing_write_inside_a_batch,
            frontier_rolls_back_after_a_failed_write_set, concurrent_appends_leave_no_gap, idempotency_is_unique,
            listing_and_pagination, reviews_by_status_and_paging, reviews_by_missing_role_and_cursor,
            proofs_from_stored_nodes, reads_and_versions, cases_come_with_their_opening_entries_head_and_passport,
            entries_need_their_case_row);
    };
    (@tests $open:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(f) = $open().await {
                    conformance::$name(f).await;
                }
            }
        )*
    };
}

pub fn entry(case: Option<&str>, seq: u64, prev: Option<&Hash>) -> SealedEntry {
    entry_with(case, seq, prev, serde_json::json!({ "seq": seq }))
}

pub fn entry_with(case: Option<&str>, seq: u64, prev: Option<&Hash>, data: serde_json::Value) -> SealedEntry {
    SealedEntry::seal(Entry {
        case: case.map(str::to_owned),
        seq,
        prev: prev.map(|h| agentsigna_verify::ledger::hex_lower(h)),
        kind: "test.event".into(),
        at: "2026-01-01T00:00:00.000Z".into(),
        actor: "server".into(),
        data,
    })
    .unwrap()
}

pub fn case_row(id: &str, agent: &str, created: i64) -> CaseRow {
    CaseRow {
        id: id.into(),
        agent: agent.into(),
        audience: "erp".into(),
        status: "authorized".into(),
        idempotency_key: None,
        review_id: None,
        review_status: None,
        review_pending: false,
        roles_missing: Vec::new(),
        deadline_ms: None,
        due_ms: None,
        created_at_ms: created,
        counterparty: "acme".into(),
        action: "po.create".into(),
        body: format!("{{\"id\":\"{id}\"}}"),
        passport: None,
    }
}

fn record(kind: RecordKind, id: &str, body: &str) -> Write {
    Write::PutRecord { kind, id: id.into(), body: body.into() }
}

/// A write set starting (with its case row) or extending a case chain with `n` entries
/// after `head`.
pub fn chain_ws(case: &str, head: Option<ChainHead>, n: u64) -> (WriteSet, ChainHead) {
    let mut entries = Vec::new();
    let mut prev = head.map(|h| h.digest);
    let first = head.map_or(0, |h| h.seq + 1);
    for seq in first..first + n {
        let e = entry(Some(case), seq, prev.as_ref());
        prev = Some(e.digest);
        entries.push(e);
    }
    let last = ChainHead { seq: first + n - 1, digest: prev.unwrap() };
    let writes = if head.is_none() { vec![Write::PutCase(case_row(case, "agent", 0))] } else { vec![] };
    let ws =
        WriteSet { preconditions: vec![Precondition::ChainHead { chain: Some(case.into()), head }], writes, entries };
    (ws, last)
}

async fn read<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&mut dyn Snapshot) -> Result<T, StoreError> + Send + 'static,
) -> T {
    store.read_with(f).await.unwrap()
}

fn is_conflict<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

/// Checks the whole stored ledger: contiguous indices, digests, chains, and the root
/// against the stored checkpoint. Returns the entries.
pub async fn verify_ledger(f: &Fixture) -> Vec<DigestedEntry> {
    let (size, entries, note) = read(&f.store, |s| {
        let size = s.ledger_size()?;
        Ok((size, s.ledger_entries(0, size)?, s.checkpoint()?))
    })
    .await;
    assert_eq!(entries.len() as u64, size);
    let mut v = LedgerVerifier::new();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64, "no gap, no duplicate");
        v.push(e.index, &e.entry, Some(&e.digest)).unwrap();
    }
    if size > 0 {
        let report = v.finish_note(&note.expect("a checkpoint"), &f.key).unwrap();
        assert_eq!(report.entries, size);
    }
    entries
}

pub async fn preconditions_each_kind(f: Fixture) {
    let s = &f.store;
    let (ws, head) = chain_ws("case-1", None, 1);
    let mut ws = ws;
    ws.writes.push(record(RecordKind::Agent, "a1", "{}"));
    ws.entries.push(entry(None, 0, None));
    ws.preconditions.push(Precondition::ChainHead { chain: None, head: None });
    s.commit(ws).await.unwrap();
    let org = read(s, |s| s.chain_head(None)).await.unwrap();

    let stale: Vec<Precondition> = vec![
        Precondition::Record { kind: RecordKind::Agent, id: "a1".into(), version: None },
        Precondition::Record { kind: RecordKind::Agent, id: "a1".into(), version: Some(2) },
        Precondition::Record { kind: RecordKind::Agent, id: "a2".into(), version: Some(1) },
        Precondition::Case { id: "case-1".into(), version: None },
        Precondition::Case { id: "case-1".into(), version: Some(7) },
        Precondition::Case { id: "case-2".into(), version: Some(1) },
        Precondition::ChainHead { chain: Some("case-1".into()), head: None },
        Precondition::ChainHead { chain: Some("case-1".into()), head: Some(ChainHead { seq: 0, digest: [0; 32] }) },
        Precondition::ChainHead { chain: None, head: None },
        Precondition::ChainHead { chain: Some("case-2".into()), head: Some(head) },
    ];
    for p in stale {
        let ws = WriteSet {
            preconditions: vec![p.clone()],
            writes: vec![record(RecordKind::Setting, "x", "1")],
            entries: vec![],
        };
        assert!(is_conflict(&s.commit(ws).await), "{p:?} is stale");
    }
    assert!(read(s, |s| s.record(RecordKind::Setting, "x")).await.is_none(), "a stale write set writes nothing");

    let current = vec![
        Precondition::Record { kind: RecordKind::Agent, id: "a1".into(), version: Some(1) },
        Precondition::Record { kind: RecordKind::Agent, id: "a2".into(), version: None },
        Precondition::Case { id: "case-1".into(), version: Some(1) },
        Precondition::Case { id: "case-2".into(), version: None },
        Precondition::ChainHead { chain: Some("case-1".into()), head: Some(head) },
        Precondition::ChainHead { chain: Some("case-2".into()), head: None },
        Precondition::ChainHead { chain: None, head: Some(org) },
        Precondition::IdempotencyFree { agent: "a1".into(), key: "k".into() },
    ];
    let ws = WriteSet { preconditions: current, writes: vec![record(RecordKind::Setting, "x", "1")], entries: vec![] };
    s.commit(ws).await.unwrap();
    assert_eq!(read(s, |s| s.record(RecordKind::Setting, "x")).await.unwrap().version, 1);

    let mut row = case_row("case-3", "a1", 2);
    row.idempotency_key = Some("k".into());
    s.commit(WriteSet { writes: vec![Write::PutCase(row)], ..WriteSet::default() }).await.unwrap();
    let taken = WriteSet {
        preconditions: vec![Precondition::IdempotencyFree { agent: "a1".into(), key: "k".into() }],
        writes: vec![record(RecordKind::Setting, "y", "1")],
        entries: vec![],
    };
    assert!(is_conflict(&s.commit(taken).await));
    let other_agent = WriteSet {
        preconditions: vec![Precondition::IdempotencyFree { agent: "a2".into(), key: "k".into() }],
        writes: vec![record(RecordKind::Setting, "y", "1")],
        entries: vec![],
    };
    s.commit(other_agent).await.unwrap();
    verify_ledger(&f).await;
}

/// Commits write sets together (sent before any is awaited, so they share batches).
async fn commit_all(s: &Arc<dyn Store>, sets: Vec<WriteSet>) -> Vec<Result<Committed, StoreError>> {
    let futures: Vec<_> = sets.into_iter().map(|ws| s.commit(ws)).collect();
    let mut out = Vec::new();
    for fut in futures {
        out.push(fut.await);
    }
    out
}

pub async fn stale_precondition_fails_alone_in_its_batch(f: Fixture) {
    let s = &f.store;
    let (ws, head) = chain_ws("c", None, 2);
    s.commit(ws).await.unwrap();
    // Two decisions read the same head: the first to be sequenced wins, the other is stale.
    let (a, _) = chain_ws("c", Some(head), 1);
    let (b, _) = chain_ws("c", Some(head), 1);
    let (other, _) = chain_ws("d", None, 3);
    let results = commit_all(s, vec![a, b, other]).await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(is_conflict(&results[1]), "{:?}", results[1]);
    let other = results[2].as_ref().unwrap();
    assert_eq!(other.first_index, 3, "the stale write set took no position");
    assert_eq!(other.tree_size, 6);
    let entries = verify_ledger(&f).await;
    assert_eq!(entries.len(), 6);
}

/// Preconditions read before an earlier write set of the same batch changed what they
/// name are stale, exactly as if they had been read after it (the PostgreSQL sequencer
/// checks every precondition of a batch at once, then refuses these in memory).
pub async fn a_write_set_invalidated_earlier_in_its_batch_is_stale(f: Fixture) {
    let s = &f.store;
    let pre = |p: Precondition, w: Write| WriteSet { preconditions: vec![p], writes: vec![w], entries: vec![] };
    let absent_x = || Precondition::Record { kind: RecordKind::Setting, id: "x".into(), version: None };
    let absent_case = || Precondition::Case { id: "case-9".into(), version: None };
    let free = |agent: &str| Precondition::IdempotencyFree { agent: agent.into(), key: "k".into() };
    let mut row = case_row("case-9", "a1", 5);
    row.idempotency_key = Some("k".into());
    let results = commit_all(
        s,
        vec![
            pre(absent_x(), record(RecordKind::Setting, "x", "1")),
            pre(absent_x(), record(RecordKind::Setting, "x2", "1")),
            pre(absent_case(), Write::PutCase(row)),
            pre(absent_case(), record(RecordKind::Setting, "y", "1")),
            pre(free("a1"), record(RecordKind::Setting, "z", "1")),
            pre(free("a2"), record(RecordKind::Setting, "w", "1")),
        ],
    )
    .await;
    let outcome: Vec<bool> = results.iter().map(|r| r.is_ok()).collect();
    assert_eq!(outcome, [true, false, true, false, false, true], "{results:?}");
    assert!(results.iter().filter(|r| r.is_err()).all(is_conflict), "{results:?}");
    for (id, written) in [("x", true), ("x2", false), ("y", false), ("z", false), ("w", true)] {
        assert_eq!(read(s, |s| s.record(RecordKind::Setting, id)).await.is_some(), written, "{id}");
    }
    // Chain heads: the second of two write sets extending the same head is stale.
    let (ws, head) = chain_ws("c9", None, 1);
    s.commit(ws).await.unwrap();
    let (a, _) = chain_ws("c9", Some(head), 1);
    let (mut b, _) = chain_ws("c9", Some(head), 1);
    b.writes.push(record(RecordKind::Setting, "from-b", "1"));
    let results = commit_all(s, vec![a, b]).await;
    assert!(results[0].is_ok() && is_conflict(&results[1]), "{results:?}");
    assert!(read(s, |s| s.record(RecordKind::Setting, "from-b")).await.is_none());
    verify_ledger(&f).await;
}

pub async fn failing_write_inside_a_batch(f: Fixture) {
    let s = &f.store;
    let cred = Write::PutCredential { hash: "h1".into(), kind: "agent".into(), id: "a1".into() };
    s.commit(WriteSet { writes: vec![cred.clone()], ..WriteSet::default() }).await.unwrap();
    let (good1, _) = chain_ws("g1", None, 2);
    let (mut bad, _) = chain_ws("bad", None, 2);
    bad.writes.push(record(RecordKind::Setting, "written-by-bad", "1"));
    bad.writes.push(cred);
    let (good2, _) = chain_ws("g2", None, 1);
    let results = commit_all(s, vec![good1, bad, good2]).await;
    assert_eq!(results[0].as_ref().unwrap().first_index, 0);
    assert!(is_conflict(&results[1]), "a uniqueness violation is a conflict: {:?}", results[1]);
    assert_eq!(results[2].as_ref().unwrap().first_index, 2);
    assert!(read(s, |s| s.record(RecordKind::Setting, "written-by-bad")).await.is_none());
    assert!(read(s, |s| s.chain_entries(Some("bad"))).await.is_empty());
    assert_eq!(verify_ledger(&f).await.len(), 3);
}

pub async fn frontier_rolls_back_after_a_failed_write_set(f: Fixture) {
    let s = &f.store;
    let (a, _) = chain_ws("a", None, 3);
    assert_eq!(s.commit(a).await.unwrap().first_index, 0);
    // Entries that extend the tree, then a failing write: the frontier must not keep them.
    let (mut bad, _) = chain_ws("b", None, 5);
    bad.writes.push(Write::PutCase(case_row("dup", "x", 1)));
    let mut row = case_row("dup2", "x", 1);
    row.review_id = Some("r1".into());
    s.commit(WriteSet { writes: vec![Write::PutCase(row.clone())], ..WriteSet::default() }).await.unwrap();
    row.id = "dup3".into();
    bad.writes.push(Write::PutCase(row));
    assert!(is_conflict(&s.commit(bad).await));
    let (c, _) = chain_ws("c", None, 2);
    let committed = s.commit(c).await.unwrap();
    assert_eq!(committed, Committed { first_index: 3, tree_size: 5 });
    let entries = verify_ledger(&f).await;
    let leaves: Vec<Hash> = entries.iter().map(|e| hex_hash(&e.digest)).collect();
    let note = read(s, |s| s.checkpoint()).await.unwrap();
    let cp = verify_checkpoint(&note, &f.key).unwrap();
    assert_eq!(cp.size, 5);
    assert_eq!(cp.root, merkle::root_from_leaves(&leaves));
}

fn hex_hash(h: &str) -> Hash {
    let bytes = hex::decode(h).unwrap();
    <Hash>::try_from(bytes.as_slice()).unwrap()
}

pub async fn concurrent_appends_leave_no_gap(f: Fixture) {
    const TASKS: usize = 8;
    const EACH: usize = 20;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let s = f.store.clone();
        tasks.push(tokio::spawn(async move {
            let case = format!("task-{t}");
            let mut head = None;
            let mut firsts = Vec::new();
            for _ in 0..EACH {
                let (ws, h) = chain_ws(&case, head, 2);
                let c = s.commit(ws).await.unwrap();
                firsts.push(c.first_index);
                head = Some(h);
            }
            // Every task also appends to the shared organization chain, with retries.
            loop {
                let org = s.read_with(|s| s.chain_head(None)).await.unwrap();
                let e = entry(None, org.map_or(0, |h| h.seq + 1), org.as_ref().map(|h| &h.digest));
                let ws = WriteSet {
                    preconditions: vec![Precondition::ChainHead { chain: None, head: org }],
                    writes: vec![],
                    entries: vec![e],
                };
                match s.commit(ws).await {
                    Ok(_) => break,
                    Err(StoreError::Conflict(_)) => tokio::task::yield_now().await,
                    Err(e) => panic!("{e}"),
                }
            }
            firsts
        }));
    }
    let mut firsts = Vec::new();
    for t in tasks {
        firsts.extend(t.await.unwrap());
    }
    firsts.sort_unstable();
    firsts.dedup();
    assert_eq!(firsts.len(), TASKS * EACH, "every write set got its own positions");
    let entries = verify_ledger(&f).await;
    assert_eq!(entries.len(), TASKS * EACH * 2 + TASKS);
    let org = read(&f.store, |s| s.chain_entries(None)).await;
    assert_eq!(org.iter().map(|e| e.entry.seq).collect::<Vec<_>>(), (0..TASKS as u64).collect::<Vec<_>>());
}

pub async fn idempotency_is_unique(f: Fixture) {
    let s = &f.store;
    let with_key = |id: &str| {
        let mut row = case_row(id, "agent-1", 1);
        row.idempotency_key = Some("key-1".into());
        let (mut ws, _) = chain_ws(id, None, 1);
        ws.preconditions.push(Precondition::IdempotencyFree { agent: "agent-1".into(), key: "key-1".into() });
        ws.writes = vec![Write::PutCase(row)];
        ws
    };
    let results = commit_all(s, vec![with_key("first"), with_key("second")]).await;
    assert!(results[0].is_ok());
    assert!(is_conflict(&results[1]));
    // Without the precondition, the unique index still refuses a second case with the key.
    let mut ws = with_key("third");
    ws.preconditions.clear();
    assert!(is_conflict(&s.commit(ws).await));
    let found = read(s, |s| s.case_by_idempotency("agent-1", "key-1")).await.unwrap();
    assert_eq!(found.row.id, "first");
    assert!(read(s, |s| s.case_by_idempotency("agent-2", "key-1")).await.is_none());
    assert_eq!(verify_ledger(&f).await.len(), 1);
}

pub async fn listing_and_pagination(f: Fixture) {
    let s = &f.store;
    let mut writes = Vec::new();
    for (i, (agent, status)) in
        [("a", "authorized"), ("b", "pending"), ("a", "pending"), ("a", "rejected"), ("b", "authorized")]
            .iter()
            .enumerate()
    {
        let mut row = case_row(&format!("case-{i}"), agent, 100 + i as i64);
        row.status = status.to_string();
        if i % 2 == 1 {
            row.counterparty = "globex".into();
        }
        if *status == "pending" {
            row.review_pending = true;
            row.review_id = Some(format!("review-{i}"));
            row.deadline_ms = Some(1000 - i as i64);
            row.due_ms = Some(1000 - i as i64);
        }
        writes.push(Write::PutCase(row));
    }
    // Newest first is the order in which cases were created (first written), whatever
    // their `created_at_ms` says.
    writes.push(Write::PutCase(case_row("case-9", "a", 50)));
    for id in ["b", "a", "B", "_"] {
        writes.push(record(RecordKind::Counterparty, id, &format!("\"{id}\"")));
    }
    let mut entries = Vec::new();
    let mut prev: Option<Hash> = None;
    for seq in 0..25 {
        let e = entry(None, seq, prev.as_ref());
        prev = Some(e.digest);
        entries.push(e);
    }
    s.commit(WriteSet { preconditions: vec![], writes, entries }).await.unwrap();

    let ids = |cases: Vec<StoredCase>| -> Vec<String> { cases.into_iter().map(|c| c.row.id).collect() };
    let all = read(s, |s| s.list_cases(&CaseFilter { limit: 100, ..CaseFilter::default() })).await;
    assert_eq!(ids(all), ["case-9", "case-4", "case-3", "case-2", "case-1", "case-0"]);
    let page = read(s, |s| s.list_cases(&CaseFilter { limit: 2, ..CaseFilter::default() })).await;
    assert_eq!(ids(page), ["case-9", "case-4"]);
    let of_a =
        read(s, |s| s.list_cases(&CaseFilter { agent: Some("a".into()), limit: 10, ..CaseFilter::default() })).await;
    assert_eq!(ids(of_a), ["case-9", "case-3", "case-2", "case-0"]);
    let pending =
        read(s, |s| s.list_cases(&CaseFilter { review_pending: Some(true), limit: 10, ..CaseFilter::default() })).await;
    assert_eq!(ids(pending), ["case-2", "case-1"], "earliest deadline first");
    let filtered = read(s, |s| {
        s.list_cases(&CaseFilter {
            agent: Some("b".into()),
            status: Some("authorized".into()),
            audience: Some("erp".into()),
            limit: 10,
            ..CaseFilter::default()
        })
    })
    .await;
    assert_eq!(ids(filtered), ["case-4"]);
    let with_globex = read(s, |s| {
        s.list_cases(&CaseFilter { counterparty: Some("globex".into()), limit: 10, ..CaseFilter::default() })
    })
    .await;
    assert_eq!(ids(with_globex), ["case-3", "case-1"], "a counterparty's cases, reviewed or not, newest first");
    assert_eq!(read(s, |s| s.due_cases(999, 10)).await, ["case-2", "case-1"]);
    assert_eq!(read(s, |s| s.due_cases(998, 1)).await, ["case-2"]);
    let by_review = read(s, |s| s.case_by_review("review-1")).await.unwrap();
    assert_eq!(by_review.row.id, "case-1");
    let records = read(s, |s| s.records(RecordKind::Counterparty)).await;
    assert_eq!(records, ["\"B\"", "\"_\"", "\"a\"", "\"b\""], "ordered by id, bytewise");

    let page = read(s, |s| s.ledger_entries(10, 20)).await;
    assert_eq!(page.iter().map(|e| e.index).collect::<Vec<_>>(), (10..20).collect::<Vec<_>>());
    assert_eq!(read(s, |s| s.ledger_entries(20, 40)).await.len(), 5);
    assert!(read(s, |s| s.ledger_entries(30, 40)).await.is_empty());
    assert_eq!(read(s, |s| s.chain_entries(None)).await.len(), 25);
}

/// Reviews are listed by review, whatever else was created since: decided ones stay
/// reachable behind many newer cases without one, with a total and pages.
pub async fn reviews_by_status_and_paging(f: Fixture) {
    let s = &f.store;
    let mut writes = Vec::new();
    let statuses = ["approved", "pending", "rejected", "approved", "expired", "pending", "approved"];
    for (i, status) in statuses.iter().enumerate() {
        let mut row = case_row(&format!("rcase-{i}"), if i % 2 == 0 { "a" } else { "b" }, 10 + i as i64);
        row.review_id = Some(format!("review-{i}"));
        row.review_pending = *status == "pending";
        if row.review_pending {
            row.deadline_ms = Some(5000 - i as i64);
        }
        let (cp, action) = if i < 3 { ("globex", "po.create") } else { ("initech", "payment.send") };
        // The indexed columns are what is queried: neither the body nor the entries say
        // anything of them.
        row.review_status = Some(status.to_string());
        row.counterparty = cp.into();
        row.action = action.into();
        writes.push(Write::PutCase(row));
    }
    // Many newer cases without a review do not push the reviews out of reach.
    for i in 0..300 {
        writes.push(Write::PutCase(case_row(&format!("other-{i:03}"), "a", 1000 + i)));
    }
    s.commit(WriteSet { writes, ..WriteSet::default() }).await.unwrap();
    let list = |filter: ReviewFilter| async move {
        let (total, cases) = read(s, move |s| s.list_reviews(&filter)).await;
        (total, cases.into_iter().map(|c| c.row.id).collect::<Vec<_>>())
    };
    let base = ReviewFilter { limit: 100, ..ReviewFilter::default() };
    let (total, ids) = list(base.clone()).await;
    assert_eq!(total, 7);
    assert_eq!(ids, ["rcase-6", "rcase-5", "rcase-4", "rcase-3", "rcase-2", "rcase-1", "rcase-0"], "newest first");
    let (total, ids) = list(ReviewFilter { status: Some("approved".into()), ..base.clone() }).await;
    assert_eq!((total, ids), (3, vec!["rcase-6".to_owned(), "rcase-3".into(), "rcase-0".into()]));
    let (total, ids) = list(ReviewFilter { status: Some("pending".into()), ..base.clone() }).await;
    assert_eq!((total, ids), (2, vec!["rcase-5".to_owned(), "rcase-1".into()]), "earliest deadline first");
    let (total, ids) =
        list(ReviewFilter { status: Some("approved".into()), offset: 1, limit: 1, ..base.clone() }).await;
    assert_eq!((total, ids), (3, vec!["rcase-3".to_owned()]), "a page counts every match");
    let (total, ids) =
        list(ReviewFilter { agent: Some("a".into()), counterparty: Some("globex".into()), ..base.clone() }).await;
    assert_eq!((total, ids), (2, vec!["rcase-2".to_owned(), "rcase-0".into()]));
    let (total, _) = list(ReviewFilter { action: Some("payment.send".into()), ..base.clone() }).await;
    assert_eq!(total, 4);
    let (_, ids) = list(ReviewFilter { id: Some("review-4".into()), ..base.clone() }).await;
    assert_eq!(ids, ["rcase-4"]);
    let (_, ids) = list(ReviewFilter { id: Some("rcase-5".into()), ..base.clone() }).await;
    assert_eq!(ids, ["rcase-5"], "a case id finds its review");
    let (total, ids) = list(ReviewFilter { id: Some("other-001".into()), ..base }).await;
    assert_eq!((total, ids.len()), (0, 0), "a case without a review is no review");
}

/// The role filter finds the pending reviews that still miss one of the roles, following
/// every change of the case (a role covered, the review closed); keyset pages walk every
/// review once, in either order, ties of creation time included.
pub async fn reviews_by_missing_role_and_cursor(f: Fixture) {
    let s = &f.store;
    let review = |i: usize, created: i64, status: &str, missing: &[&str]| {
        let mut row = case_row(&format!("rc-{i:02}"), "a", created);
        row.review_id = Some(format!("rv-{i:02}"));
        row.review_status = Some(status.into());
        row.review_pending = status == "pending";
        row.roles_missing = missing.iter().map(|r| r.to_string()).collect();
        row.deadline_ms = Some(9000 - (i as i64 % 4));
        Write::PutCase(row)
    };
    // 12 reviews, created in pairs at the same millisecond.
    let mut writes = Vec::new();
    for i in 0..12 {
        let (status, missing): (&str, &[&str]) = match i % 4 {
            0 => ("pending", &["finance"]),
            1 => ("pending", &["finance", "risk"]),
            2 => ("pending", &[]),
            _ => ("approved", &[]),
        };
        writes.push(review(i, 100 + (i as i64 / 2), status, missing));
    }
    s.commit(WriteSet { writes, ..WriteSet::default() }).await.unwrap();
    let ids = |cases: Vec<StoredCase>| -> Vec<String> { cases.into_iter().map(|c| c.row.id).collect() };
    let list = |filter: ReviewFilter| async move {
        let (total, cases) = read(s, move |s| s.list_reviews(&filter)).await;
        (total, ids(cases))
    };
    let roles = |r: &[&str]| Some(r.iter().map(|r| r.to_string()).collect::<Vec<_>>());
    let base = ReviewFilter { limit: 100, ..ReviewFilter::default() };
    let (total, risk) = list(ReviewFilter { roles: roles(&["risk"]), ..base.clone() }).await;
    assert_eq!((total, risk), (3, vec!["rc-09".to_owned(), "rc-05".into(), "rc-01".into()]));
    let (total, _) = list(ReviewFilter { roles: roles(&["finance"]), ..base.clone() }).await;
    assert_eq!(total, 6);
    let (total, _) = list(ReviewFilter { roles: roles(&["finance", "risk"]), ..base.clone() }).await;
    assert_eq!(total, 6, "a review missing both roles is listed once");
    let (total, _) = list(ReviewFilter { roles: roles(&[]), ..base.clone() }).await;
    assert_eq!(total, 0, "no role held: nothing to cover");
    let (total, _) = list(ReviewFilter { roles: roles(&["legal"]), ..base.clone() }).await;
    assert_eq!(total, 0);

    // rc-01 gets its risk approval, rc-05 closes: the filter follows the rows.
    s.commit(WriteSet {
        writes: vec![review(1, 100, "pending", &["finance"]), review(5, 102, "rejected", &[])],
        ..WriteSet::default()
    })
    .await
    .unwrap();
    let (total, risk) = list(ReviewFilter { roles: roles(&["risk"]), ..base.clone() }).await;
    assert_eq!((total, risk), (1, vec!["rc-09".to_owned()]));
    let (total, finance) =
        list(ReviewFilter { status: Some("pending".into()), roles: roles(&["finance"]), ..base.clone() }).await;
    assert_eq!(total, 5, "{finance:?}");
    assert!(finance.contains(&"rc-01".to_owned()) && !finance.contains(&"rc-05".to_owned()));

    // Keyset pages of 2, in both orders: every review once, in the order of one listing.
    for status in [None, Some("pending".to_owned())] {
        let (total, whole) = list(ReviewFilter { status: status.clone(), ..base.clone() }).await;
        let mut walked = Vec::new();
        let mut after = None;
        loop {
            let filter = ReviewFilter { status: status.clone(), after: after.clone(), limit: 2, ..base.clone() };
            let (page_total, page) = read(s, move |s| s.list_reviews(&filter)).await;
            assert_eq!(page_total, total, "the total counts every match, whatever the page");
            let Some(last) = page.last() else { break };
            // The sort key, from the columns read back.
            let n: i64 = last.row.id[3..].parse().unwrap();
            assert_eq!((last.row.deadline_ms, last.row.created_at_ms), (Some(9000 - (n % 4)), 100 + n / 2));
            after = Some(agentsigna_core::store::ReviewCursor {
                deadline_ms: last.row.deadline_ms.unwrap(),
                created_at_ms: last.row.created_at_ms,
                id: last.row.id.clone(),
            });
            walked.extend(ids(page));
        }
        assert_eq!(walked, whole, "{status:?}");
        assert_eq!(walked.len() as u64, total);
    }
}

pub async fn proofs_from_stored_nodes(f: Fixture) {
    let s = &f.store;
    let mut head = None;
    let mut sizes = Vec::new();
    for i in 0..12 {
        let (ws, h) = chain_ws("p", head, 1 + i % 4);
        sizes.push(s.commit(ws).await.unwrap().tree_size);
        head = Some(h);
    }
    let entries = verify_ledger(&f).await;
    let size = entries.len() as u64;
    let note = read(s, |s| s.checkpoint()).await.unwrap();
    let cp = verify_checkpoint(&note, &f.key).unwrap();
    assert_eq!(cp.size, size);
    let old = sizes[4];
    let (proofs, consistency, old_root) = read(s, move |snap| {
        let nodes = SnapshotNodes(std::cell::RefCell::new(snap));
        let proofs: Vec<Vec<Hash>> = (0..size).map(|i| merkle::inclusion_proof(&nodes, i, size).unwrap()).collect();
        let consistency = merkle::consistency_proof(&nodes, old, size).unwrap();
        let old_root = merkle::root_at(&nodes, old).unwrap();
        Ok((proofs, consistency, old_root))
    })
    .await;
    for (i, proof) in proofs.iter().enumerate() {
        merkle::verify_inclusion(i as u64, size, &hex_hash(&entries[i].digest), proof, &cp.root).unwrap();
    }
    let leaves: Vec<Hash> = entries.iter().map(|e| hex_hash(&e.digest)).collect();
    assert_eq!(old_root, merkle::root_from_leaves(&leaves[..old as usize]));
    merkle::verify_consistency(old, size, &consistency, &old_root, &cp.root).unwrap();
}

pub async fn reads_and_versions(f: Fixture) {
    let s = &f.store;
    assert_eq!(read(s, |s| s.ledger_size()).await, 0);
    assert!(read(s, |s| s.checkpoint()).await.is_none());
    assert!(read(s, |s| s.chain_head(None)).await.is_none());
    for body in ["1", "2", "3"] {
        s.commit(WriteSet { writes: vec![record(RecordKind::Policy, "p", body)], ..WriteSet::default() })
            .await
            .unwrap();
    }
    let p = read(s, |s| s.record(RecordKind::Policy, "p")).await.unwrap();
    assert_eq!((p.body.as_str(), p.version), ("3", 3));
    let cred = Write::PutCredential { hash: "hash".into(), kind: "approver".into(), id: "ann".into() };
    let mut row = case_row("c", "a", 5);
    s.commit(WriteSet { writes: vec![cred, Write::PutCase(row.clone())], ..WriteSet::default() }).await.unwrap();
    row.status = "executed".into();
    row.body = "{\"id\":\"c\",\"v\":2}".into();
    s.commit(WriteSet {
        preconditions: vec![Precondition::Case { id: "c".into(), version: Some(1) }],
        writes: vec![Write::PutCase(row), Write::DeleteRecord { kind: RecordKind::Policy, id: "p".into() }],
        entries: vec![],
    })
    .await
    .unwrap();
    let c = read(s, |s| s.case("c")).await.unwrap();
    assert_eq!((c.row.body.as_str(), c.version), ("{\"id\":\"c\",\"v\":2}", 2));
    assert!(read(s, |s| s.record(RecordKind::Policy, "p")).await.is_none());
    assert_eq!(read(s, |s| s.credential("hash")).await, Some(("approver".into(), "ann".into())));
    assert!(read(s, |s| s.credential("nope")).await.is_none());
    let statuses =
        read(s, |s| s.list_cases(&CaseFilter { status: Some("executed".into()), limit: 5, ..CaseFilter::default() }))
            .await;
    assert_eq!(statuses.len(), 1);
    // A snapshot does not see a commit made after it started.
    let store = s.clone();
    let (before, after) = read(s, move |snap| {
        let before = snap.record(RecordKind::Setting, "late")?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let fut =
            store.commit(WriteSet { writes: vec![record(RecordKind::Setting, "late", "1")], ..WriteSet::default() });
        rt.block_on(fut)?;
        Ok((before, snap.record(RecordKind::Setting, "late")?))
    })
    .await;
    assert!(before.is_none());
    assert!(after.is_none(), "the snapshot stays consistent");
    assert!(read(s, |s| s.record(RecordKind::Setting, "late")).await.is_some());
}

pub async fn cases_come_with_their_opening_entries_head_and_passport(f: Fixture) {
    let s = &f.store;
    // A compact JWS (stored decoded) and a token that is not one (stored as it is).
    let jws = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";
    for (id, token) in [("with-jws", jws), ("with-text", "not a jws")] {
        let (mut ws, head) = chain_ws(id, None, 3);
        let Write::PutCase(row) = &mut ws.writes[0] else { panic!("chain_ws writes the case first") };
        row.passport = Some(token.to_owned());
        s.commit(ws).await.unwrap();
        let c = read(s, move |s| s.case(id)).await.unwrap();
        assert_eq!(c.row.passport.as_deref(), Some(token), "the token comes back byte for byte");
        assert_eq!(c.head, Some(head));
        assert_eq!(c.opening.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1], "the first two entries");
        assert_eq!(c.opening[1].data, serde_json::json!({"seq": 1}));
        // A later write without a token leaves the stored one.
        let mut row = c.row.clone();
        row.passport = None;
        row.status = "executed".into();
        s.commit(WriteSet { writes: vec![Write::PutCase(row.clone())], ..WriteSet::default() }).await.unwrap();
        let listed = read(s, |s| {
            s.list_cases(&CaseFilter { status: Some("executed".into()), limit: 9, ..CaseFilter::default() })
        })
        .await;
        let c = listed.into_iter().find(|c| c.row.id == id).unwrap();
        assert_eq!((c.row.passport.as_deref(), c.version, c.head, c.opening.len()), (Some(token), 2, Some(head), 2));
        // A token is written once.
        row.passport = Some("another".into());
        assert!(is_conflict(&s.commit(WriteSet { writes: vec![Write::PutCase(row)], ..WriteSet::default() }).await));
    }
    // A case without entries yet.
    s.commit(WriteSet { writes: vec![Write::PutCase(case_row("bare", "a", 1))], ..WriteSet::default() }).await.unwrap();
    let c = read(s, |s| s.case("bare")).await.unwrap();
    assert_eq!((c.head, c.opening.len(), c.row.passport), (None, 0, None));
    verify_ledger(&f).await;
}

pub async fn entries_need_their_case_row(f: Fixture) {
    let s = &f.store;
    let orphan = WriteSet { entries: vec![entry(Some("no-row"), 0, None)], ..WriteSet::default() };
    let r = s.commit(orphan).await;
    assert!(matches!(r, Err(StoreError::Storage { .. })), "a programming error, not a conflict: {r:?}");
    let (ws, _) = chain_ws("has-row", None, 1);
    assert_eq!(s.commit(ws).await.unwrap().first_index, 0, "the refused entry took no position");
    // In a batch, the orphan is refused alone (PostgreSQL: its pipeline fails, the slow
    // path applies the write sets one by one).
    let orphan = WriteSet { entries: vec![entry(Some("no-row-2"), 0, None)], ..WriteSet::default() };
    let (before, _) = chain_ws("row-before", None, 1);
    let (after, _) = chain_ws("row-after", None, 1);
    let results = commit_all(s, vec![before, orphan, after]).await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(matches!(results[1], Err(StoreError::Storage { .. })), "{results:?}");
    assert_eq!(verify_ledger(&f).await.len(), 3);
}
