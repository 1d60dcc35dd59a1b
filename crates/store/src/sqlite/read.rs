//! Reads: snapshots on read-only connections, and the offline [`LedgerReader`] (a
//! [`LedgerSource`]).

use std::path::Path;

use agentsigna_core::store::{
    CaseFilter, ChainHead, RecordKind, ReviewFilter, Snapshot, StoreError, StoreResult, Versioned,
};
use agentsigna_verify::ledger::DigestedEntry;
use agentsigna_verify::merkle::{Hash, NodeSource};
use rusqlite::{params, Connection, OptionalExtension};

use super::{db_err, open_conn, to_i64};
use crate::ledger::{parse_entry, AuditError, LedgerSource, ScanFn};

/// A perfect-subtree hash of the Merkle tree (level 0: an entry's digest).
pub(crate) fn node(conn: &Connection, level: u32, index: u64) -> StoreResult<Hash> {
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
    let blob = blob.ok_or_else(|| StoreError::corrupt(format!("no Merkle node at level {level}, index {index}")))?;
    <Hash>::try_from(blob.as_slice()).map_err(|_| StoreError::corrupt("corrupt Merkle node"))
}

pub(crate) fn ledger_size(conn: &Connection) -> StoreResult<u64> {
    let n: Option<i64> = conn.query_row("SELECT MAX(idx) FROM ledger", [], |r| r.get(0)).map_err(db_err)?;
    Ok(n.map_or(0, |n| u64::try_from(n + 1).unwrap_or(0)))
}

pub(crate) fn chain_head(conn: &Connection, chain: Option<&str>) -> StoreResult<Option<ChainHead>> {
    let head: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, digest FROM ledger WHERE case_id IS ?1 ORDER BY seq DESC LIMIT 1")
        .and_then(|mut s| s.query_row([chain], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(db_err)?;
    match head {
        None => Ok(None),
        Some((seq, digest)) => Ok(Some(ChainHead {
            seq: u64::try_from(seq).map_err(|_| StoreError::corrupt("negative seq"))?,
            digest: <Hash>::try_from(digest.as_slice()).map_err(|_| StoreError::corrupt("corrupt digest"))?,
        })),
    }
}

pub(crate) fn checkpoint(conn: &Connection) -> StoreResult<Option<String>> {
    conn.query_row("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1", [], |r| r.get(0))
        .optional()
        .map_err(db_err)
}

fn entries(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> StoreResult<Vec<DigestedEntry>> {
    let mut s = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = s
        .query_map(args, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Vec<u8>>(2)?)))
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (index, text, digest) = row.map_err(db_err)?;
        out.push(parse_entry(index, &text, &digest)?);
    }
    Ok(out)
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

/// The two statements of a review listing: how many match, and the page.
pub(crate) struct ReviewQueries {
    pub count: String,
    pub count_args: Vec<rusqlite::types::Value>,
    pub page: String,
    pub page_args: Vec<rusqlite::types::Value>,
}

/// The statements listing the reviews of `filter`, on the indexed columns only.
pub(crate) fn review_queries(filter: &ReviewFilter) -> ReviewQueries {
    let mut sql = String::from(" FROM cases WHERE review_id IS NOT NULL");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let by_deadline = filter.by_deadline();
    if by_deadline {
        sql.push_str(" AND review_pending = 1");
    } else if let Some(status) = &filter.status {
        args.push(status.clone().into());
        sql.push_str(&format!(" AND review_status = ?{}", args.len()));
    }
    for (column, value) in
        [("agent", &filter.agent), ("counterparty", &filter.counterparty), ("action", &filter.action)]
    {
        if let Some(v) = value {
            args.push(v.clone().into());
            sql.push_str(&format!(" AND {column} = ?{}", args.len()));
        }
    }
    if let Some(id) = &filter.id {
        args.push(id.clone().into());
        sql.push_str(&format!(" AND (review_id = ?{0} OR id = ?{0})", args.len()));
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
                " AND id IN (SELECT case_id FROM review_roles WHERE role IN ({}))",
                marks.join(", ")
            ));
        }
    }
    let count = format!("SELECT COUNT(*){sql}");
    let count_args = args.clone();
    if let Some(after) = &filter.after {
        if by_deadline {
            args.extend([after.deadline_ms.into(), after.created_at_ms.into(), after.id.clone().into()]);
            let n = args.len();
            sql.push_str(&format!(" AND (deadline_ms, created_at_ms, id) > (?{}, ?{}, ?{n})", n - 2, n - 1));
        } else {
            args.extend([after.created_at_ms.into(), after.id.clone().into()]);
            let n = args.len();
            sql.push_str(&format!(" AND (created_at_ms, id) < (?{}, ?{n})", n - 1));
        }
    }
    let order = if by_deadline {
        " ORDER BY deadline_ms ASC, created_at_ms ASC, id ASC"
    } else {
        " ORDER BY created_at_ms DESC, id DESC"
    };
    let page = format!("SELECT body{sql}{order} LIMIT {} OFFSET {}", filter.limit.clamp(1, 10_000), filter.offset);
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

    fn case(&mut self, id: &str) -> StoreResult<Option<Versioned>> {
        versioned(self.conn, "SELECT body, version FROM cases WHERE id = ?1", [id])
    }

    fn case_by_idempotency(&mut self, agent: &str, key: &str) -> StoreResult<Option<Versioned>> {
        versioned(self.conn, "SELECT body, version FROM cases WHERE agent = ?1 AND idempotency_key = ?2", [agent, key])
    }

    fn case_by_review(&mut self, review_id: &str) -> StoreResult<Option<Versioned>> {
        versioned(self.conn, "SELECT body, version FROM cases WHERE review_id = ?1", [review_id])
    }

    fn list_cases(&mut self, filter: &CaseFilter) -> StoreResult<Vec<String>> {
        let mut sql = String::from("SELECT body FROM cases WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        for (column, value) in [
            ("agent", &filter.agent),
            ("audience", &filter.audience),
            ("counterparty", &filter.counterparty),
            ("status", &filter.status),
        ] {
            if let Some(v) = value {
                args.push(v.clone().into());
                sql.push_str(&format!(" AND {column} = ?{}", args.len()));
            }
        }
        if let Some(p) = filter.review_pending {
            args.push(i64::from(p).into());
            sql.push_str(&format!(" AND review_pending = ?{}", args.len()));
            sql.push_str(" ORDER BY deadline_ms ASC, created_at_ms ASC");
        } else {
            sql.push_str(" ORDER BY created_at_ms DESC, id DESC");
        }
        sql.push_str(&format!(" LIMIT {}", filter.limit.clamp(1, 10_000)));
        strings(self.conn, &sql, rusqlite::params_from_iter(args))
    }

    fn list_reviews(&mut self, filter: &ReviewFilter) -> StoreResult<(u64, Vec<String>)> {
        let q = review_queries(filter);
        let total: i64 = self
            .conn
            .prepare_cached(&q.count)
            .and_then(|mut s| s.query_row(rusqlite::params_from_iter(q.count_args.iter()), |r| r.get(0)))
            .map_err(db_err)?;
        let bodies = strings(self.conn, &q.page, rusqlite::params_from_iter(q.page_args))?;
        Ok((u64::try_from(total).unwrap_or(0), bodies))
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
            "SELECT idx, entry, digest FROM ledger WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            params![to_i64(start)?, to_i64(end)?],
        )
    }

    fn chain_entries(&mut self, chain: Option<&str>) -> StoreResult<Vec<DigestedEntry>> {
        entries(self.conn, "SELECT idx, entry, digest FROM ledger WHERE case_id IS ?1 ORDER BY seq", [chain])
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

    /// Calls `f` with every stored entry in index order: `(stored idx, canonical text, stored digest)`.
    /// Stops at the first error `f` returns.
    pub fn scan<E: From<StoreError>>(&self, mut f: impl FnMut(i64, &str, &[u8]) -> Result<(), E>) -> Result<(), E> {
        let mut s = self.conn.prepare("SELECT idx, entry, digest FROM ledger ORDER BY idx").map_err(db_err)?;
        let mut rows = s.query([]).map_err(db_err)?;
        while let Some(row) = rows.next().map_err(db_err)? {
            let idx: i64 = row.get(0).map_err(db_err)?;
            let text = row.get_ref(1).map_err(db_err)?.as_str().map_err(|e| StoreError::storage("ledger text", e))?;
            let digest =
                row.get_ref(2).map_err(db_err)?.as_blob().map_err(|e| StoreError::storage("ledger digest", e))?;
            f(idx, text, digest)?;
        }
        Ok(())
    }

    /// Every entry of one case, in chain order.
    pub fn case_entries(&self, case: &str) -> StoreResult<Vec<DigestedEntry>> {
        SqlSnapshot { conn: &self.conn }.chain_entries(Some(case))
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
