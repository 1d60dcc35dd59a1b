//! `agentsigna mcp-gate`: the enforcement point in front of an MCP server, the MCP
//! counterpart of `agentsigna gate`.
//!
//! A call of a mapped tool becomes an action request (context = the call's arguments,
//! idempotency key from the tool name and canonical arguments). It reaches the upstream
//! only with a passport this gate verified and consumed itself, in
//! `_meta["agentsigna/passport"]`; afterwards the gate reports the execution and the
//! outcome with the target system's token. Escalated calls wait for the human decision
//! (with progress notifications); rejected, still pending and denied calls are tool
//! errors and never reach the upstream.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult, MetaObject,
    PaginatedRequestParams, RequestMetaObject, ResultType, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt as _};
use serde_json::{json, Map, Value};

use agentsigna_core::SystemClock;
use agentsigna_verify::gate::{Gate, GateRequest};
use agentsigna_verify::passport::{VerifiedPassport, Verifier};
use agentsigna_verify::Error as VerifyError;

use super::client::{Api, ApiFailure};
use super::summary;
use super::tools_file::{Mapping, ToolsFile, Treatment};
use super::upstream::{Upstream, UpstreamFailure, UpstreamSpec};
use super::wait::{wait_for_decision, Progress, Waited};

/// The `_meta` key under which the upstream receives the passport.
pub const PASSPORT_META: &str = "agentsigna/passport";
/// The `_meta` key under which the agent receives the case id of a forwarded call.
pub const CASE_META: &str = "agentsigna/case";
/// Least time between two JWKS fetches triggered by unknown key ids.
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// `agentsigna mcp-gate`.
#[derive(Debug, clap::Args)]
pub struct McpGateArgs {
    /// The tools file (TOML): which tools need authority and how a call's arguments
    /// become an action request.
    #[arg(long)]
    pub tools: PathBuf,
    /// A streamable-HTTP upstream MCP server (instead of a command after `--`).
    #[arg(long, value_name = "URL", conflicts_with = "command")]
    pub upstream: Option<String>,
    /// Serve agents over streamable HTTP at http://ADDR/mcp, each authenticated with its
    /// agent key as `Authorization: Bearer` (default: stdio, as AGENTSIGNA_API_KEY's agent).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// AgentSigna base URL.
    #[arg(long, env = "AGENTSIGNA_URL")]
    pub url: String,
    /// Longest wait for one answer of the upstream, in seconds.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub upstream_timeout: u64,
    /// HTTPS for `--listen` (`--tls-cert FILE --tls-key FILE`, reread on SIGHUP).
    #[command(flatten)]
    pub tls: crate::cli::TlsArgs,
    /// The upstream MCP server's command and arguments, after `--`.
    #[arg(last = true, value_name = "UPSTREAM_CMD")]
    pub command: Vec<String>,
}

/// Runs `agentsigna mcp-gate` until the agent goes away (stdio) or SIGTERM (`--listen`).
pub fn run(a: McpGateArgs) -> anyhow::Result<i32> {
    let tools = ToolsFile::load(&a.tools)?;
    let spec = match (a.upstream, a.command.is_empty()) {
        (Some(url), true) => UpstreamSpec::Http(url),
        (None, false) => UpstreamSpec::Command(a.command),
        _ => anyhow::bail!("name the upstream MCP server: `--upstream URL` or `-- COMMAND [ARGS…]`"),
    };
    let system_token = super::env_secret("AGENTSIGNA_SYSTEM_TOKEN", "the target system's token")?;
    let agent_key = match a.listen {
        Some(_) => None,
        None => Some(super::env_secret("AGENTSIGNA_API_KEY", "the agent's API key")?),
    };
    if a.tls.files().is_some() && a.listen.is_none() {
        anyhow::bail!("--tls-cert and --tls-key serve HTTPS for --listen; over stdio there is nothing to encrypt");
    }
    let tls_files = a.tls.files();
    let api = Api::new(&a.url)?;
    let timeout = Duration::from_secs(a.upstream_timeout.max(1));
    super::runtime()?.block_on(async move {
        let core = GateCore::start(tools, spec, api, system_token, timeout).await?;
        if let Some(key) = &agent_key {
            if !core.api.accepts(key).await.map_err(|e| anyhow::anyhow!("{}", e.describe()))? {
                anyhow::bail!("AGENTSIGNA_API_KEY is not accepted by {}", core.api.base());
            }
        }
        let result = match (a.listen, agent_key) {
            (Some(addr), _) => super::listen::serve(core.clone(), addr, tls_files).await,
            (None, key) => {
                let gate = McpGate { core: core.clone(), agent_key: key.map(Arc::from) };
                match gate.serve(rmcp::transport::stdio()).await {
                    Ok(service) => service.waiting().await.map(|_| ()).map_err(anyhow::Error::from),
                    Err(e) => Err(anyhow::anyhow!("MCP session with the agent failed: {e}")),
                }
            }
        };
        core.upstream.close().await;
        result.map(|_| 0)
    })
}

/// What every session of one gate shares.
pub struct GateCore {
    pub(super) tools: ToolsFile,
    /// The upstream's tools the agent may call, as listed to it.
    listed: Vec<Tool>,
    upstream: Arc<Upstream>,
    pub(super) api: Api,
    system_token: String,
    passports: PassportCheck,
}

impl GateCore {
    /// Connects to the upstream and AgentSigna and validates the tools file against both.
    pub async fn start(
        tools: ToolsFile,
        spec: UpstreamSpec,
        api: Api,
        system_token: String,
        timeout: Duration,
    ) -> anyhow::Result<Arc<GateCore>> {
        let jwks = api.jwks().await?;
        match api.accepts(&system_token).await {
            Ok(true) => {}
            Ok(false) => anyhow::bail!("AGENTSIGNA_SYSTEM_TOKEN is not accepted by {}", api.base()),
            Err(e) => anyhow::bail!("{}", e.describe()),
        }
        tools.check_server(&api, &system_token).await?;
        let upstream = Upstream::start(spec.clone(), timeout).await?;
        let all = upstream.list_tools().await.map_err(|e| anyhow::anyhow!("{spec}: tools/list failed: {e}"))?;
        let schemas: BTreeMap<String, Value> =
            all.iter().map(|t| (t.name.to_string(), Value::Object((*t.input_schema).clone()))).collect();
        tools.check_against(&schemas).map_err(|e| anyhow::anyhow!("tools file does not fit {spec}: {e}"))?;
        let listed = all.into_iter().filter_map(|t| listed_tool(&tools, t)).collect();
        let passports = PassportCheck {
            gate: RwLock::new(Gate::new(Verifier::new(jwks, tools.audience.clone()))),
            api: api.clone(),
            last_fetch: Mutex::new(Instant::now()),
        };
        Ok(Arc::new(GateCore { tools, listed, upstream, api, system_token, passports }))
    }
}

/// The tool as the agent sees it, or `None` when the agent may not call it.
fn listed_tool(tools: &ToolsFile, mut t: Tool) -> Option<Tool> {
    match tools.treatment(&t.name) {
        Treatment::Denied => None,
        Treatment::PassThrough => Some(t),
        Treatment::Mapped(m) => {
            let note = format!(
                "[AgentSigna: each call needs authority for {} on {}; an escalated call waits up to {} s for a \
                 human decision, and the same call retried later picks it up.]",
                m.action,
                tools.audience,
                tools.wait.as_secs()
            );
            t.description = Some(match &t.description {
                Some(d) => format!("{d}\n\n{note}").into(),
                None => note.into(),
            });
            Some(t)
        }
    }
}

/// Verifies and consumes passports (single use), refetching the JWKS on an unknown key.
struct PassportCheck {
    gate: RwLock<Gate>,
    api: Api,
    last_fetch: Mutex<Instant>,
}

impl PassportCheck {
    fn check(&self, token: &str) -> Result<VerifiedPassport, VerifyError> {
        let gate = agentsigna_core::sync::read(&self.gate);
        let req = GateRequest { passport: token, proof: None, method: "POST", url: "mcp:tools/call" };
        gate.check(&req, &SystemClock)
    }

    async fn consume(&self, token: &str) -> Result<VerifiedPassport, VerifyError> {
        let first = self.check(token);
        if !matches!(first, Err(VerifyError::UnknownKey(_))) || !self.refresh().await {
            return first;
        }
        self.check(token)
    }

    async fn refresh(&self) -> bool {
        {
            let Ok(mut last) = self.last_fetch.lock() else { return false };
            if last.elapsed() < JWKS_REFRESH_INTERVAL {
                return false;
            }
            *last = Instant::now();
        }
        match self.api.jwks().await {
            Ok(jwks) => {
                agentsigna_core::sync::write(&self.gate).verifier_mut().set_jwks(jwks);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refresh failed");
                false
            }
        }
    }
}

/// One agent's session with the gate.
#[derive(Clone)]
pub struct McpGate {
    core: Arc<GateCore>,
    /// The agent's key (stdio); `None` over HTTP, where each request carries its own.
    agent_key: Option<Arc<str>>,
}

impl McpGate {
    /// A session whose requests carry their agent key (`--listen`).
    pub fn for_http(core: Arc<GateCore>) -> McpGate {
        McpGate { core, agent_key: None }
    }

    fn agent_key(&self, ctx: &RequestContext<RoleServer>) -> Option<String> {
        if let Some(k) = &self.agent_key {
            return Some(k.to_string());
        }
        let parts = ctx.extensions.get::<axum::http::request::Parts>()?;
        super::listen::bearer(&parts.headers).map(str::to_owned)
    }

    async fn pass_through(
        &self,
        name: String,
        args: Option<Map<String, Value>>,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let peer = match self.core.upstream.peer().await {
            Ok(p) => p,
            Err(e) => return Ok(summary::error_text(format!("{name} was not forwarded: {e}."))),
        };
        let mut params = CallToolRequestParams::new(name.clone());
        params.arguments = args;
        match self.core.upstream.call(&peer, params, &ctx.ct).await {
            Ok(result) => Ok(forwarded(result)),
            Err(UpstreamFailure::Error(e)) => Err(e),
            Err(e) => Ok(summary::error_text(format!("{name}: {e}."))),
        }
    }

    async fn mapped_call(
        &self,
        m: &Mapping,
        args: Map<String, Value>,
        key: &str,
        ctx: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let core = &self.core;
        let body = match m.request(&core.tools.audience, &args) {
            Ok(b) => b,
            Err(e) => return summary::error_text(format!("{} was not forwarded: {e}.", m.name)),
        };
        let answer = match core.api.submit(key, &body).await {
            Ok(a) => a,
            Err(e) => return refused_request(m, &e),
        };
        let mut doc = answer.body;
        let case = summary::case_id(&doc).to_owned();
        // An idempotent replay (200): the case may have moved on since it was created.
        if answer.status == 200 {
            match core.api.case(key, &case, 0).await {
                Ok(a) => doc = a.body,
                Err(e) => return summary::api_error("Reading the case", &e),
            }
        }
        if doc["status"] == "pending_review" {
            match wait_for_decision(&core.api, key, &case, core.tools.wait, &Progress::of(ctx), &ctx.ct).await {
                Ok(Waited::Decided(d)) => doc = d,
                Ok(Waited::Pending(d)) => return still_pending(m, &d, core.tools.wait),
                Ok(Waited::Cancelled) => {
                    return summary::error_text(format!(
                        "{} was not forwarded: cancelled while case {case} waited for review; the same call \
                         retried later picks up the decision.",
                        m.name
                    ))
                }
                Err(e) => return summary::api_error("Waiting for the decision", &e),
            }
        }
        match doc["status"].as_str().unwrap_or("") {
            "authorized" => {}
            "executed" | "closed" => {
                let text = format!(
                    "{} was not forwarded: this exact call was already carried out under case {case} (its passport \
                     is used). A new action needs a call with different arguments.",
                    m.name
                );
                return summary::result(doc, text, true);
            }
            _ => {
                let (text, _) = summary::verdict(&doc);
                return summary::result(doc, format!("{} was not forwarded. {text}", m.name), true);
            }
        }
        let Some(passport) = doc["passport"].as_str().map(str::to_owned) else {
            let text =
                format!("{} was not forwarded: case {case} is authorized but its passport is not shown.", m.name);
            return summary::result(doc, text, true);
        };
        // Connect first: a passport is used only when the call can be sent.
        let peer = match core.upstream.peer().await {
            Ok(p) => p,
            Err(e) => {
                return summary::error_text(format!(
                    "{} was not forwarded: {e}. The passport of case {case} was not used; retry the same call.",
                    m.name
                ))
            }
        };
        let verified = match core.passports.consume(&passport).await {
            Ok(v) => v,
            Err(e) => return summary::error_text(refused_passport(m, &case, &e)),
        };
        let action = verified.claims.authorization_details.first().map(|d| d.action.as_str());
        if verified.claims.case.id != case || action != Some(m.action.as_str()) {
            return summary::error_text(format!(
                "{} was not forwarded: the passport of case {case} is for case {} and action {:?}, not this call.",
                m.name, verified.claims.case.id, action
            ));
        }
        let mut params = CallToolRequestParams::new(m.name.clone()).with_arguments(args);
        let mut meta = MetaObject::new();
        meta.0.insert(PASSPORT_META.to_owned(), json!(passport));
        params.meta = Some(RequestMetaObject(meta));
        let answered = core.upstream.call(&peer, params, &ctx.ct).await;
        let jti = verified.claims.jti.as_str();
        match answered {
            Ok(result) => {
                let mut result = forwarded(result);
                let failed = result.is_error == Some(true);
                let detail = failed.then(|| first_text(&result));
                self.report(&case, jti, &m.name, if failed { "rejected" } else { "completed" }, detail.as_deref())
                    .await;
                let mut meta = result.meta.take().unwrap_or_default();
                meta.0.insert(CASE_META.to_owned(), json!(case));
                result.meta = Some(meta);
                result
            }
            Err(UpstreamFailure::Error(e)) => {
                self.report(&case, jti, &m.name, "rejected", Some(&e.message)).await;
                summary::error_text(format!(
                    "{} was forwarded under case {case}; {}.",
                    m.name,
                    UpstreamFailure::Error(e)
                ))
            }
            Err(e) => {
                tracing::warn!(case = %case, tool = %m.name, error = %e, "forwarded call without an answer");
                summary::error_text(format!(
                    "{} was forwarded under case {case} (its passport is used) but {e}; whether it was carried out \
                     is unknown, so no execution or outcome was reported.",
                    m.name
                ))
            }
        }
    }

    /// Reports the execution and the outcome with the target system's token.
    async fn report(&self, case: &str, passport_id: &str, tool: &str, outcome: &str, detail: Option<&str>) {
        let api = &self.core.api;
        let token = &self.core.system_token;
        let reference = format!("MCP tools/call {tool}");
        if let Err(e) = api.report_execution(token, case, passport_id, &reference).await {
            tracing::warn!(case, error = %e.describe(), "could not report the execution");
        }
        let detail = detail.map(|d| d.chars().take(500).collect::<String>());
        if let Err(e) = api.report_outcome(token, case, outcome, detail.as_deref()).await {
            tracing::warn!(case, error = %e.describe(), "could not report the outcome");
        }
    }
}

/// The upstream's result as the gate's own: the upstream may speak an older protocol
/// version (no `resultType`), and its protocol-reserved `_meta` keys describe it, not us.
fn forwarded(mut result: CallToolResult) -> CallToolResult {
    result.result_type = Some(ResultType::COMPLETE);
    if let Some(meta) = result.meta.as_mut() {
        meta.0.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
    }
    result
}

fn first_text(result: &CallToolResult) -> String {
    result.content.iter().find_map(|c| c.as_text().map(|t| t.text.clone())).unwrap_or_else(|| "the tool failed".into())
}

fn refused_request(m: &Mapping, e: &ApiFailure) -> CallToolResult {
    let culprit =
        e.field().and_then(|f| m.argument_for_field(f)).map(|a| format!(" The culprit: {a}.")).unwrap_or_default();
    let text = format!("{} was not forwarded: AgentSigna refused the request: {}.{culprit}", m.name, e.describe());
    summary::result(e.body(), text, true)
}

fn still_pending(m: &Mapping, doc: &Value, waited: Duration) -> CallToolResult {
    let text = format!(
        "{} was not forwarded: case {} is still pending human review {} after {} s ({}; needs {}). Call it again \
         with the same arguments once it is approved: the retry picks up the decision.",
        m.name,
        summary::case_id(doc),
        summary::review_id(doc).unwrap_or("?"),
        waited.as_secs(),
        summary::reasons(doc),
        summary::review_needs(doc)
    );
    summary::result(doc.clone(), text, true)
}

fn refused_passport(m: &Mapping, case: &str, e: &VerifyError) -> String {
    let why = match e {
        VerifyError::ProofMissing => {
            "it is bound to the agent's key (cnf) and mcp-gate cannot present a holder proof for it".to_owned()
        }
        VerifyError::Replayed(_) => "it was already used: this exact call was already forwarded".to_owned(),
        other => other.to_string(),
    };
    format!("{} was not forwarded: the gate refused the passport of case {case} ({}): {why}.", m.name, e.code())
}

fn denied(name: &str) -> CallToolResult {
    summary::error_text(format!(
        "{name} is not available through this gate: the tools file neither maps it to an action nor allows it \
         (unmapped = \"deny\"). The call was not forwarded."
    ))
}

impl ServerHandler for McpGate {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agentsigna-mcp-gate", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Tools of {} behind AgentSigna: high-stakes tools run only after AgentSigna authorizes the call \
                 (possibly after a human review); a refusal names the rule and the case.",
                self.core.tools.audience
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.core.listed.clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        let result = match self.core.tools.treatment(&name) {
            Treatment::Denied => denied(&name),
            Treatment::PassThrough => self.pass_through(name, request.arguments, &context).await?,
            Treatment::Mapped(m) => match self.agent_key(&context) {
                Some(key) => self.mapped_call(m, request.arguments.unwrap_or_default(), &key, &context).await,
                None => summary::error_text(format!("{name} was not forwarded: no agent key came with the call.")),
            },
        };
        Ok(result.into())
    }
}
