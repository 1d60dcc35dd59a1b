//! SQLite backend: one writer thread with group commit, read-only connection pool.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use agentsigna_core::store::{BoxFuture, CaseFilter, CaseRow, NewEntry, RecordKind, Store, Tx, TxFn};
use agentsigna_core::{Error, Result};
use agentsigna_verify::clock::rfc3339_ms;
use agentsigna_verify::ledger::{hex_lower, DigestedEntry, Entry};
use agentsigna_verify::merkle::{Frontier, Hash, NodeSource};
use agentsigna_verify::note::{sign_checkpoint, Checkpoint, NoteSigner};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;

/// Largest number of write jobs sharing one transaction.
const MAX_BATCH: usize = 512;

/// Schema migrations; `PRAGMA user_version` records how many have been applied.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema
    r#"
    CREATE TABLE records (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;
    CREATE TABLE credentials (hash TEXT PRIMARY KEY, kind TEXT NOT NULL, id TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE cases (
        id TEXT PRIMARY KEY, agent TEXT NOT NULL, audience TEXT NOT NULL, status TEXT NOT NULL,
        idempotency_key TEXT, review_id TEXT UNIQUE, review_pending INTEGER NOT NULL,
        deadline_ms INTEGER, due_ms INTEGER, created_at_ms INTEGER NOT NULL, body TEXT NOT NULL);
    CREATE UNIQUE INDEX cases_idempotency ON cases (agent, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX cases_due ON cases (due_ms) WHERE due_ms IS NOT NULL;
    CREATE INDEX cases_pending ON cases (review_pending, deadline_ms);
    CREATE INDEX cases_agent ON cases (agent, created_at_ms);
    CREATE INDEX cases_audience ON cases (audience, created_at_ms);
    CREATE INDEX cases_created ON cases (created_at_ms);
    CREATE TABLE ledger (idx INTEGER PRIMARY KEY, case_id TEXT, seq INTEGER NOT NULL, digest BLOB NOT NULL, entry TEXT NOT NULL);
    CREATE INDEX ledger_case ON ledger (case_id, seq);
    CREATE TABLE merkle (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID;
    CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL);
    "#,
];

fn db_err(e: rusqlite::Error) -> Error {
    Error::storage(format!("sqlite: {e}"))
}

/// Options of the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Number of read-only connections.
    pub readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { readers: 4 }
    }
}

struct Job {
    f: TxFn,
    reply: oneshot::Sender<Result<Box<dyn Any + Send>>>,
}

/// The embedded SQLite store.
pub struct SqliteStore {
    writer: mpsc::SyncSender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn open_conn(path: &Path, read_only: bool) -> Result<Connection> {
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
            return Err(Error::storage(format!("could not enable WAL mode (got {mode})")));
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(db_err)?;
        // Each job runs in a savepoint; its statement journal stays in memory instead of a
        // temporary file written on every job.
        conn.execute_batch("PRAGMA temp_store = MEMORY;").map_err(db_err)?;
    }
    Ok(conn)
}

/// Applies pending migrations.
fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err)?;
    let version = usize::try_from(version).map_err(|_| Error::storage("negative schema version"))?;
    if version > MIGRATIONS.len() {
        return Err(Error::storage(format!(
            "database schema version {version} is newer than this binary ({}); upgrade agentsigna",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.unchecked_transaction().map_err(db_err)?;
        tx.execute_batch(sql).map_err(db_err)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1)).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
    }
    Ok(())
}

/// In-memory state of the writer, rolled back with its transaction.
#[derive(Clone)]
struct WriterState {
    frontier: Frontier,
}

struct DbNodes<'a> {
    conn: &'a Connection,
}

impl NodeSource for DbNodes<'_> {
    fn node(&self, level: u32, index: u64) -> std::result::Result<Hash, agentsigna_verify::Error> {
        node(self.conn, level, index).map_err(|e| agentsigna_verify::Error::BadProof(e.to_string()))
    }
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::storage("integer out of range"))
}

fn node(conn: &Connection, level: u32, index: u64) -> Result<Hash> {
    let i = to_i64(index)?;
    let blob: Option<Vec<u8>> = if level == 0 {
        conn.prepare_cached("SELECT digest FROM ledger WHERE idx = ?1")
            .and_then(|mut s| s.query_row([i], |r| r.get(0)).optional())
            .map_err(db_err)?
    } else {
        conn.prepare_cached("SELECT hash FROM merkle WHERE level = ?1 AND idx = ?2")
            .and_then(|mut s| s.query_row(params![level, i], |r| r.get(0)).optional())
            .map_err(db_err)?
    };
    let blob = blob.ok_or_else(|| Error::NotFound(format!("no Merkle node at level {level}, index {index}")))?;
    <Hash>::try_from(blob.as_slice()).map_err(|_| Error::storage("corrupt Merkle node"))
}

fn ledger_size(conn: &Connection) -> Result<u64> {
    let n: Option<i64> = conn.query_row("SELECT MAX(idx) FROM ledger", [], |r| r.get(0)).map_err(db_err)?;
    Ok(n.map_or(0, |n| u64::try_from(n + 1).unwrap_or(0)))
}

/// A transaction on a connection; `writer` is `None` for read-only snapshots.
struct SqlTx<'a> {
    conn: &'a Connection,
    writer: Option<&'a mut WriterState>,
}

impl SqlTx<'_> {
    fn writable(&mut self) -> Result<&mut WriterState> {
        self.writer.as_deref_mut().ok_or_else(|| Error::storage("write attempted in a read transaction"))
    }
}

fn parse_entry(text: &str, digest: &[u8]) -> Result<DigestedEntry> {
    let entry: Entry = serde_json::from_str(text).map_err(|e| Error::storage(format!("corrupt ledger entry: {e}")))?;
    Ok(DigestedEntry { entry, digest: hex_lower(digest) })
}

impl Tx for SqlTx<'_> {
    fn get_record(&mut self, kind: RecordKind, id: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT body FROM records WHERE kind = ?1 AND id = ?2")
            .and_then(|mut s| s.query_row(params![kind.as_str(), id], |r| r.get(0)).optional())
            .map_err(db_err)
    }

    fn put_record(&mut self, kind: RecordKind, id: &str, body: &str) -> Result<()> {
        self.writable()?;
        self.conn
            .prepare_cached("INSERT INTO records (kind, id, body) VALUES (?1, ?2, ?3) ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body")
            .and_then(|mut s| s.execute(params![kind.as_str(), id, body]))
            .map_err(db_err)?;
        Ok(())
    }

    fn list_records(&mut self, kind: RecordKind) -> Result<Vec<String>> {
        let mut s = self.conn.prepare_cached("SELECT body FROM records WHERE kind = ?1 ORDER BY id").map_err(db_err)?;
        let rows = s.query_map([kind.as_str()], |r| r.get(0)).map_err(db_err)?;
        rows.collect::<std::result::Result<Vec<String>, _>>().map_err(db_err)
    }

    fn delete_record(&mut self, kind: RecordKind, id: &str) -> Result<bool> {
        self.writable()?;
        let n = self
            .conn
            .prepare_cached("DELETE FROM records WHERE kind = ?1 AND id = ?2")
            .and_then(|mut s| s.execute(params![kind.as_str(), id]))
            .map_err(db_err)?;
        Ok(n > 0)
    }

    fn credential(&mut self, hash: &str) -> Result<Option<(String, String)>> {
        self.conn
            .prepare_cached("SELECT kind, id FROM credentials WHERE hash = ?1")
            .and_then(|mut s| s.query_row([hash], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(db_err)
    }

    fn put_credential(&mut self, hash: &str, kind: &str, id: &str) -> Result<()> {
        self.writable()?;
        self.conn
            .prepare_cached("INSERT INTO credentials (hash, kind, id) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![hash, kind, id]))
            .map_err(db_err)?;
        Ok(())
    }

    fn get_case(&mut self, id: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT body FROM cases WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(db_err)
    }

    fn put_case(&mut self, row: &CaseRow) -> Result<()> {
        self.writable()?;
        self.conn
            .prepare_cached(
                "INSERT INTO cases (id, agent, audience, status, idempotency_key, review_id, review_pending, deadline_ms, due_ms, created_at_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, review_id = excluded.review_id,
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
                    row.review_pending,
                    row.deadline_ms,
                    row.due_ms,
                    row.created_at_ms,
                    row.body
                ])
            })
            .map_err(db_err)?;
        Ok(())
    }

    fn case_by_idempotency(&mut self, agent: &str, key: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT body FROM cases WHERE agent = ?1 AND idempotency_key = ?2")
            .and_then(|mut s| s.query_row([agent, key], |r| r.get(0)).optional())
            .map_err(db_err)
    }

    fn case_by_review(&mut self, review_id: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT body FROM cases WHERE review_id = ?1")
            .and_then(|mut s| s.query_row([review_id], |r| r.get(0)).optional())
            .map_err(db_err)
    }

    fn list_cases(&mut self, filter: &CaseFilter) -> Result<Vec<String>> {
        let mut sql = String::from("SELECT body FROM cases WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(a) = &filter.agent {
            args.push(a.clone().into());
            sql.push_str(&format!(" AND agent = ?{}", args.len()));
        }
        if let Some(a) = &filter.audience {
            args.push(a.clone().into());
            sql.push_str(&format!(" AND audience = ?{}", args.len()));
        }
        if let Some(s) = &filter.status {
            args.push(s.clone().into());
            sql.push_str(&format!(" AND status = ?{}", args.len()));
        }
        if let Some(p) = filter.review_pending {
            args.push(i64::from(p).into());
            sql.push_str(&format!(" AND review_pending = ?{}", args.len()));
            sql.push_str(" ORDER BY deadline_ms ASC, created_at_ms ASC");
        } else {
            sql.push_str(" ORDER BY created_at_ms DESC, id DESC");
        }
        sql.push_str(&format!(" LIMIT {}", filter.limit.clamp(1, 10_000)));
        let mut s = self.conn.prepare_cached(&sql).map_err(db_err)?;
        let rows = s.query_map(rusqlite::params_from_iter(args), |r| r.get(0)).map_err(db_err)?;
        rows.collect::<std::result::Result<Vec<String>, _>>().map_err(db_err)
    }

    fn due_cases(&mut self, now_ms: i64, limit: u32) -> Result<Vec<String>> {
        let mut s = self
            .conn
            .prepare_cached("SELECT id FROM cases WHERE due_ms IS NOT NULL AND due_ms <= ?1 ORDER BY due_ms LIMIT ?2")
            .map_err(db_err)?;
        let rows = s.query_map(params![now_ms, limit], |r| r.get(0)).map_err(db_err)?;
        rows.collect::<std::result::Result<Vec<String>, _>>().map_err(db_err)
    }

    fn append(&mut self, new: NewEntry) -> Result<DigestedEntry> {
        let conn = self.conn;
        let state = self.writable()?;
        let index = state.frontier.size();
        let head: Option<(i64, Vec<u8>)> = conn
            .prepare_cached("SELECT seq, digest FROM ledger WHERE case_id IS ?1 ORDER BY seq DESC LIMIT 1")
            .and_then(|mut s| s.query_row([&new.case], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(db_err)?;
        let (seq, prev) = match head {
            Some((seq, digest)) => {
                (u64::try_from(seq + 1).map_err(|_| Error::storage("bad seq"))?, Some(hex_lower(&digest)))
            }
            None => (0, None),
        };
        let entry = Entry {
            index,
            case: new.case,
            seq,
            prev,
            kind: new.kind,
            at: rfc3339_ms(new.at_ms),
            actor: new.actor,
            data: new.data,
        };
        let canonical = entry.canonical_json().map_err(|e| Error::storage(format!("unhashable entry: {e}")))?;
        let digest = agentsigna_verify::ledger::digest_canonical(canonical.as_bytes());
        let (i, q) = (to_i64(index)?, to_i64(seq)?);
        conn.prepare_cached("INSERT INTO ledger (idx, case_id, seq, digest, entry) VALUES (?1, ?2, ?3, ?4, ?5)")
            .and_then(|mut s| s.execute(params![i, entry.case, q, &digest[..], canonical]))
            .map_err(db_err)?;
        let mut insert =
            conn.prepare_cached("INSERT INTO merkle (level, idx, hash) VALUES (?1, ?2, ?3)").map_err(db_err)?;
        for (level, idx, hash) in state.frontier.push(digest) {
            if level > 0 {
                insert.execute(params![level, to_i64(idx)?, &hash[..]]).map_err(db_err)?;
            }
        }
        Ok(DigestedEntry { entry, digest: hex_lower(&digest) })
    }

    fn ledger_size(&mut self) -> Result<u64> {
        match &self.writer {
            Some(w) => Ok(w.frontier.size()),
            None => ledger_size(self.conn),
        }
    }

    fn ledger_entries(&mut self, start: u64, end: u64) -> Result<Vec<DigestedEntry>> {
        let mut s = self
            .conn
            .prepare_cached("SELECT entry, digest FROM ledger WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")
            .map_err(db_err)?;
        let rows = s
            .query_map(params![to_i64(start)?, to_i64(end)?], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (text, digest) = row.map_err(db_err)?;
            out.push(parse_entry(&text, &digest)?);
        }
        Ok(out)
    }

    fn case_entries(&mut self, case: Option<&str>) -> Result<Vec<DigestedEntry>> {
        let mut s = self
            .conn
            .prepare_cached("SELECT entry, digest FROM ledger WHERE case_id IS ?1 ORDER BY seq")
            .map_err(db_err)?;
        let rows = s.query_map([case], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))).map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (text, digest) = row.map_err(db_err)?;
            out.push(parse_entry(&text, &digest)?);
        }
        Ok(out)
    }

    fn merkle_node(&mut self, level: u32, index: u64) -> Result<Hash> {
        node(self.conn, level, index)
    }

    fn checkpoint(&mut self) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1", [], |r| r.get(0))
            .optional()
            .map_err(db_err)
    }
}

impl SqliteStore {
    /// Opens (creating and migrating) `path`; checkpoints are signed by `signer`.
    pub fn open(path: &Path, signer: NoteSigner, options: SqliteOptions) -> Result<SqliteStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::storage(format!("{}: {e}", dir.display())))?;
        }
        let conn = open_conn(path, false)?;
        migrate(&conn)?;
        let size = ledger_size(&conn)?;
        let frontier = Frontier::from_source(&DbNodes { conn: &conn }, size)
            .map_err(|e| Error::storage(format!("cannot rebuild the Merkle frontier: {e}")))?;
        let mut readers = Vec::new();
        for _ in 0..options.readers.max(1) {
            readers.push(open_conn(path, true)?);
        }
        let (tx, rx) = mpsc::sync_channel::<Job>(4096);
        let state = WriterState { frontier };
        let thread = std::thread::Builder::new()
            .name("agentsigna-writer".into())
            .spawn(move || writer_loop(conn, state, signer, rx))
            .map_err(|e| Error::storage(format!("cannot start the writer thread: {e}")))?;
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

/// The single writer: takes every job waiting, runs each in a savepoint inside one
/// transaction, signs a checkpoint for the new tree, commits once (one fsync), then
/// answers every job.
fn writer_loop(conn: Connection, mut state: WriterState, signer: NoteSigner, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let start_state = state.clone();
        let mut results: Vec<Result<Box<dyn Any + Send>>> = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let begin = conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err);
        if let Err(e) = begin {
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
            continue;
        }
        for job in batch {
            let before = state.clone();
            let result = match conn.execute_batch("SAVEPOINT job") {
                Err(e) => Err(db_err(e)),
                Ok(()) => {
                    let r = {
                        let mut tx = SqlTx { conn: &conn, writer: Some(&mut state) };
                        // A panicking job must not take the writer down with it.
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.f)(&mut tx)))
                            .unwrap_or_else(|_| Err(Error::storage("internal error while processing the request")))
                    };
                    match r {
                        Ok(v) => conn.execute_batch("RELEASE job").map(|_| v).map_err(db_err),
                        Err(e) => {
                            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                            state = before;
                            Err(e)
                        }
                    }
                }
            };
            results.push(result);
            replies.push(job.reply);
        }
        let mut commit = Ok(());
        if state.frontier.size() != start_state.frontier.size() {
            commit = store_checkpoint(&conn, &state, &signer);
        }
        if commit.is_ok() {
            commit = conn.execute_batch("COMMIT").map_err(db_err);
        }
        if let Err(e) = commit {
            let _ = conn.execute_batch("ROLLBACK");
            state = start_state;
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
            continue;
        }
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

fn store_checkpoint(conn: &Connection, state: &WriterState, signer: &NoteSigner) -> Result<()> {
    let cp = Checkpoint {
        origin: signer.name().to_owned(),
        size: state.frontier.size(),
        root: state.frontier.root(),
        extensions: Vec::new(),
    };
    let note = sign_checkpoint(&cp, signer).map_err(|e| Error::storage(format!("cannot sign checkpoint: {e}")))?;
    // Only the latest checkpoint is needed to serve; older ones are kept by witnesses.
    conn.execute("DELETE FROM checkpoints", []).map_err(db_err)?;
    conn.execute("INSERT INTO checkpoints (size, note) VALUES (?1, ?2)", params![to_i64(cp.size)?, note])
        .map_err(db_err)?;
    Ok(())
}

impl Store for SqliteStore {
    fn write(&self, f: TxFn) -> BoxFuture<Result<Box<dyn Any + Send>>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.writer.try_send(Job { f, reply });
        Box::pin(async move {
            match sent {
                Ok(()) => {}
                Err(mpsc::TrySendError::Full(_)) => {
                    return Err(Error::storage("the writer queue is full; retry later"))
                }
                Err(mpsc::TrySendError::Disconnected(_)) => return Err(Error::storage("the writer has stopped")),
            }
            rx.await.map_err(|_| Error::storage("the writer has stopped"))?
        })
    }

    fn read(&self, f: TxFn) -> BoxFuture<Result<Box<dyn Any + Send>>> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        Box::pin(async move {
            let joined = tokio::task::spawn_blocking(move || {
                let conn = match readers.lock().ok().and_then(|mut r| r.pop()) {
                    Some(c) => c,
                    None => open_conn(&path, true)?,
                };
                let result = (|| {
                    conn.execute_batch("BEGIN").map_err(db_err)?;
                    let r = {
                        let mut tx = SqlTx { conn: &conn, writer: None };
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut tx)))
                            .unwrap_or_else(|_| Err(Error::storage("internal error while reading")))
                    };
                    let _ = conn.execute_batch("COMMIT");
                    r
                })();
                if let Ok(mut r) = readers.lock() {
                    if r.len() < 16 {
                        r.push(conn);
                    }
                }
                result
            })
            .await;
            joined.map_err(|e| Error::storage(format!("reader task failed: {e}")))?
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

/// Offline, read-only access to a database for `ledger verify` and `ledger export`.
pub struct LedgerReader {
    conn: Connection,
}

impl LedgerReader {
    /// Opens a database read-only.
    pub fn open(path: &Path) -> Result<LedgerReader> {
        if !path.exists() {
            return Err(Error::NotFound(format!("{} does not exist", path.display())));
        }
        Ok(LedgerReader { conn: open_conn(path, true)? })
    }

    /// Number of entries.
    pub fn size(&self) -> Result<u64> {
        ledger_size(&self.conn)
    }

    /// The latest stored checkpoint.
    pub fn checkpoint(&self) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1", [], |r| r.get(0))
            .optional()
            .map_err(db_err)
    }

    /// Calls `f` with every stored entry in index order: `(stored idx, canonical text, stored digest)`.
    /// Stops at the first error `f` returns.
    pub fn scan(&self, mut f: impl FnMut(i64, &str, &[u8]) -> Result<()>) -> Result<()> {
        let mut s = self.conn.prepare("SELECT idx, entry, digest FROM ledger ORDER BY idx").map_err(db_err)?;
        let mut rows = s.query([]).map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            let idx: i64 = row.get(0).map_err(db_err)?;
            let text = row.get_ref(1).map_err(db_err)?.as_str().map_err(|e| Error::storage(e.to_string()))?;
            let digest = row.get_ref(2).map_err(db_err)?.as_blob().map_err(|e| Error::storage(e.to_string()))?;
            f(idx, text, digest)?;
        }
        Ok(())
    }
}

impl LedgerReader {
    /// Every entry of one case, in chain order.
    pub fn case_entries(&self, case: &str) -> Result<Vec<DigestedEntry>> {
        let mut tx = SqlTx { conn: &self.conn, writer: None };
        tx.case_entries(Some(case))
    }
}

impl NodeSource for LedgerReader {
    fn node(&self, level: u32, index: u64) -> std::result::Result<Hash, agentsigna_verify::Error> {
        node(&self.conn, level, index).map_err(|e| agentsigna_verify::Error::BadProof(e.to_string()))
    }
}
