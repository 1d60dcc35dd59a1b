//! One read-only view of a stored ledger for both backends ([`LedgerSource`]), and the one
//! ledger verification built on it ([`audit`]): `ledger verify`, `ledger export` and
//! `ledger evidence` run the same code on SQLite and on PostgreSQL.

use agentsigna_core::store::{StoreError, StoreResult};
use agentsigna_verify::evidence::{BundleReport, LedgerVerifier};
use agentsigna_verify::ledger::{hex_lower, DigestedEntry, Entry};
use agentsigna_verify::merkle::NodeSource;
use agentsigna_verify::note::{Checkpoint, NoteVerifier};

/// What [`LedgerSource::scan`] calls with each stored entry: `(stored idx, canonical text,
/// stored digest)`.
pub type ScanFn<'a> = dyn FnMut(i64, &str, &[u8]) -> Result<(), AuditError> + 'a;

/// Read-only access to a stored ledger: one consistent view (the checkpoint and the
/// entries scanned belong to the same state).
pub trait LedgerSource: NodeSource {
    /// Number of entries.
    fn size(&self) -> StoreResult<u64>;
    /// The latest stored checkpoint.
    fn checkpoint(&self) -> StoreResult<Option<String>>;
    /// Calls `f` with every stored entry in index order: `(stored idx, canonical text,
    /// stored digest)`; stops at the first error `f` returns.
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
    /// A stored entry is not an entry, or not stored in its canonical form.
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
    src.scan(&mut |idx, text, digest| {
        let bad = |reason: String| AuditError::BadText { index: idx, reason };
        let entry: Entry = serde_json::from_str(text).map_err(|e| bad(format!("not an entry: {e}")))?;
        // The stored text must be exactly the canonical form that was hashed.
        if entry.canonical_json().map_err(|e| bad(e.to_string()))? != text {
            return Err(bad("stored text is not canonical".into()));
        }
        let index = u64::try_from(idx).map_err(|_| bad("negative index".into()))?;
        verifier.push(index, &entry, Some(&hex_lower(digest)))?;
        progress(verifier.size());
        Ok(())
    })?;
    Ok(verifier.finish_note(&note, key)?)
}

/// Parses a stored entry.
pub(crate) fn parse_entry(index: i64, text: &str, digest: &[u8]) -> StoreResult<DigestedEntry> {
    let entry: Entry =
        serde_json::from_str(text).map_err(|e| StoreError::corrupt(format!("corrupt ledger entry {index}: {e}")))?;
    let index = u64::try_from(index).map_err(|_| StoreError::corrupt("negative ledger index"))?;
    Ok(DigestedEntry { index, entry, digest: hex_lower(digest) })
}

/// Every entry with its stored position and digest, up to (not including) `end`.
pub fn entries(src: &dyn LedgerSource, end: u64) -> StoreResult<Vec<DigestedEntry>> {
    let mut out = Vec::new();
    let scanned = src.scan(&mut |idx, text, digest| {
        if u64::try_from(idx).unwrap_or(u64::MAX) < end {
            out.push(parse_entry(idx, text, digest)?);
        }
        Ok(())
    });
    match scanned {
        Ok(()) => Ok(out),
        Err(AuditError::Store(e)) => Err(e),
        Err(e) => Err(StoreError::corrupt(e.to_string())),
    }
}
