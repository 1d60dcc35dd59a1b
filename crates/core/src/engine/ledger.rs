//! The ledger as principals read it: checkpoint, entries, proofs, case evidence.

use std::cell::RefCell;

use agentsigna_verify::evidence::Evidence;
use agentsigna_verify::ledger::DigestedEntry;
use agentsigna_verify::merkle::{self, Hash, NodeSource};
use agentsigna_verify::note::{self, Checkpoint};

use super::data::read_case;
use super::Engine;
use crate::access::{self, CaseOp, Op};
use crate::model::Principal;
use crate::store::Snapshot;
use crate::{Error, Result};

/// Largest page of ledger entries.
pub const MAX_PAGE: u64 = 1000;

/// Merkle nodes read through a snapshot.
pub struct SnapshotNodes<'a>(pub RefCell<&'a mut dyn Snapshot>);

impl NodeSource for SnapshotNodes<'_> {
    fn node(&self, level: u32, index: u64) -> Result<Hash, agentsigna_verify::Error> {
        self.0.borrow_mut().merkle_node(level, index).map_err(|e| agentsigna_verify::Error::BadProof(e.to_string()))
    }
}

/// Builds one case's evidence against the checkpoint `note` (already verified as `cp`):
/// the case's entries inside that tree, each with its inclusion proof.
pub fn build_evidence(
    case: &str,
    cp: &Checkpoint,
    note: String,
    key: String,
    entries: Vec<DigestedEntry>,
    nodes: &dyn NodeSource,
) -> Result<Evidence> {
    let entries = entries.into_iter().filter(|e| e.index < cp.size).collect();
    Evidence::build(case, cp, note, key, entries, nodes)
        .map_err(|e| Error::data_from("the stored ledger cannot produce the case evidence", e))
}

impl Engine {
    /// Number of entries in the ledger.
    pub async fn ledger_size(&self) -> Result<u64> {
        self.read(|_, snap| Ok(snap.ledger_size()?)).await
    }

    /// The latest stored checkpoint, `None` for a fresh ledger.
    pub async fn stored_checkpoint(&self) -> Result<Option<String>> {
        self.read(|_, snap| Ok(snap.checkpoint()?)).await
    }

    /// The latest checkpoint, or a signed empty one for a fresh ledger.
    pub async fn latest_checkpoint(&self) -> Result<String> {
        match self.stored_checkpoint().await? {
            Some(c) => Ok(c),
            None => {
                let keys = self.keys();
                let cp = Checkpoint {
                    origin: keys.ledger.name().to_owned(),
                    size: 0,
                    root: merkle::empty_root(),
                    extensions: vec![],
                };
                note::sign_checkpoint(&cp, &keys.ledger).map_err(|e| Error::signing("checkpoint", e))
            }
        }
    }

    /// Entries `[start, end)` (`end` defaults to a full page).
    pub async fn ledger_entries(&self, by: &Principal, start: u64, end: Option<u64>) -> Result<Vec<DigestedEntry>> {
        access::check(by, Op::ReadLedger)?;
        let end = end.unwrap_or(start.saturating_add(MAX_PAGE));
        if start > end {
            return Err(Error::invalid("start", format!("start ({start}) is after end ({end})")));
        }
        if end - start > MAX_PAGE {
            return Err(Error::invalid("end", format!("at most {MAX_PAGE} entries per page")));
        }
        self.read(move |_, snap| {
            let size = snap.ledger_size()?;
            if start > size {
                return Err(Error::invalid("start", format!("start ({start}) is beyond the ledger size ({size})")));
            }
            Ok(snap.ledger_entries(start, end.min(size))?)
        })
        .await
    }

    /// The RFC 9162 inclusion proof of entry `index` in the tree of `size`.
    pub async fn inclusion_proof(&self, by: &Principal, index: u64, size: u64) -> Result<Vec<Hash>> {
        access::check(by, Op::ReadLedger)?;
        self.read(move |_, snap| {
            let tree = snap.ledger_size()?;
            if size == 0 || size > tree {
                return Err(Error::invalid(
                    "size",
                    format!("size must be between 1 and the tree size {tree} (got {size})"),
                ));
            }
            if index >= size {
                return Err(Error::invalid("index", format!("index must be below size {size} (got {index})")));
            }
            let nodes = SnapshotNodes(RefCell::new(snap));
            merkle::inclusion_proof(&nodes, index, size)
                .map_err(|e| Error::data_from("the stored ledger cannot produce the proof", e))
        })
        .await
    }

    /// The RFC 9162 consistency proof between the trees of `from` and `to` entries.
    pub async fn consistency_proof(&self, by: &Principal, from: u64, to: u64) -> Result<Vec<Hash>> {
        access::check(by, Op::ReadLedger)?;
        self.read(move |_, snap| {
            let tree = snap.ledger_size()?;
            if from == 0 {
                return Err(Error::invalid("from", "from must be at least 1"));
            }
            if from > to {
                return Err(Error::invalid("from", format!("from ({from}) is after to ({to})")));
            }
            if to > tree {
                return Err(Error::invalid("to", format!("to ({to}) is beyond the tree size {tree}")));
            }
            let nodes = SnapshotNodes(RefCell::new(snap));
            merkle::consistency_proof(&nodes, from, to)
                .map_err(|e| Error::data_from("the stored ledger cannot produce the proof", e))
        })
        .await
    }

    /// One case's entries with inclusion proofs against the latest checkpoint, for
    /// whoever may read the case.
    pub async fn case_evidence(&self, by: &Principal, id: &str) -> Result<Evidence> {
        let keys = self.keys();
        let key = keys.ledger.verifier_key();
        let verifier = keys.ledger.verifier();
        let (by, id) = (by.clone(), id.to_owned());
        self.read(move |_, snap| {
            let case = read_case(snap, &id)?;
            access::case(&by, &case, CaseOp::Read)?;
            let note = snap.checkpoint()?.ok_or_else(|| Error::data("no checkpoint"))?;
            let cp = note::verify_checkpoint(&note, &verifier)
                .map_err(|e| Error::data_from("the stored checkpoint does not verify", e))?;
            let entries = snap.chain_entries(Some(&id))?;
            let nodes = SnapshotNodes(RefCell::new(snap));
            build_evidence(&id, &cp, note, key, entries, &nodes)
        })
        .await
    }
}
