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
    // 4 (review index): the review queue is queried by indexed columns, never by reading
    // case bodies: the review's status, the counterparty and the action as columns, and
    // the roles a pending review still misses as rows of `review_roles`. Existing cases
    // are filled in from their bodies.
    r#"
    ALTER TABLE cases ADD COLUMN review_status TEXT;
    ALTER TABLE cases ADD COLUMN counterparty TEXT NOT NULL DEFAULT '';
    ALTER TABLE cases ADD COLUMN action TEXT NOT NULL DEFAULT '';
    UPDATE cases SET review_status = body::jsonb #>> '{review,status}',
        counterparty = coalesce(body::jsonb #>> '{decision,counterparty,id}', ''),
        action = coalesce(body::jsonb #>> '{request,action}', '');
    CREATE TABLE review_roles (role TEXT COLLATE "C" NOT NULL, case_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (role, case_id));
    CREATE INDEX review_roles_case ON review_roles (case_id);
    INSERT INTO review_roles (role, case_id)
        SELECT DISTINCT required.role, c.id
        FROM cases c, jsonb_array_elements_text(c.body::jsonb -> 'review' -> 'roles_required') AS required (role)
        WHERE c.body::jsonb #>> '{review,status}' = 'pending' AND NOT EXISTS (
            SELECT 1 FROM jsonb_array_elements(c.body::jsonb -> 'review' -> 'decisions') AS d (v)
            WHERE d.v ->> 'decision' = 'approve' AND d.v -> 'withdrawn' IS NULL
              AND d.v -> 'roles' ? required.role);
    DROP INDEX cases_pending;
    CREATE INDEX cases_pending ON cases (deadline_ms, created_at_ms, id) WHERE review_pending;
    CREATE INDEX cases_reviews ON cases (created_at_ms, id) WHERE review_id IS NOT NULL;
    CREATE INDEX cases_review_status ON cases (review_status, created_at_ms, id) WHERE review_status IS NOT NULL;
    CREATE INDEX cases_counterparty ON cases (counterparty, created_at_ms, id);
    CREATE INDEX cases_action ON cases (action, created_at_ms, id) WHERE review_id IS NOT NULL;
    "#,
    // 5: compact cases and ledger, as SQLite's migration 4 (see `layout`): numbered case
    // rows (in order of creation; case lists are newest first by number) without what
    // their entries hold, the review index's columns kept, passport tokens once and
    // decoded in `passports`, entries as their members chained by case number (0: the
    // organization chain), Merkle nodes from level 4 up; `convert::to_v5` fills
    // `passports` and `ledger`, then `MIGRATION_5_THEN` drops the old tables. The case
    // lists' indexes end with `num`; the review queue's keep `(created_at_ms, id)`, the
    // order of its cursor. `review_roles` names cases by id and stays as it is.
    r#"
    ALTER TABLE cases RENAME TO cases_v4;
    ALTER TABLE cases_v4 RENAME CONSTRAINT cases_pkey TO cases_v4_pkey;
    ALTER TABLE cases_v4 RENAME CONSTRAINT cases_review_id_key TO cases_v4_review_id_key;
    DROP INDEX cases_idempotency, cases_due, cases_pending, cases_agent, cases_audience, cases_created,
        cases_reviews, cases_review_status, cases_counterparty, cases_action;
    ALTER TABLE ledger RENAME TO ledger_v4;
    ALTER TABLE ledger_v4 RENAME CONSTRAINT ledger_pkey TO ledger_v4_pkey;
    DROP INDEX ledger_chain;
    CREATE TABLE cases (
        num BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, id TEXT COLLATE "C" NOT NULL UNIQUE,
        version BIGINT NOT NULL, agent TEXT NOT NULL, audience TEXT NOT NULL, status TEXT NOT NULL,
        idempotency_key TEXT, review_id TEXT UNIQUE, review_status TEXT, review_pending BOOLEAN NOT NULL,
        deadline_ms BIGINT, due_ms BIGINT, created_at_ms BIGINT NOT NULL, counterparty TEXT NOT NULL,
        action TEXT NOT NULL, body TEXT NOT NULL);
    CREATE UNIQUE INDEX cases_idempotency ON cases (agent, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX cases_due ON cases (due_ms) WHERE due_ms IS NOT NULL;
    CREATE INDEX cases_agent ON cases (agent, num);
    CREATE INDEX cases_audience ON cases (audience, num);
    CREATE INDEX cases_counterparty ON cases (counterparty, num);
    CREATE INDEX cases_pending ON cases (deadline_ms, created_at_ms, id) WHERE review_pending;
    CREATE INDEX cases_reviews ON cases (created_at_ms, id) WHERE review_id IS NOT NULL;
    CREATE INDEX cases_review_status ON cases (review_status, created_at_ms, id) WHERE review_status IS NOT NULL;
    CREATE INDEX cases_action ON cases (action, created_at_ms, id) WHERE review_id IS NOT NULL;
    CREATE TABLE passports (case_num BIGINT PRIMARY KEY, token BYTEA NOT NULL);
    CREATE TABLE ledger (idx BIGINT PRIMARY KEY, chain BIGINT NOT NULL, seq BIGINT NOT NULL, type TEXT NOT NULL,
        at BIGINT NOT NULL, actor TEXT NOT NULL, prev BYTEA, data TEXT NOT NULL, digest BYTEA NOT NULL);
    CREATE UNIQUE INDEX ledger_chain ON ledger (chain, seq);
    INSERT INTO cases (num, id, version, agent, audience, status, idempotency_key, review_id, review_status,
            review_pending, deadline_ms, due_ms, created_at_ms, counterparty, action, body)
        SELECT row_number() OVER (ORDER BY created_at_ms, id), id, version, agent, audience, status,
            idempotency_key, review_id, review_status, review_pending, deadline_ms, due_ms, created_at_ms,
            counterparty, action,
            (((body::jsonb - ARRAY['id', 'agent', 'status', 'created_at_ms', 'request', 'request_hash', 'decision',
                'head']) #- '{passport,token}')
                || jsonb_build_object('counterparty_name', body::jsonb #> '{decision,counterparty,name}'))::text
        FROM cases_v4;
    SELECT setval(pg_get_serial_sequence('cases', 'num'), COALESCE((SELECT MAX(num) FROM cases), 0) + 1, false);
    DELETE FROM merkle WHERE level < 4;
    "#,
    // 6: entries' `data` as bytes: compressed against the ledger's dictionary
    // (`packed`), or, in the rows written before, their canonical text as it was.
    "ALTER TABLE ledger ALTER COLUMN data TYPE BYTEA USING convert_to(data, 'UTF8');",
];

/// What migration 5 runs after its conversion.
const MIGRATION_5_THEN: &str = "DROP TABLE cases_v4; DROP TABLE ledger_v4;";

/// The schema version this binary writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The advisory lock key of migrations (`'agentsigna'` in ASCII).
const MIGRATION_LOCK: i64 = 0x6167_656e_7473_6967;

/// Applies pending migrations to the database at `url` (in `options.schema`, created if
/// absent); returns the version reached. Refuses a database newer than this binary.
pub async fn migrate(url: &str, options: &PgOptions) -> StoreResult<usize> {
    migrate_to(url, options, SCHEMA_VERSION).await
}

/// Applies the migrations up to `version` only (for tests that upgrade an older schema);
/// [`migrate`] applies them all.
pub async fn migrate_to(url: &str, options: &PgOptions, version: usize) -> StoreResult<usize> {
    let (config, tls) = pg_config(url, options)?;
    let (mut client, connection) = config.connect(tls).await.map_err(pg_err)?;
    let conn_task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "migration connection ended");
        }
    });
    let result = async {
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_err)?;
        let applied = apply(&mut client, options, version.min(SCHEMA_VERSION)).await;
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

/// Applies the migrations after the database's version, up to `target`.
async fn apply(client: &mut tokio_postgres::Client, options: &PgOptions, target: usize) -> StoreResult<usize> {
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
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
        let version = i32::try_from(i + 1).map_err(|_| StoreError::corrupt("too many migrations"))?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.batch_execute(sql).await.map_err(pg_err)?;
        if version == 5 {
            super::convert::to_v5(&tx).await?;
            tx.batch_execute(MIGRATION_5_THEN).await.map_err(pg_err)?;
        }
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version]).await.map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        tracing::info!(version, "applied a PostgreSQL migration");
    }
    Ok(target.max(current))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The review index of migration 4 is filled in from the cases stored before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_review_index_is_filled_in_from_the_cases_already_stored() {
        let url = match std::env::var("AGENTSIGNA_TEST_POSTGRES") {
            Ok(u) if !u.is_empty() => u,
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("AGENTSIGNA_TEST_POSTGRES must be set under CI")
            }
            _ => return,
        };
        let schema = format!("t_mig_{}_{}", std::process::id(), hex::encode(rand::random::<[u8; 4]>()));
        let options = PgOptions { schema: Some(schema), ..PgOptions::default() };
        let (mut client, connection) =
            pg_config(&url, &options).unwrap().0.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        assert_eq!(apply(&mut client, &options, 3).await.unwrap(), 3);
        let case = |id: &str, body: serde_json::Value| {
            let review = body["review"]["id"].as_str().map(str::to_owned);
            let pending = body["review"]["status"] == "pending";
            (id.to_owned(), review, pending, body.to_string())
        };
        let decision = |roles: &[&str], decision: &str, withdrawn: bool| {
            let mut d =
                serde_json::json!({"approver": "x", "roles": roles, "decision": decision, "comment": "", "at_ms": 1});
            if withdrawn {
                d["withdrawn"] = "revoked".into();
            }
            d
        };
        let reviewed = |status: &str, cp: &str, roles: &[&str], decisions: Vec<serde_json::Value>| {
            serde_json::json!({
                "request": {"action": "po.create"}, "decision": {"counterparty": {"id": cp}},
                "review": {"id": format!("r-{cp}-{status}"), "status": status, "roles_required": roles, "decisions": decisions},
            })
        };
        let rows = [
            case(
                "c1",
                reviewed(
                    "pending",
                    "globex",
                    &["finance", "risk"],
                    vec![decision(&["finance"], "approve", false), decision(&["risk"], "approve", true)],
                ),
            ),
            case("c2", reviewed("pending", "acme", &["finance"], vec![decision(&["finance"], "reject", false)])),
            case("c3", reviewed("approved", "acme", &["finance"], vec![])),
            case(
                "c4",
                serde_json::json!({"request": {"action": "pay"}, "decision": {"counterparty": {"id": "acme"}}, "review": null}),
            ),
        ];
        for (i, (id, review, pending, body)) in rows.iter().enumerate() {
            client
                .execute(
                    "INSERT INTO cases (id, version, agent, audience, status, review_id, review_pending, created_at_ms, body)
                     VALUES ($1, 1, 'bot', 'erp', 'x', $2, $3, $4, $5)",
                    &[id, review, pending, &(i as i64), body],
                )
                .await
                .unwrap();
        }
        assert_eq!(migrate(&url, &options).await.unwrap(), SCHEMA_VERSION);
        let got: Vec<(String, Option<String>, String, String)> = client
            .query("SELECT id, review_status, counterparty, action FROM cases ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let row = |id: &str, st: Option<&str>, cp: &str, a: &str| {
            (id.to_owned(), st.map(str::to_owned), cp.to_owned(), a.to_owned())
        };
        assert_eq!(
            got,
            vec![
                row("c1", Some("pending"), "globex", "po.create"),
                row("c2", Some("pending"), "acme", "po.create"),
                row("c3", Some("approved"), "acme", "po.create"),
                row("c4", None, "acme", "pay"),
            ]
        );
        let roles: Vec<(String, String)> = client
            .query("SELECT case_id, role FROM review_roles ORDER BY case_id, role", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(roles, vec![("c1".to_owned(), "risk".to_owned()), ("c2".into(), "finance".into())]);
        client.batch_execute(&format!("DROP SCHEMA {} CASCADE", options.schema.as_deref().unwrap())).await.unwrap();
    }
}
