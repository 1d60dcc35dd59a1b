//! The PostgreSQL schema and its versioned migrations: a `schema_migrations` table records
//! every version applied; `migrate` applies the pending ones under `pg_advisory_lock`, so
//! that nodes starting together (or `agentsigna migrate`) migrate one after the other.
//!
//! The table shapes follow the SQLite backend's, plus `ledger_head`: the one row every
//! sequencer locks (`FOR UPDATE`) for its batch, holding the tree size and root.

use agentsigna_core::store::{StoreError, StoreResult};

use super::{pg_config, pg_err, PgOptions};

/// Migrations in order; version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[
    // 1: ledger format v2. Ids compare bytewise (COLLATE "C"), as in SQLite.
    r#"
    CREATE TABLE records (kind TEXT NOT NULL, id TEXT COLLATE "C" NOT NULL, version BIGINT NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (kind, id));
    CREATE TABLE credentials (hash TEXT PRIMARY KEY, kind TEXT NOT NULL, id TEXT NOT NULL);
    CREATE TABLE cases (
        id TEXT COLLATE "C" PRIMARY KEY, version BIGINT NOT NULL, agent TEXT NOT NULL, audience TEXT NOT NULL,
        status TEXT NOT NULL, idempotency_key TEXT, review_id TEXT UNIQUE, review_pending BOOLEAN NOT NULL,
        deadline_ms BIGINT, due_ms BIGINT, created_at_ms BIGINT NOT NULL, body TEXT NOT NULL);
    CREATE UNIQUE INDEX cases_idempotency ON cases (agent, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX cases_due ON cases (due_ms) WHERE due_ms IS NOT NULL;
    CREATE INDEX cases_pending ON cases (deadline_ms, created_at_ms) WHERE review_pending;
    CREATE INDEX cases_agent ON cases (agent, created_at_ms);
    CREATE INDEX cases_audience ON cases (audience, created_at_ms);
    CREATE INDEX cases_created ON cases (created_at_ms);
    CREATE TABLE ledger (idx BIGINT PRIMARY KEY, case_id TEXT, seq BIGINT NOT NULL, digest BYTEA NOT NULL,
        entry TEXT NOT NULL);
    -- One position per chain; NULLS NOT DISTINCT covers the organization chain (case_id NULL).
    CREATE UNIQUE INDEX ledger_chain ON ledger (case_id, seq) NULLS NOT DISTINCT;
    CREATE TABLE merkle (level INTEGER NOT NULL, idx BIGINT NOT NULL, hash BYTEA NOT NULL,
        PRIMARY KEY (level, idx));
    CREATE TABLE checkpoints (size BIGINT PRIMARY KEY, note TEXT NOT NULL);
    CREATE TABLE ledger_head (id INTEGER PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL, root BYTEA);
    INSERT INTO ledger_head (id, size, root) VALUES (1, 0, NULL);
    "#,
    // 2: leases of work any node could do (due cases, webhook notifications).
    r#"
    CREATE TABLE leases (key TEXT COLLATE "C" PRIMARY KEY, holder TEXT NOT NULL, until_ms BIGINT NOT NULL);
    "#,
    // 3: passport and proof ids the gates let through (`agentsigna gate --replay-store`).
    r#"
    CREATE TABLE gate_replay (key TEXT COLLATE "C" PRIMARY KEY, until_secs BIGINT NOT NULL);
    CREATE INDEX gate_replay_until ON gate_replay (until_secs);
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The advisory lock key of migrations (`'agentsigna'` in ASCII).
const MIGRATION_LOCK: i64 = 0x6167_656e_7473_6967;

/// Applies pending migrations to the database at `url` (in `options.schema`, created if
/// absent); returns the version reached. Refuses a database newer than this binary.
pub async fn migrate(url: &str, options: &PgOptions) -> StoreResult<usize> {
    let (config, tls) = pg_config(url, options)?;
    let (mut client, connection) = config.connect(tls).await.map_err(pg_err)?;
    let conn_task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "migration connection ended");
        }
    });
    let result = async {
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_err)?;
        let applied = apply(&mut client, options).await;
        let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_err);
        let version = applied?;
        unlocked?;
        Ok(version)
    }
    .await;
    drop(client);
    let _ = conn_task.await;
    result
}

async fn apply(client: &mut tokio_postgres::Client, options: &PgOptions) -> StoreResult<usize> {
    if let Some(schema) = &options.schema {
        // The name was checked by `pg_config` (a-z, 0-9, _).
        client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await.map_err(pg_err)?;
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(pg_err)?;
    let row = client.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await.map_err(pg_err)?;
    let current: i32 = row.get(0);
    let current = usize::try_from(current).map_err(|_| StoreError::corrupt("negative schema version"))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::corrupt(format!(
            "database schema version {current} is newer than this binary ({SCHEMA_VERSION}); upgrade agentsigna"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i32::try_from(i + 1).map_err(|_| StoreError::corrupt("too many migrations"))?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.batch_execute(sql).await.map_err(pg_err)?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version]).await.map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        tracing::info!(version, "applied a PostgreSQL migration");
    }
    Ok(SCHEMA_VERSION)
}
