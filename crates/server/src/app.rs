//! Start-up: data directory, keys, store, admin credential, org file, HTTP server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use agentsigna_core::engine::{Config, Engine};
use agentsigna_core::keys::{write_secret_file, Keyring};
use agentsigna_core::org::{NewCredential, OrgFile};
use agentsigna_core::Clock;

use crate::http;
use crate::http::limits::{Rate, RequestLimits, DEFAULT_MAX_WAITS};
use crate::http::server::ServerLimits;
use crate::state::AppState;

/// What `agentsigna serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// A PostgreSQL URL; `None`: the data directory's SQLite database.
    pub database: Option<String>,
    /// Org file applied at start-up.
    pub org: Option<PathBuf>,
    /// Org applied from memory (the demo's built-in org), with its policy source.
    pub org_inline: Option<(OrgFile, Option<String>)>,
    /// Checkpoint origin (default `agentsigna/<ledger key id>`).
    pub origin: Option<String>,
    pub config: Config,
    /// Run the expiry sweeper (tests that drive time by hand may turn it off).
    pub sweeper: bool,
    /// Webhook URLs notified when a review opens and when it is decided or expires.
    pub webhooks: Vec<String>,
    /// HMAC-SHA256 key of the webhooks' `AgentSigna-Signature` header.
    pub webhook_secret: Option<String>,
    /// Webhook retries and the timeout of one POST (which also sets the delivery lease).
    pub webhook_retry: crate::notify::RetryPolicy,
    /// The URL people reach this server at (links in notifications; `https://` marks the
    /// web pages' cookies `Secure`). Default `http://<listen address>`.
    pub public_url: Option<String>,
    /// Connection limits: head and body timeouts, connection cap.
    pub limits: ServerLimits,
    /// Per-principal request rate (`None`: unlimited).
    pub rate: Option<Rate>,
    /// Most `?wait` long polls waiting at once.
    pub max_waits: usize,
    /// HTTPS with these PEM files (reread on SIGHUP); the web pages' cookies are then
    /// `Secure` and the default public URL is `https://<listen address>`.
    pub tls: Option<crate::http::tls::TlsFiles>,
    /// A second address serving `/metrics` without a credential (and the probes).
    pub metrics_listen: Option<SocketAddr>,
    /// Settings of the approver pages (`--confirm-above`).
    pub ui: crate::ui::UiOptions,
}

impl ServeOptions {
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> ServeOptions {
        ServeOptions {
            data_dir: data_dir.into(),
            listen,
            database: None,
            org: None,
            org_inline: None,
            origin: None,
            config: Config::default(),
            sweeper: true,
            webhooks: Vec::new(),
            webhook_secret: None,
            webhook_retry: crate::notify::RetryPolicy::default(),
            public_url: None,
            limits: ServerLimits::default(),
            rate: None,
            max_waits: DEFAULT_MAX_WAITS,
            tls: None,
            metrics_listen: None,
            ui: crate::ui::UiOptions::default(),
        }
    }
}

/// A server running in this process.
pub struct Running {
    pub addr: SocketAddr,
    /// The address of `--metrics-listen`.
    pub metrics_addr: Option<SocketAddr>,
    /// `http` or `https`.
    pub scheme: &'static str,
    pub engine: Arc<Engine>,
    pub data_dir: PathBuf,
    /// The admin token, when this start created it (it is also in `admin.token`).
    pub admin_token: Option<String>,
    /// Credentials created by the org file on this start.
    pub credentials: Vec<NewCredential>,
    shutdown: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<std::io::Result<()>>>,
    sweeper: Option<JoinHandle<()>>,
    key_reload: Option<JoinHandle<()>>,
    notifier: Option<JoinHandle<()>>,
    /// The SIGHUP listener rereading the TLS files.
    tls_reload: Option<JoinHandle<()>>,
    /// The `--metrics-listen` server.
    metrics: Option<(oneshot::Sender<()>, JoinHandle<std::io::Result<()>>)>,
    state: AppState,
    /// Other nodes' commits, followed while this runs (PostgreSQL).
    _changes: Option<agentsigna_store::postgres::Listener>,
}

impl Running {
    /// `http://addr` (or `https://addr`).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Stops accepting connections, drains in-flight requests (at most `grace`) and waits.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        if let Some(s) = self.sweeper.take() {
            s.abort();
        }
        if let Some(n) = self.notifier.take() {
            n.abort();
        }
        if let Some(r) = self.tls_reload.take() {
            r.abort();
        }
        if let Some(k) = self.key_reload.take() {
            k.abort();
        }
        if let Some((tx, join)) = self.metrics.take() {
            let _ = tx.send(());
            let _ = tokio::time::timeout(grace, join).await;
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.state.begin_shutdown();
        if let Some(join) = self.join.take() {
            match tokio::time::timeout(grace, join).await {
                Ok(r) => r.context("server task failed")?.context("HTTP server failed")?,
                Err(_) => tracing::warn!("in-flight requests did not finish within {grace:?}; exiting anyway"),
            }
        }
        Ok(())
    }
}

/// The database file in a data directory.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("agentsigna.db")
}

/// Opens the keys of a data directory and the store (its SQLite file, or the PostgreSQL
/// database `database` names) and builds the engine; with PostgreSQL, also the feed of
/// other nodes' changes to follow.
pub async fn open_engine(
    data_dir: &Path,
    database: Option<&str>,
    origin: Option<&str>,
    config: Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<Engine>, Option<crate::database::ChangeFeed>)> {
    secure_data_dir(data_dir)?;
    let keys = Keyring::load_or_create(&data_dir.join("keys"), origin, clock.now_ms())?;
    let db = crate::database::select(database, data_dir)?;
    let verifier = keys.ledger.verifier();
    let (store, feed) = crate::database::open_store(&db, keys.ledger.clone()).await?;
    let engine = Arc::new(Engine::new(store, clock, keys, config));
    // Refuse to extend a ledger signed with another key (a node started without the first
    // node's keys/): its checkpoints would not verify with the others'.
    let stored = engine.stored_checkpoint().await?;
    crate::cli::keys_fit(stored.as_deref(), &verifier)?;
    Ok((engine, feed))
}

/// Writes the credentials created by an org file, once, mode 0600.
pub fn write_credentials(data_dir: &Path, creds: &[NewCredential]) -> anyhow::Result<()> {
    if creds.is_empty() {
        return Ok(());
    }
    let dir = data_dir.join("credentials");
    create_private_dir(&dir)?;
    for c in creds {
        write_secret_file(&dir.join(format!("{}-{}.token", c.kind, c.id)), format!("{}\n", c.token).as_bytes())?;
    }
    Ok(())
}

/// Creates a directory (and its missing parents) accessible only by its owner.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Creates the data directory and its `keys/` and `credentials/` directories mode 0700,
/// and the database file mode 0600 before SQLite opens it (SQLite gives its `-wal` and
/// `-shm` files the database file's mode), whatever the umask.
pub fn secure_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    create_private_dir(data_dir)?;
    create_private_dir(&data_dir.join("keys"))?;
    let db = db_path(data_dir);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    match opts.open(&db) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot create {}: {e}", db.display())),
    }
}

/// The files of a data directory that hold secrets: keys, `admin.token`, credentials,
/// the database (bearer passports, credential hashes) and its WAL and shared memory.
fn secret_files(data_dir: &Path) -> Vec<PathBuf> {
    let db = db_path(data_dir);
    let mut files = vec![data_dir.join("admin.token"), db.with_extension("db-wal"), db.with_extension("db-shm"), db];
    for dir in ["keys", "credentials"] {
        if let Ok(entries) = std::fs::read_dir(data_dir.join(dir)) {
            let mut found: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            found.sort();
            files.extend(found);
        }
    }
    files
}

/// Refuses to start when a secret file of the data directory is accessible by group or
/// others: the operator fixes the mode (the server never changes it silently).
pub fn refuse_exposed_files(data_dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for file in secret_files(data_dir) {
            let Ok(meta) = std::fs::symlink_metadata(&file) else { continue };
            if !meta.is_file() {
                continue;
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                anyhow::bail!(
                    "{} is accessible by group or others (mode {mode:04o}) and holds secrets; \
                     restrict it with `chmod 600 {}` (and `chmod 700 {}`), then start again",
                    file.display(),
                    file.display(),
                    data_dir.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = secret_files(data_dir);
    Ok(())
}

/// Starts the server: first start creates keys and `admin.token`; the org file is applied.
pub async fn start(opts: ServeOptions, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    crate::notify::validate_urls(&opts.webhooks)?;
    refuse_exposed_files(&opts.data_dir)?;
    let (engine, feed) =
        open_engine(&opts.data_dir, opts.database.as_deref(), opts.origin.as_deref(), opts.config.clone(), clock)
            .await?;
    let changes = match feed {
        Some(feed) => Some(feed.follow(&engine).await?),
        None => None,
    };
    let admin_token = engine.ensure_admin_token().await?;
    if let Some(token) = &admin_token {
        write_secret_file(&opts.data_dir.join("admin.token"), format!("{token}\n").as_bytes())?;
        tracing::info!(path = %opts.data_dir.join("admin.token").display(), "created the admin credential");
    }
    let mut credentials = Vec::new();
    let mut orgs = Vec::new();
    if let Some(path) = &opts.org {
        orgs.push(OrgFile::load(path).with_context(|| format!("org file {}", path.display()))?);
    }
    if let Some(inline) = opts.org_inline.clone() {
        orgs.push(inline);
    }
    for (org, policy) in orgs {
        let applied = engine.apply_org(&org, policy).await.context("applying the org file")?;
        write_credentials(&opts.data_dir, &applied.credentials)?;
        credentials.extend(applied.credentials);
    }
    engine.warm_policies().await.context("compiling the active policy")?;
    let tls = opts.tls.clone().map(crate::http::tls::Tls::load).transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = TcpListener::bind(opts.listen).await.with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let state = AppState::with(engine.clone(), RequestLimits::new(opts.rate, opts.max_waits), opts.ui.clone());
    let public_url = opts.public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
    state.sessions.set_always_secure(public_url.starts_with("https://"));
    // Webhooks: the outbox is written by the engine with each review event; the worker
    // delivers it off the request path.
    let notifier = if opts.webhooks.is_empty() {
        crate::notify::spawn_discarder(engine.clone())
    } else {
        let cfg = crate::notify::NotifyConfig {
            urls: opts.webhooks.clone(),
            secret: opts.webhook_secret.clone(),
            public_url: public_url.clone(),
            retry: opts.webhook_retry,
            failures: state.metrics.webhook_failures.clone(),
        };
        crate::notify::spawn(engine.clone(), engine.outbox_signal(), cfg)?
    };
    let app = crate::router::router(state.clone());
    let metrics = match opts.metrics_listen {
        Some(at) => {
            let l = TcpListener::bind(at).await.with_context(|| format!("--metrics-listen: cannot listen on {at}"))?;
            let local = l.local_addr()?;
            let router = crate::observe::health::metrics_router(state.clone())
                .layer(axum::middleware::from_fn_with_state(None, crate::observe::request::track));
            Some((local, http::server::serve_tls(l, router, opts.limits, tls.clone())))
        }
        None => None,
    };
    let tls_reload = tls.as_ref().map(|t| t.reload_on_sighup()).transpose()?;
    let (tx, join) = http::server::serve_tls(listener, app, opts.limits, tls);
    let sweeper = opts.sweeper.then(|| {
        let e = engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(err) = e.process_due().await {
                    tracing::warn!(error = %err, "expiry sweep failed");
                }
            }
        })
    });
    let key_reload = spawn_key_reload(engine.clone(), opts.data_dir.join("keys"), opts.origin.clone());
    tracing::info!(%addr, backend = engine.backend(), "agentsigna is listening");
    Ok(Running {
        addr,
        metrics_addr: metrics.as_ref().map(|(a, _)| *a),
        scheme,
        tls_reload,
        metrics: metrics.map(|(_, m)| m),
        engine,
        data_dir: opts.data_dir,
        admin_token,
        credentials,
        shutdown: Some(tx),
        join: Some(join),
        sweeper,
        key_reload: Some(key_reload),
        notifier: Some(notifier),
        state,
        _changes: changes,
    })
}

/// Picks up the passport keys again whenever `agentsigna keys rotate` rewrites the key
/// file (checked every second): nodes sharing the key files (one directory, or a shared
/// volume) all publish and sign with the new key within about a second of the rotation.
fn spawn_key_reload(engine: Arc<Engine>, keys_dir: PathBuf, origin: Option<String>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mtime = |d: &Path| std::fs::metadata(d.join("passport.keys")).and_then(|m| m.modified()).ok();
        let mut seen = mtime(&keys_dir);
        loop {
            tick.tick().await;
            let now = mtime(&keys_dir);
            if now == seen {
                continue;
            }
            seen = now;
            match Keyring::load_or_create(&keys_dir, origin.as_deref(), engine.clock().now_ms()) {
                Ok(k) => {
                    tracing::info!(kid = %k.active().map(|a| a.kid.clone()).unwrap_or_default(), "passport keys reloaded");
                    engine.replace_keys(k);
                }
                Err(err) => tracing::error!(error = %err, "cannot reload the passport keys"),
            }
        }
    })
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
