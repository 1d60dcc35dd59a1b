//! `agentsigna gate`: the reverse proxy that forwards only requests carrying a valid,
//! unused passport.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use clap::Args;

use agentsigna_core::SystemClock;

use super::{read_secret_file, LimitArgs, RunArgs};
use crate::app;

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
    /// PostgreSQL database remembering used passports for every gate replica on it
    /// (postgres://…); default: this process's memory.
    #[arg(long, value_name = "URL")]
    pub replay_store: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

pub(super) async fn gate(a: GateArgs) -> anyhow::Result<()> {
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
        replay_store: a.replay_store,
    };
    let tls = a.run.tls.files().map(crate::http::tls::Tls::load).transpose()?;
    let reload = tls.as_ref().map(|t| t.reload_on_sighup()).transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let running =
        crate::gate::start_serving(opts, a.limits.server(), a.limits.rate(), tls, Arc::new(SystemClock)).await?;
    eprintln!("agentsigna gate listening on {scheme}://{}", running.addr);
    app::shutdown_signal().await;
    if let Some(r) = reload {
        r.abort();
    }
    running.stop().await
}
