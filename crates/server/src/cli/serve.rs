//! `agentsigna serve`: its flags, the connection and request limits it shares with
//! `gate`, and the start of the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use agentsigna_core::engine::Config;
use agentsigna_core::SystemClock;

use super::{read_secret_file, DatabaseArg};
use crate::app::{self, ServeOptions};

/// The flags every long-running server (`serve`, `gate`) shares: its configuration file,
/// `--print-config`, the log format and TLS.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A TOML file of flags (`listen = "…"`, `rate-limit = 100`): flags and their
    /// environment variables take precedence over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (flags, environment, file, defaults), secrets
    /// redacted, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Log lines as human-readable text or as JSON objects (stderr; `AGENTSIGNA_LOG` filters).
    #[arg(long, value_enum, default_value_t = crate::observe::logging::LogFormat::Text)]
    pub log_format: crate::observe::logging::LogFormat,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// `--tls-cert` and `--tls-key`: HTTPS instead of HTTP (PEM files, reloaded on SIGHUP).
#[derive(Debug, Args, Clone, Default)]
pub struct TlsArgs {
    /// Certificate chain (PEM, leaf first) to serve HTTPS with; reread on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the certificate (PEM: PKCS#8, PKCS#1 or SEC1); reread on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The TLS files, when both are given.
    pub fn files(&self) -> Option<crate::http::tls::TlsFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::http::tls::TlsFiles { cert: cert.clone(), key: key.clone() }),
            _ => None,
        }
    }
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
    /// the web pages' session cookies `Secure`, as `--tls-cert` does). Default:
    /// http(s)://<listen address>.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Serve `GET /metrics` (and `/readyz`, `/healthz`) on this address too, without a
    /// credential; on the API port `/metrics` needs the admin credential.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// In the approver pages, approving a request whose amount is above this (in major
    /// units of its currency, e.g. 50000) needs the amount retyped. Default: no threshold.
    #[arg(long, value_name = "AMOUNT", value_parser = parse_threshold)]
    pub confirm_above: Option<f64>,
    #[command(flatten)]
    pub run: RunArgs,
}

fn parse_threshold(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(format!("--confirm-above takes a non-negative amount such as 50000 (got {v:?})")),
    }
}

pub(super) async fn serve(a: ServeArgs) -> anyhow::Result<()> {
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
    opts.tls = a.run.tls.files();
    opts.metrics_listen = a.metrics_listen;
    opts.ui.confirm_above = a.confirm_above;
    let running = app::start(opts, Arc::new(SystemClock)).await?;
    eprintln!("agentsigna listening on {} (data dir {})", running.url(), running.data_dir.display());
    if let Some(m) = running.metrics_addr {
        eprintln!("metrics on http{}://{m}/metrics", if running.url().starts_with("https") { "s" } else { "" });
    }
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
