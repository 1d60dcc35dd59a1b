//! # agentsigna-store
//!
//! [`Store`](agentsigna_core::store::Store) implementations. The embedded default is
//! [`sqlite::SqliteStore`]: SQLite in WAL mode with `synchronous=FULL`, one writer thread
//! with group commit (many requests share one transaction and one fsync), and a pool of
//! read-only connections.
//!
//! Architecture invariant: a write is acknowledged only after the transaction holding it
//! (state, ledger entries, Merkle nodes and the new signed checkpoint) has committed.
//! Ledger positions are assigned by the single writer, never by a sequence.

pub mod sqlite;

pub use sqlite::SqliteStore;
