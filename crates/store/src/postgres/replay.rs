//! The gate's single-use memory in PostgreSQL (`agentsigna gate --replay-store URL`), so
//! that several gate replicas in front of one system refuse a passport (or holder proof)
//! any of them has already let through. One row per consumed key with its expiry; the
//! consuming `INSERT … ON CONFLICT DO UPDATE … WHERE expired` is atomic across replicas.

use std::sync::atomic::{AtomicU64, Ordering};

use agentsigna_core::store::StoreResult;
use agentsigna_verify::gate::ReplayCache;
use deadpool_postgres::Pool;

use super::{migrate, pg_config, pool, pool_err, read, PgOptions};

/// Takes `$1` unless it is remembered beyond `$3`; a row back means consumed.
const CONSUME: &str = "INSERT INTO gate_replay (key, until_secs) VALUES ($1, $2)
    ON CONFLICT (key) DO UPDATE SET until_secs = EXCLUDED.until_secs WHERE gate_replay.until_secs < $3
    RETURNING key";

/// Forgets keys that have expired.
const PURGE: &str = "DELETE FROM gate_replay WHERE until_secs < $1";

/// Consumptions between two purges of expired keys.
const PURGE_EVERY: u64 = 1_000;

/// A [`ReplayCache`] shared by every gate on one database.
pub struct PgReplayCache {
    pool: Pool,
    consumed: AtomicU64,
}

impl std::fmt::Debug for PgReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReplayCache").finish_non_exhaustive()
    }
}

impl PgReplayCache {
    /// Connects (applying pending migrations, which create its table).
    pub async fn connect(url: &str, options: &PgOptions) -> StoreResult<PgReplayCache> {
        migrate(url, options).await?;
        let pool = pool(pg_config(url, options)?, options.readers, options)?;
        Ok(PgReplayCache { pool, consumed: AtomicU64::new(0) })
    }

    async fn consume_async(&self, key: &str, expires_at: i64, now_secs: i64) -> StoreResult<bool> {
        let client = self.pool.get().await.map_err(pool_err)?;
        let rows = read::query(&client, CONSUME, &[&key, &expires_at, &now_secs]).await?;
        if self.consumed.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            read::query(&client, PURGE, &[&now_secs]).await?;
        }
        Ok(!rows.is_empty())
    }
}

impl ReplayCache for PgReplayCache {
    /// Blocks the calling thread on the database (the gate checks on a multi-threaded
    /// runtime). Fails closed: while the database cannot be reached nothing is consumed,
    /// so nothing is let through twice (the refusal is logged).
    fn consume(&self, key: &str, expires_at: i64, now_secs: i64) -> bool {
        let run = || -> StoreResult<bool> {
            let handle = tokio::runtime::Handle::try_current().map_err(|e| {
                agentsigna_core::store::StoreError::corrupt(format!("the replay store needs a tokio runtime: {e}"))
            })?;
            tokio::task::block_in_place(|| handle.block_on(self.consume_async(key, expires_at, now_secs)))
        };
        match run() {
            Ok(fresh) => fresh,
            Err(err) => {
                tracing::error!(error = %err, "the replay store cannot be used: refusing the passport");
                false
            }
        }
    }
}
