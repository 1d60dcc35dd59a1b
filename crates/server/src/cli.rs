//! Command-line interface.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Parser, Subcommand};

use agentsigna_core::engine::Config;
use agentsigna_core::SystemClock;
use agentsigna_verify::clock::parse_rfc3339_ms;
use agentsigna_verify::evidence::{verify_bundle, verify_evidence, Bundle, Evidence, LedgerVerifier};
use agentsigna_verify::jwk::Jwks;
use agentsigna_verify::note::{self, NoteVerifier};
use agentsigna_verify::passport::Verifier;

use crate::app::{self, ServeOptions};

#[derive(Debug, Parser)]
#[command(name = "agentsigna", version, about = "Authorization gateway for software agents")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run the procurement demo: a real server, agents, approvers and an ERP, all seven steps.
    Demo(DemoArgs),
    /// Verify a passport offline (exit 0 valid, 1 invalid with a reason word on stderr, 2 usage).
    Verify(VerifyArgs),
    /// Ledger tools: verify, export.
    #[command(subcommand)]
    Ledger(LedgerCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory (keys, admin.token, credentials, SQLite database).
    #[arg(long, default_value = "./agentsigna-data", env = "AGENTSIGNA_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "AGENTSIGNA_LISTEN")]
    pub listen: SocketAddr,
    /// Organization file (TOML) to apply at start-up (idempotent).
    #[arg(long)]
    pub org: Option<PathBuf>,
    /// Checkpoint origin (default: agentsigna/<ledger key id>).
    #[arg(long)]
    pub origin: Option<String>,
    /// Passport issuer (`iss`).
    #[arg(long, default_value = "agentsigna")]
    pub issuer: String,
    /// Default passport lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    pub passport_ttl: i64,
    /// Default review deadline in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub review_deadline: i64,
    /// How long an approved passport may be picked up, in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub pickup_window: i64,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the server running after the demo, for browsing.
    #[arg(long)]
    pub serve: bool,
    /// Listen address for `--serve` (default: a free loopback port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The passport (compact JWS), or `-` to read it from standard input.
    pub passport: String,
    /// JWK set: a file or an http(s) URL.
    #[arg(long)]
    pub jwks: String,
    /// The audience this verifier stands for.
    #[arg(long)]
    pub audience: String,
    /// Check validity at this instant (RFC 3339) instead of now.
    #[arg(long)]
    pub at: Option<String>,
    /// Print the whole verified claims as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute every digest, chain and the Merkle root; check the checkpoint signature.
    Verify(LedgerVerifyArgs),
    /// Write an offline bundle (entries + checkpoint + verifier key).
    Export(LedgerExportArgs),
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
}

#[derive(Debug, Args)]
pub struct LedgerExportArgs {
    /// Data directory of a server.
    #[arg(long, default_value = "./agentsigna-data")]
    pub data_dir: PathBuf,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs a command; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve(a) => runtime().and_then(|rt| rt.block_on(serve(a))).map(|_| 0),
        Command::Demo(a) => runtime().and_then(|rt| rt.block_on(crate::demo::run(a))).map(|_| 0),
        Command::Verify(a) => return verify(a),
        Command::Ledger(LedgerCommand::Verify(a)) => return ledger_verify(a),
        Command::Ledger(LedgerCommand::Export(a)) => ledger_export(a).map(|_| 0),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let config = Config {
        issuer: a.issuer,
        passport_ttl_secs: a.passport_ttl,
        review_deadline_secs: a.review_deadline,
        pickup_window_secs: a.pickup_window,
        ..Config::default()
    };
    let mut opts = ServeOptions::new(&a.data_dir, a.listen);
    opts.org = a.org;
    opts.origin = a.origin;
    opts.config = config;
    let running = app::start(opts, Arc::new(SystemClock)).await?;
    eprintln!("agentsigna listening on {} (data dir {})", running.url(), running.data_dir.display());
    if running.admin_token.is_some() {
        eprintln!("admin credential written to {}", running.data_dir.join("admin.token").display());
    }
    for c in &running.credentials {
        eprintln!("created {} {} (credential in credentials/{}-{}.token)", c.kind, c.id, c.kind, c.id);
    }
    app::shutdown_signal().await;
    eprintln!("shutting down: draining in-flight requests");
    running.stop(Duration::from_secs(30)).await
}

fn read_arg_or_file(value: &str) -> anyhow::Result<String> {
    let p = Path::new(value);
    if p.exists() {
        Ok(std::fs::read_to_string(p).with_context(|| format!("cannot read {value}"))?.trim().to_owned())
    } else {
        Ok(value.trim().to_owned())
    }
}

fn load_jwks(source: &str) -> anyhow::Result<Jwks> {
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        let resp = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?
            .get(source)
            .send()
            .with_context(|| format!("cannot fetch {source}"))?;
        if !resp.status().is_success() {
            bail!("{source} answered {}", resp.status());
        }
        resp.text()?
    } else {
        std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"))?
    };
    Jwks::from_json(&text).map_err(|e| anyhow!("invalid JWKS: {e}"))
}

fn verify(a: VerifyArgs) -> i32 {
    let token = if a.passport == "-" {
        let mut s = String::new();
        if std::io::stdin().read_to_string(&mut s).is_err() {
            eprintln!("error: cannot read the passport from standard input");
            return 2;
        }
        s.trim().to_owned()
    } else {
        a.passport.trim().to_owned()
    };
    let jwks = match load_jwks(&a.jwks) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 2;
        }
    };
    let mut verifier = Verifier::new(jwks, a.audience);
    if let Some(at) = &a.at {
        match parse_rfc3339_ms(at) {
            Some(ms) => verifier = verifier.at(ms.div_euclid(1000)),
            None => {
                eprintln!("error: --at must be an RFC 3339 timestamp (got {at:?})");
                return 2;
            }
        }
    }
    match verifier.verify(&token, &SystemClock) {
        Ok(v) => {
            let out = if a.json {
                serde_json::to_string_pretty(&v.claims)
            } else {
                serde_json::to_string_pretty(&serde_json::json!({
                    "valid": true, "kid": v.kid, "sub": v.claims.sub, "aud": v.claims.aud,
                    "jti": v.claims.jti, "exp": v.claims.exp,
                    "authorization_details": v.claims.authorization_details,
                    "decision": v.claims.decision, "approvals": v.claims.approvals, "case": v.claims.case,
                }))
            };
            println!("{}", out.unwrap_or_default());
            0
        }
        Err(e) => {
            eprintln!("{}", e.code());
            1
        }
    }
}

fn read_key(value: &str) -> anyhow::Result<NoteVerifier> {
    let text = read_arg_or_file(value)?;
    NoteVerifier::parse(text.lines().next().unwrap_or("")).map_err(|e| anyhow!("invalid verifier key: {e}"))
}

fn ledger_verify(a: LedgerVerifyArgs) -> i32 {
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

fn ledger_verify_inner(a: LedgerVerifyArgs) -> anyhow::Result<String> {
    if let Some(path) = &a.evidence {
        let key = read_key(a.key.as_deref().unwrap_or_default())?;
        let ev: Evidence = serde_json::from_str(&std::fs::read_to_string(path)?).context("invalid evidence file")?;
        let cp = verify_evidence(&ev, &key)?;
        return Ok(format!("OK: {} entries of case {} are included in {} at size {}", ev.entries.len(), ev.case, cp.origin, cp.size));
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
            let keys = agentsigna_core::keys::Keyring::load_or_create(&data_dir.join("keys"), None, 0)
                .map_err(|e| anyhow!("cannot read the ledger key from {}: {e}", data_dir.display()))?;
            keys.ledger.verifier()
        }
    };
    let reader = agentsigna_store::sqlite::LedgerReader::open(&app::db_path(&data_dir))?;
    let note_text = reader.checkpoint()?.ok_or_else(|| anyhow!("the ledger has no checkpoint"))?;
    let mut verifier = LedgerVerifier::new();
    if let Some(p) = &a.checkpoint {
        let saved = note::verify_checkpoint(&std::fs::read_to_string(p)?, &key).context("saved checkpoint")?;
        verifier.expect_prefix(&saved, &p.display().to_string())?;
    }
    let total = reader.size()?;
    let progress = Progress::new(total);
    reader.scan(|idx, text, digest| {
        let parsed: agentsigna_verify::ledger::Entry = serde_json::from_str(text)
            .map_err(|e| agentsigna_core::Error::storage(format!("bad entry at index {idx}: not an entry: {e}")))?;
        let entry = agentsigna_verify::ledger::DigestedEntry { entry: parsed, digest: agentsigna_verify::ledger::hex_lower(digest) };
        if i64::try_from(entry.entry.index).ok() != Some(idx) {
            return Err(agentsigna_core::Error::storage(format!(
                "bad entry at index {idx}: stored position {idx} holds an entry claiming index {}",
                entry.entry.index
            )));
        }
        // The stored text must be exactly the canonical form that was hashed.
        let canonical = entry.entry.canonical_json().map_err(|e| agentsigna_core::Error::storage(format!("entry {idx}: {e}")))?;
        if canonical != text {
            return Err(agentsigna_core::Error::storage(format!("bad entry at index {idx}: stored text is not canonical")));
        }
        verifier.push_digested(&entry).map_err(|e| agentsigna_core::Error::storage(e.to_string()))?;
        progress.tick(verifier.size());
        Ok(())
    })?;
    progress.done();
    let report = verifier.finish_note(&note_text, &key)?;
    Ok(format!(
        "OK: {} entries, {} cases, every digest and chain recomputed, Merkle root matches the checkpoint signed by {} at size {}",
        report.entries, report.cases, report.checkpoint.origin, report.checkpoint.size
    ))
}

fn ledger_export(a: LedgerExportArgs) -> anyhow::Result<()> {
    let keys = agentsigna_core::keys::Keyring::load_or_create(&a.data_dir.join("keys"), None, 0)?;
    let reader = agentsigna_store::sqlite::LedgerReader::open(&app::db_path(&a.data_dir))?;
    let checkpoint = reader.checkpoint()?.ok_or_else(|| anyhow!("the ledger has no checkpoint"))?;
    let cp = note::verify_checkpoint(&checkpoint, &keys.ledger.verifier())?;
    let mut entries = Vec::new();
    reader.scan(|idx, text, digest| {
        if u64::try_from(idx).unwrap_or(u64::MAX) >= cp.size {
            return Ok(());
        }
        let entry = serde_json::from_str(text).map_err(|e| agentsigna_core::Error::storage(format!("entry {idx}: {e}")))?;
        entries.push(agentsigna_verify::ledger::DigestedEntry { entry, digest: agentsigna_verify::ledger::hex_lower(digest) });
        Ok(())
    })?;
    let bundle = Bundle::new(checkpoint, keys.ledger.verifier_key(), entries);
    let n = bundle.entries.len();
    std::fs::write(&a.out, serde_json::to_vec(&bundle)?).with_context(|| format!("cannot write {}", a.out.display()))?;
    eprintln!("wrote {n} entries and the checkpoint at size {} to {}", cp.size, a.out.display());
    Ok(())
}

/// A progress line on a terminal (stderr), nothing otherwise.
struct Progress {
    total: u64,
    tty: bool,
}

impl Progress {
    fn new(total: u64) -> Progress {
        use std::io::IsTerminal;
        Progress { total, tty: std::io::stderr().is_terminal() && total > 50_000 }
    }

    fn tick(&self, done: u64) {
        if self.tty && done % 50_000 == 0 {
            eprint!("\rverifying {done}/{} entries ({}%)", self.total, done * 100 / self.total.max(1));
        }
    }

    fn done(&self) {
        if self.tty {
            eprintln!("\rverified {} entries                 ", self.total);
        }
    }
}
