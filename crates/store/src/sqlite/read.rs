//! Reads: snapshots on read-only connections, and the offline [`LedgerReader`] (a
//! [`LedgerSource`]).

use std::path::Path;

use agentsigna_core::store::{
    CaseFilter, CaseRow, ChainHead, RecordKind, ReviewFilter, Snapshot, StoreError, StoreResult, StoredCase, Versioned,
    OPENING_ENTRIES,
};
use agentsigna_verify::ledger::{DigestedEntry, Entry};
use agentsigna_verify::merkle::{Hash, NodeSource};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{db_err, open_conn, to_i64};
use crate::layout::{leaves_under, subtree, token_text, StoredEntry, FIRST_STORED_LEVEL, ORGANIZATION_CHAIN};
use crate::ledger::{AuditError, LedgerSource, ScanFn};

/// A perfect-subtree hash of the Merkle tree (level 0: an entry's digest; levels below
/// [`FIRST_STORED_LEVEL`]: computed from the digests under it).
pub(crate) fn node(conn: &Connection, level: u32, index: u64) -> StoreResult<Hash> {
    let blob: Option<Vec<u8>> = if level == 0 {
        let i = to_i64(index)?;
        conn.prepare_cached("SELECT digest FROM ledger WHERE idx = ?1")
            .and_then(|mut s| s.query_row([i], |r| r.get(0)).optional())
            .map_err(db_err)?
    } else if level < FIRST_STORED_LEVEL {
        let (start, end) = leaves_under(level, index)?;
        let mut s = conn
            .prepare_cached("SELECT digest FROM ledger WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")
            .map_err(db_err)?;
        let leaves = s.query_map([start, end], |r| r.get(0)).map_err(db_err)?;
        let leaves = leaves.collect::<Result<Vec<Vec<u8>>, _>>().map_err(db_err)?;
        return subtree(level, index, &leaves);
    } else {
        let i = to_i64(index)?;
        conn.prepare_cached("SELECT hash FROM merkle WHERE level = ?1 AND idx = ?2")
            .and_then(|mut s| s.query_row(params![level, i], |r| r.get(0)).optional())
            .map_err(db_err)?
    };
    let blob = blob.ok_or_else(|| StoreError::corrupt(format!("no Merkle node at level {level}, index {index}")))?;
    <Hash>::try_from(blob.as_slice()).map_err(|_| StoreError::corrupt("corrupt Merkle node"))
}

pub(crate) fn ledger_size(conn: &Connection) -> StoreResult<u64> {
    let n: Option<i64> = conn
        .prepare_cached("SELECT MAX(idx) FROM ledger")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_err)?;
    Ok(n.map_or(0, |n| u64::try_from(n + 1).unwrap_or(0)))
}

/// The number of a chain's case row (`None`: no such case); the organization chain's is
/// [`ORGANIZATION_CHAIN`].
pub(crate) fn chain_number(conn: &Connection, chain: Option<&str>) -> StoreResult<Option<i64>> {
    match chain {
        None => Ok(Some(ORGANIZATION_CHAIN)),
        Some(id) => conn
            .prepare_cached("SELECT num FROM cases WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(db_err),
    }
}

fn head_of(conn: &Connection, num: i64) -> StoreResult<Option<ChainHead>> {
    let head: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, digest FROM ledger WHERE chain = ?1 ORDER BY seq DESC LIMIT 1")
        .and_then(|mut s| s.query_row([num], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(db_err)?;
    match head {
        None => Ok(None),
        Some((seq, digest)) => Ok(Some(ChainHead {
            seq: u64::try_from(seq).map_err(|_| StoreError::corrupt("negative seq"))?,
            digest: <Hash>::try_from(digest.as_slice()).map_err(|_| StoreError::corrupt("corrupt digest"))?,
        })),
    }
}

pub(crate) fn chain_head(conn: &Connection, chain: Option<&str>) -> StoreResult<Option<ChainHead>> {
    match chain_number(conn, chain)? {
        None => Ok(None),
        Some(num) => head_of(conn, num),
    }
}

pub(crate) fn checkpoint(conn: &Connection) -> StoreResult<Option<String>> {
    conn.query_row("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1", [], |r| r.get(0))
        .optional()
        .map_err(db_err)
}

/// The columns of a ledger row as [`stored_entry`] reads them, after the case id.
const ENTRY_COLUMNS: &str = "l.idx, l.chain, l.seq, l.type, l.at, l.actor, l.prev, l.data, l.digest";

/// A row of `SELECT c.id, {ENTRY_COLUMNS}`: calls `f` with it.
fn stored_entry<T, E: From<StoreError>>(
    row: &Row<'_>,
    f: impl FnOnce(&StoredEntry<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let text = |i: usize| -> StoreResult<&str> {
        row.get_ref(i).map_err(db_err)?.as_str().map_err(|e| StoreError::storage("ledger text", e))
    };
    let blob = |i: usize| -> StoreResult<&[u8]> {
        row.get_ref(i).map_err(db_err)?.as_blob().map_err(|e| StoreError::storage("ledger bytes", e))
    };
    let case: Option<&str> = match row.get_ref(0).map_err(db_err)? {
        rusqlite::types::ValueRef::Null => None,
        _ => Some(text(0)?),
    };
    let index: i64 = row.get(1).map_err(db_err)?;
    let chain: i64 = row.get(2).map_err(db_err)?;
    if (chain == ORGANIZATION_CHAIN) != case.is_none() {
        let orphan = format!("ledger entry {index} belongs to case number {chain}, which has no row");
        return Err(E::from(StoreError::corrupt(orphan)));
    }
    let prev = match row.get_ref(7).map_err(db_err)? {
        rusqlite::types::ValueRef::Null => None,
        _ => Some(blob(7)?),
    };
    f(&StoredEntry {
        index,
        case,
        seq: row.get(3).map_err(db_err)?,
        kind: text(4)?,
        at_ms: row.get(5).map_err(db_err)?,
        actor: text(6)?,
        prev,
        data: row.get_ref(8).map_err(db_err)?.as_bytes().map_err(|e| StoreError::storage("ledger data", e))?,
        digest: blob(9)?,
    })
}

fn entries(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> StoreResult<Vec<DigestedEntry>> {
    let mut s = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = s.query(args).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(stored_entry(row, |e| e.digested())?);
    }
    Ok(out)
}

fn chain_entries(conn: &Connection, chain: Option<&str>) -> StoreResult<Vec<DigestedEntry>> {
    let Some(num) = chain_number(conn, chain)? else { return Ok(Vec::new()) };
    entries(
        conn,
        &format!("SELECT ?2, {ENTRY_COLUMNS} FROM ledger l WHERE l.chain = ?1 ORDER BY l.seq"),
        params![num, chain],
    )
}

fn versioned(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> StoreResult<Option<Versioned>> {
    let row: Option<(String, i64)> = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row(args, |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(db_err)?;
    Ok(row.map(|(body, version)| Versioned { body, version: u64::try_from(version).unwrap_or(0) }))
}

fn strings(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> StoreResult<Vec<String>> {
    let mut s = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = s.query_map(args, |r| r.get(0)).map_err(db_err)?;
    rows.collect::<Result<Vec<String>, _>>().map_err(db_err)
}

/// What [`case_row`] reads, from [`CASES`].
const CASE_COLUMNS: &str = "c.num, c.version, c.id, c.agent, c.audience, c.status, c.idempotency_key, c.review_id, \
     c.review_status, c.review_pending, c.deadline_ms, c.due_ms, c.created_at_ms, c.counterparty, c.action, c.body, \
     p.token";
const CASES: &str = "cases c LEFT JOIN passports p ON p.case_num = c.num";

/// `(num, version, row, stored token)` of a row of `SELECT {CASE_COLUMNS} FROM {CASES}`.
/// (`roles_missing` is written to `review_roles` and not read back: the engine reads the
/// review itself from the body.)
fn case_row(r: &Row<'_>) -> rusqlite::Result<(i64, i64, CaseRow, Option<Vec<u8>>)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        CaseRow {
            id: r.get(2)?,
            agent: r.get(3)?,
            audience: r.get(4)?,
            status: r.get(5)?,
            idempotency_key: r.get(6)?,
            review_id: r.get(7)?,
            review_status: r.get(8)?,
            review_pending: r.get(9)?,
            roles_missing: Vec::new(),
            deadline_ms: r.get(10)?,
            due_ms: r.get(11)?,
            created_at_ms: r.get(12)?,
            counterparty: r.get(13)?,
            action: r.get(14)?,
            body: r.get(15)?,
            passport: None,
        },
        r.get(16)?,
    ))
}

/// The cases a query over [`CASES`] selects, each with its chain head and opening entries.
fn cases(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> StoreResult<Vec<StoredCase>> {
    let rows: Vec<_> = {
        let mut s = conn.prepare_cached(sql).map_err(db_err)?;
        let rows = s.query_map(args, case_row).map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)?
    };
    let mut out = Vec::with_capacity(rows.len());
    let mut opening = conn
        .prepare_cached(&format!(
            "SELECT ?2, {ENTRY_COLUMNS} FROM ledger l WHERE l.chain = ?1 AND l.seq < {OPENING_ENTRIES} ORDER BY l.seq"
        ))
        .map_err(db_err)?;
    for (num, version, mut row, token) in rows {
        row.passport = token.as_deref().map(token_text).transpose()?;
        let mut entries: Vec<Entry> = Vec::new();
        let mut found = opening.query(params![num, row.id]).map_err(db_err)?;
        while let Some(e) = found.next().map_err(db_err)? {
            entries.push(stored_entry(e, |e| e.entry())?);
        }
        out.push(StoredCase {
            head: head_of(conn, num)?,
            version: u64::try_from(version).map_err(|_| StoreError::corrupt("negative case version"))?,
            row,
            opening: entries,
        });
    }
    Ok(out)
}

fn one_case(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> StoreResult<Option<StoredCase>> {
    Ok(cases(conn, sql, args)?.pop())
}

/// The statement listing the cases of `filter`: newest first by row number (pending
/// reviews: by deadline, in the review queue's order).
pub(crate) fn case_query(filter: &CaseFilter) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = format!("SELECT {CASE_COLUMNS} FROM {CASES} WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    for (column, value) in [
        ("c.agent", &filter.agent),
        ("c.audience", &filter.audience),
        ("c.counterparty", &filter.counterparty),
        ("c.status", &filter.status),
    ] {
        if let Some(v) = value {
            args.push(v.clone().into());
            sql.push_str(&format!(" AND {column} = ?{}", args.len()));
        }
    }
    if let Some(p) = filter.review_pending {
        // A literal, not a parameter: the partial index `cases_pending` applies to it.
        sql.push_str(if p { " AND c.review_pending = 1" } else { " AND c.review_pending = 0" });
        sql.push_str(" ORDER BY c.deadline_ms ASC, c.created_at_ms ASC, c.id ASC");
    } else {
        sql.push_str(" ORDER BY c.num DESC");
    }
    sql.push_str(&format!(" LIMIT {}", filter.limit.clamp(1, 10_000)));
    (sql, args)
}

/// The two statements of a review listing: how many match, and the page.
pub(crate) struct ReviewQueries {
    pub count: String,
    pub count_args: Vec<rusqlite::types::Value>,
    pub page: String,
    pub page_args: Vec<rusqlite::types::Value>,
}

/// The statements listing the reviews of `filter`, on the indexed columns only.
pub(crate) fn review_queries(filter: &ReviewFilter) -> ReviewQueries {
    let mut sql = String::from(" WHERE c.review_id IS NOT NULL");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let by_deadline = filter.by_deadline();
    if by_deadline {
        sql.push_str(" AND c.review_pending = 1");
    } else if let Some(status) = &filter.status {
        args.push(status.clone().into());
        sql.push_str(&format!(" AND c.review_status = ?{}", args.len()));
    }
    for (column, value) in
        [("c.agent", &filter.agent), ("c.counterparty", &filter.counterparty), ("c.action", &filter.action)]
    {
        if let Some(v) = value {
            args.push(v.clone().into());
            sql.push_str(&format!(" AND {column} = ?{}", args.len()));
        }
    }
    if let Some(id) = &filter.id {
        args.push(id.clone().into());
        sql.push_str(&format!(" AND (c.review_id = ?{0} OR c.id = ?{0})", args.len()));
    }
    if let Some(roles) = &filter.roles {
        let mut marks = Vec::new();
        for role in roles {
            args.push(role.clone().into());
            marks.push(format!("?{}", args.len()));
        }
        if marks.is_empty() {
            sql.push_str(" AND 0");
        } else {
            sql.push_str(&format!(
                " AND c.id IN (SELECT case_id FROM review_roles WHERE role IN ({}))",
                marks.join(", ")
            ));
        }
    }
    let count = format!("SELECT COUNT(*) FROM cases c{sql}");
    let count_args = args.clone();
    if let Some(after) = &filter.after {
        if by_deadline {
            args.extend([after.deadline_ms.into(), after.created_at_ms.into(), after.id.clone().into()]);
            let n = args.len();
            sql.push_str(&format!(" AND (c.deadline_ms, c.created_at_ms, c.id) > (?{}, ?{}, ?{n})", n - 2, n - 1));
        } else {
            args.extend([after.created_at_ms.into(), after.id.clone().into()]);
            let n = args.len();
            sql.push_str(&format!(" AND (c.created_at_ms, c.id) < (?{}, ?{n})", n - 1));
        }
    }
    let order = if by_deadline {
        " ORDER BY c.deadline_ms ASC, c.created_at_ms ASC, c.id ASC"
    } else {
        " ORDER BY c.created_at_ms DESC, c.id DESC"
    };
    let page = format!(
        "SELECT {CASE_COLUMNS} FROM {CASES}{sql}{order} LIMIT {} OFFSET {}",
        filter.limit.clamp(1, 10_000),
        filter.offset
    );
    ReviewQueries { count, count_args, page, page_args: args }
}

/// A read transaction on a connection (a snapshot in WAL mode).
pub(crate) struct SqlSnapshot<'a> {
    pub conn: &'a Connection,
}

impl Snapshot for SqlSnapshot<'_> {
    fn record(&mut self, kind: RecordKind, id: &str) -> StoreResult<Option<Versioned>> {
        versioned(
            self.conn,
            "SELECT body, version FROM records WHERE kind = ?1 AND id = ?2",
            params![kind.as_str(), id],
        )
    }

    fn records(&mut self, kind: RecordKind) -> StoreResult<Vec<String>> {
        strings(self.conn, "SELECT body FROM records WHERE kind = ?1 ORDER BY id", [kind.as_str()])
    }

    fn credential(&mut self, hash: &str) -> StoreResult<Option<(String, String)>> {
        self.conn
            .prepare_cached("SELECT kind, id FROM credentials WHERE hash = ?1")
            .and_then(|mut s| s.query_row([hash], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(db_err)
    }

    fn case(&mut self, id: &str) -> StoreResult<Option<StoredCase>> {
        one_case(self.conn, &format!("SELECT {CASE_COLUMNS} FROM {CASES} WHERE c.id = ?1"), [id])
    }

    fn case_by_idempotency(&mut self, agent: &str, key: &str) -> StoreResult<Option<StoredCase>> {
        let sql = format!("SELECT {CASE_COLUMNS} FROM {CASES} WHERE c.agent = ?1 AND c.idempotency_key = ?2");
        one_case(self.conn, &sql, [agent, key])
    }

    fn case_by_review(&mut self, review_id: &str) -> StoreResult<Option<StoredCase>> {
        one_case(self.conn, &format!("SELECT {CASE_COLUMNS} FROM {CASES} WHERE c.review_id = ?1"), [review_id])
    }

    fn list_cases(&mut self, filter: &CaseFilter) -> StoreResult<Vec<StoredCase>> {
        let (sql, args) = case_query(filter);
        cases(self.conn, &sql, rusqlite::params_from_iter(args))
    }

    fn list_reviews(&mut self, filter: &ReviewFilter) -> StoreResult<(u64, Vec<StoredCase>)> {
        let q = review_queries(filter);
        let total: i64 = self
            .conn
            .prepare_cached(&q.count)
            .and_then(|mut s| s.query_row(rusqlite::params_from_iter(q.count_args.iter()), |r| r.get(0)))
            .map_err(db_err)?;
        let listed = cases(self.conn, &q.page, rusqlite::params_from_iter(q.page_args))?;
        Ok((u64::try_from(total).unwrap_or(0), listed))
    }

    fn due_cases(&mut self, now_ms: i64, limit: u32) -> StoreResult<Vec<String>> {
        strings(
            self.conn,
            "SELECT id FROM cases WHERE due_ms IS NOT NULL AND due_ms <= ?1 ORDER BY due_ms LIMIT ?2",
            params![now_ms, limit],
        )
    }

    fn chain_head(&mut self, chain: Option<&str>) -> StoreResult<Option<ChainHead>> {
        chain_head(self.conn, chain)
    }

    fn ledger_size(&mut self) -> StoreResult<u64> {
        ledger_size(self.conn)
    }

    fn ledger_entries(&mut self, start: u64, end: u64) -> StoreResult<Vec<DigestedEntry>> {
        entries(
            self.conn,
            &format!(
                "SELECT c.id, {ENTRY_COLUMNS} FROM ledger l LEFT JOIN cases c ON c.num = l.chain
                 WHERE l.idx >= ?1 AND l.idx < ?2 ORDER BY l.idx"
            ),
            params![to_i64(start)?, to_i64(end)?],
        )
    }

    fn chain_entries(&mut self, chain: Option<&str>) -> StoreResult<Vec<DigestedEntry>> {
        chain_entries(self.conn, chain)
    }

    fn merkle_node(&mut self, level: u32, index: u64) -> StoreResult<Hash> {
        node(self.conn, level, index)
    }

    fn checkpoint(&mut self) -> StoreResult<Option<String>> {
        checkpoint(self.conn)
    }
}

/// Offline, read-only access to a database for `ledger verify` and `ledger export`.
pub struct LedgerReader {
    conn: Connection,
}

impl LedgerReader {
    /// Opens a database read-only.
    pub fn open(path: &Path) -> StoreResult<LedgerReader> {
        if !path.exists() {
            return Err(StoreError::corrupt(format!("{} does not exist", path.display())));
        }
        Ok(LedgerReader { conn: open_conn(path, true)? })
    }

    /// Number of entries.
    pub fn size(&self) -> StoreResult<u64> {
        ledger_size(&self.conn)
    }

    /// The latest stored checkpoint.
    pub fn checkpoint(&self) -> StoreResult<Option<String>> {
        checkpoint(&self.conn)
    }

    /// Calls `f` with every stored entry in index order. Stops at the first error `f` returns.
    pub fn scan<E: From<StoreError>>(&self, mut f: impl FnMut(&StoredEntry<'_>) -> Result<(), E>) -> Result<(), E> {
        let sql =
            format!("SELECT c.id, {ENTRY_COLUMNS} FROM ledger l LEFT JOIN cases c ON c.num = l.chain ORDER BY l.idx");
        let mut s = self.conn.prepare(&sql).map_err(db_err)?;
        let mut rows = s.query([]).map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            stored_entry(row, &mut f)?;
        }
        Ok(())
    }

    /// Every entry of one case, in chain order.
    pub fn case_entries(&self, case: &str) -> StoreResult<Vec<DigestedEntry>> {
        chain_entries(&self.conn, Some(case))
    }
}

impl NodeSource for LedgerReader {
    fn node(&self, level: u32, index: u64) -> Result<Hash, agentsigna_verify::Error> {
        node(&self.conn, level, index).map_err(|e| agentsigna_verify::Error::BadProof(e.to_string()))
    }
}

impl LedgerReader {
    /// Recomputes every digest, every chain and the Merkle root of the stored ledger, and
    /// checks them against its checkpoint signed by `key` (see [`crate::ledger::audit`]).
    pub fn audit(
        &self,
        key: &agentsigna_verify::note::NoteVerifier,
        saved: &[(agentsigna_verify::note::Checkpoint, String)],
        progress: impl FnMut(u64),
    ) -> Result<agentsigna_verify::evidence::BundleReport, AuditError> {
        crate::ledger::audit(self, key, saved, progress)
    }

    /// Every entry with its stored position and digest, up to (not including) `end`.
    pub fn entries(&self, end: u64) -> StoreResult<Vec<DigestedEntry>> {
        crate::ledger::entries(self, end)
    }
}

impl LedgerSource for LedgerReader {
    fn size(&self) -> StoreResult<u64> {
        ledger_size(&self.conn)
    }

    fn checkpoint(&self) -> StoreResult<Option<String>> {
        checkpoint(&self.conn)
    }

    fn scan(&self, f: &mut ScanFn<'_>) -> Result<(), AuditError> {
        LedgerReader::scan(self, f)
    }

    fn nodes(&self) -> &dyn NodeSource {
        self
    }

    fn case_entries(&self, case: &str) -> StoreResult<Vec<DigestedEntry>> {
        LedgerReader::case_entries(self, case)
    }
}
