//! Reads: the queries of a [`Snapshot`] (shared with the sequencer and the offline reader),
//! and snapshots themselves: a pooled connection in a `REPEATABLE READ READ ONLY`
//! transaction, handed to the read closure on a blocking thread, where each call waits on
//! its query with the runtime's `Handle::block_on`.

use agentsigna_core::store::{
    CaseFilter, ChainHead, ReadFn, RecordKind, ReviewFilter, Snapshot, StoreError, StoreResult, Versioned,
};
use agentsigna_verify::ledger::{hex_lower, DigestedEntry, Entry};
use agentsigna_verify::merkle::Hash;
use deadpool_postgres::{ClientWrapper, Object};
use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{pg_err, to_i64, to_u64};

pub(crate) async fn query(c: &ClientWrapper, sql: &str, args: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query(&stmt, args).await.map_err(pg_err)
}

async fn query_opt(c: &ClientWrapper, sql: &str, args: &[&(dyn ToSql + Sync)]) -> StoreResult<Option<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query_opt(&stmt, args).await.map_err(pg_err)
}

fn hash(bytes: &[u8]) -> StoreResult<Hash> {
    <Hash>::try_from(bytes).map_err(|_| StoreError::corrupt("a stored hash is not 32 bytes"))
}

fn versioned(row: Option<Row>) -> StoreResult<Option<Versioned>> {
    match row {
        None => Ok(None),
        Some(r) => {
            let body: String = r.try_get(0).map_err(pg_err)?;
            let version: i64 = r.try_get(1).map_err(pg_err)?;
            Ok(Some(Versioned { body, version: to_u64(version)? }))
        }
    }
}

fn strings(rows: Vec<Row>) -> StoreResult<Vec<String>> {
    rows.iter().map(|r| r.try_get(0).map_err(pg_err)).collect()
}

/// Parses `(idx, entry, digest)` rows.
pub(crate) fn entries(rows: Vec<Row>) -> StoreResult<Vec<DigestedEntry>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let index: i64 = r.try_get(0).map_err(pg_err)?;
        let text: &str = r.try_get(1).map_err(pg_err)?;
        let digest: &[u8] = r.try_get(2).map_err(pg_err)?;
        let entry: Entry = serde_json::from_str(text)
            .map_err(|e| StoreError::corrupt(format!("corrupt ledger entry {index}: {e}")))?;
        out.push(DigestedEntry { index: to_u64(index)?, entry, digest: hex_lower(digest) });
    }
    Ok(out)
}

pub(crate) async fn record_version(c: &ClientWrapper, kind: RecordKind, id: &str) -> StoreResult<Option<u64>> {
    let row = query_opt(c, "SELECT version FROM records WHERE kind = $1 AND id = $2", &[&kind.as_str(), &id]).await?;
    row.map(|r| r.try_get::<_, i64>(0).map_err(pg_err).and_then(to_u64)).transpose()
}

pub(crate) async fn case_version(c: &ClientWrapper, id: &str) -> StoreResult<Option<u64>> {
    let row = query_opt(c, "SELECT version FROM cases WHERE id = $1", &[&id]).await?;
    row.map(|r| r.try_get::<_, i64>(0).map_err(pg_err).and_then(to_u64)).transpose()
}

pub(crate) async fn idempotency_taken(c: &ClientWrapper, agent: &str, key: &str) -> StoreResult<bool> {
    let sql = "SELECT 1 FROM cases WHERE agent = $1 AND idempotency_key = $2";
    Ok(query_opt(c, sql, &[&agent, &key]).await?.is_some())
}

pub(crate) async fn chain_head(c: &ClientWrapper, chain: Option<&str>) -> StoreResult<Option<ChainHead>> {
    let row = match chain {
        Some(case) => {
            let sql = "SELECT seq, digest FROM ledger WHERE case_id = $1 ORDER BY seq DESC LIMIT 1";
            query_opt(c, sql, &[&case]).await?
        }
        None => {
            query_opt(c, "SELECT seq, digest FROM ledger WHERE case_id IS NULL ORDER BY seq DESC LIMIT 1", &[]).await?
        }
    };
    match row {
        None => Ok(None),
        Some(r) => Ok(Some(ChainHead {
            seq: to_u64(r.try_get(0).map_err(pg_err)?)?,
            digest: hash(r.try_get(1).map_err(pg_err)?)?,
        })),
    }
}

/// A perfect-subtree hash (level 0: an entry's digest).
pub(crate) async fn node(c: &ClientWrapper, level: u32, index: u64) -> StoreResult<Hash> {
    let i = to_i64(index)?;
    let row = if level == 0 {
        query_opt(c, "SELECT digest FROM ledger WHERE idx = $1", &[&i]).await?
    } else {
        let l = i32::try_from(level).map_err(|_| StoreError::corrupt("Merkle level out of range"))?;
        query_opt(c, "SELECT hash FROM merkle WHERE level = $1 AND idx = $2", &[&l, &i]).await?
    };
    let row = row.ok_or_else(|| StoreError::corrupt(format!("no Merkle node at level {level}, index {index}")))?;
    hash(row.try_get(0).map_err(pg_err)?)
}

/// The size and root recorded in `ledger_head` (the root is `None` for an empty ledger).
pub(crate) async fn head(c: &ClientWrapper, lock: bool) -> StoreResult<(u64, Option<Hash>)> {
    let sql = if lock {
        "SELECT size, root FROM ledger_head WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT size, root FROM ledger_head WHERE id = 1"
    };
    let row = query_opt(c, sql, &[]).await?.ok_or_else(|| StoreError::corrupt("the ledger_head row is missing"))?;
    let size: i64 = row.try_get(0).map_err(pg_err)?;
    let root: Option<&[u8]> = row.try_get(1).map_err(pg_err)?;
    Ok((to_u64(size)?, root.map(hash).transpose()?))
}

pub(crate) async fn checkpoint(c: &ClientWrapper) -> StoreResult<Option<String>> {
    let row = query_opt(c, "SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1", &[]).await?;
    row.map(|r| r.try_get(0).map_err(pg_err)).transpose()
}

pub(crate) async fn chain_entries(c: &ClientWrapper, chain: Option<&str>) -> StoreResult<Vec<DigestedEntry>> {
    let rows = match chain {
        Some(case) => {
            query(c, "SELECT idx, entry, digest FROM ledger WHERE case_id = $1 ORDER BY seq", &[&case]).await?
        }
        None => query(c, "SELECT idx, entry, digest FROM ledger WHERE case_id IS NULL ORDER BY seq", &[]).await?,
    };
    entries(rows)
}

pub(crate) async fn ledger_entries(c: &ClientWrapper, start: u64, end: u64) -> StoreResult<Vec<DigestedEntry>> {
    let sql = "SELECT idx, entry, digest FROM ledger WHERE idx >= $1 AND idx < $2 ORDER BY idx";
    entries(query(c, sql, &[&to_i64(start)?, &to_i64(end)?]).await?)
}

async fn list_cases(c: &ClientWrapper, filter: &CaseFilter) -> StoreResult<Vec<String>> {
    let mut sql = String::from("SELECT body FROM cases WHERE TRUE");
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    for (column, value) in [
        ("agent", &filter.agent),
        ("audience", &filter.audience),
        ("counterparty", &filter.counterparty),
        ("status", &filter.status),
    ] {
        if let Some(v) = value {
            args.push(Box::new(v.clone()));
            sql.push_str(&format!(" AND {column} = ${}", args.len()));
        }
    }
    if let Some(p) = filter.review_pending {
        args.push(Box::new(p));
        sql.push_str(&format!(" AND review_pending = ${}", args.len()));
        sql.push_str(" ORDER BY deadline_ms ASC NULLS FIRST, created_at_ms ASC");
    } else {
        sql.push_str(" ORDER BY created_at_ms DESC, id DESC");
    }
    args.push(Box::new(i64::from(filter.limit.clamp(1, 10_000))));
    sql.push_str(&format!(" LIMIT ${}", args.len()));
    let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
    strings(query(c, &sql, &refs).await?)
}

async fn list_reviews(c: &ClientWrapper, filter: &ReviewFilter) -> StoreResult<(u64, Vec<String>)> {
    let mut sql = String::from(" FROM cases WHERE review_id IS NOT NULL");
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let by_deadline = filter.by_deadline();
    if by_deadline {
        sql.push_str(" AND review_pending");
    } else if let Some(status) = &filter.status {
        args.push(Box::new(status.clone()));
        sql.push_str(&format!(" AND review_status = ${}", args.len()));
    }
    for (column, value) in
        [("agent", &filter.agent), ("counterparty", &filter.counterparty), ("action", &filter.action)]
    {
        if let Some(v) = value {
            args.push(Box::new(v.clone()));
            sql.push_str(&format!(" AND {column} = ${}", args.len()));
        }
    }
    if let Some(id) = &filter.id {
        args.push(Box::new(id.clone()));
        sql.push_str(&format!(" AND (review_id = ${0} OR id = ${0})", args.len()));
    }
    if let Some(roles) = &filter.roles {
        args.push(Box::new(roles.clone()));
        sql.push_str(&format!(
            " AND id IN (SELECT case_id FROM review_roles WHERE role = ANY(${}::text[]))",
            args.len()
        ));
    }
    let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
    let rows = query(c, &format!("SELECT COUNT(*){sql}"), &refs).await?;
    let total: i64 = match rows.first() {
        Some(r) => r.try_get(0).map_err(pg_err)?,
        None => 0,
    };
    if let Some(after) = &filter.after {
        if by_deadline {
            args.push(Box::new(after.deadline_ms));
            args.push(Box::new(after.created_at_ms));
            args.push(Box::new(after.id.clone()));
            let n = args.len();
            sql.push_str(&format!(" AND (deadline_ms, created_at_ms, id) > (${}, ${}, ${n})", n - 2, n - 1));
        } else {
            args.push(Box::new(after.created_at_ms));
            args.push(Box::new(after.id.clone()));
            let n = args.len();
            sql.push_str(&format!(" AND (created_at_ms, id) < (${}, ${n})", n - 1));
        }
    }
    let order = if by_deadline {
        " ORDER BY deadline_ms ASC, created_at_ms ASC, id ASC"
    } else {
        " ORDER BY created_at_ms DESC, id DESC"
    };
    let page = format!("SELECT body{sql}{order} LIMIT {} OFFSET {}", filter.limit.clamp(1, 10_000), filter.offset);
    let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
    let bodies = strings(query(c, &page, &refs).await?)?;
    Ok((u64::try_from(total).unwrap_or(0), bodies))
}

/// A snapshot: every call waits on its query (the closure runs on a blocking thread).
struct PgSnapshot<'a> {
    handle: Handle,
    client: &'a ClientWrapper,
}

impl PgSnapshot<'_> {
    fn wait<T>(&self, f: impl std::future::Future<Output = StoreResult<T>>) -> StoreResult<T> {
        self.handle.block_on(f)
    }
}

impl Snapshot for PgSnapshot<'_> {
    fn record(&mut self, kind: RecordKind, id: &str) -> StoreResult<Option<Versioned>> {
        let sql = "SELECT body, version FROM records WHERE kind = $1 AND id = $2";
        self.wait(async { versioned(query_opt(self.client, sql, &[&kind.as_str(), &id]).await?) })
    }

    fn records(&mut self, kind: RecordKind) -> StoreResult<Vec<String>> {
        let sql = "SELECT body FROM records WHERE kind = $1 ORDER BY id";
        self.wait(async { strings(query(self.client, sql, &[&kind.as_str()]).await?) })
    }

    fn credential(&mut self, hash: &str) -> StoreResult<Option<(String, String)>> {
        let sql = "SELECT kind, id FROM credentials WHERE hash = $1";
        self.wait(async {
            match query_opt(self.client, sql, &[&hash]).await? {
                None => Ok(None),
                Some(r) => Ok(Some((r.try_get(0).map_err(pg_err)?, r.try_get(1).map_err(pg_err)?))),
            }
        })
    }

    fn case(&mut self, id: &str) -> StoreResult<Option<Versioned>> {
        let sql = "SELECT body, version FROM cases WHERE id = $1";
        self.wait(async { versioned(query_opt(self.client, sql, &[&id]).await?) })
    }

    fn case_by_idempotency(&mut self, agent: &str, key: &str) -> StoreResult<Option<Versioned>> {
        let sql = "SELECT body, version FROM cases WHERE agent = $1 AND idempotency_key = $2";
        self.wait(async { versioned(query_opt(self.client, sql, &[&agent, &key]).await?) })
    }

    fn case_by_review(&mut self, review_id: &str) -> StoreResult<Option<Versioned>> {
        let sql = "SELECT body, version FROM cases WHERE review_id = $1";
        self.wait(async { versioned(query_opt(self.client, sql, &[&review_id]).await?) })
    }

    fn list_cases(&mut self, filter: &CaseFilter) -> StoreResult<Vec<String>> {
        self.wait(list_cases(self.client, filter))
    }

    fn list_reviews(&mut self, filter: &ReviewFilter) -> StoreResult<(u64, Vec<String>)> {
        self.wait(list_reviews(self.client, filter))
    }

    fn due_cases(&mut self, now_ms: i64, limit: u32) -> StoreResult<Vec<String>> {
        let sql = "SELECT id FROM cases WHERE due_ms IS NOT NULL AND due_ms <= $1 ORDER BY due_ms LIMIT $2";
        self.wait(async { strings(query(self.client, sql, &[&now_ms, &i64::from(limit)]).await?) })
    }

    fn chain_head(&mut self, chain: Option<&str>) -> StoreResult<Option<ChainHead>> {
        self.wait(chain_head(self.client, chain))
    }

    fn ledger_size(&mut self) -> StoreResult<u64> {
        self.wait(async { Ok(head(self.client, false).await?.0) })
    }

    fn ledger_entries(&mut self, start: u64, end: u64) -> StoreResult<Vec<DigestedEntry>> {
        self.wait(ledger_entries(self.client, start, end))
    }

    fn chain_entries(&mut self, chain: Option<&str>) -> StoreResult<Vec<DigestedEntry>> {
        self.wait(chain_entries(self.client, chain))
    }

    fn merkle_node(&mut self, level: u32, index: u64) -> StoreResult<Hash> {
        self.wait(node(self.client, level, index))
    }

    fn checkpoint(&mut self) -> StoreResult<Option<String>> {
        self.wait(checkpoint(self.client))
    }
}

/// Runs `f` against a snapshot on `client`. A connection whose transaction could not be
/// ended cleanly is taken out of the pool rather than handed to the next reader.
pub(crate) async fn run_snapshot(client: Object, f: ReadFn) -> StoreResult<()> {
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(pg_err)?;
    let handle = Handle::current();
    let joined = tokio::task::spawn_blocking(move || {
        let result = {
            let mut snap = PgSnapshot { handle, client: &client };
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut snap)))
                .map_err(|_| StoreError::corrupt("internal error while reading"))
        };
        (client, result)
    })
    .await;
    let (client, result) = joined.map_err(|e| StoreError::storage("the reader task failed", e))?;
    if let Err(e) = client.batch_execute("COMMIT").await {
        drop(Object::take(client));
        result?;
        return Err(pg_err(e));
    }
    result
}
