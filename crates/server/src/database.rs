//! Which database a command uses: the data directory's SQLite file (the default) or a
//! PostgreSQL database (`--database postgres://…` or `AGENTSIGNA_DATABASE`), opened as a
//! store, as an offline ledger, or migrated; and, with PostgreSQL, the change feed that
//! wakes this node's waiters when another node commits.

use std::path::Path;
use std::sync::{Arc, Weak};

use anyhow::Context as _;

use agentsigna_core::engine::Engine;
use agentsigna_core::store::Store;
use agentsigna_store::postgres::{self, Listener, PgOptions, PgStore};
use agentsigna_store::sqlite::{SqliteOptions, SqliteStore};
use agentsigna_store::{Database, LedgerSource};
use agentsigna_verify::note::NoteSigner;

/// How this node follows other nodes' commits (PostgreSQL only).
#[derive(Debug, Clone)]
pub struct ChangeFeed {
    url: String,
    options: PgOptions,
    node: String,
}

/// The database of a data directory, or the one `url` names.
pub fn select(url: Option<&str>, data_dir: &Path) -> anyhow::Result<Database> {
    Ok(Database::select(url, &crate::app::db_path(data_dir))?)
}

/// Opens the store (migrating it), and the change feed to follow when it is shared.
pub async fn open_store(db: &Database, signer: NoteSigner) -> anyhow::Result<(Arc<dyn Store>, Option<ChangeFeed>)> {
    match db {
        Database::Sqlite(path) => Ok((Arc::new(SqliteStore::open(path, signer, SqliteOptions::default())?), None)),
        Database::Postgres(url) => {
            let options = PgOptions::default();
            let store =
                PgStore::connect(url, signer, options.clone()).await.context("cannot open the PostgreSQL database")?;
            let feed = ChangeFeed { url: url.clone(), options, node: store.node_id().to_owned() };
            Ok((Arc::new(store), Some(feed)))
        }
    }
}

/// Whether the database exists already (offline commands refuse to create one).
pub fn exists(db: &Database) -> bool {
    match db {
        Database::Sqlite(path) => path.exists(),
        Database::Postgres(_) => true,
    }
}

/// Opens the stored ledger read-only. Blocks (the PostgreSQL reader runs its own small
/// runtime): call it outside an async runtime.
pub fn open_ledger(db: &Database) -> anyhow::Result<Box<dyn LedgerSource>> {
    Ok(db.open_ledger()?)
}

/// Applies pending migrations (`agentsigna migrate`); returns the schema version.
pub async fn migrate(url: &str) -> anyhow::Result<usize> {
    if !postgres::is_postgres_url(url) {
        anyhow::bail!("--database must be a PostgreSQL URL; the SQLite database migrates itself when opened");
    }
    Ok(postgres::migrate(url, &PgOptions::default()).await?)
}

impl ChangeFeed {
    /// Wakes `engine`'s waiters (and its webhook worker) on other nodes' commits; after a
    /// reconnection, every waiter looks again.
    pub async fn follow(self, engine: &Arc<Engine>) -> anyhow::Result<Listener> {
        let weak: Weak<Engine> = Arc::downgrade(engine);
        let listener = postgres::listen(&self.url, &self.options, self.node, move |c| {
            if let Some(engine) = weak.upgrade() {
                if c.all {
                    engine.wake_all_waiters();
                }
                engine.cases_changed(&c.cases, c.outbox);
            }
        })
        .await
        .context("cannot listen for other nodes' changes")?;
        Ok(listener)
    }
}
