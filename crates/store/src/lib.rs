//! # agentsigna-store
//!
//! [`Store`](agentsigna_core::store::Store) implementations. The embedded default is
//! [`sqlite::SqliteStore`]: SQLite in WAL mode with `synchronous=FULL`, one writer thread
//! with group commit (many requests share one transaction and one fsync), and a pool of
//! read-only connections. [`postgres::PgStore`] lets several nodes share one database and
//! one ledger: each node's sequencer serializes its batches on one locked row.
//! [`ledger`] reads a stored ledger offline, the same way for both; [`layout`] is how
//! both store entries, passport tokens and the Merkle tree compactly.
//!
//! Architecture invariant: a write is acknowledged only after the transaction holding it
//! (state, ledger entries, Merkle nodes and the new signed checkpoint) has committed.
//! Ledger positions are assigned by the serial step under its lock, never by a sequence.

mod job;
pub mod layout;
pub mod ledger;
pub mod packed;
pub mod postgres;
pub mod sqlite;

use std::path::Path;

use agentsigna_core::store::{StoreError, StoreResult};

pub use ledger::{AuditError, LedgerSource};
pub use postgres::{PgOptions, PgStore};
pub use sqlite::SqliteStore;

/// Where the data lives: the SQLite file of a data directory (the default), or a
/// PostgreSQL database (`--database postgres://…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Database {
    /// `url` when given (it must be a `postgres://` or `postgresql://` URL), else `sqlite`.
    pub fn select(url: Option<&str>, sqlite: &Path) -> StoreResult<Database> {
        match url.map(str::trim).filter(|u| !u.is_empty()) {
            None => Ok(Database::Sqlite(sqlite.to_owned())),
            Some(u) if postgres::is_postgres_url(u) => Ok(Database::Postgres(u.to_owned())),
            Some(_) => Err(StoreError::corrupt(
                "--database must be a PostgreSQL URL (postgres://user:password@host/db); \
                 without it the data directory's SQLite database is used",
            )),
        }
    }

    /// Opens the stored ledger read-only (blocks; not for use inside an async runtime).
    pub fn open_ledger(&self) -> StoreResult<Box<dyn LedgerSource>> {
        match self {
            Database::Sqlite(path) => Ok(Box::new(sqlite::LedgerReader::open(path)?)),
            Database::Postgres(url) => Ok(Box::new(postgres::PgLedgerReader::open(url, &PgOptions::default())?)),
        }
    }
}
