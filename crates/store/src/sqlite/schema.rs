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
    // 3 (review index): the review queue is queried by indexed columns, never by reading
    // case bodies: the review's status, the counterparty and the action as columns, and
    // the roles a pending review still misses as rows of `review_roles`. Existing cases
    // are filled in from their bodies.
    sql(r#"
    ALTER TABLE cases ADD COLUMN review_status TEXT;
    ALTER TABLE cases ADD COLUMN counterparty TEXT NOT NULL DEFAULT '';
    ALTER TABLE cases ADD COLUMN action TEXT NOT NULL DEFAULT '';
    UPDATE cases SET review_status = json_extract(body, '$.review.status'),
        counterparty = coalesce(json_extract(body, '$.decision.counterparty.id'), ''),
        action = coalesce(json_extract(body, '$.request.action'), '');
    CREATE TABLE review_roles (role TEXT NOT NULL, case_id TEXT NOT NULL, PRIMARY KEY (role, case_id)) WITHOUT ROWID;
    CREATE INDEX review_roles_case ON review_roles (case_id);
    INSERT INTO review_roles (role, case_id)
        SELECT DISTINCT required.value, c.id FROM cases c, json_each(c.body, '$.review.roles_required') required
        WHERE json_extract(c.body, '$.review.status') = 'pending' AND NOT EXISTS (
            SELECT 1 FROM json_each(c.body, '$.review.decisions') d, json_each(d.value, '$.roles') held
            WHERE json_extract(d.value, '$.decision') = 'approve' AND json_extract(d.value, '$.withdrawn') IS NULL
              AND held.value = required.value);
    DROP INDEX cases_pending;
    CREATE INDEX cases_pending ON cases (deadline_ms, created_at_ms, id) WHERE review_pending = 1;
    CREATE INDEX cases_reviews ON cases (created_at_ms, id) WHERE review_id IS NOT NULL;
    CREATE INDEX cases_review_status ON cases (review_status, created_at_ms, id) WHERE review_status IS NOT NULL;
    CREATE INDEX cases_counterparty ON cases (counterparty, created_at_ms, id);
    CREATE INDEX cases_action ON cases (action, created_at_ms, id) WHERE review_id IS NOT NULL;
    "#),
    // 4: compact cases and ledger (see `layout`). A case row is numbered (`num`, in order
    // of creation: case lists are newest first by it) and keeps only its index columns
    // (those of the review index included) and the state its entries do not hold (its
    // request and decision are read back from its first two entries); its passport token
    // is stored once, decoded, in `passports`. Entries are stored as their members,
    // chained by their case's number (0: the organization chain). Merkle nodes below
    // level 4 are computed from the leaves. Indexes no query needs are gone
    // (`cases_created`: the table's own order), the case lists' are narrower (by agent,
    // audience or counterparty, then `num`); the review queue's keep their order
    // (`(created_at_ms, id)`, that of its cursor). `review_roles` names cases by id and
    // stays as it is.
    Migration {
        sql: r#"
    DROP INDEX cases_review; DROP INDEX cases_idempotency; DROP INDEX cases_due; DROP INDEX cases_pending;
    DROP INDEX cases_agent; DROP INDEX cases_audience; DROP INDEX cases_created; DROP INDEX cases_reviews;
    DROP INDEX cases_review_status; DROP INDEX cases_counterparty; DROP INDEX cases_action; DROP INDEX ledger_case;
    ALTER TABLE cases RENAME TO cases_v3;
    ALTER TABLE ledger RENAME TO ledger_v3;
    CREATE TABLE cases (
        num INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, version INTEGER NOT NULL, agent TEXT NOT NULL,
        audience TEXT NOT NULL, status TEXT NOT NULL, idempotency_key TEXT, review_id TEXT, review_status TEXT,
        review_pending INTEGER NOT NULL, deadline_ms INTEGER, due_ms INTEGER, created_at_ms INTEGER NOT NULL,
        counterparty TEXT NOT NULL, action TEXT NOT NULL, body TEXT NOT NULL);
    CREATE UNIQUE INDEX cases_review ON cases (review_id) WHERE review_id IS NOT NULL;
    CREATE UNIQUE INDEX cases_idempotency ON cases (agent, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX cases_due ON cases (due_ms) WHERE due_ms IS NOT NULL;
    CREATE INDEX cases_agent ON cases (agent);
    CREATE INDEX cases_audience ON cases (audience);
    CREATE INDEX cases_counterparty ON cases (counterparty);
    CREATE INDEX cases_pending ON cases (deadline_ms, created_at_ms, id) WHERE review_pending = 1;
    CREATE INDEX cases_reviews ON cases (created_at_ms, id) WHERE review_id IS NOT NULL;
    CREATE INDEX cases_review_status ON cases (review_status, created_at_ms, id) WHERE review_status IS NOT NULL;
    CREATE INDEX cases_action ON cases (action, created_at_ms, id) WHERE review_id IS NOT NULL;
    CREATE TABLE passports (case_num INTEGER PRIMARY KEY, token BLOB NOT NULL);
    CREATE TABLE ledger (idx INTEGER PRIMARY KEY, chain INTEGER NOT NULL, seq INTEGER NOT NULL,
        type TEXT NOT NULL, at INTEGER NOT NULL, actor TEXT NOT NULL, prev BLOB, data TEXT NOT NULL,
        digest BLOB NOT NULL);
    CREATE UNIQUE INDEX ledger_chain ON ledger (chain, seq);
    INSERT INTO cases (id, version, agent, audience, status, idempotency_key, review_id, review_status,
            review_pending, deadline_ms, due_ms, created_at_ms, counterparty, action, body)
        SELECT id, version, agent, audience, status, idempotency_key, review_id, review_status, review_pending,
            deadline_ms, due_ms, created_at_ms, counterparty, action,
            json_remove(json_set(body, '$.counterparty_name', json_extract(body, '$.decision.counterparty.name')),
                '$.id', '$.agent', '$.status', '$.created_at_ms', '$.request', '$.request_hash', '$.decision',
                '$.passport.token', '$.head')
        FROM cases_v3 ORDER BY created_at_ms, id;
    DELETE FROM merkle WHERE level < 4;
    "#,
        convert: Some(super::convert::to_v4),
        then: "DROP TABLE cases_v3; DROP TABLE ledger_v3;",
    },
    // 5: `records` as a table of numbered rows, its key in an index of its own. As a
    // WITHOUT ROWID table each record was a cell of the key's B-tree, and SQLite compares a
    // key with a cell that spills onto overflow pages only after reading the whole cell:
    // every lookup whose search passed a policy version (kilobytes of Cedar source) read
    // that source first, from disk once a commit had emptied the reader's cache, and an
    // absent record (always read from the store) was looked up on every request. Now a
    // search compares keys only and a body is read when it is asked for.
    sql(r#"
    ALTER TABLE records RENAME TO records_v4;
    CREATE TABLE records (kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (kind, id));
    INSERT INTO records (kind, id, version, body) SELECT kind, id, version, body FROM records_v4 ORDER BY kind, id;
    DROP TABLE records_v4;
    "#),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    #[cfg(target_os = "linux")]
    use crate::sqlite::read::SqlSnapshot;
    use crate::sqlite::read::{case_query, review_queries};
    use agentsigna_core::store::{CaseFilter, ReviewCursor, ReviewFilter};
    #[cfg(target_os = "linux")]
    use agentsigna_core::store::{RecordKind, Snapshot as _};

    /// Bytes this thread has read from files so far (`rchar` of `/proc/thread-self/io`).
    #[cfg(target_os = "linux")]
    fn bytes_read_by_this_thread() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        io.lines().find_map(|l| l.strip_prefix("rchar: ")).unwrap().trim().parse().unwrap()
    }

    /// A record lookup reads keys, not the policy sources stored beside them, even when a
    /// commit has just emptied the reader's page cache (as every commit does in WAL mode)
    /// and the record looked up is absent (which is never cached).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_record_lookup_does_not_read_the_policy_sources_beside_it() {
        const SOURCE_BYTES: usize = 64 * 1024;
        const LOOKUPS: u64 = 40;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.db");
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;").unwrap();
        migrate(&writer).unwrap();
        let rule = "permit (principal, action == Action::\"po.create\", resource) when { context.amount < 100 };\n";
        let source = rule.repeat(SOURCE_BYTES / rule.len());
        for version in 1..=8 {
            let body = serde_json::json!({"version": version, "source": source}).to_string();
            writer
                .execute(
                    "INSERT INTO records (kind, id, version, body) VALUES (?1, ?2, 1, ?3)",
                    rusqlite::params![RecordKind::Policy.as_str(), version.to_string(), body],
                )
                .unwrap();
        }
        for (kind, id) in [
            (RecordKind::Setting, "active_policy"),
            (RecordKind::Agent, "bot"),
            (RecordKind::Counterparty, "acme"),
            (RecordKind::System, "erp"),
        ] {
            writer
                .execute("INSERT INTO records (kind, id, version, body) VALUES (?1, ?2, 1, '{}')", [kind.as_str(), id])
                .unwrap();
        }
        let reader = Connection::open(&path).unwrap();
        let mut read = 0;
        for i in 0..LOOKUPS {
            writer.execute("INSERT INTO checkpoints (size, note) VALUES (?1, 'n')", [i]).unwrap();
            let before = bytes_read_by_this_thread();
            // What a decision's snapshot reads.
            let mut snapshot = SqlSnapshot { conn: &reader };
            for (kind, id) in [
                (RecordKind::Setting, "shadow_policy"),
                (RecordKind::Setting, "active_policy"),
                (RecordKind::Policy, "9"),
            ] {
                snapshot.record(kind, id).unwrap();
            }
            read += bytes_read_by_this_thread() - before;
        }
        // A few pages per lookup at most, where one policy source alone is 64 KiB.
        let per_round = read / LOOKUPS;
        assert!(per_round < 16 * 4096, "{per_round} bytes read per round of three lookups");
    }

    /// A case row as schema 2 stored it: the filters' values only in the body.
    fn v2_case(conn: &Connection, id: &str, created: i64, body: serde_json::Value) {
        let pending = i64::from(body["review"]["status"] == "pending");
        conn.execute(
            "INSERT INTO cases (id, version, agent, audience, status, review_id, review_pending, created_at_ms, body)
             VALUES (?1, 1, 'bot', 'erp', 'x', ?2, ?3, ?4, ?5)",
            rusqlite::params![id, body["review"]["id"].as_str(), pending, created, body.to_string()],
        )
        .unwrap();
    }

    #[test]
    fn the_review_index_is_filled_in_from_the_cases_already_stored() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[1].sql).unwrap();
        conn.execute_batch("PRAGMA user_version = 2").unwrap();
        let decision = |roles: &[&str], decision: &str, withdrawn: bool| {
            let mut d =
                serde_json::json!({"approver": "x", "roles": roles, "decision": decision, "comment": "", "at_ms": 1});
            if withdrawn {
                d["withdrawn"] = "revoked".into();
            }
            d
        };
        let case = |status: &str, cp: &str, action: &str, roles: &[&str], decisions: Vec<serde_json::Value>| {
            serde_json::json!({
                "request": {"action": action}, "decision": {"counterparty": {"id": cp}},
                "review": {"id": format!("r-{cp}-{status}"), "status": status, "roles_required": roles, "decisions": decisions},
            })
        };
        // finance covered, risk not; a withdrawn risk approval covers nothing.
        v2_case(
            &conn,
            "c1",
            1,
            case(
                "pending",
                "globex",
                "po.create",
                &["finance", "risk"],
                vec![decision(&["finance"], "approve", false), decision(&["risk"], "approve", true)],
            ),
        );
        // A rejection covers no role; a closed review misses none.
        v2_case(
            &conn,
            "c2",
            2,
            case("pending", "acme", "payment.send", &["finance"], vec![decision(&["finance"], "reject", false)]),
        );
        v2_case(&conn, "c3", 3, case("approved", "acme", "po.create", &["finance"], vec![]));
        v2_case(
            &conn,
            "c4",
            4,
            serde_json::json!({"request": {"action": "po.create"}, "decision": {"counterparty": {"id": "acme"}}, "review": null}),
        );
        migrate(&conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version as usize, SCHEMA_VERSION);
        let rows: Vec<(String, Option<String>, String, String)> = conn
            .prepare("SELECT id, review_status, counterparty, action FROM cases ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let row = |id: &str, st: Option<&str>, cp: &str, a: &str| {
            (id.to_owned(), st.map(str::to_owned), cp.to_owned(), a.to_owned())
        };
        assert_eq!(
            rows,
            vec![
                row("c1", Some("pending"), "globex", "po.create"),
                row("c2", Some("pending"), "acme", "payment.send"),
                row("c3", Some("approved"), "acme", "po.create"),
                row("c4", None, "acme", "po.create"),
            ]
        );
        let roles: Vec<(String, String)> = conn
            .prepare("SELECT case_id, role FROM review_roles ORDER BY case_id, role")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(roles, vec![("c1".to_owned(), "risk".to_owned()), ("c2".into(), "finance".into())]);
    }

    /// Every shape of the queue's query reads through an index: no plan step scans the
    /// whole `cases` table.
    #[test]
    fn review_listings_read_through_indexes() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[1].sql).unwrap();
        conn.execute_batch("PRAGMA user_version = 2").unwrap();
        migrate(&conn).unwrap();
        let cursor = Some(ReviewCursor { deadline_ms: 1, created_at_ms: 2, id: "c".into() });
        let s = |v: &str| Some(v.to_owned());
        let base = ReviewFilter { limit: 50, ..ReviewFilter::default() };
        let filters = [
            base.clone(),
            ReviewFilter { status: s("pending"), ..base.clone() },
            ReviewFilter { status: s("pending"), after: cursor.clone(), ..base.clone() },
            ReviewFilter { status: s("approved"), ..base.clone() },
            ReviewFilter { status: s("rejected"), after: cursor.clone(), offset: 50, ..base.clone() },
            ReviewFilter { agent: s("bot"), ..base.clone() },
            ReviewFilter { counterparty: s("globex"), ..base.clone() },
            ReviewFilter { action: s("po.create"), ..base.clone() },
            ReviewFilter { id: s("r-1"), ..base.clone() },
            ReviewFilter { status: s("pending"), roles: Some(vec!["finance".into(), "risk".into()]), ..base.clone() },
            ReviewFilter { roles: Some(vec!["risk".into()]), ..base.clone() },
        ];
        let plan = |sql: &str, args: &[rusqlite::types::Value]| -> Vec<String> {
            conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(rusqlite::params_from_iter(args.iter()), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        // A step scanning the whole table: `SCAN cases` or `SCAN c` (its alias), no index.
        let full_scan = |step: &String| {
            let mut words = step.split_whitespace();
            words.next() == Some("SCAN") && matches!(words.next(), Some("cases" | "c")) && !step.contains("USING")
        };
        for filter in filters {
            let q = review_queries(&filter);
            for (sql, args) in [(&q.count, &q.count_args), (&q.page, &q.page_args)] {
                let steps = plan(sql, args);
                assert!(!steps.iter().any(full_scan), "{filter:?}: {sql}: {steps:?}");
            }
        }
        // The case lists: the counterparty's history (any case, reviewed or not), an
        // agent's and an audience's cases have their index, newest first by row number
        // without sorting; the pending ones theirs.
        for (filter, index) in [
            (CaseFilter { counterparty: s("globex"), limit: 11, ..CaseFilter::default() }, "cases_counterparty"),
            (CaseFilter { agent: s("bot"), limit: 20, ..CaseFilter::default() }, "cases_agent"),
            (CaseFilter { audience: s("erp"), limit: 20, ..CaseFilter::default() }, "cases_audience"),
            (CaseFilter { review_pending: Some(true), limit: 20, ..CaseFilter::default() }, "cases_pending"),
        ] {
            let (sql, args) = case_query(&filter);
            let steps = plan(&sql, &args);
            assert!(steps.iter().any(|step| step.contains(index)), "{filter:?}: {steps:?}");
            assert!(!steps.iter().any(|step| step.contains("TEMP B-TREE")), "{filter:?}: {steps:?}");
        }
        let (sql, args) = case_query(&CaseFilter { limit: 20, ..CaseFilter::default() });
        let steps = plan(&sql, &args);
        assert!(!steps.iter().any(|step| step.contains("TEMP B-TREE")), "every case, by row number: {steps:?}");
    }
}
