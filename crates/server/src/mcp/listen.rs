//! `agentsigna mcp-gate --listen`: agents over streamable HTTP (`/mcp`), each request
//! authenticated with its agent key as `Authorization: Bearer`. A key is checked against
//! AgentSigna (and remembered for a minute); a missing or refused key gets 401 before
//! any MCP message is read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use super::client::{Api, ApiFailure};
use super::gate::{GateCore, McpGate};
use crate::http::problem::ApiError;

/// How long an accepted key is remembered.
const KEY_TTL: Duration = Duration::from_secs(60);

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

struct KeyCheck {
    api: Api,
    accepted: Mutex<HashMap<[u8; 32], Instant>>,
}

impl KeyCheck {
    async fn accepts(&self, key: &str) -> Result<bool, ApiFailure> {
        let id: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Ok(map) = self.accepted.lock() {
            if map.get(&id).is_some_and(|at| at.elapsed() < KEY_TTL) {
                return Ok(true);
            }
        }
        let ok = self.api.accepts(key).await?;
        if ok {
            if let Ok(mut map) = self.accepted.lock() {
                map.retain(|_, at| at.elapsed() < KEY_TTL);
                map.insert(id, Instant::now());
            }
        }
        Ok(ok)
    }
}

async fn require_agent_key(State(keys): State<Arc<KeyCheck>>, req: Request, next: Next) -> Response {
    let unauthorized = |detail: &str| {
        let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail).into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"agentsigna\""));
        r
    };
    let Some(key) = bearer(req.headers()) else {
        return unauthorized("send the agent's key as Authorization: Bearer <api key>");
    };
    match keys.accepts(key).await {
        Ok(true) => next.run(req).await,
        Ok(false) => unauthorized("AgentSigna does not accept this agent key"),
        Err(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "AgentSigna unavailable", e.describe())
            .into_response(),
    }
}

/// Serves `core` at `http://addr/mcp` (`https://` with `tls`) until SIGTERM or Ctrl-C.
pub async fn serve(
    core: Arc<GateCore>,
    addr: SocketAddr,
    tls: Option<crate::http::tls::TlsFiles>,
) -> anyhow::Result<()> {
    let tls = tls.map(crate::http::tls::Tls::load).transpose()?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let ct = CancellationToken::new();
    let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    hosts.push(local.ip().to_string());
    hosts.push(local.to_string());
    let config =
        StreamableHttpServerConfig::default().with_allowed_hosts(hosts).with_cancellation_token(ct.child_token());
    let factory_core = core.clone();
    let service = StreamableHttpService::new(
        move || Ok(McpGate::for_http(factory_core.clone())),
        LocalSessionManager::default().into(),
        config,
    );
    let keys = Arc::new(KeyCheck { api: core.api.clone(), accepted: Mutex::default() });
    let app = Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(keys, require_agent_key));
    if let Some(tls) = tls {
        // HTTPS on the server loop of `serve` and `gate` (head and body timeouts,
        // connection cap, handshake within the head timeout).
        let reload = tls.reload_on_sighup()?;
        eprintln!("agentsigna mcp-gate listening on https://{local}/mcp");
        let (stop, join) = crate::http::server::serve_tls(listener, app, Default::default(), Some(tls));
        crate::app::shutdown_signal().await;
        ct.cancel();
        reload.abort();
        let _ = stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), join).await;
        return Ok(());
    }
    eprintln!("agentsigna mcp-gate listening on http://{local}/mcp");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            crate::app::shutdown_signal().await;
            ct.cancel();
        })
        .await?;
    Ok(())
}
