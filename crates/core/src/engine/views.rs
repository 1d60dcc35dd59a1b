//! The JSON documents of the API, built in one place.

use serde_json::{json, Value};

use super::data::{get, trust_state};
use super::{Ctx, Engine};
use crate::access::{self, Op};
use crate::model::{AgentRecord, ApproverRecord, Case, CaseStatus, CounterpartyRecord, Principal};
use crate::store::{CaseFilter, RecordKind, ReviewFilter, Snapshot};
use crate::trust::TrustState;
use crate::{Error, Result};
use agentsigna_verify::clock::rfc3339_ms;

fn review_json(case: &Case) -> Value {
    match &case.review {
        None => Value::Null,
        Some(r) => json!({
            "id": r.id,
            "status": r.status.as_str(),
            "approvals_required": r.approvals_required,
            "roles_required": r.roles_required,
            "roles_missing": r.roles_missing(),
            "deadline": rfc3339_ms(r.deadline_ms),
            "opened_at": rfc3339_ms(r.opened_at_ms),
            "closed_at": r.closed_at_ms.map(rfc3339_ms),
            "decisions": r.decisions.iter().map(|d| {
                let mut v = json!({
                    "approver": d.approver, "roles": d.roles, "decision": d.decision,
                    "comment": d.comment, "at": rfc3339_ms(d.at_ms),
                });
                if let Some(why) = &d.withdrawn {
                    v["withdrawn"] = json!(why);
                }
                v
            }).collect::<Vec<_>>(),
        }),
    }
}

/// The 201 body of `POST /v1/requests`, as it was when the case was decided: built from
/// what does not change afterwards, so an idempotent retry gets the same body.
pub fn submit_response(case: &Case) -> Value {
    let initial = match case.decision.verdict {
        crate::policy::Verdict::Authorized => CaseStatus::Authorized,
        crate::policy::Verdict::Escalated => CaseStatus::PendingReview,
        crate::policy::Verdict::Rejected => CaseStatus::Rejected,
    };
    let mut body = json!({
        "case_id": case.id,
        "status": initial.as_str(),
        "verdict": case.decision.verdict,
        "reasons": case.decision.reasons,
        "policy": case.decision.policy,
        "trust": {"agent": case.decision.trust.agent, "counterparty": case.decision.trust.counterparty},
    });
    // Only a case authorized at once had its passport in the first response.
    if let Some(p) = case.passport.as_ref().filter(|_| initial == CaseStatus::Authorized) {
        body["passport"] = json!(p.token);
        body["passport_id"] = json!(p.id);
        body["passport_expires_at"] = json!(rfc3339_ms(p.expires_at_ms));
    }
    if let Some(r) = &case.review {
        body["review"] = json!({
            "id": r.id, "approvals_required": r.approvals_required,
            "roles_required": r.roles_required, "deadline": rfc3339_ms(r.deadline_ms),
        });
    }
    body
}

/// A short line about a case, for lists.
pub(crate) fn case_summary(_ctx: &Ctx, case: &Case) -> Value {
    json!({
        "case_id": case.id,
        "status": case.status.as_str(),
        "verdict": case.decision.verdict,
        "agent": case.agent,
        "action": case.request.action,
        "counterparty": case.request.counterparty,
        "amount": case.request.amount,
        "audience": case.request.audience,
        "created_at": rfc3339_ms(case.created_at_ms),
    })
}

/// The whole case as `by` may see it. Only the agent sees the passport itself (it is a
/// bearer credential unless key-bound); others see its id and lifetime.
pub(crate) fn case_view(ctx: &Ctx, snap: &mut dyn Snapshot, case: &Case, by: &Principal) -> Result<Value> {
    let now = ctx.now();
    let events = snap.chain_entries(Some(&case.id))?;
    let passport = case.passport.as_ref().map(|p| {
        let usable = case.status == CaseStatus::Authorized && p.expires_at_ms > now;
        let show = usable && matches!(by, Principal::Agent(a) if *a == case.agent);
        json!({
            "id": p.id, "kid": p.kid,
            "issued_at": rfc3339_ms(p.issued_at_ms), "expires_at": rfc3339_ms(p.expires_at_ms),
            "token": if show { Value::String(p.token.clone()) } else { Value::Null },
        })
    });
    let passport_token = passport.as_ref().and_then(|p| p.get("token").cloned()).unwrap_or(Value::Null);
    Ok(json!({
        "case_id": case.id,
        "status": case.status.as_str(),
        "agent": case.agent,
        "created_at": rfc3339_ms(case.created_at_ms),
        "request": {
            "action": case.request.action, "counterparty": case.request.counterparty,
            "amount": case.request.amount, "audience": case.request.audience,
            "description": case.request.description, "context": case.request.context,
            "idempotency_key": case.request.idempotency_key,
        },
        "verdict": case.decision.verdict,
        "reasons": case.decision.reasons,
        "policy": case.decision.policy,
        "trust": {"agent": case.decision.trust.agent, "counterparty": case.decision.trust.counterparty},
        "counterparty": {"id": case.decision.counterparty.id, "name": case.decision.counterparty.name,
                         "risk": case.decision.counterparty.risk.as_str()},
        "review": review_json(case),
        "pickup_deadline": case.pickup_deadline_ms.map(rfc3339_ms),
        "passport": passport_token,
        "passport_info": passport,
        "executions": case.executions.iter().map(|e| json!({
            "passport_id": e.passport_id, "reference": e.reference, "actor": e.actor, "at": rfc3339_ms(e.at_ms),
        })).collect::<Vec<_>>(),
        "outcomes": case.outcomes.iter().map(|o| json!({
            "outcome": o.outcome.as_str(), "detail": o.detail, "actor": o.actor, "at": rfc3339_ms(o.at_ms),
        })).collect::<Vec<_>>(),
        "events": events,
    }))
}

/// A review in the queue.
pub(crate) fn review_summary(ctx: &Ctx, case: &Case) -> Value {
    let now = ctx.now();
    let r = case.review.as_ref();
    json!({
        "id": r.map(|r| r.id.clone()),
        "case_id": case.id,
        "status": r.map(|r| r.status.as_str()),
        "agent": case.agent,
        "action": case.request.action,
        "counterparty": {"id": case.decision.counterparty.id, "name": case.decision.counterparty.name,
                         "risk": case.decision.counterparty.risk.as_str()},
        "amount": case.request.amount,
        "rules": case.decision.reasons,
        "approvals_required": r.map(|r| r.approvals_required),
        "approvals": r.map(|r| r.approvals().count()),
        "roles_missing": r.map(|r| r.roles_missing()),
        "deadline": r.map(|r| rfc3339_ms(r.deadline_ms)),
        "seconds_left": r.map(|r| ((r.deadline_ms - now) / 1000).max(0)),
    })
}

/// Who is reading, for pages that show what they may do: an approver's id, name and
/// roles (`null` for the admin).
pub(crate) fn viewer(snap: &mut dyn Snapshot, by: &Principal) -> Result<Value> {
    let Principal::Approver(id) = by else { return Ok(Value::Null) };
    let a: Option<ApproverRecord> = get(snap, RecordKind::Approver, id)?;
    Ok(json!({
        "id": id, "name": a.as_ref().and_then(|a| a.name.clone()),
        "roles": a.map(|a| a.roles).unwrap_or_default(),
    }))
}

/// An earlier case as history beside a review: outcome and the review's decisions.
fn history_case(c: &Case) -> Value {
    json!({
        "case_id": c.id, "status": c.status.as_str(), "action": c.request.action, "agent": c.agent,
        "amount": c.request.amount, "outcomes": c.outcomes.iter().map(|o| o.outcome.as_str()).collect::<Vec<_>>(),
        "created_at": rfc3339_ms(c.created_at_ms),
        "review": c.review.as_ref().map(|r| json!({
            "id": r.id, "status": r.status.as_str(),
            "decisions": r.decisions.iter().map(|d| json!({
                "approver": d.approver, "decision": d.decision, "comment": d.comment, "at": rfc3339_ms(d.at_ms),
            })).collect::<Vec<_>>(),
        })),
    })
}

fn trust_json(ctx: &Ctx, state: &TrustState) -> Value {
    let now = ctx.now();
    let v = state.view(&ctx.config.trust, now);
    json!({
        "score": v.score,
        "confidence": (v.confidence * 1000.0).round() / 1000.0,
        "outcomes": {
            "completed": state.counts.completed, "reversed": state.counts.reversed,
            "rejected": state.counts.rejected, "disputed": state.counts.disputed,
        },
        "updated_at": state.updated_at_ms.map(rfc3339_ms),
        "history": state.history.iter().rev().take(20).map(|e| json!({
            "case": e.case, "outcome": e.outcome.as_str(), "before": e.before, "after": e.after, "at": rfc3339_ms(e.at_ms),
        })).collect::<Vec<_>>(),
    })
}

/// Everything an approver needs: the case, the agent (owner, trust, recent outcomes), the
/// counterparty, the rules that decided (with their Cedar source) and the timeline.
pub(crate) fn review_view(ctx: &Ctx, snap: &mut dyn Snapshot, case: &Case, by: &Principal) -> Result<Value> {
    let agent: Option<AgentRecord> = get(snap, RecordKind::Agent, &case.agent)?;
    let agent_trust = trust_state(snap, RecordKind::AgentTrust, &case.agent)?;
    let cp: Option<CounterpartyRecord> = get(snap, RecordKind::Counterparty, &case.decision.counterparty.id)?;
    let cp_trust = trust_state(snap, RecordKind::CounterpartyTrust, &case.decision.counterparty.id)?;
    let mut rules = Vec::new();
    if let Some(policy) = &case.decision.policy {
        let compiled = ctx.compiled(snap, policy.version).ok();
        for reason in &case.decision.reasons {
            let source = reason
                .rule
                .as_ref()
                .and_then(|id| compiled.as_ref().and_then(|c| c.rule(id)).map(|r| r.source.clone()));
            rules.push(
                json!({"rule": reason.rule, "verdict": reason.verdict, "reason": reason.reason, "source": source}),
            );
        }
    }
    let recent: Vec<Value> = {
        let filter = CaseFilter { agent: Some(case.agent.clone()), limit: 20, ..Default::default() };
        let mut out = Vec::new();
        for c in super::data::cases(snap.list_cases(&filter)?)? {
            if c.id == case.id {
                continue;
            }
            out.push(history_case(&c));
        }
        out
    };
    // The counterparty's earlier reviewed cases (of any agent), with the decisions on them.
    let counterparty_reviews: Vec<Value> = {
        let filter =
            ReviewFilter { counterparty: Some(case.decision.counterparty.id.clone()), limit: 11, ..Default::default() };
        let (_, listed) = snap.list_reviews(&filter)?;
        let mut out = Vec::new();
        for c in super::data::cases(listed)? {
            if c.id != case.id && out.len() < 10 {
                out.push(history_case(&c));
            }
        }
        out
    };
    // Names of the approvers who decided, and of the reader.
    let mut approver_names = serde_json::Map::new();
    if let Some(r) = &case.review {
        for d in &r.decisions {
            let a: Option<ApproverRecord> = get(snap, RecordKind::Approver, &d.approver)?;
            approver_names.insert(d.approver.clone(), json!(a.and_then(|a| a.name)));
        }
    }
    let mut view = case_view(ctx, snap, case, by)?;
    view["review"] = review_json(case);
    view["id"] = json!(case.review.as_ref().map(|r| r.id.clone()));
    view["rules"] = json!(rules);
    view["agent"] = json!({
        "id": case.agent,
        "owner": agent.as_ref().map(|a| a.owner.clone()),
        "name": agent.as_ref().and_then(|a| a.name.clone()),
        "suspended": agent.as_ref().map(|a| a.suspended),
        "trust": trust_json(ctx, &agent_trust),
        "recent_cases": recent,
    });
    view["counterparty"] = json!({
        "id": case.decision.counterparty.id,
        "name": cp.as_ref().map(|c| c.name.clone()).unwrap_or_else(|| case.decision.counterparty.name.clone()),
        "risk": cp.as_ref().map(|c| c.risk.as_str()).unwrap_or(case.decision.counterparty.risk.as_str()),
        "risk_at_decision": case.decision.counterparty.risk.as_str(),
        "trust": trust_json(ctx, &cp_trust),
        "recent_reviews": counterparty_reviews,
    });
    view["approver_names"] = Value::Object(approver_names);
    view["viewer"] = viewer(snap, by)?;
    Ok(view)
}

impl Engine {
    /// `GET /v1/agents/{id}`: an agent reads only itself.
    pub async fn agent_view(&self, by: &Principal, id: &str) -> Result<Value> {
        access::check(by, Op::ReadAgent(id))?;
        let id = id.to_owned();
        self.read(move |ctx, snap| {
            let agent: AgentRecord = get(snap, RecordKind::Agent, &id)?
                .ok_or_else(|| Error::NotFound(format!("agent {id} does not exist")))?;
            let trust = trust_state(snap, RecordKind::AgentTrust, &id)?;
            Ok(json!({
                "id": agent.id, "owner": agent.owner, "name": agent.name,
                "public_jwk": agent.public_jwk, "jkt": agent.public_jwk.as_ref().map(|j| j.thumbprint()),
                "suspended": agent.suspended, "created_at": rfc3339_ms(agent.created_at_ms),
                "trust": trust_json(ctx, &trust),
            }))
        })
        .await
    }

    /// `GET /v1/counterparties/{id}`.
    pub async fn counterparty_view(&self, by: &Principal, id: &str) -> Result<Value> {
        access::check(by, Op::ReadCounterparty)?;
        let id = id.to_owned();
        self.read(move |ctx, snap| {
            let cp: CounterpartyRecord = get(snap, RecordKind::Counterparty, &id)?
                .ok_or_else(|| Error::NotFound(format!("counterparty {id} does not exist")))?;
            let trust = trust_state(snap, RecordKind::CounterpartyTrust, &id)?;
            Ok(json!({
                "id": cp.id, "name": cp.name, "risk": cp.risk.as_str(),
                "updated_at": rfc3339_ms(cp.updated_at_ms), "trust": trust_json(ctx, &trust),
            }))
        })
        .await
    }
}
