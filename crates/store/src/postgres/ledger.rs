//! Offline, read-only access to a PostgreSQL ledger for `ledger verify`, `ledger export`
//! and `ledger evidence`: one `REPEATABLE READ READ ONLY` transaction held for the
//! reader's life, so that the checkpoint and the entries scanned are of one state even
//! while nodes keep appending. It runs its own small runtime: its methods block.

use agentsigna_core::store::{StoreError, StoreResult};
use agentsigna_verify::ledger::DigestedEntry;
use agentsigna_verify::merkle::{Hash, NodeSource};
use deadpool_postgres::Object;
use tokio::runtime::Runtime;

use super::read::{chain_entries, checkpoint, head, node, query, stored_entry, ENTRY_COLUMNS};
use super::{pg_config, pg_err, pool, pool_err, PgOptions};
use crate::ledger::{AuditError, LedgerSource, ScanFn};

/// Rows fetched per page while scanning.
const PAGE: i64 = 5000;

/// A read-only view of a PostgreSQL ledger. Must not be used from within an async runtime.
pub struct PgLedgerReader {
    rt: Runtime,
    client: Object,
}

impl std::fmt::Debug for PgLedgerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedgerReader").finish_non_exhaustive()
    }
}

impl PgLedgerReader {
    /// Connects to the database at `url` and opens the snapshot.
    pub fn open(url: &str, options: &PgOptions) -> StoreResult<PgLedgerReader> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::storage("cannot start a runtime", e))?;
        let config = pg_config(url, options)?;
        let client = rt.block_on(async {
            let pool = pool(config, 1, options)?;
            let client = pool.get().await.map_err(pool_err)?;
            client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(pg_err)?;
            // Fails plainly on a database that was never migrated.
            head(&client, false).await?;
            Ok::<_, StoreError>(client)
        })?;
        Ok(PgLedgerReader { rt, client })
    }

    /// Bytes the store's tables take in the current schema, with their indexes and TOAST
    /// (`pg_total_relation_size`); not the WAL, not the database's own catalogs.
    pub fn table_bytes(&self) -> StoreResult<u64> {
        let rows = self.rt.block_on(query(
            &self.client,
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
             WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace",
            &[],
        ))?;
        let bytes: i64 = rows.first().map_or(0, |r| r.get(0));
        Ok(u64::try_from(bytes).unwrap_or(0))
    }
}

impl NodeSource for PgLedgerReader {
    fn node(&self, level: u32, index: u64) -> Result<Hash, agentsigna_verify::Error> {
        self.rt
            .block_on(node(&self.client, level, index))
            .map_err(|e| agentsigna_verify::Error::BadProof(e.to_string()))
    }
}

impl LedgerSource for PgLedgerReader {
    fn size(&self) -> StoreResult<u64> {
        Ok(self.rt.block_on(head(&self.client, false))?.0)
    }

    fn checkpoint(&self) -> StoreResult<Option<String>> {
        self.rt.block_on(checkpoint(&self.client))
    }

    fn scan(&self, f: &mut ScanFn<'_>) -> Result<(), AuditError> {
        let sql = format!(
            "SELECT c.id, {ENTRY_COLUMNS} FROM ledger l LEFT JOIN cases c ON c.num = l.chain
             WHERE l.idx >= $1 ORDER BY l.idx LIMIT $2"
        );
        let mut from = 0i64;
        loop {
            let rows = self.rt.block_on(query(&self.client, &sql, &[&from, &PAGE]))?;
            let n = rows.len();
            for row in &rows {
                from = stored_entry(row, |e| f(e).map(|()| e.index + 1))?;
            }
            if i64::try_from(n).unwrap_or(0) < PAGE {
                return Ok(());
            }
        }
    }

    fn nodes(&self) -> &dyn NodeSource {
        self
    }

    fn case_entries(&self, case: &str) -> StoreResult<Vec<DigestedEntry>> {
        self.rt.block_on(chain_entries(&self.client, Some(case)))
    }
}
