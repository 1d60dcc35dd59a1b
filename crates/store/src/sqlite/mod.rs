//! SQLite backend: one writer thread that only sequences ([`writer`]), snapshots on a
//! pool of read-only connections ([`read`]), the WAL's pages copied into the database
//! file on a thread of their own ([`wal`]), versioned migrations ([`schema`], with the
//! conversion of schema 3 into the compact one in [`convert`]).

mod convert;
mod read;
mod schema;
mod wal;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use agentsigna_core::store::{BoxFuture, Committed, ReadFn, Store, StoreError, StoreResult, WriteSet};
use agentsigna_verify::merkle::{Frontier, Hash, NodeSource};
use agentsigna_verify::note::NoteSigner;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

pub use crate::ledger::AuditError;
pub use read::LedgerReader;
pub use schema::SCHEMA_VERSION;
pub use wal::WAL_THREAD;
pub use writer::WriterStats;

/// The name of the thread that runs every write (`agentsigna bench` reports its CPU apart).
pub const WRITER_THREAD: &str = "agentsigna-writer";

/// A SQLite failure as the engine sees it: unreachable files are `Unavailable`, the rest
/// `Storage` (constraint violations are mapped to conflicts where they can occur).
pub(crate) fn db_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::CannotOpen | C::DiskFull | C::SystemIoFailure | C::DatabaseBusy | C::DatabaseLocked) => {
            StoreError::unavailable("sqlite", e)
        }
        _ => StoreError::storage("sqlite", e),
    }
}

pub(crate) fn to_i64(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::corrupt("integer out of range"))
}

/// Options of the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Number of read-only connections kept open.
    pub readers: usize,
    /// Write sets that may wait for the writer; beyond it, commits are refused at once
    /// (`Unavailable`: the server answers 503) instead of queueing without bound.
    pub queue: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { readers: 4, queue: 4096 }
    }
}

/// The embedded SQLite store.
pub struct SqliteStore {
    writer: mpsc::SyncSender<writer::Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<WriterStats>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

pub(crate) fn open_conn(path: &Path, read_only: bool) -> StoreResult<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db_err)?;
    // Every statement a connection runs stays prepared (rusqlite keeps 16 by default; the
    // writer alone runs about twenty, and an evicted one is parsed again on its next use).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if read_only {
        // 64 MiB of page cache per reader: Merkle proofs and case lookups read a few dozen
        // random pages, which should come from memory on large ledgers.
        conn.execute_batch("PRAGMA cache_size = -65536; PRAGMA query_only = ON;").map_err(db_err)?;
    } else {
        // The writer touches a small hot set (the tree's right edge, recent cases, records);
        // SQLite scans the writer's whole page-cache hash at every commit, so a large cache
        // would cost time on every batch.
        conn.execute_batch("PRAGMA cache_size = -8192;").map_err(db_err)?;
        // WAL + synchronous=FULL: a committed transaction survives power loss.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(db_err)?;
        if mode != "wal" {
            return Err(StoreError::corrupt(format!("could not enable WAL mode (got {mode})")));
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(db_err)?;
        // A batch that falls back to a savepoint per write set keeps its statement journal
        // in memory instead of a temporary file.
        conn.execute_batch("PRAGMA temp_store = MEMORY;").map_err(db_err)?;
        // The WAL's pages are copied into the database file by the checkpointer's thread
        // (`wal.rs`); the writer's own checkpoint on commit stays, rarer, as the bound.
        conn.execute_batch(&format!("PRAGMA wal_autocheckpoint = {};", wal::WRITER_AUTOCHECKPOINT_PAGES))
            .map_err(db_err)?;
    }
    Ok(conn)
}

/// Runs one statement without parameters, kept prepared (`execute_batch` parses it anew
/// every time).
pub(crate) fn run(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ()).map_err(db_err)
}

/// Runs `f` in a read transaction on a pooled read-only connection (blocking).
fn read_snapshot(readers: &Mutex<Vec<Connection>>, path: &Path, f: ReadFn) -> StoreResult<()> {
    let conn = match readers.lock().ok().and_then(|mut r| r.pop()) {
        Some(c) => c,
        None => open_conn(path, true)?,
    };
    let result = run(&conn, "BEGIN").and_then(|()| {
        let mut snap = read::SqlSnapshot { conn: &conn };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut snap)))
            .map_err(|_| StoreError::corrupt("internal error while reading"));
        let _ = run(&conn, "COMMIT");
        r
    });
    // A connection still inside a transaction (its `COMMIT` failed) would fail every later
    // `BEGIN`: it is closed, not pooled.
    if let (true, Ok(mut r)) = (conn.is_autocommit(), readers.lock()) {
        if r.len() < 16 {
            r.push(conn);
        }
    }
    result
}

struct DbNodes<'a> {
    conn: &'a Connection,
}

impl NodeSource for DbNodes<'_> {
    fn node(&self, level: u32, index: u64) -> Result<Hash, agentsigna_verify::Error> {
        read::node(self.conn, level, index).map_err(|e| agentsigna_verify::Error::BadProof(e.to_string()))
    }
}

impl SqliteStore {
    /// Opens (creating and migrating) `path`; checkpoints are signed by `signer`.
    pub fn open(path: &Path, signer: NoteSigner, options: SqliteOptions) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::unavailable(dir.display().to_string(), e))?;
        }
        let conn = open_conn(path, false)?;
        schema::migrate(&conn)?;
        let size = read::ledger_size(&conn)?;
        let frontier = Frontier::from_source(&DbNodes { conn: &conn }, size)
            .map_err(|e| StoreError::storage("cannot rebuild the Merkle frontier", e))?;
        let mut readers = Vec::new();
        for _ in 0..options.readers.max(1) {
            readers.push(open_conn(path, true)?);
        }
        let (tx, rx) = mpsc::sync_channel::<writer::Job>(options.queue.max(1));
        let stats = Arc::new(WriterStats::default());
        let writer_stats = stats.clone();
        let checkpointer = wal::WalCheckpointer::start(path)?;
        let thread = std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || writer::writer_loop(conn, frontier, signer, rx, writer_stats, checkpointer))
            .map_err(|e| StoreError::storage("cannot start the writer thread", e))?;
        Ok(SqliteStore {
            writer: tx,
            readers: Arc::new(Mutex::new(readers)),
            path: path.to_owned(),
            thread: Mutex::new(Some(thread)),
            stats,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for SqliteStore {
    fn read(&self, f: ReadFn) -> BoxFuture<StoreResult<()>> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        Box::pin(async move {
            let joined = tokio::task::spawn_blocking(move || read_snapshot(&readers, &path, f)).await;
            joined.map_err(|e| StoreError::storage("the reader task failed", e))?
        })
    }

    /// On the caller's task: a decision's point reads come from the OS page cache in
    /// microseconds, less than handing them to a blocking thread and waking the task again
    /// (that round trip was ≈ 10–14 % of an authorized request's CPU; BENCHMARKS.md).
    fn read_to_decide(&self, f: ReadFn) -> BoxFuture<StoreResult<()>> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        Box::pin(async move { read_snapshot(&readers, &path, f) })
    }

    fn commit(&self, writes: WriteSet) -> BoxFuture<StoreResult<Committed>> {
        let (reply, rx) = oneshot::channel();
        let (job, work) = writer::Job::new(writes, reply);
        let sent = self.writer.try_send(job);
        Box::pin(async move {
            // Freed here once answered, not in the serial step.
            let _work = work;
            match sent {
                Ok(()) => {}
                Err(mpsc::TrySendError::Full(_)) => {
                    return Err(StoreError::Unavailable { detail: "the writer queue is full".into(), source: None })
                }
                Err(mpsc::TrySendError::Disconnected(_)) => {
                    return Err(StoreError::Unavailable { detail: "the writer has stopped".into(), source: None })
                }
            }
            rx.await.map_err(|_| StoreError::Unavailable { detail: "the writer has stopped".into(), source: None })?
        })
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn serial_figures(&self) -> agentsigna_core::store::SerialFigures {
        self.stats.figures()
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer after it has finished its batch.
        let (dead, _) = mpsc::sync_channel(1);
        let _ = std::mem::replace(&mut self.writer, dead);
        if let Ok(mut t) = self.thread.lock() {
            if let Some(t) = t.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use agentsigna_core::store::{RecordKind, StoreExt, Write};

    #[tokio::test]
    async fn a_decision_reads_on_the_callers_thread_other_reads_on_a_blocking_one() {
        use agentsigna_core::store::StoreExt as _;
        let dir = tempfile::tempdir().unwrap();
        let signer = NoteSigner::new("agentsigna/r", ed25519_dalek::SigningKey::from_bytes(&[4; 32])).unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db"), signer, SqliteOptions::default()).unwrap();
        store
            .commit(WriteSet {
                writes: vec![Write::PutRecord { kind: RecordKind::Setting, id: "s".into(), body: "1".into() }],
                ..WriteSet::default()
            })
            .await
            .unwrap();
        let here = std::thread::current().id();
        let read = |s: &mut dyn agentsigna_core::store::Snapshot| -> StoreResult<_> {
            Ok((std::thread::current().id(), s.records(RecordKind::Setting)?.len()))
        };
        let (decided_on, n) = store.read_to_decide_with(read).await.unwrap();
        assert_eq!((decided_on, n), (here, 1), "the same snapshot, read on the caller's thread");
        let (read_on, n) = store.read_with(read).await.unwrap();
        assert_eq!(n, 1);
        assert_ne!(read_on, here, "a plain read (a listing, an export) keeps off the async threads");
        // A panicking decision is an error on either path, and the pooled connection survives it.
        let boom = |_: &mut dyn agentsigna_core::store::Snapshot| -> StoreResult<()> { panic!("boom") };
        assert!(store.read_to_decide_with(boom).await.is_err());
        assert_eq!(store.read_to_decide_with(read).await.unwrap().1, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_writer_queue_refuses_at_once_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let signer = NoteSigner::new("agentsigna/q", ed25519_dalek::SigningKey::from_bytes(&[3; 32])).unwrap();
        let store = Arc::new(SqliteStore::open(&path, signer, SqliteOptions { readers: 1, queue: 2 }).unwrap());
        // Another connection holds the write lock: the writer blocks in BEGIN IMMEDIATE.
        let blocker = open_conn(&path, false).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let ws = |i: usize| WriteSet {
            writes: vec![Write::PutRecord { kind: RecordKind::Setting, id: format!("s{i}"), body: "1".into() }],
            ..WriteSet::default()
        };
        let mut pending = Vec::new();
        let mut refused = 0;
        for i in 0..8 {
            let fut = store.commit(ws(i));
            // The first is taken by the writer, two wait in the queue, the rest are refused.
            match tokio::time::timeout(std::time::Duration::from_millis(50), fut).await {
                Ok(Err(StoreError::Unavailable { detail, .. })) => {
                    assert!(detail.contains("queue is full"), "{detail}");
                    refused += 1;
                }
                Ok(other) => panic!("unexpected answer while the writer is blocked: {other:?}"),
                Err(_) => pending.push(i),
            }
        }
        assert!(refused >= 4, "refused {refused}, pending {pending:?}");
        blocker.execute_batch("COMMIT").unwrap();
        // Once unblocked, the writer serves new work again.
        let mut ok = false;
        for _ in 0..100 {
            match store.commit(ws(100)).await {
                Ok(_) => {
                    ok = true;
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        assert!(ok, "the writer recovers after the queue drained");
        let n = store.read_with(|s| -> StoreResult<usize> { Ok(s.records(RecordKind::Setting)?.len()) }).await.unwrap();
        assert!(n >= 1);
    }
}
