//! The `Store` conformance suite against SQLite (a fresh database file per test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::sync::Arc;

use agentsigna_store::sqlite::{SqliteOptions, SqliteStore};
use conformance::Fixture;

async fn open() -> Option<Fixture> {
    // The directory outlives the test (the process exits first); it sits in the temp dir.
    let dir = tempfile::tempdir().unwrap().keep();
    let signer = conformance::signer();
    let key = signer.verifier();
    let store = SqliteStore::open(&dir.join("agentsigna.db"), signer, SqliteOptions::default()).unwrap();
    Some(Fixture { store: Arc::new(store), key })
}

suite!(open);
