//! `agentsigna keys list | rotate`: the passport signing keys of a data directory.

use std::path::Path;

use anyhow::bail;
use clap::Subcommand;

use agentsigna_core::engine::Config;
use agentsigna_core::SystemClock;

use super::DataDirArg;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List passport keys with their kid and status.
    List(DataDirArg),
    /// Add a new active passport key; the previous one stays published until every
    /// passport it signed has expired. A running server picks it up within a second.
    Rotate(DataDirArg),
}

pub(super) fn keys_list(data_dir: &Path) -> anyhow::Result<()> {
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
    Ok(())
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
