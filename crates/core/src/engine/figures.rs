//! Figures an operator scrapes (`GET /metrics`), read from one snapshot: the review
//! queue, the ledger's size and the time of its last entry, the webhook outbox.

use super::Engine;
use crate::model::ReviewStatus;
use crate::store::{CaseFilter, RecordKind};
use crate::Result;

/// The state of the loop at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Reviews waiting for a decision.
    pub reviews_pending: u64,
    /// When the oldest pending review opened (ms since the epoch).
    pub oldest_review_opened_ms: Option<i64>,
    /// Ledger entries (the size of the latest checkpoint's tree).
    pub ledger_entries: u64,
    /// The `at` of the last ledger entry: the latest checkpoint was signed in the batch
    /// that appended it (ms since the epoch).
    pub last_entry_ms: Option<i64>,
    /// Webhook notifications not delivered yet (or given up and kept as evidence).
    pub outbox_items: u64,
}

impl Engine {
    /// The figures of [`Figures`], from one snapshot.
    pub async fn figures(&self) -> Result<Figures> {
        self.read(|_, snap| {
            let mut f = Figures::default();
            let filter = CaseFilter { review_pending: Some(true), limit: u32::MAX, ..Default::default() };
            for case in super::data::cases(snap.list_cases(&filter)?)? {
                let Some(review) = case.review.as_ref().filter(|r| r.status == ReviewStatus::Pending) else {
                    continue;
                };
                f.reviews_pending += 1;
                let oldest = f.oldest_review_opened_ms.get_or_insert(review.opened_at_ms);
                *oldest = (*oldest).min(review.opened_at_ms);
            }
            f.ledger_entries = snap.ledger_size()?;
            if let Some(last) = f.ledger_entries.checked_sub(1) {
                f.last_entry_ms = snap
                    .ledger_entries(last, f.ledger_entries)?
                    .first()
                    .and_then(|e| agentsigna_verify::clock::parse_rfc3339_ms(&e.entry.at));
            }
            f.outbox_items = u64::try_from(snap.records(RecordKind::Outbox)?.len()).unwrap_or(u64::MAX);
            Ok(f)
        })
        .await
    }
}
