//! The servers under load: AgentSigna as `agentsigna serve` starts it, with the built-in
//! org (with `--nodes N`, N such nodes on one PostgreSQL database), and the bare endpoint
//! of the baseline.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use axum::routing::post;
use axum::Router;
use hyper::body::Bytes;
use hyper::header;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use agentsigna_core::org::OrgFile;
use agentsigna_core::SystemClock;

use super::{AGENT, ORG};
use crate::app::{self, Running, ServeOptions};

/// The bare endpoint's path and its whole answer.
pub(super) const BARE_PATH: &str = "/bare";
pub(super) const BARE_ANSWER: &str = r#"{"status":"ok"}"#;
/// Starts AgentSigna on a loopback port with the built-in org and `policy`; returns it and the agent's
/// credential (created now, or read from an existing data directory).
pub(super) async fn start_server(
    data_dir: &Path,
    waiters: u32,
    database: Option<&str>,
    policy: &str,
) -> anyhow::Result<(Running, String)> {
    let org = OrgFile::parse(ORG).context("the built-in org file")?;
    let mut opts = ServeOptions::new(data_dir, SocketAddr::from(([127, 0, 0, 1], 0)));
    // Every waiter of phase 4 really waits (beyond the cap a poll would be answered at once).
    opts.max_waits = opts.max_waits.max(usize::try_from(waiters)?.saturating_add(16));
    opts.org_inline = Some((org, Some(policy.to_owned())));
    opts.database = database.map(str::to_owned);
    let running = app::start(opts, Arc::new(SystemClock)).await.context("starting the server")?;
    let created = running.credentials.iter().find(|c| c.kind == "agent" && c.id == AGENT).map(|c| c.token.clone());
    let token = match created {
        Some(t) => t,
        None => {
            let path = data_dir.join("credentials").join(format!("agent-{AGENT}.token"));
            match std::fs::read_to_string(&path) {
                Ok(t) => t.trim().to_owned(),
                Err(e) => {
                    let _ = running.stop(Duration::from_secs(5)).await;
                    return Err(anyhow!("cannot read the credential of {AGENT} from {}: {e}", path.display()));
                }
            }
        }
    };
    Ok((running, token))
}

/// Another node on the same PostgreSQL database as the first (whose data directory is
/// `first`): a data directory of its own under `first` holding a copy of its keys.
pub(super) async fn start_node(first: &Path, n: u32, database: &str) -> anyhow::Result<Running> {
    let dir = first.join(format!("node-{n}"));
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).with_context(|| format!("cannot create {}", keys.display()))?;
    for entry in std::fs::read_dir(first.join("keys")).context("the first node's keys")? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), keys.join(entry.file_name())).context("copying the keys")?;
        }
    }
    let mut opts = ServeOptions::new(&dir, SocketAddr::from(([127, 0, 0, 1], 0)));
    opts.database = Some(database.to_owned());
    app::start(opts, Arc::new(SystemClock)).await.with_context(|| format!("starting node {n}"))
}

/// The bare endpoint: reads the body, answers a fixed small JSON.
pub(super) struct Bare {
    pub(super) addr: SocketAddr,
    pub(super) stop: oneshot::Sender<()>,
    pub(super) join: JoinHandle<std::io::Result<()>>,
}

impl Bare {
    pub(super) async fn start() -> anyhow::Result<Bare> {
        let router = Router::new().route(
            BARE_PATH,
            post(|_body: Bytes| async { ([(header::CONTENT_TYPE, "application/json")], BARE_ANSWER) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("bare endpoint")?;
        let addr = listener.local_addr()?;
        let (stop, join) = crate::http::serve_until_stopped(listener, router);
        Ok(Bare { addr, stop, join })
    }

    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.join).await;
    }
}
