//! One read-only view of a stored ledger for both backends ([`LedgerSource`]), and the one
//! ledger verification built on it ([`audit`]): `ledger verify`, `ledger export` and
//! `ledger evidence` run the same code on SQLite and on PostgreSQL.

use agentsigna_core::store::{StoreError, StoreResult};
use agentsigna_verify::evidence::{BundleReport, LedgerVerifier};
use agentsigna_verify::ledger::{canonical_value, hex_lower, DigestedEntry};
use agentsigna_verify::merkle::NodeSource;
use agentsigna_verify::note::{Checkpoint, NoteVerifier};

use crate::layout::StoredEntry;

/// What [`LedgerSource::scan`] calls with each stored entry.
pub type ScanFn<'a> = dyn FnMut(&StoredEntry<'_>) -> Result<(), AuditError> + 'a;

/// Read-only access to a stored ledger: one consistent view (the checkpoint and the
/// entries scanned belong to the same state).
pub trait LedgerSource: NodeSource {
    /// Number of entries.
    fn size(&self) -> StoreResult<u64>;
    /// The latest stored checkpoint.
    fn checkpoint(&self) -> StoreResult<Option<String>>;
    /// Calls `f` with every stored entry in index order; stops at the first error `f`
    /// returns.
    fn scan(&self, f: &mut ScanFn<'_>) -> Result<(), AuditError>;
    /// Every entry of one case, in chain order.
    fn case_entries(&self, case: &str) -> StoreResult<Vec<DigestedEntry>>;
    /// The stored Merkle nodes (for proofs).
    fn nodes(&self) -> &dyn NodeSource;
}

/// Why a stored ledger failed its audit.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger has no signed checkpoint.
    #[error("the ledger has no checkpoint")]
    NoCheckpoint,
    /// A stored entry is not an entry, or its `data` is not stored in its canonical form.
    #[error("bad entry at index {index}: {reason}")]
    BadText { index: i64, reason: String },
    /// A digest, chain, Merkle root or checkpoint does not verify (the first failure).
    #[error(transparent)]
    Ledger(#[from] agentsigna_verify::Error),
}

/// Recomputes every digest, every chain and the Merkle root of the stored ledger, and
/// checks them against its checkpoint signed by `key`; each of `saved` (checkpoints kept
/// earlier, with a label for errors) must describe a prefix of the ledger. `progress` is
/// called with the number of entries checked so far.
pub fn audit(
    src: &dyn LedgerSource,
    key: &NoteVerifier,
    saved: &[(Checkpoint, String)],
    mut progress: impl FnMut(u64),
) -> Result<BundleReport, AuditError> {
    let note = src.checkpoint()?.ok_or(AuditError::NoCheckpoint)?;
    let mut verifier = LedgerVerifier::new();
    for (cp, label) in saved {
        verifier.expect_prefix(cp, label)?;
    }
    src.scan(&mut |row| {
        let bad = |reason: String| AuditError::BadText { index: row.index, reason };
        let entry = row.entry().map_err(|e| bad(e.to_string()))?;
        // The stored data must be exactly the canonical form that was hashed.
        if canonical_value(&entry.data).map_err(|e| bad(e.to_string()))?
            != row.data_text().map_err(|e| bad(e.to_string()))?
        {
            return Err(bad("stored data is not canonical".into()));
        }
        let index = u64::try_from(row.index).map_err(|_| bad("negative index".into()))?;
        verifier.push(index, &entry, Some(&hex_lower(row.digest)))?;
        progress(verifier.size());
        Ok(())
    })?;
    Ok(verifier.finish_note(&note, key)?)
}

/// Every entry with its stored position and digest, up to (not including) `end`.
pub fn entries(src: &dyn LedgerSource, end: u64) -> StoreResult<Vec<DigestedEntry>> {
    let mut out = Vec::new();
    let scanned = src.scan(&mut |row| {
        if u64::try_from(row.index).unwrap_or(u64::MAX) < end {
            out.push(row.digested()?);
        }
        Ok(())
    });
    match scanned {
        Ok(()) => Ok(out),
        Err(AuditError::Store(e)) => Err(e),
        Err(e) => Err(StoreError::corrupt(e.to_string())),
    }
}
