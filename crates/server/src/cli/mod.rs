//! The command line: clap's definition of every subcommand and the dispatch to them.
//! Each subcommand's arguments and code live in a file of their own; this file holds
//! what several share.

pub mod config;
mod gate;
mod keys;
mod ledger;
mod policy;
mod serve;
mod trust;
mod verify;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};

pub use gate::GateArgs;
pub use keys::{fits as keys_fit, KeysCommand, KeysListArgs};
pub use ledger::{LedgerCommand, LedgerEvidenceArgs, LedgerExportArgs, LedgerVerifyArgs};
pub use policy::{PolicyCheckArgs, PolicyCommand, PolicySimulateArgs, PolicyTestArgs};
pub use serve::{LimitArgs, RunArgs, ServeArgs, TlsArgs, MAX_WINDOW_SECS};
pub use trust::{MigrateArgs, TrustCommand, TrustRebuildArgs};
pub use verify::VerifyArgs;

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
    Demo(crate::demo::DemoArgs),
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
    /// Print the OpenAPI 3.1 description of the HTTP API (what `GET /openapi.json` serves).
    Openapi,
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
pub struct DataDirArg {
    /// Data directory.
    #[arg(long, default_value = "./agentsigna-data")]
    pub data_dir: PathBuf,
}
/// Runs a command; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve(a) => runtime().and_then(|rt| rt.block_on(serve::serve(a))).map(|_| 0),
        Command::Demo(a) => runtime().and_then(|rt| rt.block_on(crate::demo::run(a))).map(|_| 0),
        Command::Verify(a) => return verify::verify(a),
        Command::Gate(a) => runtime().and_then(|rt| rt.block_on(gate::gate(a))).map(|_| 0),
        Command::Ledger(LedgerCommand::Verify(a)) => return ledger::ledger_verify(a),
        Command::Ledger(LedgerCommand::Export(a)) => ledger::ledger_export(a).map(|_| 0),
        Command::Ledger(LedgerCommand::Evidence(a)) => ledger::ledger_evidence(a).map(|_| 0),
        Command::Policy(PolicyCommand::Check(a)) => policy::policy_check(a),
        Command::Policy(PolicyCommand::Test(a)) => policy::policy_test(a),
        Command::Policy(PolicyCommand::Simulate(a)) => {
            runtime().and_then(|rt| rt.block_on(policy::policy_simulate(a))).map(|_| 0)
        }
        Command::Keys(KeysCommand::List(a)) => keys::keys_list(&a).map(|_| 0),
        Command::Keys(KeysCommand::Rotate(a)) => keys::keys_rotate(&a.data_dir).map(|_| 0),
        Command::Trust(TrustCommand::Rebuild(a)) => runtime().and_then(|rt| rt.block_on(trust::trust_rebuild(a))),
        Command::Migrate(a) => runtime().and_then(|rt| rt.block_on(trust::migrate(a))).map(|_| 0),
        Command::Bench(a) => crate::bench::run(a),
        Command::Mcp(a) => crate::mcp::server::run(a),
        Command::McpGate(a) => crate::mcp::gate::run(a),
        Command::Openapi => {
            print!("{}", crate::openapi::document());
            Ok(0)
        }
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
