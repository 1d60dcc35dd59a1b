//! The storage boundary. A backend implements [`Tx`] (typed reads and writes inside one
//! transaction, plus ledger appends) and [`Store`] (runs closures in transactions).
//!
//! Architecture invariant: every state change and the ledger entries that record it are
//! written by one closure in one transaction: they commit together or not at all, and a
//! write is acknowledged only after its transaction is durable.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use agentsigna_verify::ledger::DigestedEntry;
use agentsigna_verify::merkle::Hash;

use crate::{Error, Result};

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
        }
    }
}

/// The indexed columns of a stored case, beside its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRow {
    pub id: String,
    pub agent: String,
    pub audience: String,
    pub status: String,
    pub idempotency_key: Option<String>,
    pub review_id: Option<String>,
    pub review_pending: bool,
    /// Review deadline for pending reviews (for ordering the queue).
    pub deadline_ms: Option<i64>,
    /// When the case next needs attention (see `Case::due_ms`).
    pub due_ms: Option<i64>,
    pub created_at_ms: i64,
    pub body: String,
}

/// Which cases to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseFilter {
    pub agent: Option<String>,
    pub audience: Option<String>,
    pub status: Option<String>,
    pub review_pending: Option<bool>,
    /// Only cases created before this id's position (pagination by creation order).
    pub limit: u32,
}

/// A new ledger event; the backend assigns `index`, `seq` and `prev`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub case: Option<String>,
    pub kind: String,
    pub at_ms: i64,
    pub actor: String,
    pub data: serde_json::Value,
}

/// Reads and writes inside one transaction.
pub trait Tx {
    /// A JSON record, if present.
    fn get_record(&mut self, kind: RecordKind, id: &str) -> Result<Option<String>>;
    /// Inserts or replaces a JSON record.
    fn put_record(&mut self, kind: RecordKind, id: &str, body: &str) -> Result<()>;
    /// All records of a kind, ordered by id.
    fn list_records(&mut self, kind: RecordKind) -> Result<Vec<String>>;
    /// Deletes a JSON record; returns whether it existed.
    fn delete_record(&mut self, kind: RecordKind, id: &str) -> Result<bool>;

    /// The principal holding the credential with this hash: (kind, id).
    fn credential(&mut self, hash: &str) -> Result<Option<(String, String)>>;
    /// Stores a credential hash for a principal.
    fn put_credential(&mut self, hash: &str, kind: &str, id: &str) -> Result<()>;

    /// A case body.
    fn get_case(&mut self, id: &str) -> Result<Option<String>>;
    /// Inserts or replaces a case.
    fn put_case(&mut self, row: &CaseRow) -> Result<()>;
    /// The case an agent created with an idempotency key.
    fn case_by_idempotency(&mut self, agent: &str, key: &str) -> Result<Option<String>>;
    /// The case of a review.
    fn case_by_review(&mut self, review_id: &str) -> Result<Option<String>>;
    /// Case bodies matching the filter, newest first (pending reviews: earliest deadline first).
    fn list_cases(&mut self, filter: &CaseFilter) -> Result<Vec<String>>;
    /// Ids of cases due at `now_ms`, at most `limit`.
    fn due_cases(&mut self, now_ms: i64, limit: u32) -> Result<Vec<String>>;

    /// Appends a ledger entry to the global log and its chain.
    fn append(&mut self, entry: NewEntry) -> Result<DigestedEntry>;
    /// Number of entries in the ledger (as seen by this transaction).
    fn ledger_size(&mut self) -> Result<u64>;
    /// Entries `[start, end)`.
    fn ledger_entries(&mut self, start: u64, end: u64) -> Result<Vec<DigestedEntry>>;
    /// Every entry of a case (or of the organization chain for `None`), in order.
    fn case_entries(&mut self, case: Option<&str>) -> Result<Vec<DigestedEntry>>;
    /// A stored perfect-subtree hash of the Merkle tree.
    fn merkle_node(&mut self, level: u32, index: u64) -> Result<Hash>;
    /// The latest signed checkpoint (signed note text), if any.
    fn checkpoint(&mut self) -> Result<Option<String>>;
}

/// A boxed future, so that the trait stays object-safe without an async runtime here.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
/// A closure run in a transaction, with a type-erased result.
pub type TxFn = Box<dyn FnOnce(&mut dyn Tx) -> Result<Box<dyn Any + Send>> + Send + 'static>;

/// A storage backend.
pub trait Store: Send + Sync + 'static {
    /// Runs `f` in a write transaction; resolves once the transaction is durable. If `f`
    /// fails, nothing it did is kept.
    fn write(&self, f: TxFn) -> BoxFuture<Result<Box<dyn Any + Send>>>;
    /// Runs `f` against a consistent read-only snapshot.
    fn read(&self, f: TxFn) -> BoxFuture<Result<Box<dyn Any + Send>>>;
    /// Backend name for logs (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
}

fn downcast<T: 'static>(b: Box<dyn Any + Send>) -> Result<T> {
    b.downcast::<T>().map(|b| *b).map_err(|_| Error::storage("result type mismatch"))
}

/// Typed helpers over [`Store`].
pub trait StoreExt {
    /// Typed [`Store::write`].
    fn write_tx<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static;
    /// Typed [`Store::read`].
    fn read_tx<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static;
}

impl<S: Store + ?Sized> StoreExt for S {
    fn write_tx<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
    {
        let fut = self.write(Box::new(move |tx| f(tx).map(|v| Box::new(v) as Box<dyn Any + Send>)));
        async move { downcast(fut.await?) }
    }

    fn read_tx<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
    {
        let fut = self.read(Box::new(move |tx| f(tx).map(|v| Box::new(v) as Box<dyn Any + Send>)));
        async move { downcast(fut.await?) }
    }
}

/// Typed record helpers over [`Tx`].
pub fn get<T: serde::de::DeserializeOwned>(tx: &mut dyn Tx, kind: RecordKind, id: &str) -> Result<Option<T>> {
    match tx.get_record(kind, id)? {
        Some(body) => Ok(Some(serde_json::from_str(&body)?)),
        None => Ok(None),
    }
}

/// Stores a typed record.
pub fn put<T: serde::Serialize>(tx: &mut dyn Tx, kind: RecordKind, id: &str, value: &T) -> Result<()> {
    let body = serde_json::to_string(value).map_err(|e| Error::storage(e.to_string()))?;
    tx.put_record(kind, id, &body)
}

/// Lists typed records.
pub fn list<T: serde::de::DeserializeOwned>(tx: &mut dyn Tx, kind: RecordKind) -> Result<Vec<T>> {
    tx.list_records(kind)?.iter().map(|b| Ok(serde_json::from_str(b)?)).collect()
}
