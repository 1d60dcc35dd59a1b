//! SQLite backend: one writer thread that only sequences ([`writer`]), snapshots on a
//! pool of read-only connections ([`read`]), versioned migrations ([`schema`]).

mod read;
mod schema;
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
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { readers: 4 }
    }
}

/// The embedded SQLite store.
pub struct SqliteStore {
    writer: mpsc::SyncSender<writer::Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

pub(crate) fn open_conn(path: &Path, read_only: bool) -> StoreResult<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db_err)?;
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
        // Each write set runs in a savepoint; its statement journal stays in memory instead
        // of a temporary file written on every write set.
        conn.execute_batch("PRAGMA temp_store = MEMORY;").map_err(db_err)?;
    }
    Ok(conn)
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
        let (tx, rx) = mpsc::sync_channel::<writer::Job>(4096);
        let thread = std::thread::Builder::new()
            .name("agentsigna-writer".into())
            .spawn(move || writer::writer_loop(conn, frontier, signer, rx))
            .map_err(|e| StoreError::storage("cannot start the writer thread", e))?;
        Ok(SqliteStore {
            writer: tx,
            readers: Arc::new(Mutex::new(readers)),
            path: path.to_owned(),
            thread: Mutex::new(Some(thread)),
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
            let joined = tokio::task::spawn_blocking(move || -> StoreResult<()> {
                let conn = match readers.lock().ok().and_then(|mut r| r.pop()) {
                    Some(c) => c,
                    None => open_conn(&path, true)?,
                };
                let result = conn.execute_batch("BEGIN").map_err(db_err).and_then(|()| {
                    let mut snap = read::SqlSnapshot { conn: &conn };
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut snap)))
                        .map_err(|_| StoreError::corrupt("internal error while reading"));
                    let _ = conn.execute_batch("COMMIT");
                    r
                });
                if let Ok(mut r) = readers.lock() {
                    if r.len() < 16 {
                        r.push(conn);
                    }
                }
                result
            })
            .await;
            joined.map_err(|e| StoreError::storage("the reader task failed", e))?
        })
    }

    fn commit(&self, writes: WriteSet) -> BoxFuture<StoreResult<Committed>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.writer.try_send(writer::Job { writes, reply });
        Box::pin(async move {
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
