//! `agentsigna policy check | test | simulate`: a Cedar policy validated, tested against
//! its suites, and replayed over the recorded verdicts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};

use agentsigna_core::engine::Config;
use agentsigna_core::SystemClock;

use super::DatabaseArg;
use crate::app;

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

/// The policy environment an org file declares: action types and approver roles.
pub(super) fn org_env(org: &Path) -> anyhow::Result<agentsigna_core::policy::PolicyEnv> {
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

pub(super) fn policy_check(a: PolicyCheckArgs) -> anyhow::Result<i32> {
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

pub(super) fn policy_test(a: PolicyTestArgs) -> anyhow::Result<i32> {
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

pub(super) async fn policy_simulate(a: PolicySimulateArgs) -> anyhow::Result<()> {
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
