//! Steps 1–2: an agent's request is checked, evaluated against the active policy (and a
//! shadow version beside it), recorded, and answered with a verdict — a passport when
//! authorized at once, a review when escalated.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::admin::{active_version, shadow_version};
use super::data::case_event;
use super::draft::Draft;
use super::outbox::queue_notification;
use super::passport::issue_passport;
use super::verdict::{policy_input, reject_with};
use super::views::{self, PolicyVerdict, ShadowDivergence, SubmitResponse};
use super::{Ctx, Engine};
use crate::access::{self, Op};
use crate::ids::new_id;
use crate::model::{
    AgentRecord, Case, CaseRequest, CaseStatus, CounterpartyRecord, CounterpartySnapshot, DecisionRecord, PolicyRef,
    Principal, Review, ReviewStatus, TrustSnapshot,
};
use crate::money::Amount;
use crate::policy::{Evaluation, Verdict};
use crate::store::RecordKind;
use crate::text;
use crate::{Error, Result};
use agentsigna_verify::clock::rfc3339_ms;

/// `POST /v1/requests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({
    "action": "purchase_order.create", "counterparty": "acme",
    "amount": {"value": "12500.00", "currency": "USD"}, "audience": "erp",
    "description": "40 laptops for onboarding", "context": {"cost_center": "IT-7"},
    "idempotency_key": "po-4411"
})))]
pub struct RequestInput {
    pub action: String,
    pub counterparty: String,
    #[serde(default)]
    pub amount: Option<Amount>,
    pub audience: String,
    #[serde(default)]
    pub description: String,
    /// Free-form, recorded and shown to approvers (not passed to Cedar): an object without
    /// floating-point numbers, bounded in size and depth.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// The answer to a request: 201 for a new case, 200 for an idempotent retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub created: bool,
    pub body: SubmitResponse,
    pub case_id: String,
}

fn check_context(ctx: &Ctx, context: &Value) -> Result<()> {
    fn walk(v: &Value, depth: usize, max: usize, path: &str) -> Result<()> {
        if depth > max {
            return Err(Error::invalid("context", format!("context is nested deeper than {max} levels")));
        }
        match v {
            Value::Number(n) if !(n.is_i64() || n.is_u64()) => Err(Error::invalid(
                "context",
                format!("context{path} is a floating-point number; send decimals as strings"),
            )),
            Value::Number(n)
                if n.as_i64().map(i64::unsigned_abs).or(n.as_u64()).unwrap_or(u64::MAX)
                    > agentsigna_verify::ledger::MAX_SAFE_INTEGER =>
            {
                Err(Error::invalid(
                    "context",
                    format!("context{path} is an integer beyond 2^53 - 1; send it as a string"),
                ))
            }
            Value::Array(items) => {
                items.iter().enumerate().try_for_each(|(i, x)| walk(x, depth + 1, max, &format!("{path}[{i}]")))
            }
            Value::Object(map) => map.iter().try_for_each(|(k, x)| {
                if !k.is_ascii() {
                    return Err(Error::invalid("context", format!("context key {k:?} is not ASCII")));
                }
                text::check_plain("context", k)
                    .map_err(|_| Error::invalid("context", format!("context key {k:?} holds a control character")))?;
                walk(x, depth + 1, max, &format!("{path}.{k}"))
            }),
            Value::String(s) => {
                text::check_free("context", s).map_err(|e| Error::invalid("context", format!("context{path}: {e}")))
            }
            _ => Ok(()),
        }
    }
    if !context.is_object() {
        return Err(Error::invalid("context", "context must be a JSON object"));
    }
    let size = serde_json::to_string(context).map(|s| s.len()).unwrap_or(usize::MAX);
    if size > ctx.config.max_context_bytes {
        return Err(Error::invalid(
            "context",
            format!("context is {size} bytes; the limit is {}", ctx.config.max_context_bytes),
        ));
    }
    walk(context, 1, ctx.config.max_context_depth, "")
}

pub(crate) fn check_text(field: &str, v: &str, max: usize) -> Result<()> {
    if v.chars().count() > max {
        return Err(Error::invalid(field, format!("{field} must be at most {max} characters")));
    }
    text::check_free(field, v)
}

impl Engine {
    /// Step 1–2 (and 4 when authorized at once): an agent's request gets its verdict.
    pub async fn submit_request(&self, by: &Principal, input: RequestInput) -> Result<Submitted> {
        access::check(by, Op::SubmitRequest)?;
        let Principal::Agent(agent_id) = by.clone() else {
            return Err(Error::Forbidden("only agents submit requests".into()));
        };
        let ctx = self.ctx();
        // Validate everything that needs no state before touching the store.
        for (field, v) in
            [("action", &input.action), ("counterparty", &input.counterparty), ("audience", &input.audience)]
        {
            if v.is_empty() {
                return Err(Error::invalid(field, format!("{field} must not be empty")));
            }
            text::check_plain(field, v)?;
        }
        let (amount_minor, currency) = match &input.amount {
            Some(a) => (a.minor_units()?, a.currency.clone()),
            None => (0, String::new()),
        };
        check_text("description", &input.description, 2000)?;
        let context = input.context.clone().unwrap_or_else(|| json!({}));
        check_context(&ctx, &context)?;
        if let Some(k) = &input.idempotency_key {
            if k.is_empty() || k.len() > 200 {
                return Err(Error::invalid("idempotency_key", "idempotency_key must be 1-200 printable characters"));
            }
            text::check_plain("idempotency_key", k)?;
        }
        let request = CaseRequest {
            action: input.action,
            counterparty: input.counterparty,
            amount: input.amount,
            audience: input.audience,
            description: input.description,
            context,
            idempotency_key: input.idempotency_key,
        };
        // RFC 8785: a retry whose members come in another order is the same request.
        let request_hash = {
            let value = serde_json::to_value(&request).map_err(|e| Error::data_from("cannot encode the request", e))?;
            let canonical = agentsigna_verify::ledger::canonical_value(&value)
                .map_err(|e| Error::invalid("context", format!("context cannot be recorded: {e}")))?;
            hex::encode(Sha256::digest(canonical.as_bytes()))
        };
        drop(ctx);
        let lock = match &request.idempotency_key {
            Some(k) => format!("idem:{agent_id}:{k}"),
            None => String::new(),
        };
        let keys: &[&str] = if lock.is_empty() { &[] } else { &[&lock] };
        self.transact(keys, move |ctx, d| {
            decide_request(ctx, d, &agent_id, request.clone(), &request_hash, amount_minor, &currency)
        })
        .await
    }
}

/// Steps 1–2 on a draft: the verdict of a request (and its passport or review).
#[allow(clippy::too_many_arguments)]
fn decide_request(
    ctx: &Ctx,
    d: &mut Draft<'_>,
    agent_id: &str,
    request: CaseRequest,
    request_hash: &str,
    amount_minor: i64,
    currency: &str,
) -> Result<Submitted> {
    if let Some(key) = &request.idempotency_key {
        if let Some(case) = d.case_by_idempotency(agent_id, key)? {
            if case.request_hash != request_hash {
                return Err(Error::Conflict(format!(
                    "idempotency_key {key:?} was already used for a different request (case {})",
                    case.id
                )));
            }
            return Ok(Submitted { created: false, body: views::submit_response(&case), case_id: case.id });
        }
    }
    let agent: AgentRecord = d
        .get(RecordKind::Agent, agent_id)?
        .ok_or_else(|| Error::Unauthenticated(format!("agent {agent_id} no longer exists")))?;
    if d.stable_record(RecordKind::Action, &request.action)?.is_none() {
        return Err(Error::unknown("action", format!("action type {:?} is not declared", request.action)));
    }
    let counterparty: CounterpartyRecord =
        d.get(RecordKind::Counterparty, &request.counterparty)?.ok_or_else(|| {
            Error::unknown("counterparty", format!("counterparty {:?} is not registered", request.counterparty))
        })?;
    if d.stable_record(RecordKind::System, &request.audience)?.is_none() {
        return Err(Error::unknown(
            "audience",
            format!("audience {:?} is not a registered target system", request.audience),
        ));
    }

    let now = ctx.now();
    let input = policy_input(ctx, d, &agent, &counterparty, &request.action, amount_minor, currency)?;
    let (agent_trust, cp_trust) = (input.agent_trust, input.counterparty_trust);
    let (evaluation, policy) = if agent.suspended {
        (reject_with(Some("agent-suspended"), &format!("agent {} is suspended by the administrator", agent.id)), None)
    } else {
        match active_version(d)? {
            None => (reject_with(None, "no active policy"), None),
            Some(version) => {
                let compiled = ctx.compiled(d.snapshot(), version)?;
                (compiled.evaluate(&input), Some(PolicyRef { version, digest: compiled.digest() }))
            }
        }
    };

    // Shadow mode: a candidate version evaluated beside the active one, never enforced.
    let shadow = match (shadow_version(d)?, &policy) {
        (Some(v), Some(active)) if v != active.version && !agent.suspended => {
            let compiled = ctx.compiled(d.snapshot(), v)?;
            Some((PolicyRef { version: v, digest: compiled.digest() }, compiled.evaluate(&input)))
        }
        _ => None,
    };

    let decision = DecisionRecord {
        verdict: evaluation.verdict,
        reasons: evaluation.reasons.clone(),
        policy: policy.clone(),
        trust: TrustSnapshot { agent: agent_trust, counterparty: cp_trust },
        counterparty: CounterpartySnapshot {
            id: counterparty.id.clone(),
            name: counterparty.name.clone(),
            risk: counterparty.risk,
        },
        amount_minor,
        currency: currency.to_owned(),
        decided_at_ms: now,
        ttl_secs: evaluation.ttl_secs,
    };
    let status = match evaluation.verdict {
        Verdict::Authorized => CaseStatus::Authorized,
        Verdict::Escalated => CaseStatus::PendingReview,
        Verdict::Rejected => CaseStatus::Rejected,
    };
    let mut case = Case {
        id: new_id("case", now),
        agent: agent.id.clone(),
        status,
        created_at_ms: now,
        request,
        request_hash: request_hash.to_owned(),
        decision,
        review: None,
        pickup_deadline_ms: None,
        passport: None,
        executions: Vec::new(),
        outcomes: Vec::new(),
        agent_counted: None,
        counterparty_counted: None,
        head: None,
    };
    d.new_case(&case.id);
    let actor = format!("agent:{}", agent.id);
    let submitted = json!({
        "agent": agent.id, "owner": agent.owner, "action": case.request.action,
        "counterparty": case.request.counterparty, "amount": case.request.amount,
        "audience": case.request.audience, "description": case.request.description,
        "context": case.request.context, "idempotency_key": case.request.idempotency_key,
        "request_hash": case.request_hash,
    });
    case_event(d, &mut case, "request.submitted", now, &actor, submitted)?;
    let decided = json!({
        "verdict": evaluation.verdict, "reasons": evaluation.reasons, "policy": policy,
        "inputs": {
            "agent": {"id": agent.id, "owner": agent.owner, "trust": agent_trust, "suspended": agent.suspended},
            "counterparty": {"id": counterparty.id, "risk": counterparty.risk.as_str(), "trust": cp_trust},
            "action": case.request.action, "amount_minor": amount_minor, "currency": currency,
        },
        "approvals_required": evaluation.approvals_required, "roles_required": evaluation.roles_required,
        "ttl_secs": evaluation.ttl_secs,
        "shadow": shadow.as_ref().map(|(p, e)| json!({"policy": p, "verdict": e.verdict, "reasons": e.reasons})),
    });
    case_event(d, &mut case, "decision.made", now, "server", decided)?;
    if let Some((shadow_policy, shadow_eval)) = &shadow {
        if shadow_eval.verdict != evaluation.verdict {
            let record = ShadowDivergence {
                action: case.request.action.clone(),
                active: PolicyVerdict {
                    policy: policy.clone(),
                    reasons: evaluation.reasons.clone(),
                    verdict: evaluation.verdict,
                },
                agent: agent.id.clone(),
                amount: case.request.amount.clone(),
                at: rfc3339_ms(now),
                case_id: case.id.clone(),
                counterparty: counterparty.id.clone(),
                shadow: PolicyVerdict {
                    policy: Some(shadow_policy.clone()),
                    reasons: shadow_eval.reasons.clone(),
                    verdict: shadow_eval.verdict,
                },
            };
            // Keyed by time then case id, so listing returns them in order.
            d.put(RecordKind::ShadowDivergence, &format!("{now:020}-{}", case.id), &record)?;
        }
    }
    match evaluation.verdict {
        Verdict::Escalated => open_review(ctx, d, &mut case, &agent, &evaluation, now)?,
        Verdict::Authorized => issue_passport(ctx, d, &mut case, &agent)?,
        Verdict::Rejected => {}
    }
    let body = views::submit_response(&case);
    d.save_case(&case)?;
    Ok(Submitted { created: true, body, case_id: case.id })
}

fn open_review(
    ctx: &Ctx,
    d: &mut Draft<'_>,
    case: &mut Case,
    agent: &AgentRecord,
    eval: &Evaluation,
    now: i64,
) -> Result<()> {
    let deadline_secs = eval.deadline_secs.unwrap_or(ctx.config.review_deadline_secs);
    let review = Review {
        id: new_id("rev", now),
        status: ReviewStatus::Pending,
        approvals_required: eval.approvals_required.max(1),
        roles_required: eval.roles_required.clone(),
        deadline_ms: now + deadline_secs * 1000,
        opened_at_ms: now,
        decisions: Vec::new(),
        closed_at_ms: None,
    };
    case_event(
        d,
        case,
        "review.opened",
        now,
        "server",
        json!({
            "review": review.id, "approvals_required": review.approvals_required,
            "roles_required": review.roles_required, "deadline": rfc3339_ms(review.deadline_ms),
            "rules": eval.reasons.iter().filter_map(|r| r.rule.clone()).collect::<Vec<_>>(),
        }),
    )?;
    case.review = Some(review);
    queue_notification(d, case, Some(&agent.owner), "review.opened", now)
}
