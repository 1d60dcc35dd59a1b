//! The SQLite schema and its versioned migrations (`PRAGMA user_version`).

use rusqlite::Connection;

use super::db_err;
use agentsigna_core::store::{StoreError, StoreResult};

/// A migration: SQL, then (for a conversion SQL cannot do alone) code, then more SQL.
struct Migration {
    sql: &'static str,
    convert: Option<fn(&Connection) -> StoreResult<()>>,
    then: &'static str,
}

const fn sql(sql: &'static str) -> Migration {
    Migration { sql, convert: None, then: "" }
}

/// Migrations in order; `PRAGMA user_version` records how many have been applied. Entry 0
/// is the schema of ledger format v1 (`index` hashed), which this binary does not read.
const MIGRATIONS: &[Migration] = &[
    // 1: ledger format v1 (superseded; a database at this version is refused).
    sql(""),
    // 2: ledger format v2: versioned records and cases (preconditions of the serial step),
    // one chain position per (case, seq).
    sql(r#"
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
    "#),
    // 3: compact cases and ledger (see `layout`). A case row is numbered (`num`, in order
    // of creation: lists are newest first by it) and keeps only its index columns and the
    // state its entries do not hold (its request and decision are read back from its
    // first two entries); its passport token is stored once, decoded, in `passports`.
    // Entries are stored as their members, chained by their case's number (0: the
    // organization chain). Merkle nodes below level 4 are computed from the leaves.
    // Indexes no query needs are gone (`cases_created`: the table's own order), the
    // others are narrower (by agent or audience, then `num`).
    Migration {
        sql: r#"
    DROP INDEX cases_review; DROP INDEX cases_idempotency; DROP INDEX cases_due; DROP INDEX cases_pending;
    DROP INDEX cases_agent; DROP INDEX cases_audience; DROP INDEX cases_created; DROP INDEX ledger_case;
    ALTER TABLE cases RENAME TO cases_v2;
    ALTER TABLE ledger RENAME TO ledger_v2;
    CREATE TABLE cases (
        num INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, version INTEGER NOT NULL, agent TEXT NOT NULL,
        audience TEXT NOT NULL, status TEXT NOT NULL, idempotency_key TEXT, review_id TEXT,
        review_pending INTEGER NOT NULL, deadline_ms INTEGER, due_ms INTEGER, created_at_ms INTEGER NOT NULL,
        body TEXT NOT NULL);
    CREATE UNIQUE INDEX cases_review ON cases (review_id) WHERE review_id IS NOT NULL;
    CREATE UNIQUE INDEX cases_idempotency ON cases (agent, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX cases_due ON cases (due_ms) WHERE due_ms IS NOT NULL;
    CREATE INDEX cases_pending ON cases (deadline_ms) WHERE review_pending = 1;
    CREATE INDEX cases_agent ON cases (agent);
    CREATE INDEX cases_audience ON cases (audience);
    CREATE TABLE passports (case_num INTEGER PRIMARY KEY, token BLOB NOT NULL);
    CREATE TABLE ledger (idx INTEGER PRIMARY KEY, chain INTEGER NOT NULL, seq INTEGER NOT NULL,
        type TEXT NOT NULL, at INTEGER NOT NULL, actor TEXT NOT NULL, prev BLOB, data TEXT NOT NULL,
        digest BLOB NOT NULL);
    CREATE UNIQUE INDEX ledger_chain ON ledger (chain, seq);
    INSERT INTO cases (id, version, agent, audience, status, idempotency_key, review_id, review_pending,
            deadline_ms, due_ms, created_at_ms, body)
        SELECT id, version, agent, audience, status, idempotency_key, review_id, review_pending, deadline_ms,
            due_ms, created_at_ms,
            json_remove(json_set(body, '$.counterparty_name', json_extract(body, '$.decision.counterparty.name')),
                '$.id', '$.agent', '$.status', '$.created_at_ms', '$.request', '$.request_hash', '$.decision',
                '$.passport.token', '$.head')
        FROM cases_v2 ORDER BY created_at_ms, id;
    DELETE FROM merkle WHERE level < 4;
    "#,
        convert: Some(super::convert::to_v3),
        then: "DROP TABLE cases_v2; DROP TABLE ledger_v2;",
    },
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
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version.max(1)) {
            conn.execute_batch(m.sql).map_err(db_err)?;
            if let Some(convert) = m.convert {
                convert(conn)?;
            }
            conn.execute_batch(m.then).map_err(db_err)?;
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
