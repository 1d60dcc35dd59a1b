//! A decision in the making: reads from one snapshot, records what it relied on, and
//! buffers what it writes into one [`WriteSet`].
//!
//! Every operation of the engine is a function of a [`Draft`]. It runs off the store's
//! serial step (on the caller's task), so all of its CPU work — policy, trust, JSON,
//! canonical form, digests, passport signatures — is done before sequencing. Reads of
//! mutable state add a [`Precondition`]; ledger appends are chained on the snapshot's
//! chain heads and sealed (canonicalized and hashed) here.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use agentsigna_verify::clock::rfc3339_ms;
use agentsigna_verify::ledger::{hex_lower, Entry};

use super::record_cache::{cacheable, Cached, RecordCache};
use super::stored;
use crate::model::Case;
use crate::store::{ChainHead, Precondition, RecordKind, SealedEntry, Snapshot, StoredCase, Write, WriteSet};
use crate::{Error, Result};

/// Reads of one snapshot and the write set they lead to.
pub(crate) struct Draft<'a> {
    snap: &'a mut dyn Snapshot,
    writes: WriteSet,
    /// Records read or written so far (reads are recorded once; later reads see writes).
    records: HashMap<(RecordKind, String), Option<String>>,
    /// Chain heads read or moved so far.
    heads: HashMap<Option<String>, Option<ChainHead>>,
    /// Cases loaded (with their version precondition recorded) or created, and whether
    /// their passport was issued before this draft (then its token is stored already).
    cases_seen: HashMap<String, bool>,
    /// Cases whose state this draft changes (to wake whoever waits on them).
    changed: Vec<String>,
    /// Whether a webhook notification was queued.
    outbox: bool,
    /// The node's record cache and its epoch before this draft's snapshot was opened.
    cache: Option<(&'a RecordCache, u64)>,
    /// Records served from the cache (to drop if the write set is refused).
    from_cache: Vec<(RecordKind, String)>,
    /// Whether an idempotency key is taken to be free without a read (see
    /// [`Draft::assume_keys_free`]), and whether this draft did so.
    keys_free: bool,
    assumed_key: bool,
}

/// What a draft decided: its write set and whom to wake.
pub(crate) struct Decided {
    pub writes: WriteSet,
    pub changed: Vec<String>,
    pub outbox: bool,
    /// Records served from the node's cache.
    pub from_cache: Vec<(RecordKind, String)>,
    /// Whether the decision rests on assumptions (see [`Draft::rests_on_assumptions`]).
    pub assumed: bool,
}

impl<'a> Draft<'a> {
    /// A draft reading `snap`, and `cache` (with the epoch taken before the snapshot) when given.
    pub(crate) fn new(snap: &'a mut dyn Snapshot, cache: Option<(&'a RecordCache, u64)>) -> Draft<'a> {
        Draft {
            snap,
            writes: WriteSet::default(),
            records: HashMap::new(),
            heads: HashMap::new(),
            cases_seen: HashMap::new(),
            changed: Vec::new(),
            outbox: false,
            cache,
            from_cache: Vec::new(),
            keys_free: false,
            assumed_key: false,
        }
    }

    /// With `assume`, takes idempotency keys to be free without reading them, as an insert
    /// that may fail on a unique key does: the key's precondition is recorded all the same,
    /// so a key that was taken fails the write set with a conflict, and the operation is
    /// decided again with the key read (see [`Draft::rests_on_assumptions`]). A new
    /// request, the common case, saves the lookup; a retry pays one decision it discards.
    pub(crate) fn assume_keys_free(mut self, assume: bool) -> Self {
        self.keys_free = assume;
        self
    }

    pub(crate) fn finish(self) -> Decided {
        let assumed = self.rests_on_assumptions();
        Decided {
            writes: self.writes,
            changed: self.changed,
            outbox: self.outbox,
            from_cache: self.from_cache,
            assumed,
        }
    }

    /// Whether the draft so far rests on something no read of its snapshot confirmed (a
    /// cached record, an idempotency key taken to be free): an answer that only a commit
    /// would validate, so an error or an answer without writes is decided again without.
    pub(crate) fn rests_on_assumptions(&self) -> bool {
        !self.from_cache.is_empty() || self.assumed_key
    }

    /// A record from the node's cache, if it is a cacheable kind and cached.
    fn cached(&self, kind: RecordKind, id: &str) -> Option<Cached> {
        self.cache.filter(|_| cacheable(kind)).and_then(|(c, _)| c.get(kind, id))
    }

    /// Reads a record from the snapshot, caching it when found and cacheable.
    fn read_record(&mut self, kind: RecordKind, id: &str) -> Result<Option<crate::store::Versioned>> {
        let found = self.snap.record(kind, id)?;
        if let (Some((cache, epoch)), Some(v)) = (self.cache, &found) {
            if cacheable(kind) {
                cache.fill(epoch, kind, id, Cached { version: v.version, body: v.body.clone() });
            }
        }
        Ok(found)
    }

    /// The snapshot, for reads that need no precondition (ledger, proofs, lists).
    pub(crate) fn snapshot(&mut self) -> &mut dyn Snapshot {
        self.snap
    }

    /// A record, relying on it staying as read.
    pub(crate) fn record(&mut self, kind: RecordKind, id: &str) -> Result<Option<String>> {
        let key = (kind, id.to_owned());
        if let Some(v) = self.records.get(&key) {
            return Ok(v.clone());
        }
        if let Some(c) = self.cached(kind, id) {
            self.writes.preconditions.push(Precondition::Record { kind, id: id.to_owned(), version: Some(c.version) });
            self.from_cache.push(key.clone());
            self.records.insert(key, Some(c.body.clone()));
            return Ok(Some(c.body));
        }
        let found = self.read_record(kind, id)?;
        self.writes.preconditions.push(Precondition::Record {
            kind,
            id: id.to_owned(),
            version: found.as_ref().map(|v| v.version),
        });
        let body = found.map(|v| v.body);
        self.records.insert(key, body.clone());
        Ok(body)
    }

    /// A record whose existence and content the decision does not depend on changing
    /// (immutable policy versions, action types and target systems, which are never
    /// removed): no precondition.
    pub(crate) fn stable_record(&mut self, kind: RecordKind, id: &str) -> Result<Option<String>> {
        if let Some(v) = self.records.get(&(kind, id.to_owned())) {
            return Ok(v.clone());
        }
        // Such a record, once found, stays: a cached one needs no validation.
        if let Some(c) = self.cached(kind, id) {
            return Ok(Some(c.body));
        }
        Ok(self.read_record(kind, id)?.map(|v| v.body))
    }

    /// A typed record, relying on it staying as read.
    pub(crate) fn get<T: DeserializeOwned>(&mut self, kind: RecordKind, id: &str) -> Result<Option<T>> {
        match self.record(kind, id)? {
            Some(body) => Ok(Some(serde_json::from_str(&body)?)),
            None => Ok(None),
        }
    }

    /// Stores a record.
    pub(crate) fn put_raw(&mut self, kind: RecordKind, id: &str, body: String) {
        if kind == RecordKind::Outbox {
            self.outbox = true;
        }
        self.records.insert((kind, id.to_owned()), Some(body.clone()));
        self.writes.writes.push(Write::PutRecord { kind, id: id.to_owned(), body });
    }

    /// Stores a typed record.
    pub(crate) fn put<T: Serialize>(&mut self, kind: RecordKind, id: &str, value: &T) -> Result<()> {
        let body = serde_json::to_string(value).map_err(|e| Error::data_from("cannot encode a record", e))?;
        self.put_raw(kind, id, body);
        Ok(())
    }

    /// Deletes a record.
    pub(crate) fn delete(&mut self, kind: RecordKind, id: &str) {
        self.records.insert((kind, id.to_owned()), None);
        self.writes.writes.push(Write::DeleteRecord { kind, id: id.to_owned() });
    }

    /// All records of a kind as of the snapshot (no precondition: callers that depend on
    /// one record's absence read it with [`Draft::record`]).
    pub(crate) fn list<T: DeserializeOwned>(&mut self, kind: RecordKind) -> Result<Vec<T>> {
        self.snap.records(kind)?.iter().map(|b| Ok(serde_json::from_str(b)?)).collect()
    }

    /// Stores a credential hash.
    pub(crate) fn put_credential(&mut self, hash: String, kind: &str, id: &str) {
        self.writes.writes.push(Write::PutCredential { hash, kind: kind.to_owned(), id: id.to_owned() });
    }

    fn seen_case(&mut self, stored: StoredCase) -> Result<Case> {
        let id = stored.row.id.clone();
        let version = stored.version;
        let case = stored::case(stored)?;
        if !self.cases_seen.contains_key(&id) {
            self.cases_seen.insert(id.clone(), case.passport.is_some());
            self.writes.preconditions.push(Precondition::Case { id, version: Some(version) });
        }
        Ok(case)
    }

    /// Loads a case, relying on it staying as read.
    pub(crate) fn load_case(&mut self, id: &str) -> Result<Case> {
        match self.snap.case(id)? {
            Some(stored) => self.seen_case(stored),
            None => Err(Error::NotFound(format!("case {id} does not exist"))),
        }
    }

    /// The case of a review, relying on it staying as read.
    pub(crate) fn case_by_review(&mut self, review_id: &str) -> Result<Option<Case>> {
        match self.snap.case_by_review(review_id)? {
            Some(stored) => Ok(Some(self.seen_case(stored)?)),
            None => Ok(None),
        }
    }

    /// The case an agent created with this idempotency key; when there is none, relies on
    /// the key staying free. With [`Draft::assume_keys_free`], `None` without a read.
    pub(crate) fn case_by_idempotency(&mut self, agent: &str, key: &str) -> Result<Option<Case>> {
        let found = if self.keys_free {
            self.assumed_key = true;
            None
        } else {
            self.snap.case_by_idempotency(agent, key)?
        };
        match found {
            Some(stored) => Ok(Some(stored::case(stored)?)),
            None => {
                self.writes
                    .preconditions
                    .push(Precondition::IdempotencyFree { agent: agent.to_owned(), key: key.to_owned() });
                Ok(None)
            }
        }
    }

    /// A new case: its id is fresh, so its chain starts empty and its row is absent.
    pub(crate) fn new_case(&mut self, id: &str) {
        self.cases_seen.insert(id.to_owned(), false);
        self.writes.preconditions.push(Precondition::Case { id: id.to_owned(), version: None });
        self.heads.insert(Some(id.to_owned()), None);
    }

    /// Stores a case (its passport token only when this draft issued it).
    pub(crate) fn save_case(&mut self, case: &Case) -> Result<()> {
        let stored_token = self.cases_seen.get(&case.id).copied().unwrap_or(false);
        self.writes.writes.push(Write::PutCase(stored::row(case, !stored_token)?));
        if case.passport.is_some() {
            self.cases_seen.insert(case.id.clone(), true);
        }
        if !self.changed.contains(&case.id) {
            self.changed.push(case.id.clone());
        }
        Ok(())
    }

    /// Appends an event to a chain (a case's, or the organization chain for `None`): chained
    /// on the head as read (a precondition) or as moved by this draft, then sealed.
    pub(crate) fn append(
        &mut self,
        chain: Option<&str>,
        kind: &str,
        at_ms: i64,
        actor: &str,
        data: serde_json::Value,
    ) -> Result<ChainHead> {
        let key = chain.map(str::to_owned);
        let head = match self.heads.get(&key) {
            Some(h) => *h,
            None => {
                let h = self.snap.chain_head(chain)?;
                self.writes.preconditions.push(Precondition::ChainHead { chain: key.clone(), head: h });
                h
            }
        };
        let entry = Entry {
            case: key.clone(),
            seq: head.map_or(0, |h| h.seq + 1),
            prev: head.map(|h| hex_lower(&h.digest)),
            kind: kind.to_owned(),
            at: rfc3339_ms(at_ms),
            actor: actor.to_owned(),
            data,
        };
        let sealed = SealedEntry::seal(entry).map_err(|e| Error::data_from("unhashable ledger entry", e))?;
        let new_head = ChainHead { seq: sealed.entry.seq, digest: sealed.digest };
        self.writes.entries.push(sealed);
        self.heads.insert(key, Some(new_head));
        Ok(new_head)
    }
}
