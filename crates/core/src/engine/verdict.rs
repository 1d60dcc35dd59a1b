//! A case's request as the policy sees it, and the re-check of a pending case against
//! today's state (at each approval and at passport pickup).

use serde_json::json;

use super::admin::active_version;
use super::data::{case_event, trust_of};
use super::draft::Draft;
use super::outbox::queue_notification;
use super::Ctx;
use crate::model::{AgentRecord, Case, CaseStatus, CounterpartyRecord, ReviewStatus};
use crate::policy::{Evaluation, PolicyInput, Reason, RuleVerdict, Verdict};
use crate::store::RecordKind;
use crate::{Error, Result};

/// A rejection by `rule` (none: no rule, e.g. no active policy) for `reason`.
pub(crate) fn reject_with(rule: Option<&str>, reason: &str) -> Evaluation {
    Evaluation {
        verdict: Verdict::Rejected,
        reasons: vec![Reason {
            rule: rule.map(str::to_owned),
            verdict: RuleVerdict::Reject,
            reason: reason.to_owned(),
        }],
        approvals_required: 0,
        roles_required: Vec::new(),
        deadline_secs: None,
        ttl_secs: None,
    }
}

/// The policy's view of a request by `agent` on `counterparty`, with both trust scores
/// as of now: the one place a [`PolicyInput`] is built (first verdict and re-checks).
pub(crate) fn policy_input<'a>(
    ctx: &Ctx,
    d: &mut Draft<'_>,
    agent: &'a AgentRecord,
    counterparty: &'a CounterpartyRecord,
    action: &'a str,
    amount_minor: i64,
    currency: &'a str,
) -> Result<PolicyInput<'a>> {
    let now = ctx.now();
    let cfg = &ctx.config.trust;
    Ok(PolicyInput {
        agent_id: &agent.id,
        agent_owner: &agent.owner,
        agent_trust: trust_of(d, RecordKind::AgentTrust, &agent.id)?.score(cfg, now),
        action,
        counterparty_id: &counterparty.id,
        counterparty_risk: counterparty.risk.as_str(),
        counterparty_trust: trust_of(d, RecordKind::CounterpartyTrust, &counterparty.id)?.score(cfg, now),
        amount_minor,
        currency,
    })
}

/// What changed under a pending case that forbids authorizing it now: the agent was
/// suspended, or the active policy now rejects the request outright (a counterparty
/// blocked meanwhile, a new reject rule). Evaluated with today's state, at each approval
/// and again at passport issuance.
pub(crate) fn recheck(ctx: &Ctx, d: &mut Draft<'_>, case: &Case) -> Result<Option<Evaluation>> {
    let agent: AgentRecord = d
        .get(RecordKind::Agent, &case.agent)?
        .ok_or_else(|| Error::data(format!("agent {} of case {} is missing", case.agent, case.id)))?;
    if agent.suspended {
        return Ok(Some(reject_with(
            Some("agent-suspended"),
            &format!("agent {} was suspended by the administrator while the case was pending", agent.id),
        )));
    }
    if agent.revoked_at_ms.is_some() {
        return Ok(Some(reject_with(
            Some("agent-revoked"),
            &format!("the API key of agent {} was revoked while the case was pending", agent.id),
        )));
    }
    let Some(version) = active_version(d)? else {
        return Ok(Some(reject_with(None, "no active policy")));
    };
    let counterparty: CounterpartyRecord =
        d.get(RecordKind::Counterparty, &case.decision.counterparty.id)?.ok_or_else(|| {
            Error::data(format!("counterparty {} of case {} is missing", case.decision.counterparty.id, case.id))
        })?;
    let input = policy_input(
        ctx,
        d,
        &agent,
        &counterparty,
        &case.request.action,
        case.decision.amount_minor,
        &case.decision.currency,
    )?;
    let eval = ctx.compiled(d.snapshot(), version)?.evaluate(&input);
    Ok((eval.verdict == Verdict::Rejected).then_some(eval))
}

/// Rejects a case whose recheck failed, recording why (`decision.rechecked`).
pub(crate) fn reject_on_recheck(
    ctx: &Ctx,
    d: &mut Draft<'_>,
    case: &mut Case,
    eval: &Evaluation,
    stage: &str,
) -> Result<()> {
    let now = ctx.now();
    let policy = active_version(d)?;
    case_event(
        d,
        case,
        "decision.rechecked",
        now,
        "server",
        json!({"verdict": "rejected", "reasons": eval.reasons, "stage": stage, "policy_version": policy}),
    )?;
    case.status = CaseStatus::Rejected;
    case.decision.reasons.extend(eval.reasons.iter().cloned());
    if let Some(review) = case.review.as_mut() {
        if review.status == ReviewStatus::Pending {
            review.status = ReviewStatus::Rejected;
            review.closed_at_ms = Some(now);
        }
    }
    let owner = d.get::<AgentRecord>(RecordKind::Agent, &case.agent)?.map(|a| a.owner);
    queue_notification(d, case, owner.as_deref(), "review.rejected", now)
}
