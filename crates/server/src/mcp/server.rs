//! `agentsigna mcp`: an MCP server (stdio) through which an agent asks AgentSigna for
//! authority. Tools: `request_authority`, `get_case`, `report_outcome`.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, JsonObject, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt as _};
use serde_json::{json, Map, Value};

use super::client::Api;
use super::summary;
use super::wait::{wait_for_decision, Progress, Waited};

/// Longest `wait_seconds` a call may ask for.
pub const MAX_WAIT_SECONDS: u64 = 600;

/// `agentsigna mcp`.
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// AgentSigna base URL.
    #[arg(long, env = "AGENTSIGNA_URL")]
    pub url: String,
}

/// Runs `agentsigna mcp` on stdin/stdout until the client goes away.
pub fn run(a: McpArgs) -> anyhow::Result<i32> {
    let key = super::env_secret("AGENTSIGNA_API_KEY", "the agent's API key")?;
    let api = Api::new(&a.url)?;
    super::runtime()?.block_on(async move {
        let service = AgentTools::new(api, key).serve(rmcp::transport::stdio()).await?;
        service.waiting().await?;
        Ok(0)
    })
}

/// The tools of `agentsigna mcp`, acting as one agent.
#[derive(Clone)]
pub struct AgentTools {
    api: Api,
    key: Arc<str>,
}

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

fn tools() -> Vec<Tool> {
    let amount = json!({"type": "object", "additionalProperties": false, "required": ["value", "currency"],
        "properties": {
            "value": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$",
                      "description": "Decimal string with at most the currency's minor digits, e.g. \"12500.00\""},
            "currency": {"type": "string", "description": "ISO 4217 code, e.g. \"USD\""}}});
    let wait = json!({"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS,
        "description": "If the case goes to human review, wait up to this many seconds for the decision (progress is reported while waiting)"});
    vec![
        Tool::new(
            "request_authority",
            "Ask AgentSigna for authority BEFORE carrying out a high-stakes action (purchase order, payment, \
             contract, data export). Returns the verdict: authorized (with a single-use passport to present to \
             the target system), escalated (a human review; wait or call get_case later) or rejected (with the \
             rules that decided). Nothing is executed by this call.",
            schema(json!({"type": "object", "additionalProperties": false,
                "required": ["action", "counterparty", "audience"],
                "properties": {
                    "action": {"type": "string", "description": "Declared action type, e.g. purchase_order.create"},
                    "counterparty": {"type": "string", "description": "Counterparty id, e.g. acme"},
                    "amount": amount,
                    "audience": {"type": "string", "description": "Target system that will execute it, e.g. erp"},
                    "description": {"type": "string", "description": "What the action is for, shown to approvers"},
                    "context": {"type": "object", "description": "Free-form details shown to approvers (no floating-point numbers)"},
                    "idempotency_key": {"type": "string", "description": "The same key returns the same case on retries"},
                    "wait_seconds": wait.clone()}})),
        )
        .with_annotations(ToolAnnotations::new().read_only(false).destructive(false).idempotent(true)),
        Tool::new(
            "get_case",
            "Read a case: status (pending_review, authorized, rejected, expired, executed, closed), verdict, \
             reasons, review, passport (while usable), outcomes and its ledger entries. With wait_seconds, a case \
             pending review is held until it is decided or the time is up.",
            schema(json!({"type": "object", "additionalProperties": false, "required": ["case_id"],
                "properties": {"case_id": {"type": "string"}, "wait_seconds": wait}})),
        )
        .with_annotations(ToolAnnotations::new().read_only(true)),
        Tool::new(
            "report_outcome",
            "Report that an authorized action failed (rejected) or is disputed. An agent may report only \
             rejected or disputed: success is reported by the target system.",
            schema(json!({"type": "object", "additionalProperties": false, "required": ["case_id", "outcome"],
                "properties": {"case_id": {"type": "string"},
                    "outcome": {"type": "string", "enum": ["rejected", "disputed"]},
                    "detail": {"type": "string", "description": "What happened"}}})),
        )
        .with_annotations(ToolAnnotations::new().read_only(false).destructive(false).idempotent(true)),
    ]
}

/// `wait_seconds` of a call: absent → 0; otherwise a whole number up to the maximum.
fn wait_seconds(args: &Map<String, Value>) -> Result<u64, String> {
    match args.get("wait_seconds") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_WAIT_SECONDS => Ok(n),
            _ => Err(format!(
                "argument wait_seconds: must be a whole number of seconds from 0 to {MAX_WAIT_SECONDS} (got {v})"
            )),
        },
    }
}

fn string_arg<'a>(args: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match args.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(format!("argument {name}: must be a non-empty string")),
        None => Err(format!("argument {name}: is required")),
    }
}

impl AgentTools {
    pub fn new(api: Api, key: String) -> AgentTools {
        AgentTools { api, key: key.into() }
    }

    /// The document after waiting up to `wait` for a pending case, or `body` itself.
    async fn settle(&self, body: Value, wait: u64, ctx: &RequestContext<RoleServer>) -> CallToolResult {
        if body["status"] != "pending_review" || wait == 0 {
            let (text, is_error) = summary::verdict(&body);
            return summary::result(body, text, is_error);
        }
        let id = summary::case_id(&body).to_owned();
        let waited =
            wait_for_decision(&self.api, &self.key, &id, Duration::from_secs(wait), &Progress::of(ctx), &ctx.ct).await;
        match waited {
            Ok(Waited::Decided(doc)) => {
                let (text, is_error) = summary::verdict(&doc);
                summary::result(doc, text, is_error)
            }
            Ok(Waited::Pending(doc)) => {
                let (text, _) = summary::verdict(&doc);
                summary::result(doc, format!("Still pending after {wait} s. {text}"), false)
            }
            Ok(Waited::Cancelled) => summary::error_text(format!("Cancelled while waiting for case {id}.")),
            Err(e) => summary::api_error("Reading the case", &e),
        }
    }

    async fn request_authority(
        &self,
        mut args: Map<String, Value>,
        ctx: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let wait = match wait_seconds(&args) {
            Ok(w) => w,
            Err(e) => return summary::error_text(e),
        };
        args.remove("wait_seconds");
        match self.api.submit(&self.key, &Value::Object(args)).await {
            Ok(answer) => self.settle(answer.body, wait, ctx).await,
            Err(e) => summary::api_error("The request", &e),
        }
    }

    async fn get_case(&self, args: Map<String, Value>, ctx: &RequestContext<RoleServer>) -> CallToolResult {
        let (id, wait) = match (string_arg(&args, "case_id"), wait_seconds(&args)) {
            (Ok(id), Ok(w)) => (id.to_owned(), w),
            (Err(e), _) | (_, Err(e)) => return summary::error_text(e),
        };
        match self.api.case(&self.key, &id, 0).await {
            Ok(answer) => self.settle(answer.body, wait, ctx).await,
            Err(e) => summary::api_error("Reading the case", &e),
        }
    }

    async fn report_outcome(&self, args: Map<String, Value>) -> CallToolResult {
        let (id, outcome) = match (string_arg(&args, "case_id"), string_arg(&args, "outcome")) {
            (Ok(id), Ok(o)) => (id, o),
            (Err(e), _) | (_, Err(e)) => return summary::error_text(e),
        };
        if !matches!(outcome, "rejected" | "disputed") {
            return summary::error_text(format!(
                "argument outcome: an agent may report only \"rejected\" or \"disputed\" (got {outcome:?}); \
                 completed and reversed are reported by the target system or an approver"
            ));
        }
        let detail = args.get("detail").and_then(Value::as_str);
        match self.api.report_outcome(&self.key, id, outcome, detail).await {
            Ok(answer) => {
                let text = format!("Recorded outcome {outcome} for case {id}; it counts in the trust scores.");
                summary::result(answer.body, text, false)
            }
            Err(e) => summary::api_error("Reporting the outcome", &e),
        }
    }
}

impl ServerHandler for AgentTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agentsigna-mcp", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "AgentSigna authorizes high-stakes actions. Call request_authority before acting; act only on \
                 an authorized verdict, presenting its passport to the target system; never act on escalated \
                 or rejected cases.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let result = match request.name.as_ref() {
            "request_authority" => self.request_authority(args, &context).await,
            "get_case" => self.get_case(args, &context).await,
            "report_outcome" => self.report_outcome(args).await,
            other => return Err(ErrorData::invalid_params(format!("unknown tool {other:?}"), None)),
        };
        Ok(result.into())
    }
}
