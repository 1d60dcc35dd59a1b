//! Admin, agent, approver and system routes.

use std::time::Duration;

use super::extract::{P as Path, Q as Query};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;

use super::documents::{
    ActionDeclared, ActionInput, ActionList, AgentCreated, ApproverCreated, CounterpartySaved, PolicyDoc, PolicyInput,
    PolicyList, PolicySummary, PolicyVersion, Problems, PublicProblems, Revocation, Shadow, ShadowInput, ShadowReport,
    Status, Suspension, SystemCreated, SystemDoc,
};
use super::extract::{Auth, JsonBody};
use super::problem::{ApiError, ApiResult};
use super::table::Routes;
use crate::observe::request::DecidedVerdict;
use crate::state::AppState;
use agentsigna_core::engine::admin::{CounterpartyInput, NewAgent, NewApprover, NewSystem, Revocable};
use agentsigna_core::engine::outcome::{ExecutionInput, OutcomeInput};
use agentsigna_core::engine::request::RequestInput;
use agentsigna_core::engine::review::{self, DecisionInput, ReviewListQuery};
use agentsigna_core::engine::views::{
    AgentView, CaseList, CaseView, CounterpartyView, ReviewList, ReviewView, SubmitResponse,
};
use agentsigna_core::model::CaseStatus;
use agentsigna_core::policy::Rule;
use agentsigna_core::schema::JwksSchema;
use agentsigna_verify::clock::rfc3339_ms;

/// The JSON API's routes (the ledger's are in [`super::ledger`]).
pub fn routes() -> Routes {
    Routes::new()
        .get("/healthz", healthz)
        .get("/.well-known/jwks.json", jwks)
        .post("/v1/agents", create_agent)
        .get("/v1/agents/{id}", get_agent)
        .post("/v1/agents/{id}/suspend", suspend_agent)
        .post("/v1/agents/{id}/resume", resume_agent)
        .post("/v1/agents/{id}/revoke", revoke_agent)
        .post("/v1/approvers", create_approver)
        .post("/v1/approvers/{id}/revoke", revoke_approver)
        .post("/v1/systems", create_system)
        .get("/v1/systems/{id}", get_system)
        .put("/v1/counterparties/{id}", put_counterparty)
        .get("/v1/counterparties/{id}", get_counterparty)
        .get("/v1/actions", list_actions)
        .put("/v1/actions/{type}", put_action)
        .post("/v1/policies", create_policy)
        .get("/v1/policies", list_policies)
        .put("/v1/policies/shadow", set_shadow)
        .delete("/v1/policies/shadow", clear_shadow)
        .get("/v1/policies/shadow", get_shadow)
        .get("/v1/policies/{version}", get_policy)
        .post("/v1/policies/{version}/activate", activate_policy)
        .get("/v1/policies/{version}/rules/{rule}", get_rule)
        .post("/v1/requests", submit_request)
        .get("/v1/cases", list_cases)
        .get("/v1/cases/{id}", get_case)
        .post("/v1/cases/{id}/execution", report_execution)
        .post("/v1/cases/{id}/outcome", record_outcome)
        .get("/v1/reviews", list_reviews)
        .get("/v1/reviews/{id}", get_review)
        .post("/v1/reviews/{id}/decisions", decide_review)
}

/// Answers for what no route serves.
pub fn fallbacks(router: Router<AppState>) -> Router<AppState> {
    router.fallback(not_found).method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this route does not accept that method",
    )
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "probes",
    responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`", body = Status), PublicProblems),
    security(())
)]
async fn healthz() -> Json<Status> {
    Json(Status { status: "ok".to_owned() })
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "passports",
    responses((status = 200, description = "Passport verification keys (RFC 7517; `kid` = RFC 7638 thumbprint)", body = JwksSchema), PublicProblems),
    security(())
)]
async fn jwks(State(s): State<AppState>) -> Response {
    let now = s.engine.clock().now_ms();
    let jwks = s.engine.keys().jwks(now, s.engine.config().max_passport_ttl_secs * 1000);
    let mut resp = Json(jwks).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("public, max-age=60"));
    resp
}

#[utoipa::path(
    post,
    path = "/v1/agents",
    tag = "admin",
    request_body = NewAgent,
    responses(
        (status = 201, description = "Registered; the API key is shown once", body = AgentCreated,
         links(("get_agent" = (operation_id = "get_agent", parameters(("id" = "$response.body#/id")))), ("suspend_agent" = (operation_id = "suspend_agent", parameters(("id" = "$response.body#/id")))), ("resume_agent" = (operation_id = "resume_agent", parameters(("id" = "$response.body#/id")))), ("revoke_agent" = (operation_id = "revoke_agent", parameters(("id" = "$response.body#/id")))))),
        Problems,
    ),
    security(("admin_token" = []))
)]
async fn create_agent(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(input): JsonBody<NewAgent>,
) -> ApiResult<Response> {
    let (agent, key) = s.engine.register_agent(&p, input).await?;
    Ok((StatusCode::CREATED, Json(AgentCreated { id: agent.id, api_key: key })).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/agents/{id}",
    tag = "trust",
    params(("id" = String, Path, description = "Agent id", example = "procurement-bot")),
    responses((status = 200, description = "The agent and its trust standing (an agent reads only itself)", body = AgentView), Problems),
    security(("admin_token" = []), ("approver_token" = []), ("agent_key" = []))
)]
async fn get_agent(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<AgentView>> {
    Ok(Json(s.engine.agent_view(&p, &id).await?))
}

#[utoipa::path(
    post,
    path = "/v1/agents/{id}/suspend",
    tag = "admin",
    params(("id" = String, Path, description = "Agent id", example = "procurement-bot")),
    responses((status = 200, description = "Suspended: its requests are rejected (and recorded)", body = Suspension), Problems),
    security(("admin_token" = []))
)]
async fn suspend_agent(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Suspension>> {
    let a = s.engine.set_suspended(&p, id, true).await?;
    Ok(Json(Suspension { id: a.id, suspended: a.suspended }))
}

#[utoipa::path(
    post,
    path = "/v1/agents/{id}/resume",
    tag = "admin",
    params(("id" = String, Path, description = "Agent id", example = "procurement-bot")),
    responses((status = 200, description = "Resumed", body = Suspension), Problems),
    security(("admin_token" = []))
)]
async fn resume_agent(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Suspension>> {
    let a = s.engine.set_suspended(&p, id, false).await?;
    Ok(Json(Suspension { id: a.id, suspended: a.suspended }))
}

#[utoipa::path(
    post,
    path = "/v1/agents/{id}/revoke",
    tag = "admin",
    params(("id" = String, Path, description = "Agent id", example = "procurement-bot")),
    responses((status = 200, description = "Revoked: its API key authenticates nothing from now on", body = Revocation), Problems),
    security(("admin_token" = []))
)]
async fn revoke_agent(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Revocation>> {
    let at = s.engine.revoke(&p, Revocable::Agent, id.clone()).await?;
    Ok(Json(Revocation { id, revoked: true, revoked_at: rfc3339_ms(at) }))
}

#[utoipa::path(
    post,
    path = "/v1/approvers/{id}/revoke",
    tag = "admin",
    params(("id" = String, Path, description = "Approver id")),
    responses((status = 200, description = "Revoked: the token and its web sessions end; its approvals of pending reviews are withdrawn", body = Revocation), Problems),
    security(("admin_token" = []))
)]
async fn revoke_approver(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Revocation>> {
    let at = s.engine.revoke(&p, Revocable::Approver, id.clone()).await?;
    Ok(Json(Revocation { id, revoked: true, revoked_at: rfc3339_ms(at) }))
}

#[utoipa::path(
    post,
    path = "/v1/approvers",
    tag = "admin",
    request_body = NewApprover,
    responses(
        (status = 201, description = "Registered; the token is shown once", body = ApproverCreated,
         links(("revoke_approver" = (operation_id = "revoke_approver", parameters(("id" = "$response.body#/id")))))),
        Problems,
    ),
    security(("admin_token" = []))
)]
async fn create_approver(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(input): JsonBody<NewApprover>,
) -> ApiResult<Response> {
    let (a, token) = s.engine.register_approver(&p, input).await?;
    Ok((StatusCode::CREATED, Json(ApproverCreated { id: a.id, roles: a.roles, token })).into_response())
}

#[utoipa::path(
    post,
    path = "/v1/systems",
    tag = "admin",
    request_body = NewSystem,
    responses(
        (status = 201, description = "Registered; the token is shown once", body = SystemCreated,
         links(("get_system" = (operation_id = "get_system", parameters(("id" = "$response.body#/id")))))),
        Problems,
    ),
    security(("admin_token" = []))
)]
async fn create_system(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(input): JsonBody<NewSystem>,
) -> ApiResult<Response> {
    let (sys, token) = s.engine.register_system(&p, input).await?;
    Ok((StatusCode::CREATED, Json(SystemCreated { id: sys.id, token })).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/systems/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "Target system id (the audience its passports name)", example = "erp")),
    responses((status = 200, description = "The target system (a system reads only itself; others get 404)", body = SystemDoc), Problems),
    security(("admin_token" = []), ("system_token" = []))
)]
async fn get_system(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<SystemDoc>> {
    let sys = s.engine.system_record(&p, id).await?;
    Ok(Json(SystemDoc { id: sys.id, name: sys.name, created_at: rfc3339_ms(sys.created_at_ms) }))
}

#[utoipa::path(
    put,
    path = "/v1/counterparties/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "Counterparty id", example = "acme")),
    request_body = CounterpartyInput,
    responses((status = 200, description = "Saved", body = CounterpartySaved), Problems),
    security(("admin_token" = []))
)]
async fn put_counterparty(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<CounterpartyInput>,
) -> ApiResult<Json<CounterpartySaved>> {
    let c = s.engine.put_counterparty(&p, id, input).await?;
    Ok(Json(CounterpartySaved { id: c.id, name: c.name, risk: c.risk }))
}

#[utoipa::path(
    get,
    path = "/v1/counterparties/{id}",
    tag = "trust",
    params(("id" = String, Path, description = "Counterparty id", example = "acme")),
    responses((status = 200, description = "The counterparty and its trust standing", body = CounterpartyView), Problems),
    security(("admin_token" = []), ("approver_token" = []))
)]
async fn get_counterparty(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<CounterpartyView>> {
    Ok(Json(s.engine.counterparty_view(&p, &id).await?))
}

#[utoipa::path(
    get,
    path = "/v1/actions",
    tag = "admin",
    responses((status = 200, description = "The declared action types", body = ActionList), Problems),
    security(("admin_token" = []), ("approver_token" = []), ("agent_key" = []), ("system_token" = []))
)]
async fn list_actions(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<ActionList>> {
    let actions = s.engine.list_actions(&p).await?;
    let actions = actions
        .into_iter()
        .map(|a| ActionDeclared { action_type: a.action_type, description: a.description })
        .collect();
    Ok(Json(ActionList { actions }))
}

#[utoipa::path(
    put,
    path = "/v1/actions/{type}",
    tag = "admin",
    params(("type" = String, Path, description = "Action type", example = "purchase_order.create")),
    request_body = ActionInput,
    responses((status = 200, description = "Declared (policies may name it)", body = ActionDeclared), Problems),
    security(("admin_token" = []))
)]
async fn put_action(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(action_type): Path<String>,
    JsonBody(input): JsonBody<ActionInput>,
) -> ApiResult<Json<ActionDeclared>> {
    let a = s.engine.declare_action(&p, action_type, input.description).await?;
    Ok(Json(ActionDeclared { action_type: a.action_type, description: a.description }))
}

#[utoipa::path(
    post,
    path = "/v1/policies",
    tag = "policies",
    request_body = PolicyInput,
    responses(
        (status = 201, description = "Stored (and activated when asked); an invalid policy is a 400 naming the error, the active one unchanged", body = PolicyVersion,
         links(("get_policy" = (operation_id = "get_policy", parameters(("version" = "$response.body#/version")))), ("activate_policy" = (operation_id = "activate_policy", parameters(("version" = "$response.body#/version")))))),
        Problems,
    ),
    security(("admin_token" = []))
)]
async fn create_policy(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(input): JsonBody<PolicyInput>,
) -> ApiResult<Response> {
    let created = s.engine.upload_policy(&p, input.source, input.activate).await?;
    let body = PolicyVersion { version: created.version, digest: created.digest, active: created.active };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/policies",
    tag = "policies",
    responses((status = 200, description = "Every version", body = PolicyList), Problems),
    security(("admin_token" = []), ("approver_token" = []))
)]
async fn list_policies(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<PolicyList>> {
    let (all, active) = s.engine.list_policies(&p).await?;
    let policies = all
        .into_iter()
        .map(|v| PolicySummary {
            active: Some(v.version) == active,
            version: v.version,
            digest: v.digest,
            created_at: rfc3339_ms(v.created_at_ms),
            created_by: v.created_by,
        })
        .collect();
    Ok(Json(PolicyList { active, policies }))
}

#[utoipa::path(
    put,
    path = "/v1/policies/shadow",
    tag = "policies",
    request_body = ShadowInput,
    responses((status = 200, description = "The shadow version, evaluated beside the active one on live requests", body = Shadow), Problems),
    security(("admin_token" = []))
)]
async fn set_shadow(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(input): JsonBody<ShadowInput>,
) -> ApiResult<Json<Shadow>> {
    let v = s.engine.set_shadow_policy(&p, Some(input.version)).await?;
    Ok(Json(Shadow { shadow: v }))
}

#[utoipa::path(
    delete,
    path = "/v1/policies/shadow",
    tag = "policies",
    responses((status = 200, description = "No shadow version any more", body = Shadow), Problems),
    security(("admin_token" = []))
)]
async fn clear_shadow(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Shadow>> {
    s.engine.set_shadow_policy(&p, None).await?;
    Ok(Json(Shadow { shadow: None }))
}

#[utoipa::path(
    get,
    path = "/v1/policies/shadow",
    tag = "policies",
    responses((status = 200, description = "The shadow version and its divergences from the active one", body = ShadowReport), Problems),
    security(("admin_token" = []), ("approver_token" = []))
)]
async fn get_shadow(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<ShadowReport>> {
    let (shadow, divergences) = s.engine.shadow_divergences(&p).await?;
    Ok(Json(ShadowReport { shadow, divergences }))
}

fn parse_version(v: &str) -> ApiResult<u64> {
    v.parse::<u64>().map_err(|_| {
        ApiError::bad_request(Some("version".into()), format!("version must be a positive integer (got {v:?})"))
    })
}

#[utoipa::path(
    get,
    path = "/v1/policies/{version}",
    tag = "policies",
    params(("version" = u64, Path, description = "Policy version", example = 1)),
    responses((status = 200, description = "The version with its Cedar source", body = PolicyDoc), Problems),
    security(("admin_token" = []), ("approver_token" = []))
)]
async fn get_policy(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(version): Path<String>,
) -> ApiResult<Json<PolicyDoc>> {
    let (record, active) = s.engine.get_policy(&p, parse_version(&version)?).await?;
    Ok(Json(PolicyDoc {
        version: record.version,
        digest: record.digest,
        active,
        source: record.source,
        created_at: rfc3339_ms(record.created_at_ms),
        created_by: record.created_by,
    }))
}

#[utoipa::path(
    post,
    path = "/v1/policies/{version}/activate",
    tag = "policies",
    params(("version" = u64, Path, description = "Policy version", example = 1)),
    responses((status = 200, description = "Activated: the next verdicts use it", body = PolicyVersion), Problems),
    security(("admin_token" = []))
)]
async fn activate_policy(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(version): Path<String>,
) -> ApiResult<Json<PolicyVersion>> {
    let r = s.engine.activate_policy(&p, parse_version(&version)?).await?;
    Ok(Json(PolicyVersion { version: r.version, digest: r.digest, active: true }))
}

#[utoipa::path(
    get,
    path = "/v1/policies/{version}/rules/{rule}",
    tag = "policies",
    params(("version" = u64, Path, description = "Policy version", example = 1), ("rule" = String, Path, description = "The rule's `@id`", example = "large-po")),
    responses((status = 200, description = "The rule, its annotations and its source", body = Rule), Problems),
    security(("admin_token" = []), ("approver_token" = []))
)]
async fn get_rule(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((version, rule)): Path<(String, String)>,
) -> ApiResult<Json<Rule>> {
    Ok(Json(s.engine.get_policy_rule(&p, parse_version(&version)?, rule).await?))
}

#[utoipa::path(
    post,
    path = "/v1/requests",
    tag = "cases",
    request_body = RequestInput,
    responses(
        (status = 201, description = "Decided: authorized (with the passport), escalated (a review opened) or rejected", body = SubmitResponse,
         headers(("Location" = String, description = "`/v1/cases/{case_id}`")),
         links(("get_case" = (operation_id = "get_case", parameters(("id" = "$response.body#/case_id")))), ("case_evidence" = (operation_id = "evidence", parameters(("id" = "$response.body#/case_id")))), ("report_execution" = (operation_id = "report_execution", parameters(("id" = "$response.body#/case_id")))), ("record_outcome" = (operation_id = "record_outcome", parameters(("id" = "$response.body#/case_id")))), ("get_review" = (operation_id = "get_review", parameters(("id" = "$response.body#/review/id")))), ("decide_review" = (operation_id = "decide_review", parameters(("id" = "$response.body#/review/id")))))),
        (status = 200, description = "The same `idempotency_key` with the same body: the same case, the same answer", body = SubmitResponse,
         headers(("Location" = String, description = "`/v1/cases/{case_id}`"))),
        Problems,
    ),
    security(("agent_key" = []))
)]
async fn submit_request(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(input): JsonBody<RequestInput>,
) -> ApiResult<Response> {
    let out = s.engine.submit_request(&p, input).await?;
    let status = if out.created { StatusCode::CREATED } else { StatusCode::OK };
    let decided = DecidedVerdict::of(out.body.verdict, &out.body.reasons);
    let mut resp = (status, Json(out.body)).into_response();
    resp.extensions_mut().insert(decided);
    if let Ok(v) = header::HeaderValue::from_str(&format!("/v1/cases/{}", out.case_id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only cases with this status.
    #[param(value_type = Option<CaseStatus>)]
    status: Option<String>,
    /// At most this many (default 100; taken as 1 to 500).
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/cases",
    tag = "cases",
    params(ListQuery),
    responses((status = 200, description = "The cases the caller may read (agents: their own; systems: those addressed to them), newest first", body = CaseList), Problems),
    security(("admin_token" = []), ("approver_token" = []), ("agent_key" = []), ("system_token" = []))
)]
async fn list_cases(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<ListQuery>) -> ApiResult<Json<CaseList>> {
    Ok(Json(s.engine.list_cases(&p, q.status, q.limit.unwrap_or(100)).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    /// Hold a `pending_review` case until it is decided or this many seconds pass (at
    /// most 60); any other status returns at once.
    #[param(value_type = Option<u64>, minimum = 0)]
    wait: Option<String>,
}

/// Longest `?wait`, in seconds.
const MAX_WAIT: u64 = 60;

/// How often a waiting request re-reads its case even without a change notification.
const WAIT_FALLBACK: Duration = Duration::from_secs(2);

#[utoipa::path(
    get,
    path = "/v1/cases/{id}",
    tag = "cases",
    params(("id" = String, Path, description = "Case id"), WaitQuery),
    responses(
        (status = 200, description = "The case as the caller may see it (`passport` only for its own agent while usable); an agent picks up its approved case's passport here", body = CaseView,
         headers(("agentsigna-wait" = String, description = "`unavailable` when the server's long-poll cap was reached: the case was answered at once"))),
        Problems,
    ),
    security(("admin_token" = []), ("approver_token" = []), ("agent_key" = []), ("system_token" = []))
)]
async fn get_case(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Json<CaseView>> {
    if let Some(w) = q.wait {
        let secs: u64 = w.parse().map_err(|_| {
            ApiError::bad_request(Some("wait".into()), format!("wait must be a number of seconds (got {w:?})"))
        })?;
        let until = tokio::time::Instant::now() + Duration::from_secs(secs.min(MAX_WAIT));
        // Woken only by changes of this case; reads only: the case's expiry, when due, is
        // applied by the final `get_case` (or the sweeper), never by a waiter's loop.
        let watch = s.engine.watch_case(&id);
        loop {
            let notified = watch.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let state = s.engine.case_wait_state(&p, &id).await?;
            if state.status != CaseStatus::PendingReview {
                break;
            }
            let now_ms = s.engine.clock().now_ms();
            if state.due_ms.is_some_and(|d| d <= now_ms) {
                break;
            }
            let now = tokio::time::Instant::now();
            if now >= until || s.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            // Until the deadline at the latest; and every two seconds, as a fallback for
            // changes made by another process that were not reported to this one.
            let to_due = state.due_ms.map_or(WAIT_FALLBACK, |d| {
                Duration::from_millis(u64::try_from(d - now_ms).unwrap_or(0)).min(WAIT_FALLBACK)
            });
            let slice = (until - now).min(to_due);
            let _ = tokio::time::timeout(slice, notified).await;
        }
    }
    Ok(Json(s.engine.get_case(&p, &id).await?))
}

#[utoipa::path(
    post,
    path = "/v1/cases/{id}/execution",
    tag = "cases",
    params(("id" = String, Path, description = "Case id")),
    request_body = ExecutionInput,
    responses((status = 200, description = "Recorded (the same report twice is recorded once)", body = CaseView), Problems),
    security(("admin_token" = []), ("agent_key" = []), ("system_token" = []))
)]
async fn report_execution(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<ExecutionInput>,
) -> ApiResult<Json<CaseView>> {
    Ok(Json(s.engine.report_execution(&p, &id, input).await?))
}

#[utoipa::path(
    post,
    path = "/v1/cases/{id}/outcome",
    tag = "cases",
    params(("id" = String, Path, description = "Case id")),
    request_body = OutcomeInput,
    responses((status = 200, description = "Recorded; trust moves (the agent itself may report only `rejected` or `disputed`)", body = CaseView), Problems),
    security(("admin_token" = []), ("approver_token" = []), ("agent_key" = []), ("system_token" = []))
)]
async fn record_outcome(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<OutcomeInput>,
) -> ApiResult<Json<CaseView>> {
    Ok(Json(s.engine.record_outcome(&p, &id, input).await?))
}

/// `GET /v1/reviews`: every parameter is read as text, so that a bad value is refused by
/// the engine with the parameter's name.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ReviewQuery {
    /// `pending` (the default), `approved`, `rejected`, `expired` or `all`.
    #[param(value_type = Option<ReviewStatusFilter>, inline)]
    status: Option<String>,
    /// Only reviews of this agent.
    agent: Option<String>,
    /// Only reviews with this counterparty.
    counterparty: Option<String>,
    /// Only reviews of this action type.
    action: Option<String>,
    /// Only pending reviews that still need this role.
    role: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Reviews per page, 1 to 500 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// The `status` filter of `GET /v1/reviews`: a review status, or `all`.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum ReviewStatusFilter {
    Pending,
    Approved,
    Rejected,
    Expired,
    All,
}

#[utoipa::path(
    get,
    path = "/v1/reviews",
    tag = "reviews",
    params(ReviewQuery),
    responses((status = 200, description = "One page of reviews (pending ones by deadline, the others newest first), how many match, and the cursor of the next page", body = ReviewList), Problems),
    security(("admin_token" = []), ("approver_token" = []))
)]
async fn list_reviews(
    State(s): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ReviewQuery>,
) -> ApiResult<Json<ReviewList>> {
    let limit = match q.limit.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(l) => Some(l.parse::<u32>().map_err(|_| {
            ApiError::bad_request(
                Some("limit".into()),
                format!("limit must be a whole number from 1 to {} (got {l:?})", review::MAX_REVIEW_PAGE),
            )
        })?),
    };
    let query = ReviewListQuery {
        status: q.status,
        agent: q.agent,
        counterparty: q.counterparty,
        action: q.action,
        role: q.role,
        cursor: q.cursor,
        limit,
    };
    Ok(Json(s.engine.list_reviews(&p, query).await?))
}

#[utoipa::path(
    get,
    path = "/v1/reviews/{id}",
    tag = "reviews",
    params(("id" = String, Path, description = "Review id")),
    responses((status = 200, description = "The review with its full context: agent, counterparty, rules with their source, history, timeline", body = ReviewView), Problems),
    security(("admin_token" = []), ("approver_token" = []))
)]
async fn get_review(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<ReviewView>> {
    Ok(Json(s.engine.get_review(&p, &id).await?))
}

#[utoipa::path(
    post,
    path = "/v1/reviews/{id}/decisions",
    tag = "reviews",
    params(("id" = String, Path, description = "Review id")),
    request_body = DecisionInput,
    responses((status = 200, description = "Recorded; the review as it now stands", body = ReviewView), Problems),
    security(("approver_token" = []))
)]
async fn decide_review(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<DecisionInput>,
) -> ApiResult<Json<ReviewView>> {
    Ok(Json(s.engine.decide_review(&p, &id, input).await?))
}
