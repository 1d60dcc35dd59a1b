//! `agentsigna keys list | rotate`: the passport signing keys of a data directory, and
//! whether its ledger key is the one that signed the database's checkpoints.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::{Args, Subcommand};

use agentsigna_core::engine::Config;
use agentsigna_core::SystemClock;
use agentsigna_verify::note::{self, NoteVerifier};

use super::{DataDirArg, DatabaseArg};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List passport keys with their kid and status, and whether the ledger key signed the
    /// database's latest checkpoint (every node of one database needs the same keys).
    List(KeysListArgs),
    /// Add a new active passport key; the previous one stays published until every
    /// passport it signed has expired. A running server picks it up within a second.
    Rotate(DataDirArg),
}

#[derive(Debug, Args)]
pub struct KeysListArgs {
    /// Data directory.
    #[arg(long, default_value = "./agentsigna-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub db: DatabaseArg,
}

pub(super) fn keys_list(a: &KeysListArgs) -> anyhow::Result<()> {
    let data_dir = a.data_dir.as_path();
    let keys = agentsigna_core::keys::Keyring::load(&data_dir.join("keys"), None)?;
    let now = agentsigna_core::Clock::now_ms(&SystemClock);
    let max = Config::default().max_passport_ttl_secs * 1000;
    let active = keys.active()?.kid.clone();
    println!("{:<45} {:<26} status", "kid", "created");
    for k in &keys.passport_keys {
        let status = match k.rotated_out_at_ms {
            None if k.kid == active => "active (signs new passports)".to_owned(),
            None => "inactive".to_owned(),
            Some(t) if now <= t + max => {
                format!("rotated out; published until {}", agentsigna_verify::clock::rfc3339_ms(t + max))
            }
            Some(_) => "retired".to_owned(),
        };
        println!("{:<45} {:<26} {status}", k.kid, agentsigna_verify::clock::rfc3339_ms(k.created_at_ms));
    }
    println!("ledger key: {}", keys.ledger.verifier_key());
    let db = crate::database::select(a.db.database.as_deref(), data_dir)?;
    if crate::database::exists(&db) {
        let ledger = crate::database::open_ledger(&db)?;
        let checkpoint = ledger.checkpoint()?;
        match fits(checkpoint.as_deref(), &keys.ledger.verifier()) {
            Ok(Some(size)) => println!("database: its latest checkpoint (size {size}) is signed by this ledger key"),
            Ok(None) => println!("database: no checkpoint yet"),
            Err(e) => bail!("{e}"),
        }
    }
    Ok(())
}

/// Whether `key` signed the database's latest checkpoint: its tree size, `None` for an
/// empty ledger, or an error that says what to do. A node whose ledger key is not the one
/// the ledger is signed with would sign checkpoints nobody can verify against the others.
pub fn fits(checkpoint: Option<&str>, key: &NoteVerifier) -> anyhow::Result<Option<u64>> {
    let Some(text) = checkpoint else { return Ok(None) };
    match note::verify_checkpoint(text, key) {
        Ok(cp) => Ok(Some(cp.size)),
        Err(e) => {
            let signer = text.lines().rev().find_map(|l| l.strip_prefix("\u{2014} ")).and_then(|l| l.split(' ').next());
            bail!(
                "the database's ledger is signed by another ledger key ({}), not this data directory's {} ({e}): \
                 every node of one database needs the same keys/ directory (copy the first node's keys/ before \
                 starting another node)",
                signer.unwrap_or("unknown"),
                key.to_key_string()
            )
        }
    }
}

pub(super) fn keys_rotate(data_dir: &Path) -> anyhow::Result<()> {
    if !data_dir.join("keys").join("passport.keys").exists() {
        bail!("{} has no passport keys; start the server once first", data_dir.display());
    }
    let mut keys = agentsigna_core::keys::Keyring::load(&data_dir.join("keys"), None)?;
    let now = agentsigna_core::Clock::now_ms(&SystemClock);
    let kid = keys.rotate(now)?.kid.clone();
    println!("new active passport key: {kid}");
    Ok(())
}
