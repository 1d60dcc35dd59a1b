//! The serial step: one writer thread owns the read-write connection and commits write
//! sets in batches. Per batch: `BEGIN IMMEDIATE`; per write set a `SAVEPOINT`, its
//! preconditions checked, its writes applied, its sealed entries given positions from the
//! in-memory Merkle frontier; one signed checkpoint for the new tree; one `COMMIT` (one
//! fsync); then every write set is answered. It decides nothing and hashes only the tree.

use std::sync::mpsc;

use agentsigna_core::store::{Committed, Precondition, StoreError, StoreResult, Write, WriteSet};
use agentsigna_verify::merkle::Frontier;
use agentsigna_verify::note::{sign_checkpoint, Checkpoint, NoteSigner};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::read::chain_head;
use super::{db_err, to_i64};

/// Largest number of write sets sharing one transaction.
const MAX_BATCH: usize = 512;

pub(crate) struct Job {
    pub writes: WriteSet,
    pub reply: oneshot::Sender<StoreResult<Committed>>,
}

/// Runs batches until every sender is gone.
pub(crate) fn writer_loop(conn: Connection, mut frontier: Frontier, signer: NoteSigner, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, &mut frontier, &signer, batch);
    }
}

/// One group commit. A failing write set is rolled back to its savepoint alone; a failing
/// commit fails every write set of the batch and restores the frontier.
pub(crate) fn run_batch(conn: &Connection, frontier: &mut Frontier, signer: &NoteSigner, batch: Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err) {
        for job in batch {
            let _ = job.reply.send(Err(e.clone()));
        }
        return;
    }
    let start = frontier.clone();
    let mut results = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for job in batch {
        let before = frontier.clone();
        let result = conn.execute_batch("SAVEPOINT job").map_err(db_err).and_then(|()| {
            // A panic must not take the writer (and every later request) down with it.
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(conn, frontier, &job.writes)))
                .unwrap_or_else(|_| Err(StoreError::corrupt("internal error while writing")));
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
        replies.push(job.reply);
    }
    let mut commit = Ok(());
    if frontier.size() != start.size() {
        commit = store_checkpoint(conn, frontier, signer);
    }
    if commit.is_ok() {
        commit = conn.execute_batch("COMMIT").map_err(db_err);
    }
    if let Err(e) = commit {
        let _ = conn.execute_batch("ROLLBACK");
        *frontier = start;
        for reply in replies {
            let _ = reply.send(Err(e.clone()));
        }
        return;
    }
    let tree_size = frontier.size();
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result.map(|first_index| Committed { first_index, tree_size }));
    }
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

/// Applies one write set; returns the index of its first entry.
fn apply(conn: &Connection, frontier: &mut Frontier, ws: &WriteSet) -> StoreResult<u64> {
    for p in &ws.preconditions {
        check(conn, p)?;
    }
    for w in &ws.writes {
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
            Write::PutCase(row) => conn
                .prepare_cached(
                    "INSERT INTO cases (id, version, agent, audience, status, idempotency_key, review_id, review_pending,
                        deadline_ms, due_ms, created_at_ms, body)
                     VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (id) DO UPDATE SET version = version + 1, status = excluded.status,
                       review_id = excluded.review_id, review_pending = excluded.review_pending,
                       deadline_ms = excluded.deadline_ms, due_ms = excluded.due_ms, body = excluded.body",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        row.id,
                        row.agent,
                        row.audience,
                        row.status,
                        row.idempotency_key,
                        row.review_id,
                        row.review_pending,
                        row.deadline_ms,
                        row.due_ms,
                        row.created_at_ms,
                        row.body
                    ])
                })
                .map_err(constraint)?,
        };
    }
    let first_index = frontier.size();
    let mut insert_entry = conn
        .prepare_cached("INSERT INTO ledger (idx, case_id, seq, digest, entry) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(db_err)?;
    let mut insert_node =
        conn.prepare_cached("INSERT INTO merkle (level, idx, hash) VALUES (?1, ?2, ?3)").map_err(db_err)?;
    for sealed in &ws.entries {
        let index = to_i64(frontier.size())?;
        insert_entry
            .execute(params![index, sealed.chain(), to_i64(sealed.entry.seq)?, &sealed.digest[..], sealed.canonical])
            .map_err(constraint)?;
        for (level, idx, hash) in frontier.push(sealed.digest) {
            if level > 0 {
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
    conn.execute("DELETE FROM checkpoints", []).map_err(db_err)?;
    conn.execute("INSERT INTO checkpoints (size, note) VALUES (?1, ?2)", params![to_i64(cp.size)?, note])
        .map_err(db_err)?;
    Ok(())
}
