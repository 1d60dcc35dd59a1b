//! Change notifications between nodes: each batch's transaction announces the cases it
//! changed on the deployment's channel (`pg_notify`, delivered only if the batch
//! commits), and [`listen`] keeps a dedicated connection on `LISTEN` that reports other
//! nodes' changes to a callback, reconnecting by itself. After a reconnection it reports
//! [`Changes::everything`]: notifications sent while it was away are lost, so every
//! waiter should look again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use agentsigna_core::store::StoreResult;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use super::{pg_config, pg_err, PgOptions, Tls, TlsStream};

/// Largest payload sent (PostgreSQL refuses more than 8000 bytes).
const MAX_PAYLOAD: usize = 7000;

/// What another node committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The node that committed (each store has a random id).
    #[serde(default)]
    pub node: String,
    /// Cases changed.
    #[serde(default)]
    pub cases: Vec<String>,
    /// Whether a webhook notification was queued.
    #[serde(default)]
    pub outbox: bool,
    /// Anything may have changed (a reconnection, or too much to list).
    #[serde(default)]
    pub all: bool,
}

impl Changes {
    /// Anything may have changed.
    pub fn everything() -> Changes {
        Changes { all: true, outbox: true, ..Changes::default() }
    }
}

/// The payloads announcing one batch: case ids in chunks below the payload limit.
pub(crate) fn payloads(node: &str, cases: &BTreeSet<String>, outbox: bool) -> Vec<String> {
    if cases.is_empty() && !outbox {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut chunk = Changes { node: node.to_owned(), outbox, ..Changes::default() };
    let mut len = node.len() + 64;
    for id in cases {
        if id.len() + 64 > MAX_PAYLOAD {
            // An id this long cannot be listed: ask everyone to look again.
            let all = Changes { node: node.to_owned(), all: true, outbox, cases: Vec::new() };
            return vec![serde_json::to_string(&all).unwrap_or_default()];
        }
        if len + id.len() + 3 > MAX_PAYLOAD {
            out.push(serde_json::to_string(&chunk).unwrap_or_default());
            chunk.cases.clear();
            len = node.len() + 64;
        }
        len += id.len() + 3;
        chunk.cases.push(id.clone());
    }
    out.push(serde_json::to_string(&chunk).unwrap_or_default());
    out
}

/// A running listener; dropping it stops it.
#[derive(Debug)]
pub struct Listener {
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens for other nodes' commits on the deployment's channel; `own_node` (this node's
/// store id, [`super::PgStore::node_id`]) is skipped, as this node already woke its waiters.
/// The first connection is made before this returns (so a bad URL fails at start).
pub async fn listen(
    url: &str,
    options: &PgOptions,
    own_node: String,
    on_change: impl Fn(Changes) + Send + Sync + 'static,
) -> StoreResult<Listener> {
    let config = pg_config(url, options)?;
    let channel = options.channel();
    let first = session_on(&config, &channel).await?;
    let on_change = Arc::new(on_change);
    let task = tokio::spawn(async move {
        let mut session = Some(first);
        let mut backoff = Duration::from_millis(100);
        loop {
            if let Some((client, mut connection)) = session.take() {
                backoff = Duration::from_millis(100);
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(AsyncMessage::Notification(n))) => match serde_json::from_str::<Changes>(n.payload()) {
                            Ok(c) if c.node == own_node => {}
                            Ok(c) => on_change(c),
                            Err(_) => on_change(Changes::everything()),
                        },
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the change listener lost its connection");
                            break;
                        }
                        None => break,
                    }
                }
                drop(client);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            match session_on(&config, &channel).await {
                Ok(s) => {
                    tracing::info!("the change listener reconnected");
                    session = Some(s);
                    on_change(Changes::everything());
                }
                Err(e) => tracing::debug!(error = %e, "the change listener cannot reconnect yet"),
            }
        }
    });
    Ok(Listener { task })
}

type Session = (tokio_postgres::Client, tokio_postgres::Connection<tokio_postgres::Socket, TlsStream>);

/// Connects and subscribes. `LISTEN` needs the connection polled to complete, so the
/// connection is driven by a helper until the subscription is confirmed.
async fn session_on((config, tls): &(tokio_postgres::Config, Tls), channel: &str) -> StoreResult<Session> {
    let (client, mut connection) = config.connect(tls.clone()).await.map_err(pg_err)?;
    // The channel name comes from a checked schema name (a-z, 0-9, _).
    {
        let sql = format!("LISTEN {channel}");
        let listen = client.batch_execute(&sql);
        tokio::pin!(listen);
        loop {
            tokio::select! {
                done = &mut listen => {
                    done.map_err(pg_err)?;
                    break;
                }
                msg = std::future::poll_fn(|cx| connection.poll_message(cx)) => match msg {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(pg_err(e)),
                    None => return Err(agentsigna_core::store::StoreError::Unavailable {
                        detail: "the listener connection closed".into(),
                        source: None,
                    }),
                },
            }
        }
    }
    Ok((client, connection))
}
