//! PostgreSQL backend, for several `agentsigna serve` nodes on one database: pooled
//! connections with bounded timeouts ([`PgOptions`]), snapshots in `REPEATABLE READ READ
//! ONLY` transactions ([`read`]), one sequencer task per node whose batches serialize on the
//! `ledger_head` row ([`sequencer`]), versioned migrations under an advisory lock
//! ([`schema`]), change notifications between nodes ([`notify`]), the offline ledger
//! reader ([`ledger`]), leases of shared work ([`Store::claim`]) and the gate's shared
//! single-use memory ([`replay`]).

mod convert;
mod ledger;
mod notify;
mod read;
mod replay;
mod schema;
mod sequencer;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use agentsigna_core::store::{BoxFuture, Committed, ReadFn, Store, StoreError, StoreResult, WriteSet};
use agentsigna_verify::note::NoteSigner;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
pub(crate) use tls::{Tls, TlsStream};
use tokio::sync::{mpsc, oneshot};

pub use ledger::PgLedgerReader;
pub use notify::{listen, Changes, Listener};
pub use replay::PgReplayCache;
pub use schema::{migrate, migrate_to, SCHEMA_VERSION};
pub use sequencer::{SequencerFigures, SequencerStats};

/// Options of the PostgreSQL store. Every wait is bounded, so that an unreachable
/// database answers `StoreError::Unavailable` quickly instead of hanging a request.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections for snapshots (the sequencer has one of its own).
    pub readers: usize,
    /// Longest wait for a pooled connection.
    pub pool_wait: Duration,
    /// Longest wait to open a connection.
    pub connect_timeout: Duration,
    /// `statement_timeout` of every connection (also bounds the wait for the sequencing lock).
    pub statement_timeout: Duration,
    /// A schema of its own (created if absent), so that several deployments or tests share
    /// one database; `None` uses the connection's default `search_path`.
    pub schema: Option<String>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            readers: 8,
            // A busy but healthy database (or machine) can take a few seconds to hand out
            // or open a connection; an unreachable one is still a 503 well within 10 s.
            pool_wait: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            schema: None,
        }
    }
}

impl PgOptions {
    /// The notification channel of this deployment (one per schema).
    pub(crate) fn channel(&self) -> String {
        match &self.schema {
            None => "agentsigna_changes".to_owned(),
            Some(s) => format!("agentsigna_changes_{s}"),
        }
    }
}

/// Whether a `--database` value names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A PostgreSQL failure as the engine sees it: the database unreachable (connection
/// refused or closed, a timeout, the server shutting down) is `Unavailable`; a uniqueness
/// violation, a serialization failure or a deadlock is a `Conflict` (decide again); the rest
/// is `Storage`.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        if matches!(code, "23505" | "40001" | "40P01") {
            return StoreError::Conflict(format!("a concurrent write: {}", db.message()));
        }
        // 08: connection exception; 53: insufficient resources; 57P0x: the server is
        // shutting down or starting; 57014: statement_timeout (the database is overloaded
        // or the sequencing lock is held too long).
        if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") || code == "57014" {
            return StoreError::unavailable(format!("postgres: {}", db.message()), e);
        }
        return StoreError::storage(format!("postgres: {}", db.message()), e);
    }
    let text = e.to_string();
    let unreachable = e.is_closed()
        || [
            "error communicating with the server",
            "error connecting to server",
            "timeout waiting for server",
            "error performing TLS handshake",
        ]
        .contains(&text.as_str());
    if unreachable {
        StoreError::unavailable(format!("postgres: {text}"), e)
    } else {
        StoreError::storage(format!("postgres: {text}"), e)
    }
}

/// A pool failure: a timeout or a refused connection is `Unavailable`.
pub(crate) fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError as P;
    match e {
        P::Backend(e) => match pg_err(e) {
            StoreError::Storage { detail, source } => StoreError::Unavailable { detail, source },
            other => other,
        },
        other => StoreError::unavailable("postgres connection pool", other),
    }
}

pub(crate) fn to_i64(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::corrupt("integer out of range"))
}

pub(crate) fn to_u64(v: i64) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| StoreError::corrupt("negative integer in the database"))
}

/// Connection settings from a URL and the options: TLS as the URL's `sslmode` and
/// `sslrootcert` ask ([`tls`]), timeouts, `statement_timeout` and the schema on the
/// `search_path`.
pub(crate) fn pg_config(url: &str, options: &PgOptions) -> StoreResult<(tokio_postgres::Config, Tls)> {
    let split = tls::split(url)?;
    let mut config: tokio_postgres::Config =
        split.url.parse().map_err(|e| StoreError::storage("invalid PostgreSQL URL", e))?;
    config.ssl_mode(split.mode);
    config.connect_timeout(options.connect_timeout);
    config.keepalives(true).keepalives_idle(Duration::from_secs(10));
    if config.get_application_name().is_none() {
        config.application_name("agentsigna");
    }
    let mut opts = config.get_options().map(str::to_owned).unwrap_or_default();
    opts.push_str(&format!(" -c statement_timeout={}", options.statement_timeout.as_millis()));
    if let Some(schema) = &options.schema {
        if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(StoreError::corrupt(format!("invalid schema name {schema:?} (use a-z, 0-9 and _)")));
        }
        opts.push_str(&format!(" -c search_path={schema}"));
    }
    config.options(opts.trim());
    Ok((config, split.tls))
}

pub(crate) fn pool(
    (config, tls): (tokio_postgres::Config, Tls),
    size: usize,
    options: &PgOptions,
) -> StoreResult<Pool> {
    let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size.max(1))
        .wait_timeout(Some(options.pool_wait))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::storage("cannot build the connection pool", e))
}

/// The PostgreSQL store of one node.
pub struct PgStore {
    readers: Pool,
    sequencer: mpsc::Sender<sequencer::Job>,
    stats: Arc<SequencerStats>,
    options: PgOptions,
    node: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("schema", &self.options.schema).finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, applies pending migrations (under an advisory lock, so that nodes
    /// starting together migrate one after the other) and starts this node's sequencer;
    /// checkpoints are signed by `signer`. Must be called within a tokio runtime.
    pub async fn connect(url: &str, signer: NoteSigner, options: PgOptions) -> StoreResult<PgStore> {
        migrate(url, &options).await?;
        let config = pg_config(url, &options)?;
        let readers = pool(config.clone(), options.readers, &options)?;
        let writer = pool(config, 1, &options)?;
        let stats = Arc::new(SequencerStats::default());
        let (tx, rx) = mpsc::channel(4096);
        let node = hex::encode(rand::random::<[u8; 8]>());
        let seq = sequencer::Sequencer::new(writer, signer, options.channel(), node.clone(), stats.clone());
        tokio::spawn(seq.run(rx));
        Ok(PgStore { readers, sequencer: tx, stats, options, node })
    }

    /// The sequencer's measurements (lock hold time per batch and per entry).
    pub fn stats(&self) -> Arc<SequencerStats> {
        self.stats.clone()
    }

    /// This store's random id, carried by its change notifications.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// The options it was opened with.
    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    /// The notification channel other nodes announce their commits on.
    pub fn channel(&self) -> String {
        self.options.channel()
    }
}

impl Store for PgStore {
    fn read(&self, f: ReadFn) -> BoxFuture<StoreResult<()>> {
        let pool = self.readers.clone();
        Box::pin(async move {
            let client = pool.get().await.map_err(pool_err)?;
            read::run_snapshot(client, f).await
        })
    }

    fn commit(&self, writes: WriteSet) -> BoxFuture<StoreResult<Committed>> {
        let (reply, rx) = oneshot::channel();
        let (job, work) = sequencer::Job::new(writes, reply);
        let sent = self.sequencer.try_send(job);
        Box::pin(async move {
            // Freed here once answered, not in the serial step.
            let _work = work;
            match sent {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(StoreError::Unavailable { detail: "the sequencer queue is full".into(), source: None })
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(StoreError::Unavailable { detail: "the sequencer has stopped".into(), source: None })
                }
            }
            rx.await
                .map_err(|_| StoreError::Unavailable { detail: "the sequencer has stopped".into(), source: None })?
        })
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    /// The sequencer's figures: `busy_micros` is the time the sequencing lock was held
    /// (from `SELECT … FOR UPDATE` granted to `COMMIT` done); `commit_micros` is not
    /// measured apart.
    fn serial_figures(&self) -> agentsigna_core::store::SerialFigures {
        let f = self.stats.figures();
        agentsigna_core::store::SerialFigures {
            batches: f.batches,
            write_sets: f.write_sets,
            entries: f.entries,
            busy_micros: f.held_micros,
            commit_micros: 0,
        }
    }

    fn claim(
        &self,
        keys: Vec<String>,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> BoxFuture<StoreResult<Vec<String>>> {
        let (pool, holder) = (self.readers.clone(), holder.to_owned());
        Box::pin(async move {
            let mut keys = keys;
            keys.sort_unstable();
            keys.dedup();
            if keys.is_empty() {
                return Ok(keys);
            }
            let client = pool.get().await.map_err(pool_err)?;
            let rows = read::query(&client, CLAIM, &[&keys, &holder, &now_ms, &until_ms]).await?;
            rows.iter().map(|r| r.try_get(0).map_err(pg_err)).collect()
        })
    }

    fn release(&self, keys: Vec<String>, holder: &str) -> BoxFuture<StoreResult<()>> {
        let (pool, holder) = (self.readers.clone(), holder.to_owned());
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(());
            }
            let client = pool.get().await.map_err(pool_err)?;
            read::query(&client, RELEASE, &[&keys, &holder]).await?;
            Ok(())
        })
    }
}

/// Takes the leases of `$1` that are free, run out (`until_ms <= $3`) or already `$2`'s.
/// One statement in its own transaction, outside the sequencer: the `ON CONFLICT … WHERE`
/// re-checks each lease against the latest committed one, so of two nodes claiming one
/// key only one gets it; keys are inserted in one order, so two claims never deadlock.
/// (No row stays locked while the work runs — a webhook POST can take seconds — which is
/// why a lease row with an expiry, not `FOR UPDATE SKIP LOCKED` on the work's own row.)
const CLAIM: &str = "INSERT INTO leases (key, holder, until_ms)
    SELECT k, $2, $4 FROM unnest($1::text[]) AS k ORDER BY k
    ON CONFLICT (key) DO UPDATE SET holder = EXCLUDED.holder, until_ms = EXCLUDED.until_ms
    WHERE leases.until_ms <= $3 OR leases.holder = EXCLUDED.holder
    RETURNING key";

/// Gives back leases of a holder.
const RELEASE: &str = "DELETE FROM leases WHERE key = ANY($1) AND holder = $2";
