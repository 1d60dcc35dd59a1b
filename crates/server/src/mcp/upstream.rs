//! The MCP server behind `agentsigna mcp-gate`: a child process over stdio or a
//! streamable-HTTP endpoint. A dead connection is replaced on the next call (a child
//! that exited is started again); every call has a time limit, and calls run side by
//! side, so a slow tool does not hold up the others.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation, Tool};
use rmcp::service::RunningService;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ErrorData, Peer, RoleClient, ServiceError, ServiceExt as _};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Time allowed to start and initialize the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the upstream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamSpec {
    /// A command started as a child process, spoken to over its stdin/stdout.
    Command(Vec<String>),
    /// A streamable-HTTP MCP endpoint.
    Http(String),
}

impl std::fmt::Display for UpstreamSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamSpec::Command(argv) => write!(f, "`{}`", argv.join(" ")),
            UpstreamSpec::Http(url) => write!(f, "{url}"),
        }
    }
}

/// Why a call did not get the upstream's answer.
#[derive(Debug)]
pub enum UpstreamFailure {
    /// No connection could be made: the call was not sent.
    Unavailable(String),
    /// The call was sent but no answer came (the upstream died or exceeded the time limit).
    NoAnswer(String),
    /// The upstream answered with a JSON-RPC error.
    Error(ErrorData),
    /// The agent cancelled the call.
    Cancelled,
}

impl std::fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamFailure::Unavailable(m) => write!(f, "the upstream MCP server is unavailable: {m}"),
            UpstreamFailure::NoAnswer(m) => write!(f, "the upstream MCP server gave no answer: {m}"),
            UpstreamFailure::Error(e) => {
                write!(f, "the upstream MCP server answered with error {}: {}", e.code.0, e.message)
            }
            UpstreamFailure::Cancelled => write!(f, "the call was cancelled"),
        }
    }
}

type Connection = RunningService<RoleClient, ClientConfig>;

/// A connection to the upstream, re-established on demand.
pub struct Upstream {
    spec: UpstreamSpec,
    timeout: Duration,
    conn: Mutex<Option<Connection>>,
}

impl Upstream {
    /// Connects to the upstream; fails when it cannot be started or initialized.
    pub async fn start(spec: UpstreamSpec, timeout: Duration) -> anyhow::Result<Arc<Upstream>> {
        let conn = connect(&spec).await.map_err(|e| anyhow::anyhow!("cannot start the upstream {spec}: {e}"))?;
        Ok(Arc::new(Upstream { spec, timeout, conn: Mutex::new(Some(conn)) }))
    }

    /// A live connection's peer, reconnecting when the last one closed.
    pub async fn peer(&self) -> Result<Peer<RoleClient>, UpstreamFailure> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if !c.is_closed() && !c.peer().is_transport_closed() {
                return Ok(c.peer().clone());
            }
            tracing::warn!(upstream = %self.spec, "the upstream connection closed; reconnecting");
        }
        *guard = None;
        let conn = connect(&self.spec).await.map_err(UpstreamFailure::Unavailable)?;
        let peer = conn.peer().clone();
        *guard = Some(conn);
        Ok(peer)
    }

    /// Every tool of the upstream.
    pub async fn list_tools(&self) -> Result<Vec<Tool>, UpstreamFailure> {
        let peer = self.peer().await?;
        match tokio::time::timeout(self.timeout, peer.list_all_tools()).await {
            Ok(Ok(tools)) => Ok(tools),
            Ok(Err(e)) => Err(failure(e)),
            Err(_) => Err(UpstreamFailure::NoAnswer(format!("tools/list took longer than {:?}", self.timeout))),
        }
    }

    /// Calls a tool on `peer` (from [`Upstream::peer`]) within the time limit; the agent's
    /// cancellation is passed on (dropping the request sends `notifications/cancelled`).
    pub async fn call(
        &self,
        peer: &Peer<RoleClient>,
        params: CallToolRequestParams,
        ct: &CancellationToken,
    ) -> Result<CallToolResult, UpstreamFailure> {
        tokio::select! {
            r = tokio::time::timeout(self.timeout, peer.call_tool(params)) => match r {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(e)) => Err(failure(e)),
                Err(_) => Err(UpstreamFailure::NoAnswer(format!("no answer within {} s", self.timeout.as_secs()))),
            },
            _ = ct.cancelled() => Err(UpstreamFailure::Cancelled),
        }
    }

    /// Closes the connection (a child process is ended).
    pub async fn close(&self) {
        if let Some(mut c) = self.conn.lock().await.take() {
            let _ = c.close_with_timeout(Duration::from_secs(5)).await;
        }
    }
}

fn failure(e: ServiceError) -> UpstreamFailure {
    match e {
        ServiceError::McpError(e) => UpstreamFailure::Error(e),
        ServiceError::Cancelled { .. } => UpstreamFailure::Cancelled,
        other => UpstreamFailure::NoAnswer(other.to_string()),
    }
}

async fn connect(spec: &UpstreamSpec) -> Result<Connection, String> {
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("agentsigna-mcp-gate", env!("CARGO_PKG_VERSION")),
    );
    let serve = async {
        match spec {
            UpstreamSpec::Command(argv) => {
                let (program, args) = argv.split_first().ok_or("no upstream command given")?;
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args);
                let transport = TokioChildProcess::new(cmd).map_err(|e| format!("cannot start {program}: {e}"))?;
                info.serve(transport).await.map_err(|e| e.to_string())
            }
            UpstreamSpec::Http(url) => {
                let transport = StreamableHttpClientTransport::from_uri(url.as_str());
                info.serve(transport).await.map_err(|e| e.to_string())
            }
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, serve).await {
        Ok(r) => r,
        Err(_) => Err(format!("no initialization within {} s", CONNECT_TIMEOUT.as_secs())),
    }
}
