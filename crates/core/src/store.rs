//! The storage boundary: decide outside, sequence inside.
//!
//! An operation reads one consistent [`Snapshot`] and decides on its own thread (policy,
//! trust, JSON, canonical form, digests, the passport signature). What it decided is one
//! [`WriteSet`]: the state changes, the ledger entries already hashed and chained
//! ([`SealedEntry`]), and the [`Precondition`]s the decision relied on. The backend's
//! serial step ([`Store::commit`]) only checks the preconditions, assigns ledger positions,
//! writes, extends the Merkle tree, signs one checkpoint per batch and commits. A stale
//! precondition fails the write set alone with [`StoreError::Conflict`]; the engine then
//! decides again against a new snapshot.
//!
//! Architecture invariant: a write set commits whole or not at all, and [`Store::commit`]
//! resolves only once the transaction holding it (with its checkpoint) is durable.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use agentsigna_verify::ledger::{DigestedEntry, Entry};
use agentsigna_verify::merkle::Hash;

/// Tables of simple JSON records keyed by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Agent,
    Approver,
    System,
    Counterparty,
    Action,
    Policy,
    AgentTrust,
    CounterpartyTrust,
    Setting,
    /// A live request on which the shadow policy disagreed with the active one.
    ShadowDivergence,
    /// A notification waiting for delivery to the webhooks, written in the same
    /// transaction as the event it announces (the durable outbox).
    Outbox,
    /// An approver web session, keyed by the SHA-256 of its cookie's token.
    Session,
}

impl RecordKind {
    /// Stable storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Agent => "agent",
            RecordKind::Approver => "approver",
            RecordKind::System => "system",
            RecordKind::Counterparty => "counterparty",
            RecordKind::Action => "action",
            RecordKind::Policy => "policy",
            RecordKind::AgentTrust => "agent_trust",
            RecordKind::CounterpartyTrust => "counterparty_trust",
            RecordKind::Setting => "setting",
            RecordKind::ShadowDivergence => "shadow_divergence",
            RecordKind::Outbox => "outbox",
            RecordKind::Session => "session",
        }
    }
}

/// A stored case row: its indexed columns, its state and, when this write issued it, its
/// passport token. The row does not repeat what the case's ledger entries hold: its
/// request and its decision are its first [`OPENING_ENTRIES`] entries
/// (`request.submitted`, `decision.made`), returned with it by every read ([`StoredCase`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRow {
    pub id: String,
    pub agent: String,
    pub audience: String,
    pub status: String,
    pub idempotency_key: Option<String>,
    pub review_id: Option<String>,
    /// The review's status (`pending`, `approved`, `rejected`, `expired`); `None` without one.
    pub review_status: Option<String>,
    pub review_pending: bool,
    /// The required roles a pending review still misses (empty once closed): what the
    /// queue's role filter looks up.
    pub roles_missing: Vec<String>,
    /// Review deadline for pending reviews (for ordering the queue).
    pub deadline_ms: Option<i64>,
    /// When the case next needs attention (see `Case::due_ms`).
    pub due_ms: Option<i64>,
    pub created_at_ms: i64,
    /// The counterparty's id, as the verdict resolved it.
    pub counterparty: String,
    /// The action type requested.
    pub action: String,
    /// What changes over the case's life (JSON): review, passport details, executions,
    /// outcomes, trust bookkeeping.
    pub body: String,
    /// The case's passport token. Written once, by the write that issues it; `None` in a
    /// write leaves a stored token as it is. Reads return the stored one.
    pub passport: Option<String>,
}

/// How many entries at the start of a case's chain every case read returns with the row.
pub const OPENING_ENTRIES: u64 = 2;

/// A case as a snapshot reads it: its row (with its stored passport token), its version,
/// the head of its chain and the first [`OPENING_ENTRIES`] entries of that chain.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCase {
    pub row: CaseRow,
    pub version: u64,
    /// The chain's last entry (`None`: no entry yet).
    pub head: Option<ChainHead>,
    /// The chain's entries with `seq` below [`OPENING_ENTRIES`], in order.
    pub opening: Vec<Entry>,
}

/// Which cases to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseFilter {
    pub agent: Option<String>,
    pub audience: Option<String>,
    /// Only cases with this counterparty (id).
    pub counterparty: Option<String>,
    pub status: Option<String>,
    pub review_pending: Option<bool>,
    pub limit: u32,
}

/// Which reviews to list (the approvers' queue) and which page of them: queried by
/// review, over every case that has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewFilter {
    /// `pending`, `approved`, `rejected` or `expired`; `None`: every review.
    pub status: Option<String>,
    /// Only this agent's.
    pub agent: Option<String>,
    /// Only reviews of requests with this counterparty (id).
    pub counterparty: Option<String>,
    /// Only this action type.
    pub action: Option<String>,
    /// Only the review with this id, or the review of the case with this id.
    pub id: Option<String>,
    /// Only pending reviews that still miss one of these roles (`Some` of none: no review).
    pub roles: Option<Vec<String>>,
    /// Only reviews after this one in the listing's order (keyset paging).
    pub after: Option<ReviewCursor>,
    /// Matches to skip (paging), after `after`.
    pub offset: u32,
    /// Matches to return at most (1..=10,000).
    pub limit: u32,
}

impl ReviewFilter {
    /// Whether the listing is ordered by deadline (pending reviews: earliest deadline
    /// first, then oldest); otherwise it is newest first.
    pub fn by_deadline(&self) -> bool {
        self.status.as_deref() == Some("pending")
    }
}

/// Where a page of reviews ends: the sort key of its last review, in the listing's order
/// (by deadline: `(deadline_ms, created_at_ms, id)` ascending; otherwise
/// `(created_at_ms, id)` descending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewCursor {
    /// The review's deadline (used when the listing is by deadline).
    pub deadline_ms: i64,
    pub created_at_ms: i64,
    /// The case id.
    pub id: String,
}

/// A stored body with its version (1 when first written, +1 at every write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub body: String,
    pub version: u64,
}

/// The last entry of a chain (a case's, or the organization chain's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub digest: Hash,
}

/// Something a decision read and relied on; checked by the serial step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// The record is still at this version (`None`: still absent).
    Record { kind: RecordKind, id: String, version: Option<u64> },
    /// The case row is still at this version (`None`: still absent).
    Case { id: String, version: Option<u64> },
    /// The chain's last entry is still this one (`None`: the chain is still empty).
    ChainHead { chain: Option<String>, head: Option<ChainHead> },
    /// No case of this agent uses this idempotency key yet.
    IdempotencyFree { agent: String, key: String },
}

/// One state change of a write set.
// A case row is the largest write, and most write sets hold one: boxing it would add an
// allocation to them for a few bytes saved on the other variants.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Inserts or replaces a record (its version moves on by one).
    PutRecord { kind: RecordKind, id: String, body: String },
    /// Deletes a record if present.
    DeleteRecord { kind: RecordKind, id: String },
    /// Stores a credential hash for a principal.
    PutCredential { hash: String, kind: String, id: String },
    /// Inserts or replaces a case (its version moves on by one).
    PutCase(CaseRow),
}

/// A ledger entry decided, canonicalized and hashed before sequencing. The serial step
/// only assigns its position and stores its members as they are here: `data` as its RFC
/// 8785 text, `at` as milliseconds, `prev` as 32 bytes. Reading them back rebuilds the
/// entry exactly (`at` is always RFC 3339 UTC with milliseconds, `prev` lowercase hex, so
/// both convert back to the same text), and hashing it again gives `digest`.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedEntry {
    pub entry: Entry,
    /// RFC 8785 canonical JSON of `entry.data`.
    pub data: String,
    /// `entry.at` in milliseconds since the epoch.
    pub at_ms: i64,
    /// `entry.prev` as bytes.
    pub prev: Option<Hash>,
    /// `SHA-256(0x00 ‖ JCS(entry))`.
    pub digest: Hash,
}

impl SealedEntry {
    /// Canonicalizes and hashes an entry. Refuses an `at` that is not RFC 3339 UTC with
    /// milliseconds as the ledger writes it, and a `prev` that is not a lowercase hex digest.
    pub fn seal(entry: Entry) -> Result<SealedEntry, agentsigna_verify::Error> {
        use agentsigna_verify::clock::{parse_rfc3339_ms, rfc3339_ms};
        use agentsigna_verify::ledger::{digest_canonical, parse_digest_hex, write_canonical_entry};
        use agentsigna_verify::Error;
        let at_ms = parse_rfc3339_ms(&entry.at).filter(|ms| rfc3339_ms(*ms) == entry.at).ok_or_else(|| {
            Error::Malformed(format!("entry time {:?} is not RFC 3339 UTC with milliseconds", entry.at))
        })?;
        let prev = match &entry.prev {
            None => None,
            Some(p) => Some(
                parse_digest_hex(p)
                    .ok_or_else(|| Error::Malformed(format!("entry prev {p:?} is not a lowercase hex digest")))?,
            ),
        };
        let mut canonical = Vec::with_capacity(512);
        let span = write_canonical_entry(&entry, &mut canonical)?;
        let digest = digest_canonical(&canonical);
        let data = String::from_utf8(canonical[span].to_vec()).map_err(|e| Error::Malformed(e.to_string()))?;
        Ok(SealedEntry { entry, data, at_ms, prev, digest })
    }

    /// The chain this entry extends: its case id, `None` for the organization chain.
    pub fn chain(&self) -> Option<&str> {
        self.entry.case.as_deref()
    }
}

/// Everything one decision writes, with what it relied on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteSet {
    pub preconditions: Vec<Precondition>,
    pub writes: Vec<Write>,
    /// In chain order; positions are assigned in this order.
    pub entries: Vec<SealedEntry>,
}

impl WriteSet {
    /// Whether committing it would change nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.entries.is_empty()
    }
}

/// What a commit assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Ledger index of the write set's first entry (the others follow contiguously).
    pub first_index: u64,
    /// Tree size of the checkpoint signed for the batch.
    pub tree_size: u64,
}

/// The error source kept by [`StoreError`] (shared, so errors stay cheap to clone).
pub type Source = Arc<dyn std::error::Error + Send + Sync>;

/// What a store failure means for the caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A precondition no longer holds (or a uniqueness constraint was hit): decide again.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached (retry later; HTTP 503).
    #[error("the database is unavailable: {detail}")]
    Unavailable {
        detail: String,
        #[source]
        source: Option<Source>,
    },
    /// The database answered with an error, or holds data that cannot be read (HTTP 500).
    #[error("storage error: {detail}")]
    Storage {
        detail: String,
        #[source]
        source: Option<Source>,
    },
}

impl PartialEq for StoreError {
    fn eq(&self, other: &StoreError) -> bool {
        match (self, other) {
            (StoreError::Conflict(a), StoreError::Conflict(b)) => a == b,
            (StoreError::Unavailable { detail: a, .. }, StoreError::Unavailable { detail: b, .. }) => a == b,
            (StoreError::Storage { detail: a, .. }, StoreError::Storage { detail: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Eq for StoreError {}

impl StoreError {
    /// A storage error with its source.
    pub fn storage(detail: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Storage { detail: detail.into(), source: Some(Arc::new(source)) }
    }

    /// A storage error without a source (corrupt data, a broken invariant).
    pub fn corrupt(detail: impl Into<String>) -> StoreError {
        StoreError::Storage { detail: detail.into(), source: None }
    }

    /// The database is unreachable.
    pub fn unavailable(
        detail: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Unavailable { detail: detail.into(), source: Some(Arc::new(source)) }
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Reads against one consistent snapshot of the store.
pub trait Snapshot {
    /// A JSON record with its version.
    fn record(&mut self, kind: RecordKind, id: &str) -> StoreResult<Option<Versioned>>;
    /// All records of a kind, ordered by id.
    fn records(&mut self, kind: RecordKind) -> StoreResult<Vec<String>>;
    /// The principal holding the credential with this hash: (kind, id).
    fn credential(&mut self, hash: &str) -> StoreResult<Option<(String, String)>>;
    /// A case.
    fn case(&mut self, id: &str) -> StoreResult<Option<StoredCase>>;
    /// The case an agent created with an idempotency key.
    fn case_by_idempotency(&mut self, agent: &str, key: &str) -> StoreResult<Option<StoredCase>>;
    /// The case of a review.
    fn case_by_review(&mut self, review_id: &str) -> StoreResult<Option<StoredCase>>;
    /// Cases matching the filter, newest first: in the reverse order of their rows'
    /// creation (the row number the store gives a case when it is first written, not
    /// `created_at_ms`); pending reviews: earliest deadline first.
    fn list_cases(&mut self, filter: &CaseFilter) -> StoreResult<Vec<StoredCase>>;
    /// Cases with a review matching the filter: how many match in all (`after` and
    /// `offset` aside), and the page asked for (by deadline for pending reviews, see
    /// [`ReviewFilter::by_deadline`]; otherwise newest first by `(created_at_ms, id)`, the
    /// order of [`ReviewCursor`]). Queried by the indexed columns of the case rows (review
    /// status, agent, counterparty, action, the missing roles' table), never by reading
    /// bodies or entries.
    fn list_reviews(&mut self, filter: &ReviewFilter) -> StoreResult<(u64, Vec<StoredCase>)>;
    /// Ids of cases due at `now_ms`, at most `limit`.
    fn due_cases(&mut self, now_ms: i64, limit: u32) -> StoreResult<Vec<String>>;
    /// The last entry of a chain (`None`: the organization chain).
    fn chain_head(&mut self, chain: Option<&str>) -> StoreResult<Option<ChainHead>>;
    /// Number of entries in the ledger.
    fn ledger_size(&mut self) -> StoreResult<u64>;
    /// Entries `[start, end)`.
    fn ledger_entries(&mut self, start: u64, end: u64) -> StoreResult<Vec<DigestedEntry>>;
    /// Every entry of a chain (a case's, or the organization chain for `None`), in order.
    fn chain_entries(&mut self, chain: Option<&str>) -> StoreResult<Vec<DigestedEntry>>;
    /// A stored perfect-subtree hash of the Merkle tree (level 0: an entry's digest).
    fn merkle_node(&mut self, level: u32, index: u64) -> StoreResult<Hash>;
    /// The latest signed checkpoint (signed note text), if any.
    fn checkpoint(&mut self) -> StoreResult<Option<String>>;
}

/// A boxed future, so that the trait stays object-safe without an async runtime here.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A closure run against a snapshot (on a thread where blocking is allowed).
pub type ReadFn = Box<dyn FnOnce(&mut dyn Snapshot) + Send + 'static>;

/// What a store's serial step has done since it started: for benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SerialFigures {
    /// Batches (transactions) committed or attempted.
    pub batches: u64,
    /// Write sets handled (committed or refused).
    pub write_sets: u64,
    /// Ledger entries sequenced.
    pub entries: u64,
    /// Time inside the serial step (from its `BEGIN` to the answers, commit included), µs.
    pub busy_micros: u64,
    /// Of which in `COMMIT` (the fsync), µs.
    pub commit_micros: u64,
}

/// A storage backend.
pub trait Store: Send + Sync + 'static {
    /// Runs `f` against a consistent read-only snapshot.
    fn read(&self, f: ReadFn) -> BoxFuture<StoreResult<()>>;
    /// [`Store::read`] for a decision: a few indexed reads and the CPU work on them (the
    /// policy, the entries, the passport's signature), never a scan. A backend whose reads
    /// are local may run it on the caller's task instead of a thread of its own: the
    /// hand-off and the wake-up back cost more than such a read. The default is
    /// [`Store::read`].
    fn read_to_decide(&self, f: ReadFn) -> BoxFuture<StoreResult<()>> {
        self.read(f)
    }
    /// The serial step: checks the write set's preconditions, assigns its entries their
    /// positions, writes it, and resolves once it is durable. A failing write set changes
    /// nothing and does not affect others committed in the same batch.
    fn commit(&self, writes: WriteSet) -> BoxFuture<StoreResult<Committed>>;
    /// Backend name for logs (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
    /// What the serial step has done so far (this process's share of it).
    fn serial_figures(&self) -> SerialFigures {
        SerialFigures::default()
    }
    /// Leases work any node could do (a due case, a webhook notification) so that one
    /// node does it: of `keys`, those no other holder has leased beyond `now_ms` are leased
    /// to `holder` until `until_ms` and returned (a holder renews its own). A lease its
    /// holder never gave back (the node was killed) is retaken once it has run out. Not a
    /// transaction over the work: the work itself still commits through [`Store::commit`]
    /// and its preconditions. The default, for a store only one node uses, grants every key.
    fn claim(
        &self,
        keys: Vec<String>,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> BoxFuture<StoreResult<Vec<String>>> {
        let _ = (holder, now_ms, until_ms);
        Box::pin(async move { Ok(keys) })
    }
    /// Gives back leases of `holder` (the work is done or put off) before they run out.
    fn release(&self, keys: Vec<String>, holder: &str) -> BoxFuture<StoreResult<()>> {
        let _ = (keys, holder);
        Box::pin(async { Ok(()) })
    }
}

/// Typed reads over [`Store`].
pub trait StoreExt {
    /// Runs `f` against a snapshot and returns its result.
    fn read_with<T, E, F>(&self, f: F) -> impl Future<Output = Result<T, E>> + Send
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut dyn Snapshot) -> Result<T, E> + Send + 'static;
    /// [`StoreExt::read_with`] through [`Store::read_to_decide`].
    fn read_to_decide_with<T, E, F>(&self, f: F) -> impl Future<Output = Result<T, E>> + Send
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut dyn Snapshot) -> Result<T, E> + Send + 'static;
}

/// `f` as a [`ReadFn`], and the future of its result once `read` (the future that runs
/// it) has resolved.
fn typed_read<T, E, F>(
    f: F,
    read: impl FnOnce(ReadFn) -> BoxFuture<StoreResult<()>>,
) -> impl Future<Output = Result<T, E>> + Send
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&mut dyn Snapshot) -> Result<T, E> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let fut = read(Box::new(move |snap| {
        let _ = tx.send(f(snap));
    }));
    async move {
        fut.await?;
        rx.try_recv().map_err(|_| E::from(StoreError::corrupt("the read ended without a result")))?
    }
}

impl<S: Store + ?Sized> StoreExt for S {
    fn read_with<T, E, F>(&self, f: F) -> impl Future<Output = Result<T, E>> + Send
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut dyn Snapshot) -> Result<T, E> + Send + 'static,
    {
        typed_read(f, |f| self.read(f))
    }

    fn read_to_decide_with<T, E, F>(&self, f: F) -> impl Future<Output = Result<T, E>> + Send
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut dyn Snapshot) -> Result<T, E> + Send + 'static,
    {
        typed_read(f, |f| self.read_to_decide(f))
    }
}
