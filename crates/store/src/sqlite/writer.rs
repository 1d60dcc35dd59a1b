//! The serial step: one writer thread owns the read-write connection and commits write
//! sets in batches. Per batch: `BEGIN IMMEDIATE`; per write set its preconditions checked,
//! its writes applied, its sealed entries given positions from the in-memory Merkle
//! frontier (a write set whose writes fail sends the batch down the savepoint path, see
//! [`apply_all`]); one signed checkpoint for the new tree; one `COMMIT` (one fsync); then
//! every write set is answered. It decides nothing and hashes only the tree; copying the
//! WAL into the database file is the checkpointer's ([`super::wal`]), told after each batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use agentsigna_core::store::{
    CaseRow, Committed, Precondition, SerialFigures, StoreError, StoreResult, Write, WriteSet,
};
use agentsigna_verify::merkle::Frontier;
use agentsigna_verify::note::{sign_checkpoint, Checkpoint, NoteSigner};
use rusqlite::{params, Connection, OptionalExtension};

use super::read::{chain_head, chain_number};
use super::{db_err, run, to_i64};
pub(crate) use crate::job::Job;
use crate::layout::{Packed, FIRST_STORED_LEVEL, ORGANIZATION_CHAIN};

/// A batch taking this long (µs, `COMMIT` included) is logged as a warning.
const SLOW_BATCH_MICROS: u64 = 50_000;

/// Largest number of write sets sharing one transaction.
const MAX_BATCH: usize = 512;

/// What the serial step has done since start: counts and the time spent in it (from
/// `BEGIN` to the answers, fsync included), for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub write_sets: AtomicU64,
    pub entries: AtomicU64,
    pub busy_micros: AtomicU64,
    /// Time in `COMMIT` alone (the fsync of the WAL).
    pub commit_micros: AtomicU64,
}

impl WriterStats {
    /// The figures so far.
    pub fn figures(&self) -> SerialFigures {
        SerialFigures {
            batches: self.batches.load(Ordering::Relaxed),
            write_sets: self.write_sets.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed),
            busy_micros: self.busy_micros.load(Ordering::Relaxed),
            commit_micros: self.commit_micros.load(Ordering::Relaxed),
        }
    }
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Runs batches until every sender is gone.
pub(crate) fn writer_loop(
    conn: Connection,
    mut frontier: Frontier,
    signer: NoteSigner,
    rx: mpsc::Receiver<Job>,
    stats: std::sync::Arc<WriterStats>,
    checkpointer: super::wal::WalCheckpointer,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let (sets, before) = (batch.len() as u64, frontier.size());
        let commit = run_batch(&conn, &mut frontier, &signer, batch);
        checkpointer.committed();
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.write_sets.fetch_add(sets, Ordering::Relaxed);
        stats.entries.fetch_add(frontier.size().saturating_sub(before), Ordering::Relaxed);
        stats.commit_micros.fetch_add(commit, Ordering::Relaxed);
        let busy = micros(started);
        stats.busy_micros.fetch_add(busy, Ordering::Relaxed);
        if busy >= SLOW_BATCH_MICROS {
            // Every request of the batch waited this long: worth an operator's look (a
            // slow disk shows here first).
            tracing::warn!(
                write_sets = sets,
                busy_ms = busy / 1000,
                commit_ms = commit / 1000,
                "slow batch in the serial step"
            );
        }
    }
}

/// One group commit. A write set whose preconditions fail is refused and writes nothing;
/// one whose writes fail is refused alone too (see [`apply_all`]). A failing commit fails
/// every write set of the batch and restores the frontier. Returns the time spent in
/// `COMMIT`, in µs.
pub(crate) fn run_batch(conn: &Connection, frontier: &mut Frontier, signer: &NoteSigner, batch: Vec<Job>) -> u64 {
    if let Err(e) = run(conn, "BEGIN IMMEDIATE") {
        for job in batch {
            job.answer(Err(e.clone()));
        }
        return 0;
    }
    let start = frontier.clone();
    let results = match apply_all(conn, frontier, &start, &batch) {
        Ok(results) => results,
        Err(e) => {
            for job in batch {
                job.answer(Err(e.clone()));
            }
            let _ = conn.execute_batch("ROLLBACK");
            *frontier = start;
            return 0;
        }
    };
    let mut commit = Ok(());
    if frontier.size() != start.size() {
        commit = store_checkpoint(conn, frontier, signer);
    }
    let committing = Instant::now();
    if commit.is_ok() {
        commit = run(conn, "COMMIT");
    }
    let commit_micros = micros(committing);
    if let Err(e) = commit {
        let _ = conn.execute_batch("ROLLBACK");
        *frontier = start;
        for job in batch {
            job.answer(Err(e.clone()));
        }
        return commit_micros;
    }
    let tree_size = frontier.size();
    for (job, result) in batch.into_iter().zip(results) {
        job.answer(result.map(|first_index| Committed { first_index, tree_size }));
    }
    commit_micros
}

/// Applies a batch inside the open transaction; returns each write set's outcome (the
/// index of its first entry, or why it was refused). First without a savepoint per write
/// set (SQLite copies every page a savepoint's writes touch first, so per write set that
/// is most of the batch's pages again): preconditions are only reads, so a write set they
/// refuse has written nothing. Only when a write itself fails (a uniqueness violation a
/// precondition did not foresee, a forked chain, a damaged database) is the transaction
/// rolled back and the batch applied again with a savepoint per write set, so that the
/// failing one is refused alone. `start`: the frontier when the transaction began. `Err`:
/// the transaction could not be restarted.
fn apply_all(
    conn: &Connection,
    frontier: &mut Frontier,
    start: &Frontier,
    batch: &[Job],
) -> StoreResult<Vec<StoreResult<u64>>> {
    let mut results = Vec::with_capacity(batch.len());
    let mut failed = false;
    for job in batch {
        match guarded(|| check_all(conn, &job.writes)) {
            Err(e) => results.push(Err(e)),
            Ok(()) => match guarded(|| write(conn, frontier, &job.writes, &job.packed)) {
                Ok(first_index) => results.push(Ok(first_index)),
                Err(_) => {
                    failed = true;
                    break;
                }
            },
        }
    }
    if !failed {
        return Ok(results);
    }
    *frontier = start.clone();
    // (A failed statement may have ended the transaction already: SQLite does that on a
    // full disk or an I/O error.)
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK").map_err(db_err)?;
    }
    run(conn, "BEGIN IMMEDIATE")?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let before = frontier.clone();
        let result = conn.execute_batch("SAVEPOINT job").map_err(db_err).and_then(|()| {
            let applied = guarded(|| {
                check_all(conn, &job.writes)?;
                write(conn, frontier, &job.writes, &job.packed)
            });
            match applied {
                Ok(first_index) => conn.execute_batch("RELEASE job").map(|()| first_index).map_err(db_err),
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                    *frontier = before;
                    Err(e)
                }
            }
        });
        results.push(result);
    }
    Ok(results)
}

/// Runs `f`, turning a panic into an error: it must not take the writer (and every later
/// request) down with it.
fn guarded<T>(f: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(StoreError::corrupt("internal error while writing")))
}

fn conflict(what: String) -> StoreError {
    StoreError::Conflict(what)
}

/// Checks one precondition against the current state.
fn check(conn: &Connection, p: &Precondition) -> StoreResult<()> {
    let version = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> StoreResult<Option<u64>> {
        let v: Option<i64> =
            conn.prepare_cached(sql).and_then(|mut s| s.query_row(args, |r| r.get(0)).optional()).map_err(db_err)?;
        Ok(v.map(|v| u64::try_from(v).unwrap_or(0)))
    };
    match p {
        Precondition::Record { kind, id, version: want } => {
            let have = version("SELECT version FROM records WHERE kind = ?1 AND id = ?2", &[&kind.as_str(), id])?;
            if have != *want {
                return Err(conflict(format!("{} {id} changed (version {have:?}, read {want:?})", kind.as_str())));
            }
        }
        Precondition::Case { id, version: want } => {
            let have = version("SELECT version FROM cases WHERE id = ?1", &[id])?;
            if have != *want {
                return Err(conflict(format!("case {id} changed (version {have:?}, read {want:?})")));
            }
        }
        Precondition::ChainHead { chain, head } => {
            let have = chain_head(conn, chain.as_deref())?;
            if have != *head {
                return Err(conflict(format!("the chain of {} moved", chain.as_deref().unwrap_or("the organization"))));
            }
        }
        Precondition::IdempotencyFree { agent, key } => {
            let taken = version("SELECT 1 FROM cases WHERE agent = ?1 AND idempotency_key = ?2", &[agent, key])?;
            if taken.is_some() {
                return Err(conflict(format!("idempotency key {key:?} of agent {agent} was taken")));
            }
        }
    }
    Ok(())
}

/// A uniqueness violation means a concurrent write got there first: decide again.
fn constraint(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => conflict(format!("a concurrent write: {e}")),
        _ => db_err(e),
    }
}

/// Inserts or replaces a case row, with the roles its pending review still misses.
fn put_case(conn: &Connection, row: &CaseRow, token: Option<&[u8]>) -> StoreResult<usize> {
    let n = conn
        .prepare_cached(
            "INSERT INTO cases (id, version, agent, audience, status, idempotency_key, review_id, review_status,
                review_pending, deadline_ms, due_ms, created_at_ms, counterparty, action, body)
             VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (id) DO UPDATE SET version = version + 1, status = excluded.status,
               review_id = excluded.review_id, review_status = excluded.review_status,
               review_pending = excluded.review_pending, deadline_ms = excluded.deadline_ms,
               due_ms = excluded.due_ms, body = excluded.body",
        )
        .and_then(|mut s| {
            s.execute(params![
                row.id,
                row.agent,
                row.audience,
                row.status,
                row.idempotency_key,
                row.review_id,
                row.review_status,
                row.review_pending,
                row.deadline_ms,
                row.due_ms,
                row.created_at_ms,
                row.counterparty,
                row.action,
                row.body
            ])
        })
        .map_err(constraint)?;
    // The token is written once, by the write that issues it (a second one is a conflict).
    if let Some(token) = token {
        conn.prepare_cached("INSERT INTO passports (case_num, token) SELECT num, ?2 FROM cases WHERE id = ?1")
            .and_then(|mut s| s.execute(params![row.id, token]))
            .map_err(constraint)?;
    }
    // Only a case with a review ever has missing roles.
    if row.review_id.is_some() {
        conn.prepare_cached("DELETE FROM review_roles WHERE case_id = ?1")
            .and_then(|mut s| s.execute([&row.id]))
            .map_err(db_err)?;
        for role in &row.roles_missing {
            conn.prepare_cached("INSERT OR IGNORE INTO review_roles (role, case_id) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute([role, &row.id]))
                .map_err(db_err)?;
        }
    }
    Ok(n)
}

/// Checks a write set's preconditions (reads only).
fn check_all(conn: &Connection, ws: &WriteSet) -> StoreResult<()> {
    ws.preconditions.iter().try_for_each(|p| check(conn, p))
}

/// Applies one write set's writes and entries; returns the index of its first entry.
fn write(conn: &Connection, frontier: &mut Frontier, ws: &WriteSet, packed: &Packed) -> StoreResult<u64> {
    for (i, w) in ws.writes.iter().enumerate() {
        match w {
            Write::PutRecord { kind, id, body } => conn
                .prepare_cached(
                    "INSERT INTO records (kind, id, version, body) VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, version = version + 1",
                )
                .and_then(|mut s| s.execute(params![kind.as_str(), id, body]))
                .map_err(constraint)?,
            Write::DeleteRecord { kind, id } => conn
                .prepare_cached("DELETE FROM records WHERE kind = ?1 AND id = ?2")
                .and_then(|mut s| s.execute(params![kind.as_str(), id]))
                .map_err(db_err)?,
            Write::PutCredential { hash, kind, id } => conn
                .prepare_cached("INSERT INTO credentials (hash, kind, id) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![hash, kind, id]))
                .map_err(constraint)?,
            Write::PutCase(row) => put_case(conn, row, packed.tokens.get(i).and_then(Option::as_deref))?,
        };
    }
    let first_index = frontier.size();
    let mut insert_entry = conn
        .prepare_cached(
            "INSERT INTO ledger (idx, chain, seq, type, at, actor, prev, data, digest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(db_err)?;
    let mut insert_node =
        conn.prepare_cached("INSERT INTO merkle (level, idx, hash) VALUES (?1, ?2, ?3)").map_err(db_err)?;
    // The chain number of the last case appended to (a write set extends one or two chains).
    let mut last: Option<(&str, i64)> = None;
    for (i, sealed) in ws.entries.iter().enumerate() {
        let data = packed.data.get(i).ok_or_else(|| StoreError::corrupt("a write set's entries were not packed"))?;
        let index = to_i64(frontier.size())?;
        let chain = match (sealed.chain(), last) {
            (None, _) => ORGANIZATION_CHAIN,
            (Some(id), Some((seen, num))) if seen == id => num,
            (Some(id), _) => {
                let num = chain_number(conn, Some(id))?.ok_or_else(|| {
                    StoreError::corrupt(format!("an entry of case {id}, which has no row (write the case first)"))
                })?;
                last = Some((id, num));
                num
            }
        };
        insert_entry
            .execute(params![
                index,
                chain,
                to_i64(sealed.entry.seq)?,
                sealed.entry.kind,
                sealed.at_ms,
                sealed.entry.actor,
                sealed.prev.as_ref().map(|p| &p[..]),
                data,
                &sealed.digest[..]
            ])
            .map_err(constraint)?;
        for (level, idx, hash) in frontier.push(sealed.digest) {
            if level >= FIRST_STORED_LEVEL {
                insert_node.execute(params![level, to_i64(idx)?, &hash[..]]).map_err(db_err)?;
            }
        }
    }
    Ok(first_index)
}

fn store_checkpoint(conn: &Connection, frontier: &Frontier, signer: &NoteSigner) -> StoreResult<()> {
    let cp = Checkpoint {
        origin: signer.name().to_owned(),
        size: frontier.size(),
        root: frontier.root(),
        extensions: Vec::new(),
    };
    let note = sign_checkpoint(&cp, signer).map_err(|e| StoreError::storage("cannot sign the checkpoint", e))?;
    // Only the latest checkpoint is needed to serve; older ones are kept by witnesses.
    run(conn, "DELETE FROM checkpoints")?;
    let size = to_i64(cp.size)?;
    conn.prepare_cached("INSERT INTO checkpoints (size, note) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![size, note]))
        .map_err(db_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use agentsigna_core::store::{ChainHead, RecordKind, SealedEntry};
    use agentsigna_verify::ledger::{hex_lower, Entry};
    use tokio::sync::oneshot;

    fn signer() -> NoteSigner {
        NoteSigner::new("agentsigna/test", ed25519_dalek::SigningKey::from_bytes(&[9; 32])).unwrap()
    }

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open_conn(&dir.path().join("t.db"), false).unwrap();
        super::super::schema::migrate(&conn).unwrap();
        // The chains these tests extend belong to cases with a row (entries need it).
        for id in ["c", "c1", "c2", "c3"] {
            conn.execute(
                "INSERT INTO cases (id, version, agent, audience, status, review_pending, created_at_ms, counterparty,
                    action, body)
                 VALUES (?1, 1, 'a', 'erp', 'authorized', 0, 0, 'acme', 'po.create', '{}')",
                [id],
            )
            .unwrap();
        }
        (dir, conn)
    }

    fn entry(case: &str, seq: u64, prev: Option<[u8; 32]>) -> SealedEntry {
        SealedEntry::seal(Entry {
            case: Some(case.into()),
            seq,
            prev: prev.map(|d| hex_lower(&d)),
            kind: "request.submitted".into(),
            at: "2026-12-01T00:00:00.000Z".into(),
            actor: "agent:a".into(),
            data: serde_json::json!({}),
        })
        .unwrap()
    }

    fn put(id: &str, version: Option<u64>) -> WriteSet {
        WriteSet {
            preconditions: vec![Precondition::Record { kind: RecordKind::Agent, id: id.into(), version }],
            writes: vec![Write::PutRecord { kind: RecordKind::Agent, id: id.into(), body: "{}".into() }],
            entries: vec![],
        }
    }

    /// Runs one batch; returns each write set's answer.
    fn batch(conn: &Connection, frontier: &mut Frontier, sets: Vec<WriteSet>) -> Vec<StoreResult<Committed>> {
        let mut answers = Vec::new();
        let mut jobs = Vec::new();
        for writes in sets {
            let (reply, rx) = oneshot::channel();
            jobs.push(Job::new(writes, reply).0);
            answers.push(rx);
        }
        run_batch(conn, frontier, &signer(), jobs);
        answers.into_iter().map(|mut rx| rx.try_recv().expect("answered")).collect()
    }

    #[test]
    fn a_failing_write_set_fails_alone_and_its_entries_take_no_position() {
        let (_dir, conn) = db();
        let mut frontier = Frontier::default();
        let a = entry("c1", 0, None);
        let stale = WriteSet { entries: vec![entry("c2", 0, None)], ..put("x", Some(7)) };
        let b = entry("c3", 0, None);
        let results = batch(
            &conn,
            &mut frontier,
            vec![
                WriteSet { entries: vec![a.clone()], ..put("x", None) },
                stale,
                WriteSet { entries: vec![b.clone()], ..WriteSet::default() },
            ],
        );
        assert_eq!(results[0].as_ref().unwrap().first_index, 0);
        assert!(matches!(results[1], Err(StoreError::Conflict(_))), "{:?}", results[1]);
        // The third gets the position the failed one would have taken: no gap.
        assert_eq!(results[2].as_ref().unwrap().first_index, 1);
        assert_eq!(frontier.size(), 2);
        assert_eq!(frontier.root(), agentsigna_verify::merkle::root_from_leaves(&[a.digest, b.digest]));
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 2);
        let version: i64 = conn.query_row("SELECT version FROM records WHERE id = 'x'", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 1, "the stale write set's record write was rolled back");
    }

    #[test]
    fn a_write_set_whose_writes_fail_is_refused_alone_and_the_rest_commit_in_order() {
        let (_dir, conn) = db();
        let mut frontier = Frontier::default();
        let e0 = entry("c", 0, None);
        batch(&conn, &mut frontier, vec![WriteSet { entries: vec![e0.clone()], ..WriteSet::default() }]);
        // Fresh preconditions, but its entry forks chain c: only the write finds out.
        let fork = WriteSet { entries: vec![entry("c", 0, None)], ..put("y", None) };
        let (a, b) = (entry("c1", 0, None), entry("c2", 0, None));
        let results = batch(
            &conn,
            &mut frontier,
            vec![
                WriteSet { entries: vec![a.clone()], ..put("x", None) },
                fork,
                WriteSet { entries: vec![b.clone()], ..put("z", None) },
                // Stale, refused by its precondition on the second path too.
                put("x", Some(9)),
            ],
        );
        assert_eq!(results[0].as_ref().unwrap().first_index, 1);
        assert!(matches!(results[1], Err(StoreError::Conflict(_))), "{:?}", results[1]);
        assert_eq!(results[2].as_ref().unwrap().first_index, 2);
        assert!(matches!(results[3], Err(StoreError::Conflict(_))), "{:?}", results[3]);
        assert_eq!(results[2].as_ref().unwrap().tree_size, 3);
        assert_eq!(frontier.root(), agentsigna_verify::merkle::root_from_leaves(&[e0.digest, a.digest, b.digest]));
        let records: Vec<(String, i64)> = conn
            .prepare("SELECT id, version FROM records ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records, [("x".to_owned(), 1), ("z".to_owned(), 1)], "written once each; nothing of the fork");
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 3);
        assert!(conn.is_autocommit(), "the batch's transaction ended");
    }

    #[test]
    fn each_precondition_kind_is_checked() {
        let (_dir, conn) = db();
        let mut frontier = Frontier::default();
        let e0 = entry("c", 0, None);
        batch(&conn, &mut frontier, vec![WriteSet { entries: vec![e0.clone()], ..put("x", None) }]);
        let stale = [
            Precondition::Record { kind: RecordKind::Agent, id: "x".into(), version: None },
            Precondition::Case { id: "k".into(), version: Some(1) },
            Precondition::ChainHead { chain: Some("c".into()), head: None },
            Precondition::ChainHead { chain: None, head: Some(ChainHead { seq: 0, digest: e0.digest }) },
        ];
        for p in stale {
            let ws = WriteSet { preconditions: vec![p.clone()], ..WriteSet::default() };
            let r = batch(&conn, &mut frontier, vec![ws]);
            assert!(matches!(r[0], Err(StoreError::Conflict(_))), "{p:?}: {:?}", r[0]);
        }
        let fresh = [
            Precondition::Record { kind: RecordKind::Agent, id: "x".into(), version: Some(1) },
            Precondition::Case { id: "k".into(), version: None },
            Precondition::ChainHead { chain: Some("c".into()), head: Some(ChainHead { seq: 0, digest: e0.digest }) },
            Precondition::ChainHead { chain: None, head: None },
            Precondition::IdempotencyFree { agent: "a".into(), key: "k1".into() },
        ];
        let ws = WriteSet { preconditions: fresh.to_vec(), ..WriteSet::default() };
        assert!(batch(&conn, &mut frontier, vec![ws])[0].is_ok());
    }

    #[test]
    fn a_forked_chain_is_refused_even_without_a_precondition() {
        let (_dir, conn) = db();
        let mut frontier = Frontier::default();
        let e0 = entry("c", 0, None);
        batch(&conn, &mut frontier, vec![WriteSet { entries: vec![e0.clone()], ..WriteSet::default() }]);
        // A second seq 0 for the same case (two decisions from one snapshot).
        let fork = WriteSet { entries: vec![entry("c", 0, None)], ..WriteSet::default() };
        let r = batch(&conn, &mut frontier, vec![fork]);
        assert!(matches!(r[0], Err(StoreError::Conflict(_))), "{:?}", r[0]);
        assert_eq!(frontier.size(), 1);
    }

    #[test]
    fn a_failed_commit_fails_the_batch_and_restores_the_frontier() {
        let (_dir, conn) = db();
        let mut frontier = Frontier::default();
        let e0 = entry("c", 0, None);
        batch(&conn, &mut frontier, vec![WriteSet { entries: vec![e0.clone()], ..WriteSet::default() }]);
        // The checkpoint cannot be stored: the batch must fail whole.
        conn.execute_batch("ALTER TABLE checkpoints RENAME TO gone").unwrap();
        let e1 = entry("c", 1, Some(e0.digest));
        let r = batch(&conn, &mut frontier, vec![WriteSet { entries: vec![e1.clone()], ..WriteSet::default() }]);
        assert!(r[0].is_err());
        assert_eq!(frontier.size(), 1, "the frontier is back at the committed tree");
        assert_eq!(frontier.root(), agentsigna_verify::merkle::root_from_leaves(&[e0.digest]));
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "nothing of the failed batch was kept");
        // Repaired, the same write set commits at the right position.
        conn.execute_batch("ALTER TABLE gone RENAME TO checkpoints").unwrap();
        let r = batch(&conn, &mut frontier, vec![WriteSet { entries: vec![e1], ..WriteSet::default() }]);
        assert_eq!(r[0].as_ref().unwrap().first_index, 1);
    }
}
