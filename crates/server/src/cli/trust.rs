//! `agentsigna trust rebuild` and `agentsigna migrate`: maintenance of a stored database.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use clap::{Args, Subcommand};

use agentsigna_core::engine::Config;
use agentsigna_core::SystemClock;

use super::DatabaseArg;
use crate::app;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The PostgreSQL database to migrate.
    #[arg(long, env = "AGENTSIGNA_DATABASE")]
    pub database: String,
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Recompute every trust standing from the ledger (`--check`: only compare).
    Rebuild(TrustRebuildArgs),
}

#[derive(Debug, Args)]
pub struct TrustRebuildArgs {
    /// Data directory.
    #[arg(long, default_value = "./agentsigna-data")]
    pub data_dir: PathBuf,
    /// Only compare the stored standings with the replay; exit 1 when they differ.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub db: DatabaseArg,
}

pub(super) async fn trust_rebuild(a: TrustRebuildArgs) -> anyhow::Result<i32> {
    if !crate::database::exists(&crate::database::select(a.db.database.as_deref(), &a.data_dir)?) {
        bail!("{} has no database", a.data_dir.display());
    }
    let (engine, _) =
        app::open_engine(&a.data_dir, a.db.database.as_deref(), None, Config::default(), Arc::new(SystemClock)).await?;
    let report = engine.rebuild_trust(!a.check).await?;
    println!("replayed {} ledger entries: {} standings", report.entries, report.subjects);
    if report.differing.is_empty() {
        println!("every stored standing equals the replay");
        return Ok(0);
    }
    for d in &report.differing {
        println!("{} {d}", if a.check { "differs:" } else { "rewritten:" });
    }
    Ok(if a.check { 1 } else { 0 })
}

pub(super) async fn migrate(a: MigrateArgs) -> anyhow::Result<()> {
    let version = crate::database::migrate(&a.database).await?;
    println!("the database is at schema version {version}");
    Ok(())
}
