//! Admin, agent, approver and system routes.

use std::time::Duration;

use super::extract::{P as Path, Q as Query};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Auth, JsonBody};
use super::problem::{ApiError, ApiResult};
use super::table::Routes;
use crate::state::AppState;
use agentsigna_core::engine::admin::{CounterpartyInput, NewAgent, NewApprover, NewSystem, Revocable};
use agentsigna_core::engine::outcome::{ExecutionInput, OutcomeInput};
use agentsigna_core::engine::request::RequestInput;
use agentsigna_core::engine::review::{self, DecisionInput, ReviewListQuery};
use agentsigna_core::model::CaseStatus;
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

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn jwks(State(s): State<AppState>) -> Response {
    let now = s.engine.clock().now_ms();
    let jwks = s.engine.keys().jwks(now, s.engine.config().max_passport_ttl_secs * 1000);
    let mut resp = Json(jwks).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("public, max-age=60"));
    resp
}

async fn create_agent(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(input): JsonBody<NewAgent>,
) -> ApiResult<Response> {
    let (agent, key) = s.engine.register_agent(&p, input).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": agent.id, "api_key": key}))).into_response())
}

async fn get_agent(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.engine.agent_view(&p, &id).await?))
}

async fn suspend_agent(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let a = s.engine.set_suspended(&p, id, true).await?;
    Ok(Json(json!({"id": a.id, "suspended": a.suspended})))
}

async fn resume_agent(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let a = s.engine.set_suspended(&p, id, false).await?;
    Ok(Json(json!({"id": a.id, "suspended": a.suspended})))
}

async fn revoke_agent(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let at = s.engine.revoke(&p, Revocable::Agent, id.clone()).await?;
    Ok(Json(json!({"id": id, "revoked": true, "revoked_at": rfc3339_ms(at)})))
}

async fn revoke_approver(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let at = s.engine.revoke(&p, Revocable::Approver, id.clone()).await?;
    Ok(Json(json!({"id": id, "revoked": true, "revoked_at": rfc3339_ms(at)})))
}

async fn create_approver(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(input): JsonBody<NewApprover>,
) -> ApiResult<Response> {
    let (a, token) = s.engine.register_approver(&p, input).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": a.id, "roles": a.roles, "token": token}))).into_response())
}

async fn create_system(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(input): JsonBody<NewSystem>,
) -> ApiResult<Response> {
    let (sys, token) = s.engine.register_system(&p, input).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": sys.id, "token": token}))).into_response())
}

async fn get_system(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let sys = s.engine.system_record(&p, id).await?;
    Ok(Json(json!({"id": sys.id, "name": sys.name, "created_at": rfc3339_ms(sys.created_at_ms)})))
}

async fn put_counterparty(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<CounterpartyInput>,
) -> ApiResult<Json<Value>> {
    let c = s.engine.put_counterparty(&p, id, input).await?;
    Ok(Json(json!({"id": c.id, "name": c.name, "risk": c.risk.as_str()})))
}

async fn get_counterparty(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.engine.counterparty_view(&p, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionInput {
    #[serde(default)]
    description: String,
}

async fn list_actions(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    let actions = s.engine.list_actions(&p).await?;
    Ok(Json(json!({"actions": actions})))
}

async fn put_action(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(action_type): Path<String>,
    JsonBody(input): JsonBody<ActionInput>,
) -> ApiResult<Json<Value>> {
    let a = s.engine.declare_action(&p, action_type, input.description).await?;
    Ok(Json(json!({"type": a.action_type, "description": a.description})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyInput {
    source: String,
    #[serde(default)]
    activate: bool,
}

async fn create_policy(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(input): JsonBody<PolicyInput>,
) -> ApiResult<Response> {
    let created = s.engine.upload_policy(&p, input.source, input.activate).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"version": created.version, "digest": created.digest, "active": created.active})),
    )
        .into_response())
}

async fn list_policies(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    let (all, active) = s.engine.list_policies(&p).await?;
    let versions: Vec<Value> = all
        .iter()
        .map(|v| {
            json!({"version": v.version, "digest": v.digest, "active": Some(v.version) == active,
                   "created_at": rfc3339_ms(v.created_at_ms), "created_by": v.created_by})
        })
        .collect();
    Ok(Json(json!({"active": active, "policies": versions})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowInput {
    version: u64,
}

async fn set_shadow(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(input): JsonBody<ShadowInput>,
) -> ApiResult<Json<Value>> {
    let v = s.engine.set_shadow_policy(&p, Some(input.version)).await?;
    Ok(Json(json!({"shadow": v})))
}

async fn clear_shadow(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    s.engine.set_shadow_policy(&p, None).await?;
    Ok(Json(json!({"shadow": null})))
}

async fn get_shadow(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Value>> {
    let (version, divergences) = s.engine.shadow_divergences(&p).await?;
    Ok(Json(json!({"shadow": version, "divergences": divergences})))
}

fn parse_version(v: &str) -> ApiResult<u64> {
    v.parse::<u64>().map_err(|_| {
        ApiError::bad_request(Some("version".into()), format!("version must be a positive integer (got {v:?})"))
    })
}

async fn get_policy(State(s): State<AppState>, Auth(p): Auth, Path(version): Path<String>) -> ApiResult<Json<Value>> {
    let (record, active) = s.engine.get_policy(&p, parse_version(&version)?).await?;
    Ok(Json(json!({"version": record.version, "digest": record.digest, "active": active, "source": record.source,
                   "created_at": rfc3339_ms(record.created_at_ms), "created_by": record.created_by})))
}

async fn activate_policy(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(version): Path<String>,
) -> ApiResult<Json<Value>> {
    let r = s.engine.activate_policy(&p, parse_version(&version)?).await?;
    Ok(Json(json!({"version": r.version, "digest": r.digest, "active": true})))
}

async fn get_rule(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((version, rule)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let r = s.engine.get_policy_rule(&p, parse_version(&version)?, rule).await?;
    Ok(Json(serde_json::to_value(r).map_err(|e| ApiError::bad_request(None, e.to_string()))?))
}

async fn submit_request(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(input): JsonBody<RequestInput>,
) -> ApiResult<Response> {
    let out = s.engine.submit_request(&p, input).await?;
    let status = if out.created { StatusCode::CREATED } else { StatusCode::OK };
    let mut resp = (status, Json(out.body)).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&format!("/v1/cases/{}", out.case_id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
}

async fn list_cases(State(s): State<AppState>, Auth(p): Auth, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    Ok(Json(s.engine.list_cases(&p, q.status, q.limit.unwrap_or(100)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    wait: Option<String>,
}

/// Longest `?wait`, in seconds.
const MAX_WAIT: u64 = 60;

/// How often a waiting request re-reads its case even without a change notification.
const WAIT_FALLBACK: Duration = Duration::from_secs(2);

async fn get_case(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Json<Value>> {
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

async fn report_execution(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<ExecutionInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.engine.report_execution(&p, &id, input).await?))
}

async fn record_outcome(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<OutcomeInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.engine.record_outcome(&p, &id, input).await?))
}

/// `GET /v1/reviews`: every parameter is read as text, so that a bad value is refused by
/// the engine with the parameter's name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewQuery {
    status: Option<String>,
    agent: Option<String>,
    counterparty: Option<String>,
    action: Option<String>,
    role: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

async fn list_reviews(
    State(s): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ReviewQuery>,
) -> ApiResult<Json<Value>> {
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

async fn get_review(State(s): State<AppState>, Auth(p): Auth, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(s.engine.get_review(&p, &id).await?))
}

async fn decide_review(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<DecisionInput>,
) -> ApiResult<Json<Value>> {
    Ok(Json(s.engine.decide_review(&p, &id, input).await?))
}
