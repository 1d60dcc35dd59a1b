//! A node's cache of the records decisions read (agents, counterparties, trust standings,
//! settings), so that a decision does not walk the store's B-trees for each of them.
//!
//! The cache never decides anything on its own. A record served from it is relied on with
//! the version it was cached at, as a [`crate::store::Precondition`] like any other read,
//! so the serial step refuses a write set built on a stale entry; the engine then drops
//! the entries the draft used and decides again from the store. An operation that ends
//! without a validated commit (an error, or nothing to write) and used the cache is
//! decided again without it, so no answer rests on an unvalidated cached read.
//!
//! - Only records found are cached: an absence is always read from the store (a record
//!   created on another node is seen at once).
//! - A commit of this node drops the records it wrote; entries read from a snapshot are
//!   filled in only when nothing was dropped since that snapshot may have been taken
//!   (the epoch), so a fill never brings back what a commit replaced.
//! - Records written by other nodes or processes make entries stale until a decision
//!   relying on one is refused, which drops it.

use std::collections::HashMap;

use crate::store::RecordKind;

/// Most entries held; the cache is emptied when it would grow beyond.
const MAX_ENTRIES: usize = 100_000;

/// A cached record: its body and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cached {
    pub version: u64,
    pub body: String,
}

#[derive(Default)]
struct Inner {
    /// Moves on at every drop.
    epoch: u64,
    map: HashMap<(RecordKind, String), Cached>,
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct RecordCache {
    inner: std::sync::RwLock<Inner>,
}

impl RecordCache {
    /// The current epoch: taken before a snapshot is opened, passed back to [`Self::fill`].
    pub(crate) fn epoch(&self) -> u64 {
        crate::sync::read(&self.inner).epoch
    }

    pub(crate) fn get(&self, kind: RecordKind, id: &str) -> Option<Cached> {
        // (A tuple key cannot be borrowed as (kind, &str): the lookup builds the key.)
        crate::sync::read(&self.inner).map.get(&(kind, id.to_owned())).cloned()
    }

    /// Caches a record read from a snapshot taken after `epoch` was read, unless a commit
    /// dropped entries since.
    pub(crate) fn fill(&self, epoch: u64, kind: RecordKind, id: &str, value: Cached) {
        let mut inner = crate::sync::write(&self.inner);
        if inner.epoch != epoch {
            return;
        }
        if inner.map.len() >= MAX_ENTRIES {
            inner.map.clear();
        }
        inner.map.insert((kind, id.to_owned()), value);
    }

    /// Drops records (written by a commit, or found stale).
    pub(crate) fn drop_all<'a>(&self, keys: impl IntoIterator<Item = (RecordKind, &'a str)>) {
        let mut keys = keys.into_iter().peekable();
        if keys.peek().is_none() {
            return;
        }
        let mut inner = crate::sync::write(&self.inner);
        inner.epoch += 1;
        for (kind, id) in keys {
            inner.map.remove(&(kind, id.to_owned()));
        }
    }
}

/// The kinds a decision reads on every request and that change rarely enough to cache.
pub(crate) fn cacheable(kind: RecordKind) -> bool {
    matches!(
        kind,
        RecordKind::Agent
            | RecordKind::Counterparty
            | RecordKind::AgentTrust
            | RecordKind::CounterpartyTrust
            | RecordKind::Setting
            | RecordKind::Action
            | RecordKind::System
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: u64) -> Cached {
        Cached { version, body: format!("v{version}") }
    }

    #[test]
    fn a_fill_from_before_a_drop_is_refused() {
        let c = RecordCache::default();
        let before = c.epoch();
        c.fill(before, RecordKind::Agent, "a", v(1));
        assert_eq!(c.get(RecordKind::Agent, "a"), Some(v(1)));
        // A reader took its epoch, then a commit replaced the record and dropped it.
        let reader = c.epoch();
        c.drop_all([(RecordKind::Agent, "a")]);
        assert_eq!(c.get(RecordKind::Agent, "a"), None);
        c.fill(reader, RecordKind::Agent, "a", v(1));
        assert_eq!(c.get(RecordKind::Agent, "a"), None, "the old version does not come back");
        c.fill(c.epoch(), RecordKind::Agent, "a", v(2));
        assert_eq!(c.get(RecordKind::Agent, "a"), Some(v(2)));
        // Kinds are apart; dropping nothing moves nothing.
        assert_eq!(c.get(RecordKind::Counterparty, "a"), None);
        let e = c.epoch();
        c.drop_all(std::iter::empty());
        assert_eq!(c.epoch(), e);
    }
}
