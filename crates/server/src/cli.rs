//! Command-line interface.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Parser, Subcommand};

use agentsigna_core::engine::Config;
use agentsigna_core::SystemClock;
use agentsigna_verify::clock::parse_rfc3339_ms;
use agentsigna_verify::evidence::{verify_bundle, verify_evidence, Bundle, Evidence};
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
    /// Ledger tools: verify, export, evidence.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Policy tools: check, test, simulate.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Reverse proxy that forwards only requests carrying a valid, unused passport.
    Gate(GateArgs),
    /// Passport signing keys: list, rotate.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Trust standings: rebuild from the ledger.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Apply pending schema migrations to a PostgreSQL database (nodes also do it at start).
    Migrate(MigrateArgs),
    /// Load benchmark: verdict latency at a fixed rate, sustained authorized requests/s,
    /// and the ratio to a bare HTTP endpoint, on an in-process server with a durable ledger.
    Bench(crate::bench::BenchArgs),
    /// An MCP server (stdio) for an agent: request_authority, get_case, report_outcome.
    Mcp(crate::mcp::server::McpArgs),
    /// The enforcement point in front of an MCP server: mapped tool calls need a passport.
    McpGate(crate::mcp::gate::McpGateArgs),
}

/// `--database`: a PostgreSQL URL instead of the data directory's SQLite database.
#[derive(Debug, Args, Clone, Default)]
pub struct DatabaseArg {
    /// PostgreSQL database (postgres://user:password@host/db) shared by several nodes;
    /// default: the SQLite database in the data directory.
    #[arg(long, env = "AGENTSIGNA_DATABASE")]
    pub database: Option<String>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The PostgreSQL database to migrate.
    #[arg(long, env = "AGENTSIGNA_DATABASE")]
    pub database: String,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The protected system's base URL.
    #[arg(long)]
    pub upstream: String,
    /// JWK set of the passport keys: a file or a URL (refetched on an unknown kid, at most every 30 s).
    #[arg(long)]
    pub jwks: String,
    /// The audience this gate stands for (the target system's id).
    #[arg(long)]
    pub audience: String,
    /// The URL agents call, as used in holder proofs (`htu`); default http://<listen>.
    #[arg(long)]
    pub public_url: Option<String>,
    /// AgentSigna base URL to report executions to (with --report-token or --report-token-file).
    #[arg(long)]
    pub report_to: Option<String>,
    /// The target system's bearer token for reports.
    #[arg(long, value_name = "TOKEN", requires = "report_to", conflicts_with = "report_token_file")]
    pub report_token: Option<String>,
    /// A file holding the target system's bearer token for reports.
    #[arg(long, value_name = "FILE", requires = "report_to")]
    pub report_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Connection and request limits of `serve` and `gate`.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Seconds a client has to send a complete request head (also how long an idle
    /// keep-alive connection stays open).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub header_timeout: u64,
    /// Seconds a request body has to arrive after its head (408 after that), and longest
    /// stall of a client that does not read its answer.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout: u64,
    /// Most connections open at once; at the cap the oldest idle one is closed to make room.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Requests per second allowed per principal (per client address without a valid
    /// credential); 0 disables the limit. Over it: 429 with Retry-After.
    #[arg(long, value_name = "PER_SEC", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub rate_limit: u32,
    /// Requests a principal may send at once above the rate.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_burst: u32,
}

impl LimitArgs {
    /// The connection limits.
    pub fn server(&self) -> crate::http::server::ServerLimits {
        crate::http::server::ServerLimits {
            header_timeout: Duration::from_secs(self.header_timeout),
            body_timeout: Duration::from_secs(self.body_timeout),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }

    /// The request rate (`None` when disabled).
    pub fn rate(&self) -> Option<crate::http::limits::Rate> {
        (self.rate_limit > 0)
            .then_some(crate::http::limits::Rate { per_second: self.rate_limit, burst: self.rate_burst })
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate a policy (strict Cedar validation + annotations), offline.
    Check(PolicyCheckArgs),
    /// Run policy test suites (TOML files; a directory runs every *.toml in it).
    Test(PolicyTestArgs),
    /// Replay every recorded verdict under a candidate policy and report what would change.
    Simulate(PolicySimulateArgs),
}

#[derive(Debug, Args)]
pub struct PolicyCheckArgs {
    /// The Cedar policy file.
    pub file: PathBuf,
    /// Org file declaring the action types and roles (default: org.toml beside the policy).
    #[arg(long)]
    pub org: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PolicyTestArgs {
    /// A test file or a directory of test files.
    pub path: PathBuf,
}

#[derive(Debug, Args)]
pub struct PolicySimulateArgs {
    /// The candidate policy file.
    #[arg(long)]
    pub candidate: PathBuf,
    /// Data directory of the server whose ledger is replayed.
    #[arg(long, default_value = "./agentsigna-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub db: DatabaseArg,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List passport keys with their kid and status.
    List(DataDirArg),
    /// Add a new active passport key; the previous one stays published until every
    /// passport it signed has expired. A running server picks it up within a second.
    Rotate(DataDirArg),
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Recompute every trust standing from the ledger (`--check`: only compare).
    Rebuild(TrustRebuildArgs),
}

#[derive(Debug, Args)]
pub struct DataDirArg {
    /// Data directory.
    #[arg(long, default_value = "./agentsigna-data")]
    pub data_dir: PathBuf,
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

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory (keys, admin.token, credentials, SQLite database).
    #[arg(long, default_value = "./agentsigna-data", env = "AGENTSIGNA_DATA_DIR")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub db: DatabaseArg,
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
    /// Default passport lifetime in seconds (1 to 3600, the longest any passport lives).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(i64).range(1..=3600))]
    pub passport_ttl: i64,
    /// Default review deadline in seconds (1 to 2592000, 30 days).
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(1..=MAX_WINDOW_SECS))]
    pub review_deadline: i64,
    /// How long an approved passport may be picked up, in seconds (1 to 2592000, 30 days).
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(1..=MAX_WINDOW_SECS))]
    pub pickup_window: i64,
    /// Webhook URL notified when a review opens and when it is approved, rejected or
    /// expires (repeatable; Slack-compatible JSON with a `text` member).
    #[arg(long = "webhook", value_name = "URL")]
    pub webhooks: Vec<String>,
    /// Secret of the webhooks' `AgentSigna-Signature` HMAC, as a value (prefer
    /// --webhook-secret-file: a value shows in the process list).
    #[arg(
        long,
        value_name = "SECRET",
        env = "AGENTSIGNA_WEBHOOK_SECRET",
        hide_env_values = true,
        conflicts_with = "webhook_secret_file"
    )]
    pub webhook_secret: Option<String>,
    /// A file holding the webhooks' HMAC secret (surrounding whitespace ignored); a
    /// missing, unreadable or empty file is refused at start.
    #[arg(long, value_name = "FILE", env = "AGENTSIGNA_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Most `GET /v1/cases/{id}?wait=` long polls waiting at once; beyond it a call is
    /// answered at once (header `AgentSigna-Wait: unavailable`).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_waits: u64,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// The URL people reach this server at (links in notifications; `https://…` makes
    /// the web pages' session cookies `Secure`). Default: http://<listen address>.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
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

/// Runs a command; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve(a) => runtime().and_then(|rt| rt.block_on(serve(a))).map(|_| 0),
        Command::Demo(a) => runtime().and_then(|rt| rt.block_on(crate::demo::run(a))).map(|_| 0),
        Command::Verify(a) => return verify(a),
        Command::Gate(a) => runtime().and_then(|rt| rt.block_on(gate(a))).map(|_| 0),
        Command::Ledger(LedgerCommand::Verify(a)) => return ledger_verify(a),
        Command::Ledger(LedgerCommand::Export(a)) => ledger_export(a).map(|_| 0),
        Command::Ledger(LedgerCommand::Evidence(a)) => ledger_evidence(a).map(|_| 0),
        Command::Policy(PolicyCommand::Check(a)) => policy_check(a),
        Command::Policy(PolicyCommand::Test(a)) => policy_test(a),
        Command::Policy(PolicyCommand::Simulate(a)) => {
            runtime().and_then(|rt| rt.block_on(policy_simulate(a))).map(|_| 0)
        }
        Command::Keys(KeysCommand::List(a)) => keys_list(&a.data_dir).map(|_| 0),
        Command::Keys(KeysCommand::Rotate(a)) => keys_rotate(&a.data_dir).map(|_| 0),
        Command::Trust(TrustCommand::Rebuild(a)) => runtime().and_then(|rt| rt.block_on(trust_rebuild(a))),
        Command::Migrate(a) => runtime().and_then(|rt| rt.block_on(migrate(a))).map(|_| 0),
        Command::Bench(a) => crate::bench::run(a),
        Command::Mcp(a) => crate::mcp::server::run(a),
        Command::McpGate(a) => crate::mcp::gate::run(a),
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
    opts.database = a.db.database;
    opts.org = a.org;
    opts.origin = a.origin;
    opts.config = config;
    opts.webhooks = a.webhooks;
    opts.webhook_secret = match (&a.webhook_secret, &a.webhook_secret_file) {
        (_, Some(file)) => Some(read_secret_file(file, "--webhook-secret-file")?),
        (Some(v), None) => Some(v.trim().to_owned()).filter(|s| !s.is_empty()),
        (None, None) => None,
    };
    opts.limits = a.limits.server();
    opts.rate = a.limits.rate();
    opts.max_waits = usize::try_from(a.max_waits).unwrap_or(usize::MAX);
    opts.public_url = a.public_url.map(|u| u.trim_end_matches('/').to_owned());
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

/// Longest review deadline and pickup window `serve` accepts, in seconds (30 days).
pub const MAX_WINDOW_SECS: i64 = 30 * 86_400;

/// Reads a secret from a file named by `flag`: it must exist and not be empty.
fn read_secret_file(path: &Path, flag: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        bail!("{flag}: {} is empty", path.display());
    }
    Ok(secret.to_owned())
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
            // A closed pipe (`| head`) is not an error of the verification.
            let _ = writeln!(std::io::stdout(), "{}", out.unwrap_or_default());
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

fn ledger_export(a: LedgerExportArgs) -> anyhow::Result<()> {
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

fn ledger_evidence(a: LedgerEvidenceArgs) -> anyhow::Result<()> {
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

fn keys_list(data_dir: &Path) -> anyhow::Result<()> {
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

fn keys_rotate(data_dir: &Path) -> anyhow::Result<()> {
    if !data_dir.join("keys").join("passport.keys").exists() {
        bail!("{} has no passport keys; start the server once first", data_dir.display());
    }
    let mut keys = agentsigna_core::keys::Keyring::load(&data_dir.join("keys"), None)?;
    let now = agentsigna_core::Clock::now_ms(&SystemClock);
    let kid = keys.rotate(now)?.kid.clone();
    println!("new active passport key: {kid}");
    Ok(())
}

async fn trust_rebuild(a: TrustRebuildArgs) -> anyhow::Result<i32> {
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

async fn migrate(a: MigrateArgs) -> anyhow::Result<()> {
    let version = crate::database::migrate(&a.database).await?;
    println!("the database is at schema version {version}");
    Ok(())
}

async fn gate(a: GateArgs) -> anyhow::Result<()> {
    let report_token = match (&a.report_token, &a.report_token_file) {
        (_, Some(file)) => Some(read_secret_file(file, "--report-token-file")?),
        (Some(t), None) => Some(t.trim().to_owned()),
        (None, None) => None,
    };
    if a.report_to.is_some() && report_token.is_none() {
        bail!("--report-to needs the target system's token: --report-token TOKEN or --report-token-file FILE");
    }
    let opts = crate::gate::GateOptions {
        listen: a.listen,
        upstream: a.upstream,
        jwks: a.jwks,
        audience: a.audience,
        public_url: a.public_url,
        report_to: a.report_to,
        report_token,
    };
    let running = crate::gate::start_limited(opts, a.limits.server(), a.limits.rate(), Arc::new(SystemClock)).await?;
    eprintln!("agentsigna gate listening on http://{}", running.addr);
    app::shutdown_signal().await;
    running.stop().await
}

/// The policy environment an org file declares: action types and approver roles.
fn org_env(org: &Path) -> anyhow::Result<agentsigna_core::policy::PolicyEnv> {
    let (org, _) = agentsigna_core::org::OrgFile::load(org)?;
    let mut roles: Vec<String> = org.roles.clone();
    roles.extend(org.approvers.iter().flat_map(|a| a.roles.clone()));
    roles.sort();
    roles.dedup();
    Ok(agentsigna_core::policy::PolicyEnv {
        actions: org.actions.iter().map(|a| a.action_type.clone()).collect(),
        roles,
    })
}

fn policy_check(a: PolicyCheckArgs) -> anyhow::Result<i32> {
    let source = std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let org = match a.org {
        Some(o) => o,
        None => a.file.parent().unwrap_or(Path::new(".")).join("org.toml"),
    };
    if !org.exists() {
        bail!("no org file declaring the action types: pass --org FILE (looked for {})", org.display());
    }
    let env = org_env(&org)?;
    match agentsigna_core::policy::CompiledPolicy::compile(&source, &env) {
        Ok(p) => {
            println!("OK: {} rules, {}", p.rules().len(), p.digest());
            for r in p.rules() {
                println!("  {:<28} {:<7} {:?}", r.id, r.effect, r.tier);
            }
            Ok(0)
        }
        Err(e) => {
            let at = match (e.line, e.column) {
                (Some(l), Some(c)) => format!("{}:{l}:{c}: ", a.file.display()),
                _ => format!("{}: ", a.file.display()),
            };
            let rule = e.rule.as_deref().map(|r| format!("rule {r}: ")).unwrap_or_default();
            eprintln!("{at}{rule}{}", e.message);
            Ok(1)
        }
    }
}

fn policy_test(a: PolicyTestArgs) -> anyhow::Result<i32> {
    let files: Vec<PathBuf> = if a.path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&a.path)
            .with_context(|| format!("cannot read {}", a.path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.file_name().is_some_and(|n| n != "org.toml"))
            .collect();
        v.sort();
        v
    } else {
        vec![a.path.clone()]
    };
    if files.is_empty() {
        bail!("no test files (*.toml) in {}", a.path.display());
    }
    let (mut cases, mut failed) = (0, 0);
    for f in &files {
        let report = agentsigna_core::policy::run_suite(f).map_err(|e| anyhow!("{}: {}", f.display(), e.describe()))?;
        print!("{}", report.render());
        cases += report.cases.len();
        failed += report.failures();
    }
    if files.len() > 1 {
        println!("{} passed, {} failed", cases - failed, failed);
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

async fn policy_simulate(a: PolicySimulateArgs) -> anyhow::Result<()> {
    if !crate::database::exists(&crate::database::select(a.db.database.as_deref(), &a.data_dir)?) {
        bail!("{} has no database", a.data_dir.display());
    }
    let source =
        std::fs::read_to_string(&a.candidate).with_context(|| format!("cannot read {}", a.candidate.display()))?;
    let (engine, _) =
        app::open_engine(&a.data_dir, a.db.database.as_deref(), None, Config::default(), Arc::new(SystemClock)).await?;
    let report = engine.simulate_policy(source).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "replayed {} recorded verdicts under {} ({}): {} would change",
        report.replayed,
        a.candidate.display(),
        report.candidate_digest,
        report.changed.len()
    );
    for c in &report.changed {
        println!(
            "  {} {} {} {} {} minor units: {:?} [{}] -> {:?} [{}]",
            c.case_id,
            c.at,
            c.agent,
            c.action,
            c.amount_minor,
            c.from,
            c.from_rules.join(", "),
            c.to,
            c.to_rules.join(", ")
        );
    }
    Ok(())
}
