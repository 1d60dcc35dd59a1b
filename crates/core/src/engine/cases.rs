//! Requests, verdicts, passports, execution reports, outcomes, trust and expiry.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::admin::active_version;
use super::draft::Draft;
use super::views;
use super::{case_event, read_case, Ctx, Engine};
use crate::access::{self, CaseOp, Op, Standing};
use crate::ids::new_id;
use crate::model::{
    AgentRecord, Case, CaseRequest, CaseStatus, CounterpartyRecord, CounterpartySnapshot, DecisionRecord,
    ExecutionRecord, OutcomeRecord, PassportRecord, PolicyRef, Principal, Review, ReviewStatus, TrustSnapshot,
};
use crate::money::Amount;
use crate::policy::{Evaluation, PolicyInput, Reason, RuleVerdict, Verdict};
use crate::store::{RecordKind, Snapshot};
use crate::text;
use crate::trust::{Outcome, TrustState};
use crate::{Error, Result};
use agentsigna_verify::clock::rfc3339_ms;
use agentsigna_verify::passport as pp;

/// `POST /v1/requests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    pub action: String,
    pub counterparty: String,
    #[serde(default)]
    pub amount: Option<Amount>,
    pub audience: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub context: Option<Value>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// `POST /v1/cases/{id}/execution`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionInput {
    pub passport_id: String,
    #[serde(default)]
    pub reference: Option<String>,
}

/// `POST /v1/cases/{id}/outcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeInput {
    pub outcome: Outcome,
    #[serde(default)]
    pub detail: Option<String>,
}

/// The answer to a request: 201 for a new case, 200 for an idempotent retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub created: bool,
    pub body: Value,
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

fn check_text(field: &str, v: &str, max: usize) -> Result<()> {
    if v.chars().count() > max {
        return Err(Error::invalid(field, format!("{field} must be at most {max} characters")));
    }
    text::check_free(field, v)
}

/// A trust standing as of the snapshot (for views).
pub(crate) fn trust_state(snap: &mut dyn Snapshot, kind: RecordKind, id: &str) -> Result<TrustState> {
    Ok(super::get(snap, kind, id)?.unwrap_or_default())
}

/// A trust standing a decision relies on.
fn trust_of(d: &mut Draft<'_>, kind: RecordKind, id: &str) -> Result<TrustState> {
    Ok(d.get(kind, id)?.unwrap_or_default())
}

/// What reading a case for `?wait` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitState {
    pub status: CaseStatus,
    /// When the case next needs the server's attention (a deadline), if ever.
    pub due_ms: Option<i64>,
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
            let value = serde_json::to_value(&request).map_err(|e| Error::storage(e.to_string()))?;
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

    /// `GET /v1/cases/{id}`: the case as this principal may see it. An agent fetching
    /// its approved case picks up its passport.
    pub async fn get_case(&self, by: &Principal, id: &str) -> Result<Value> {
        let (by2, id2) = (by.clone(), id.to_owned());
        // Fast path: a read; a write only when something is due or a passport is to issue.
        let needs_write = self
            .read(move |ctx, snap| {
                let case = read_case(snap, &id2)?;
                access::case(&by2, &case, CaseOp::Read)?;
                let due = case.due_ms().is_some_and(|d| d <= ctx.now());
                let pickup = matches!(by2, Principal::Agent(_))
                    && case.status == CaseStatus::Authorized
                    && case.passport.is_none();
                Ok(due || pickup)
            })
            .await?;
        if needs_write {
            let (by2, id2) = (by.clone(), id.to_owned());
            self.transact(&[id], move |ctx, d| {
                let mut case = d.load_case(&id2)?;
                access::case(&by2, &case, CaseOp::Read)?;
                let mut changed = process_due_case(ctx, d, &mut case)?;
                if matches!(by2, Principal::Agent(_))
                    && case.status == CaseStatus::Authorized
                    && case.passport.is_none()
                {
                    changed |= issue_or_refuse_passport(ctx, d, &mut case)?;
                }
                if changed {
                    d.save_case(&case)?;
                }
                Ok(())
            })
            .await?;
        }
        self.case_view_of(by, id).await
    }

    /// The case document, read from a snapshot.
    async fn case_view_of(&self, by: &Principal, id: &str) -> Result<Value> {
        let (by, id) = (by.clone(), id.to_owned());
        self.read(move |ctx, snap| {
            let case = read_case(snap, &id)?;
            access::case(&by, &case, CaseOp::Read)?;
            views::case_view(ctx, snap, &case, &by)
        })
        .await
    }

    /// The status of a case without side effects (for `?wait` loops).
    pub async fn case_wait_state(&self, by: &Principal, id: &str) -> Result<WaitState> {
        let (by, id) = (by.clone(), id.to_owned());
        self.read(move |_, snap| {
            let case = read_case(snap, &id)?;
            access::case(&by, &case, CaseOp::Read)?;
            Ok(WaitState { status: case.status, due_ms: case.due_ms() })
        })
        .await
    }

    /// Step 5 report: the action was carried out with the case's passport.
    pub async fn report_execution(&self, by: &Principal, id: &str, input: ExecutionInput) -> Result<Value> {
        text::check_plain("passport_id", &input.passport_id)?;
        if let Some(r) = &input.reference {
            check_text("reference", r, 200)?;
            text::check_plain("reference", r)?;
        }
        let (by2, id2) = (by.clone(), id.to_owned());
        self.transact(&[id], move |ctx, d| {
            let (by, id, input) = (&by2, &id2, input.clone());
            let mut case = d.load_case(id)?;
            access::case(by, &case, CaseOp::ReportExecution)?;
            let passport = case
                .passport
                .as_ref()
                .ok_or_else(|| Error::Conflict(format!("case {id} has no passport to execute with")))?;
            if passport.id != input.passport_id {
                return Err(Error::invalid(
                    "passport_id",
                    format!("passport_id {} is not this case's passport", input.passport_id),
                ));
            }
            let actor = by.actor();
            if case.executions.iter().any(|e| e.actor == actor && e.reference == input.reference) {
                return Ok(());
            }
            let now = ctx.now();
            case_event(
                d,
                &mut case,
                "execution.reported",
                now,
                &actor,
                json!({"passport_id": input.passport_id, "reference": input.reference}),
            )?;
            case.executions.push(ExecutionRecord {
                passport_id: input.passport_id,
                reference: input.reference,
                actor,
                at_ms: now,
            });
            if matches!(case.status, CaseStatus::Authorized | CaseStatus::Expired) {
                case.status = CaseStatus::Executed;
            }
            d.save_case(&case)
        })
        .await?;
        self.case_view_of(by, id).await
    }

    /// Step 6–7: an outcome closes the case and updates trust.
    pub async fn record_outcome(&self, by: &Principal, id: &str, input: OutcomeInput) -> Result<Value> {
        if let Some(d) = &input.detail {
            check_text("detail", d, 2000)?;
        }
        // The trust standings this outcome may move are locked with the case, so that
        // outcomes racing on one agent queue here instead of conflicting in the store.
        let (agent, counterparty) = {
            let (by, id) = (by.clone(), id.to_owned());
            self.read(move |_, snap| {
                let case = read_case(snap, &id)?;
                access::case(&by, &case, CaseOp::Read)?;
                Ok((case.agent.clone(), case.decision.counterparty.id.clone()))
            })
            .await?
        };
        let (agent_key, cp_key) = (format!("trust:agent:{agent}"), format!("trust:counterparty:{counterparty}"));
        let (by2, id2) = (by.clone(), id.to_owned());
        self.transact(&[id, &agent_key, &cp_key], move |ctx, d| {
            let (by, id, input) = (&by2, &id2, input.clone());
            let mut case = d.load_case(id)?;
            let authoritative =
                access::case(by, &case, CaseOp::ReportOutcome(input.outcome))? == Standing::Authoritative;
            if case.passport.is_none() {
                return Err(Error::Conflict(format!("case {id} never received a passport; it takes no outcome")));
            }
            let actor = by.actor();
            if case.outcomes.iter().any(|o| o.actor == actor && o.outcome == input.outcome) {
                return Ok(());
            }
            let now = ctx.now();
            case_event(
                d,
                &mut case,
                "outcome.recorded",
                now,
                &actor,
                json!({"outcome": input.outcome.as_str(), "detail": input.detail, "authoritative": authoritative}),
            )?;
            case.outcomes.push(OutcomeRecord { outcome: input.outcome, detail: input.detail, actor, at_ms: now });
            case.status = CaseStatus::Closed;
            apply_trust(ctx, d, &mut case, input.outcome, authoritative, now)?;
            d.save_case(&case)
        })
        .await?;
        self.case_view_of(by, id).await
    }

    /// Expires due reviews, pickup windows and passports. Returns how many cases changed.
    pub async fn process_due(&self) -> Result<usize> {
        let due = self.read(|ctx, snap| Ok(snap.due_cases(ctx.now(), 200)?)).await?;
        let mut n = 0;
        for id in due {
            let id2 = id.clone();
            let changed = self
                .transact(&[&id], move |ctx, d| {
                    let mut case = d.load_case(&id2)?;
                    let changed = process_due_case(ctx, d, &mut case)?;
                    if changed {
                        d.save_case(&case)?;
                    }
                    Ok(changed)
                })
                .await?;
            n += usize::from(changed);
        }
        Ok(n)
    }

    /// Lists cases visible to a principal (agents: their own; systems: addressed to them).
    pub async fn list_cases(&self, by: &Principal, status: Option<String>, limit: u32) -> Result<Value> {
        if let Some(s) = &status {
            if CaseStatus::parse(s).is_none() {
                return Err(Error::invalid(
                    "status",
                    format!(
                        "status must be one of pending_review, authorized, rejected, expired, executed, closed (got {s:?})"
                    ),
                ));
            }
        }
        let by = by.clone();
        self.read(move |ctx, snap| {
            let mut filter = crate::store::CaseFilter { status, limit: limit.clamp(1, 500), ..Default::default() };
            match &by {
                Principal::Agent(a) => filter.agent = Some(a.clone()),
                Principal::System(s) => filter.audience = Some(s.clone()),
                _ => {}
            }
            let mut out = Vec::new();
            for body in snap.list_cases(&filter)? {
                let case: Case = serde_json::from_str(&body)?;
                out.push(views::case_summary(ctx, &case));
            }
            Ok(json!({ "cases": out }))
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
    let cfg = &ctx.config.trust;
    let agent_trust = trust_of(d, RecordKind::AgentTrust, &agent.id)?.score(cfg, now);
    let cp_trust = trust_of(d, RecordKind::CounterpartyTrust, &counterparty.id)?.score(cfg, now);

    let input = PolicyInput {
        agent_id: &agent.id,
        agent_owner: &agent.owner,
        agent_trust,
        action: &request.action,
        counterparty_id: &counterparty.id,
        counterparty_risk: counterparty.risk.as_str(),
        counterparty_trust: cp_trust,
        amount_minor,
        currency,
    };
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
    let shadow = match (super::admin::shadow_version(d)?, &policy) {
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
            let record = json!({
                "case_id": case.id, "at": rfc3339_ms(now), "agent": agent.id, "action": case.request.action,
                "counterparty": counterparty.id, "amount": case.request.amount,
                "active": {"policy": policy, "verdict": evaluation.verdict, "reasons": evaluation.reasons},
                "shadow": {"policy": shadow_policy, "verdict": shadow_eval.verdict, "reasons": shadow_eval.reasons},
            });
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

/// What changed under a pending case that forbids authorizing it now: the agent was
/// suspended, or the active policy now rejects the request outright (a counterparty
/// blocked meanwhile, a new reject rule). Evaluated with today's state, at each approval
/// and again at passport issuance.
pub(crate) fn recheck(ctx: &Ctx, d: &mut Draft<'_>, case: &Case) -> Result<Option<Evaluation>> {
    let agent: AgentRecord = d
        .get(RecordKind::Agent, &case.agent)?
        .ok_or_else(|| Error::storage(format!("agent {} of case {} is missing", case.agent, case.id)))?;
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
            Error::storage(format!("counterparty {} of case {} is missing", case.decision.counterparty.id, case.id))
        })?;
    let now = ctx.now();
    let cfg = &ctx.config.trust;
    let agent_trust = trust_of(d, RecordKind::AgentTrust, &agent.id)?.score(cfg, now);
    let cp_trust = trust_of(d, RecordKind::CounterpartyTrust, &counterparty.id)?.score(cfg, now);
    let compiled = ctx.compiled(d.snapshot(), version)?;
    let eval = compiled.evaluate(&PolicyInput {
        agent_id: &agent.id,
        agent_owner: &agent.owner,
        agent_trust,
        action: &case.request.action,
        counterparty_id: &counterparty.id,
        counterparty_risk: counterparty.risk.as_str(),
        counterparty_trust: cp_trust,
        amount_minor: case.decision.amount_minor,
        currency: &case.decision.currency,
    });
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

/// An agent picking up its approved passport: re-checked first (see [`recheck`]).
/// Returns whether the case changed.
fn issue_or_refuse_passport(ctx: &Ctx, d: &mut Draft<'_>, case: &mut Case) -> Result<bool> {
    if let Some(eval) = super::review::withdraw_revoked_approvals(ctx, d, case)? {
        reject_on_recheck(ctx, d, case, &eval, "passport")?;
        return Ok(true);
    }
    if let Some(eval) = recheck(ctx, d, case)? {
        reject_on_recheck(ctx, d, case, &eval, "passport")?;
        return Ok(true);
    }
    let agent: AgentRecord = d
        .get(RecordKind::Agent, &case.agent)?
        .ok_or_else(|| Error::storage(format!("agent {} of case {} is missing", case.agent, case.id)))?;
    issue_passport(ctx, d, case, &agent)?;
    Ok(true)
}

/// Step 4: signs the case's one passport, bound to the case's chain head.
pub(crate) fn issue_passport(ctx: &Ctx, d: &mut Draft<'_>, case: &mut Case, agent: &AgentRecord) -> Result<()> {
    if case.passport.is_some() {
        return Ok(());
    }
    let now = ctx.now();
    // A rule's @ttl sets the lifetime (the shortest of the deciding rules), never beyond the maximum.
    let ttl = case.decision.ttl_secs.unwrap_or(ctx.config.passport_ttl_secs).clamp(1, ctx.config.max_passport_ttl_secs);
    let iat = now.div_euclid(1000);
    let exp = iat + ttl;
    let (head_seq, head_digest) =
        case.head.clone().ok_or_else(|| Error::storage(format!("case {} has no ledger entries", case.id)))?;
    let approved = case.review.as_ref().is_some_and(|r| r.status == ReviewStatus::Approved);
    let approvals = case
        .review
        .as_ref()
        .map(|r| {
            r.approvals()
                .map(|d| pp::Approval {
                    approver: d.approver.clone(),
                    roles: d.roles.clone(),
                    decision: "approve".to_owned(),
                    at: rfc3339_ms(d.at_ms),
                })
                .collect()
        })
        .unwrap_or_default();
    let policy = case.decision.policy.clone().unwrap_or(PolicyRef { version: 0, digest: String::new() });
    let jti = new_id("psp", now);
    let claims = pp::PassportClaims {
        iss: ctx.config.issuer.clone(),
        sub: case.agent.clone(),
        aud: case.request.audience.clone(),
        iat,
        nbf: iat,
        exp,
        jti: jti.clone(),
        authorization_details: vec![pp::AuthorizationDetail {
            kind: "agentsigna_action".to_owned(),
            action: case.request.action.clone(),
            counterparty: pp::CounterpartyRef {
                id: case.decision.counterparty.id.clone(),
                name: case.decision.counterparty.name.clone(),
                risk: case.decision.counterparty.risk.as_str().to_owned(),
            },
            amount: case
                .request
                .amount
                .as_ref()
                .map(|a| pp::Amount { value: a.value.clone(), currency: a.currency.clone() }),
            description: case.request.description.clone(),
        }],
        decision: pp::Decision {
            verdict: if approved { "approved" } else { "authorized" }.to_owned(),
            policy: pp::PolicyRef { version: policy.version, digest: policy.digest },
            rules: case.decision.reasons.iter().filter_map(|r| r.rule.clone()).collect(),
            decided_at: rfc3339_ms(
                case.review.as_ref().and_then(|r| r.closed_at_ms).unwrap_or(case.decision.decided_at_ms),
            ),
            trust: pp::TrustRef { agent: case.decision.trust.agent, counterparty: case.decision.trust.counterparty },
        },
        approvals,
        case: pp::CaseRef { id: case.id.clone(), seq: head_seq, head: head_digest },
        cnf: agent.public_jwk.as_ref().map(|j| pp::Confirmation { jkt: j.thumbprint() }),
    };
    let (token, kid) = {
        let keys = ctx.keys.read().map_err(|_| Error::storage("the key lock is poisoned"))?;
        let key = keys.active()?;
        (pp::sign(&claims, &key.signing).map_err(|e| Error::storage(e.to_string()))?, key.kid.clone())
    };
    case_event(
        d,
        case,
        "passport.issued",
        now,
        "server",
        json!({
            "passport_id": jti, "kid": kid, "aud": claims.aud, "iat": iat, "exp": exp,
            "cnf_jkt": claims.cnf.as_ref().map(|c| c.jkt.clone()),
            "token_sha256": hex::encode(Sha256::digest(token.as_bytes())),
        }),
    )?;
    case.passport = Some(PassportRecord { id: jti, token, kid, issued_at_ms: now, expires_at_ms: exp * 1000 });
    Ok(())
}

/// Applies whatever is due on a case at `now`. Returns whether it changed.
pub(crate) fn process_due_case(ctx: &Ctx, d: &mut Draft<'_>, case: &mut Case) -> Result<bool> {
    let now = ctx.now();
    match case.due_ms() {
        Some(due) if due <= now => {}
        _ => return Ok(false),
    }
    match case.status {
        CaseStatus::PendingReview => {
            let Some(review) = case.review.as_mut() else { return Ok(false) };
            review.status = ReviewStatus::Expired;
            review.closed_at_ms = Some(now);
            let data = json!({"review": review.id, "deadline": rfc3339_ms(review.deadline_ms),
                              "approvals": review.approvals().count(), "approvals_required": review.approvals_required});
            case.status = CaseStatus::Rejected;
            case_event(d, case, "review.expired", now, "server", data)?;
            let owner = d.get::<AgentRecord>(RecordKind::Agent, &case.agent)?.map(|a| a.owner);
            queue_notification(d, case, owner.as_deref(), "review.expired", now)?;
            Ok(true)
        }
        CaseStatus::Authorized => {
            let data = match &case.passport {
                Some(p) => {
                    json!({"passport_id": p.id, "reason": "the passport expired unused", "exp": p.expires_at_ms / 1000})
                }
                None => {
                    json!({"passport_id": null, "reason": "the approved passport was not picked up within the pickup window",
                               "pickup_deadline": case.pickup_deadline_ms.map(rfc3339_ms)})
                }
            };
            case.status = CaseStatus::Expired;
            case_event(d, case, "passport.expired", now, "server", data)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Step 7: the case counts once per subject, by its worst outcome so far.
fn apply_trust(
    ctx: &Ctx,
    d: &mut Draft<'_>,
    case: &mut Case,
    outcome: Outcome,
    authoritative: bool,
    now: i64,
) -> Result<()> {
    let cfg = ctx.config.trust.clone();
    // The agent's own failure reports count against the agent; only other parties'
    // reports move the counterparty's standing (an agent must not be able to smear a
    // counterparty).
    let subjects: Vec<(RecordKind, String, &str)> = if authoritative {
        vec![
            (RecordKind::AgentTrust, case.agent.clone(), "agent"),
            (RecordKind::CounterpartyTrust, case.decision.counterparty.id.clone(), "counterparty"),
        ]
    } else {
        vec![(RecordKind::AgentTrust, case.agent.clone(), "agent")]
    };
    for (kind, id, label) in subjects {
        let counted = if label == "agent" { case.agent_counted } else { case.counterparty_counted };
        if counted.is_some_and(|(o, _)| o >= outcome) {
            continue;
        }
        let mut state = trust_of(d, kind, &id)?;
        let event = state.apply(&cfg, &case.id, counted, outcome, now);
        d.put(kind, &id, &state)?;
        if label == "agent" {
            case.agent_counted = Some((outcome, now));
        } else {
            case.counterparty_counted = Some((outcome, now));
        }
        case_event(
            d,
            case,
            "trust.updated",
            now,
            "server",
            json!({"subject": format!("{label}:{id}"), "before": event.before, "after": event.after,
                   "outcome": outcome.as_str(), "replaces": counted.map(|(o, _)| o.as_str()), "case": case.id}),
        )?;
    }
    Ok(())
}

/// Puts a webhook notification about a case's review (`review.opened`, `review.approved`,
/// `review.rejected`, `review.expired`) in the outbox, inside the transaction of the event
/// it announces: it commits with the event or not at all, a failing receiver loses
/// nothing, and delivery (by the server's notifier) never delays a verdict. Keyed by time,
/// review and event, so listing the outbox returns notifications in order.
pub(crate) fn queue_notification(
    d: &mut Draft<'_>,
    case: &Case,
    owner: Option<&str>,
    event: &str,
    now: i64,
) -> Result<()> {
    let Some(review) = &case.review else { return Ok(()) };
    let id = format!("{now:020}-{}-{event}", review.id);
    let body = json!({
        "id": id,
        "event": event,
        "at": rfc3339_ms(now),
        "case_id": case.id,
        "review_id": review.id,
        "status": review.status.as_str(),
        "case_status": case.status.as_str(),
        "agent": {"id": case.agent, "owner": owner, "trust": case.decision.trust.agent},
        "action": case.request.action,
        "amount": case.request.amount,
        "counterparty": {"id": case.decision.counterparty.id, "name": case.decision.counterparty.name,
                         "risk": case.decision.counterparty.risk.as_str(), "trust": case.decision.trust.counterparty},
        "audience": case.request.audience,
        "description": case.request.description,
        "rules": case.decision.reasons,
        "approvals_required": review.approvals_required,
        "roles_required": review.roles_required,
        "roles_missing": review.roles_missing(),
        "decisions": review.decisions.iter().map(|d| json!({
            "approver": d.approver, "roles": d.roles, "decision": d.decision, "comment": d.comment, "at": rfc3339_ms(d.at_ms),
        })).collect::<Vec<_>>(),
        "deadline": rfc3339_ms(review.deadline_ms),
        "ledger": case.head.as_ref().map(|(seq, digest)| json!({"seq": seq, "digest": digest})),
    });
    d.put(RecordKind::Outbox, &id, &body)
}
