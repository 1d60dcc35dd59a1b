//! The SQLite schema and its versioned migrations (`PRAGMA user_version`).

use rusqlite::Connection;

use super::db_err;
use agentsigna_core::store::{StoreError, StoreResult};

/// Migrations in order; `PRAGMA user_version` records how many have been applied. Entry 0
/// is the schema of ledger format v1 (`index` hashed), which this binary does not read.
const MIGRATIONS: &[&str] = &[
    // 1: ledger format v1 (superseded; a database at this version is refused).
    "",
    // 2: ledger format v2: versioned records and cases (preconditions of the serial step),
    // one chain position per (case, seq).
    r#"
    CREATE TABLE records (kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (kind, id)) WITHOUT ROWID;
    CREATE TABLE credentials (hash TEXT PRIMARY KEY, kind TEXT NOT NULL, id TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE cases (
        id TEXT PRIMARY KEY, version INTEGER NOT NULL, agent TEXT NOT NULL, audience TEXT NOT NULL,
        status TEXT NOT NULL, idempotency_key TEXT, review_id TEXT, review_pending INTEGER NOT NULL,
        deadline_ms INTEGER, due_ms INTEGER, created_at_ms INTEGER NOT NULL, body TEXT NOT NULL);
    CREATE UNIQUE INDEX cases_review ON cases (review_id) WHERE review_id IS NOT NULL;
    CREATE UNIQUE INDEX cases_idempotency ON cases (agent, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX cases_due ON cases (due_ms) WHERE due_ms IS NOT NULL;
    CREATE INDEX cases_pending ON cases (deadline_ms) WHERE review_pending = 1;
    CREATE INDEX cases_agent ON cases (agent, created_at_ms);
    CREATE INDEX cases_audience ON cases (audience, created_at_ms);
    CREATE INDEX cases_created ON cases (created_at_ms);
    CREATE TABLE ledger (idx INTEGER PRIMARY KEY, case_id TEXT, seq INTEGER NOT NULL, digest BLOB NOT NULL,
        entry TEXT NOT NULL);
    CREATE UNIQUE INDEX ledger_case ON ledger (case_id, seq);
    CREATE TABLE merkle (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
        PRIMARY KEY (level, idx)) WITHOUT ROWID;
    CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL);
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Applies pending migrations inside `BEGIN IMMEDIATE` (SQLite's write lock: two
/// processes starting at once migrate one after the other).
pub fn migrate(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
    let result = (|| {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err)?;
        let version = usize::try_from(version).map_err(|_| StoreError::corrupt("negative schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::corrupt(format!(
                "database schema version {version} is newer than this binary ({SCHEMA_VERSION}); upgrade agentsigna"
            )));
        }
        if version == 1 {
            return Err(StoreError::corrupt(
                "this database holds a ledger of format v1 (entries hashed with their index), which this \
                 version does not read; keep it with `agentsigna ledger export` of the release that wrote it, \
                 and start this version on a new data directory",
            ));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(1)) {
            conn.execute_batch(sql).map_err(db_err)?;
            conn.execute_batch(&format!("PRAGMA user_version = {}", i + 1)).map_err(db_err)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT").map_err(db_err),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
