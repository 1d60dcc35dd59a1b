//! Reads: the queries of a [`Snapshot`] (shared with the sequencer and the offline reader),
//! and snapshots themselves: a pooled connection in a `REPEATABLE READ READ ONLY`
//! transaction, handed to the read closure on a blocking thread, where each call waits on
//! its query with the runtime's `Handle::block_on`.

use std::collections::HashMap;

use agentsigna_core::store::{
    CaseFilter, CaseRow, ChainHead, ReadFn, RecordKind, ReviewFilter, Snapshot, StoreError, StoreResult, StoredCase,
    Versioned, OPENING_ENTRIES,
};
use agentsigna_verify::ledger::{DigestedEntry, Entry};
use agentsigna_verify::merkle::Hash;
use deadpool_postgres::{ClientWrapper, Object};
use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{pg_err, to_i64, to_u64};
use crate::layout::{leaves_under, subtree, token_text, StoredEntry, FIRST_STORED_LEVEL, ORGANIZATION_CHAIN};

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

/// The columns of a ledger row as [`stored_entry`] reads them, after the case id.
pub(crate) const ENTRY_COLUMNS: &str = "l.idx, l.chain, l.seq, l.type, l.at, l.actor, l.prev, l.data, l.digest";

/// A row of `SELECT <case id>, {ENTRY_COLUMNS}`: calls `f` with it.
pub(crate) fn stored_entry<T, E: From<StoreError>>(
    r: &Row,
    f: impl FnOnce(&StoredEntry<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let case: Option<&str> = r.try_get(0).map_err(pg_err)?;
    let index: i64 = r.try_get(1).map_err(pg_err)?;
    let chain: i64 = r.try_get(2).map_err(pg_err)?;
    if (chain == ORGANIZATION_CHAIN) != case.is_none() {
        return Err(E::from(StoreError::corrupt(format!(
            "ledger entry {index} belongs to case number {chain}, which has no row"
        ))));
    }
    f(&StoredEntry {
        index,
        case,
        seq: r.try_get(3).map_err(pg_err)?,
        kind: r.try_get(4).map_err(pg_err)?,
        at_ms: r.try_get(5).map_err(pg_err)?,
        actor: r.try_get(6).map_err(pg_err)?,
        prev: r.try_get(7).map_err(pg_err)?,
        data: r.try_get(8).map_err(pg_err)?,
        digest: r.try_get(9).map_err(pg_err)?,
    })
}

/// Parses rows of `SELECT <case id>, {ENTRY_COLUMNS}`.
pub(crate) fn entries(rows: Vec<Row>) -> StoreResult<Vec<DigestedEntry>> {
    rows.iter().map(|r| stored_entry(r, |e| e.digested())).collect()
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
            let sql = "SELECT l.seq, l.digest FROM ledger l JOIN cases c ON c.num = l.chain WHERE c.id = $1
                       ORDER BY l.seq DESC LIMIT 1";
            query_opt(c, sql, &[&case]).await?
        }
        None => {
            let sql = "SELECT seq, digest FROM ledger WHERE chain = $1 ORDER BY seq DESC LIMIT 1";
            query_opt(c, sql, &[&ORGANIZATION_CHAIN]).await?
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

/// A perfect-subtree hash (level 0: an entry's digest; levels below
/// [`FIRST_STORED_LEVEL`]: computed from the digests under it).
pub(crate) async fn node(c: &ClientWrapper, level: u32, index: u64) -> StoreResult<Hash> {
    let row = if level == 0 {
        query_opt(c, "SELECT digest FROM ledger WHERE idx = $1", &[&to_i64(index)?]).await?
    } else if level < FIRST_STORED_LEVEL {
        let (start, end) = leaves_under(level, index)?;
        let sql = "SELECT digest FROM ledger WHERE idx >= $1 AND idx < $2 ORDER BY idx";
        let leaves: Vec<Vec<u8>> = query(c, sql, &[&start, &end])
            .await?
            .iter()
            .map(|r| r.try_get(0).map_err(pg_err))
            .collect::<Result<_, _>>()?;
        return subtree(level, index, &leaves);
    } else {
        let l = i32::try_from(level).map_err(|_| StoreError::corrupt("Merkle level out of range"))?;
        query_opt(c, "SELECT hash FROM merkle WHERE level = $1 AND idx = $2", &[&l, &to_i64(index)?]).await?
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
            let sql = format!(
                "SELECT c.id, {ENTRY_COLUMNS} FROM ledger l JOIN cases c ON c.num = l.chain WHERE c.id = $1 ORDER BY l.seq"
            );
            query(c, &sql, &[&case]).await?
        }
        None => {
            let sql = format!("SELECT NULL::text, {ENTRY_COLUMNS} FROM ledger l WHERE l.chain = $1 ORDER BY l.seq");
            query(c, &sql, &[&ORGANIZATION_CHAIN]).await?
        }
    };
    entries(rows)
}

pub(crate) async fn ledger_entries(c: &ClientWrapper, start: u64, end: u64) -> StoreResult<Vec<DigestedEntry>> {
    let sql = format!(
        "SELECT c.id, {ENTRY_COLUMNS} FROM ledger l LEFT JOIN cases c ON c.num = l.chain
         WHERE l.idx >= $1 AND l.idx < $2 ORDER BY l.idx"
    );
    entries(query(c, &sql, &[&to_i64(start)?, &to_i64(end)?]).await?)
}

/// A case row with its passport token and its chain's head, as [`cases`] reads them.
const CASE_SELECT: &str = "SELECT c.num, c.version, c.id, c.agent, c.audience, c.status, c.idempotency_key,
        c.review_id, c.review_status, c.review_pending, c.deadline_ms, c.due_ms, c.created_at_ms, c.counterparty,
        c.action, c.body, p.token, h.seq, h.digest
    FROM cases c LEFT JOIN passports p ON p.case_num = c.num
    LEFT JOIN LATERAL (SELECT seq, digest FROM ledger WHERE chain = c.num ORDER BY seq DESC LIMIT 1) h ON TRUE";

/// The cases a query of [`CASE_SELECT`] found, with their opening entries (one more query).
async fn cases(c: &ClientWrapper, sql: &str, args: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<StoredCase>> {
    let rows = query(c, sql, args).await?;
    let nums: Vec<i64> = rows.iter().map(|r| r.try_get(0).map_err(pg_err)).collect::<Result<_, _>>()?;
    let mut opening: HashMap<i64, Vec<Entry>> = HashMap::new();
    if !nums.is_empty() {
        let sql = format!(
            "SELECT c.id, {ENTRY_COLUMNS} FROM ledger l JOIN cases c ON c.num = l.chain
             WHERE l.chain = ANY($1) AND l.seq < {OPENING_ENTRIES} ORDER BY l.chain, l.seq"
        );
        for r in query(c, &sql, &[&nums]).await? {
            let chain: i64 = r.try_get(2).map_err(pg_err)?;
            opening.entry(chain).or_default().push(stored_entry(&r, |e| e.entry())?);
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for (r, num) in rows.iter().zip(nums) {
        let token: Option<&[u8]> = r.try_get(16).map_err(pg_err)?;
        let head_seq: Option<i64> = r.try_get(17).map_err(pg_err)?;
        let head_digest: Option<&[u8]> = r.try_get(18).map_err(pg_err)?;
        let head = match (head_seq, head_digest) {
            (Some(seq), Some(digest)) => Some(ChainHead { seq: to_u64(seq)?, digest: hash(digest)? }),
            _ => None,
        };
        out.push(StoredCase {
            version: to_u64(r.try_get(1).map_err(pg_err)?)?,
            // (`roles_missing` is written to `review_roles` and not read back: the engine
            // reads the review itself from the body.)
            row: CaseRow {
                id: r.try_get(2).map_err(pg_err)?,
                agent: r.try_get(3).map_err(pg_err)?,
                audience: r.try_get(4).map_err(pg_err)?,
                status: r.try_get(5).map_err(pg_err)?,
                idempotency_key: r.try_get(6).map_err(pg_err)?,
                review_id: r.try_get(7).map_err(pg_err)?,
                review_status: r.try_get(8).map_err(pg_err)?,
                review_pending: r.try_get(9).map_err(pg_err)?,
                roles_missing: Vec::new(),
                deadline_ms: r.try_get(10).map_err(pg_err)?,
                due_ms: r.try_get(11).map_err(pg_err)?,
                created_at_ms: r.try_get(12).map_err(pg_err)?,
                counterparty: r.try_get(13).map_err(pg_err)?,
                action: r.try_get(14).map_err(pg_err)?,
                body: r.try_get(15).map_err(pg_err)?,
                passport: token.map(token_text).transpose()?,
            },
            head,
            opening: opening.remove(&num).unwrap_or_default(),
        });
    }
    Ok(out)
}

async fn one_case(c: &ClientWrapper, sql: &str, args: &[&(dyn ToSql + Sync)]) -> StoreResult<Option<StoredCase>> {
    Ok(cases(c, sql, args).await?.pop())
}

async fn list_cases(c: &ClientWrapper, filter: &CaseFilter) -> StoreResult<Vec<StoredCase>> {
    let mut sql = format!("{CASE_SELECT} WHERE TRUE");
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    for (column, value) in [
        ("c.agent", &filter.agent),
        ("c.audience", &filter.audience),
        ("c.counterparty", &filter.counterparty),
        ("c.status", &filter.status),
    ] {
        if let Some(v) = value {
            args.push(Box::new(v.clone()));
            sql.push_str(&format!(" AND {column} = ${}", args.len()));
        }
    }
    if let Some(p) = filter.review_pending {
        // A literal, not a parameter: the partial index `cases_pending` applies to it.
        sql.push_str(if p { " AND c.review_pending" } else { " AND NOT c.review_pending" });
        sql.push_str(" ORDER BY c.deadline_ms ASC NULLS FIRST, c.created_at_ms ASC, c.id ASC");
    } else {
        sql.push_str(" ORDER BY c.num DESC");
    }
    args.push(Box::new(i64::from(filter.limit.clamp(1, 10_000))));
    sql.push_str(&format!(" LIMIT ${}", args.len()));
    let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
    cases(c, &sql, &refs).await
}

async fn list_reviews(c: &ClientWrapper, filter: &ReviewFilter) -> StoreResult<(u64, Vec<StoredCase>)> {
    let mut sql = String::from(" WHERE c.review_id IS NOT NULL");
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let by_deadline = filter.by_deadline();
    if by_deadline {
        sql.push_str(" AND c.review_pending");
    } else if let Some(status) = &filter.status {
        args.push(Box::new(status.clone()));
        sql.push_str(&format!(" AND c.review_status = ${}", args.len()));
    }
    for (column, value) in
        [("c.agent", &filter.agent), ("c.counterparty", &filter.counterparty), ("c.action", &filter.action)]
    {
        if let Some(v) = value {
            args.push(Box::new(v.clone()));
            sql.push_str(&format!(" AND {column} = ${}", args.len()));
        }
    }
    if let Some(id) = &filter.id {
        args.push(Box::new(id.clone()));
        sql.push_str(&format!(" AND (c.review_id = ${0} OR c.id = ${0})", args.len()));
    }
    if let Some(roles) = &filter.roles {
        args.push(Box::new(roles.clone()));
        sql.push_str(&format!(
            " AND c.id IN (SELECT case_id FROM review_roles WHERE role = ANY(${}::text[]))",
            args.len()
        ));
    }
    let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
    let rows = query(c, &format!("SELECT COUNT(*) FROM cases c{sql}"), &refs).await?;
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
            sql.push_str(&format!(" AND (c.deadline_ms, c.created_at_ms, c.id) > (${}, ${}, ${n})", n - 2, n - 1));
        } else {
            args.push(Box::new(after.created_at_ms));
            args.push(Box::new(after.id.clone()));
            let n = args.len();
            sql.push_str(&format!(" AND (c.created_at_ms, c.id) < (${}, ${n})", n - 1));
        }
    }
    let order = if by_deadline {
        " ORDER BY c.deadline_ms ASC, c.created_at_ms ASC, c.id ASC"
    } else {
        " ORDER BY c.created_at_ms DESC, c.id DESC"
    };
    let page = format!("{CASE_SELECT}{sql}{order} LIMIT {} OFFSET {}", filter.limit.clamp(1, 10_000), filter.offset);
    let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
    let listed = cases(c, &page, &refs).await?;
    Ok((u64::try_from(total).unwrap_or(0), listed))
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

    fn case(&mut self, id: &str) -> StoreResult<Option<StoredCase>> {
        let sql = format!("{CASE_SELECT} WHERE c.id = $1");
        self.wait(one_case(self.client, &sql, &[&id]))
    }

    fn case_by_idempotency(&mut self, agent: &str, key: &str) -> StoreResult<Option<StoredCase>> {
        let sql = format!("{CASE_SELECT} WHERE c.agent = $1 AND c.idempotency_key = $2");
        self.wait(one_case(self.client, &sql, &[&agent, &key]))
    }

    fn case_by_review(&mut self, review_id: &str) -> StoreResult<Option<StoredCase>> {
        let sql = format!("{CASE_SELECT} WHERE c.review_id = $1");
        self.wait(one_case(self.client, &sql, &[&review_id]))
    }

    fn list_cases(&mut self, filter: &CaseFilter) -> StoreResult<Vec<StoredCase>> {
        self.wait(list_cases(self.client, filter))
    }

    fn list_reviews(&mut self, filter: &ReviewFilter) -> StoreResult<(u64, Vec<StoredCase>)> {
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
