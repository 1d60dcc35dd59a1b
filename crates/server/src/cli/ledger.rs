//! `agentsigna ledger verify | export | evidence`: the ledger checked and exported
//! offline, from a data directory, a database, a bundle or a case's evidence.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};

use agentsigna_verify::evidence::{verify_bundle, verify_evidence, Bundle, Evidence};
use agentsigna_verify::note::{self, NoteVerifier};

use super::{read_arg_or_file, DatabaseArg};

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute every digest, chain and the Merkle root; check the checkpoint signature.
    Verify(LedgerVerifyArgs),
    /// Write an offline bundle (entries + checkpoint + verifier key).
    Export(LedgerExportArgs),
    /// Write one case's entries with inclusion proofs against the latest checkpoint.
    Evidence(LedgerEvidenceArgs),
}

#[derive(Debug, Args)]
pub struct LedgerEvidenceArgs {
    /// The case id.
    pub case: String,
    /// Data directory of a server.
    #[arg(long, default_value = "./agentsigna-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub db: DatabaseArg,
    /// Output file (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LedgerVerifyArgs {
    /// Data directory of a server.
    #[arg(long, conflicts_with_all = ["bundle", "evidence"])]
    pub data_dir: Option<PathBuf>,
    /// An exported bundle.
    #[arg(long, requires = "key", conflicts_with = "evidence")]
    pub bundle: Option<PathBuf>,
    /// A case evidence file.
    #[arg(long, requires = "key")]
    pub evidence: Option<PathBuf>,
    /// Checkpoint verifier key (`name+keyid+base64`) or a file holding it.
    #[arg(long)]
    pub key: Option<String>,
    /// A checkpoint saved earlier: the ledger must still contain its tree.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    #[command(flatten)]
    pub db: DatabaseArg,
}

#[derive(Debug, Args)]
pub struct LedgerExportArgs {
    /// Data directory of a server.
    #[arg(long, default_value = "./agentsigna-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub db: DatabaseArg,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
}

pub(super) fn read_key(value: &str) -> anyhow::Result<NoteVerifier> {
    let text = read_arg_or_file(value)?;
    NoteVerifier::parse(text.lines().next().unwrap_or("")).map_err(|e| anyhow!("invalid verifier key: {e}"))
}

pub(super) fn ledger_verify(a: LedgerVerifyArgs) -> i32 {
    match ledger_verify_inner(a) {
        Ok(msg) => {
            println!("{msg}");
            0
        }
        Err(e) => {
            eprintln!("FAILED: {e:#}");
            1
        }
    }
}

pub fn ledger_verify_inner(a: LedgerVerifyArgs) -> anyhow::Result<String> {
    if let Some(path) = &a.evidence {
        let key = read_key(a.key.as_deref().unwrap_or_default())?;
        let ev: Evidence = serde_json::from_str(&std::fs::read_to_string(path)?).context("invalid evidence file")?;
        let cp = verify_evidence(&ev, &key)?;
        return Ok(format!(
            "OK: {} entries of case {} are included in {} at size {}",
            ev.entries.len(),
            ev.case,
            cp.origin,
            cp.size
        ));
    }
    if let Some(path) = &a.bundle {
        let key = read_key(a.key.as_deref().unwrap_or_default())?;
        let bundle: Bundle = serde_json::from_str(&std::fs::read_to_string(path)?).context("invalid bundle file")?;
        let saved = match &a.checkpoint {
            Some(p) => Some(note::verify_checkpoint(&std::fs::read_to_string(p)?, &key).context("saved checkpoint")?),
            None => None,
        };
        let report = verify_bundle(&bundle, &key, saved.as_ref())?;
        return Ok(format!(
            "OK: {} entries, {} cases, root verified against {} at size {}",
            report.entries, report.cases, report.checkpoint.origin, report.checkpoint.size
        ));
    }
    let data_dir = a.data_dir.clone().unwrap_or_else(|| PathBuf::from("./agentsigna-data"));
    let key = match &a.key {
        Some(k) => read_key(k)?,
        None => {
            let keys = agentsigna_core::keys::Keyring::load(&data_dir.join("keys"), None)
                .map_err(|e| anyhow!("cannot read the ledger key from {}: {e}", data_dir.display()))?;
            keys.ledger.verifier()
        }
    };
    let reader = crate::database::open_ledger(&crate::database::select(a.db.database.as_deref(), &data_dir)?)?;
    let mut saved = Vec::new();
    if let Some(p) = &a.checkpoint {
        let cp = note::verify_checkpoint(&std::fs::read_to_string(p)?, &key).context("saved checkpoint")?;
        saved.push((cp, p.display().to_string()));
    }
    let progress = Progress::new(reader.size()?);
    let report = agentsigna_store::ledger::audit(&*reader, &key, &saved, |done| progress.tick(done))?;
    progress.done();
    Ok(format!(
        "OK: {} entries, {} cases, every digest and chain recomputed, Merkle root matches the checkpoint signed by {} at size {}",
        report.entries, report.cases, report.checkpoint.origin, report.checkpoint.size
    ))
}

pub(super) fn ledger_export(a: LedgerExportArgs) -> anyhow::Result<()> {
    let keys = agentsigna_core::keys::Keyring::load(&a.data_dir.join("keys"), None)?;
    let reader = crate::database::open_ledger(&crate::database::select(a.db.database.as_deref(), &a.data_dir)?)?;
    let checkpoint = reader.checkpoint()?.ok_or_else(|| anyhow!("the ledger has no checkpoint"))?;
    let cp = note::verify_checkpoint(&checkpoint, &keys.ledger.verifier())?;
    let entries = agentsigna_store::ledger::entries(&*reader, cp.size)?;
    let bundle = Bundle::new(checkpoint, keys.ledger.verifier_key(), entries);
    let n = bundle.entries.len();
    std::fs::write(&a.out, serde_json::to_vec(&bundle)?)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    eprintln!("wrote {n} entries and the checkpoint at size {} to {}", cp.size, a.out.display());
    Ok(())
}

/// A progress line on a terminal (stderr), nothing otherwise.
pub(super) struct Progress {
    pub(super) total: u64,
    pub(super) tty: bool,
}

impl Progress {
    fn new(total: u64) -> Progress {
        use std::io::IsTerminal;
        Progress { total, tty: std::io::stderr().is_terminal() && total > 50_000 }
    }

    fn tick(&self, done: u64) {
        if self.tty && done.is_multiple_of(50_000) {
            eprint!("\rverifying {done}/{} entries ({}%)", self.total, done * 100 / self.total.max(1));
        }
    }

    fn done(&self) {
        if self.tty {
            eprintln!("\rverified {} entries                 ", self.total);
        }
    }
}

pub(super) fn ledger_evidence(a: LedgerEvidenceArgs) -> anyhow::Result<()> {
    let keys = agentsigna_core::keys::Keyring::load(&a.data_dir.join("keys"), None)?;
    let reader = crate::database::open_ledger(&crate::database::select(a.db.database.as_deref(), &a.data_dir)?)?;
    let note_text = reader.checkpoint()?.ok_or_else(|| anyhow!("the ledger has no checkpoint"))?;
    let cp = note::verify_checkpoint(&note_text, &keys.ledger.verifier())?;
    let entries = reader.case_entries(&a.case)?;
    if !entries.iter().any(|e| e.index < cp.size) {
        bail!("case {} has no entries in the ledger", a.case);
    }
    let ev = agentsigna_core::engine::ledger::build_evidence(
        &a.case,
        &cp,
        note_text,
        keys.ledger.verifier_key(),
        entries,
        reader.nodes(),
    )?;
    let text = serde_json::to_string_pretty(&ev)?;
    match &a.out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?,
        None => println!("{text}"),
    }
    Ok(())
}
