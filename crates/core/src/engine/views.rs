//! The documents of the API, typed and built in one place: what the engine returns, what
//! the HTTP layer serializes (and `GET /openapi.json` describes, from these types' `utoipa`
//! schemas), what the web pages and the demo read.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::data::{get, trust_state};
use super::{Ctx, Engine};
use crate::access::{self, Op};
use crate::model::{
    AgentRecord, ApproverRecord, Case, CaseStatus, CounterpartyRecord, PolicyRef, Principal, Review, ReviewStatus,
    Risk, TrustSnapshot,
};
use crate::money::Amount;
use crate::policy::{Reason, RuleVerdict, Verdict};
use crate::schema::{JwkSchema, LedgerEntrySchema};
use crate::store::{CaseFilter, RecordKind, Snapshot};
use crate::trust::{Outcome, OutcomeCounts, TrustState};
use crate::{Error, Result};
use agentsigna_verify::clock::rfc3339_ms;
use agentsigna_verify::jwk::Jwk;
use agentsigna_verify::ledger::DigestedEntry;

/// A counterparty as the verdict saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CounterpartyBrief {
    pub id: String,
    pub name: String,
    pub risk: Risk,
}

/// `review` of a `POST /v1/requests` answer: the review the verdict opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OpenedReview {
    pub approvals_required: u32,
    #[schema(format = DateTime)]
    pub deadline: String,
    pub id: String,
    pub roles_required: Vec<String>,
}

/// The 201 (or idempotent 200) body of `POST /v1/requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmitResponse {
    pub case_id: String,
    /// The passport (compact JWS), only when authorized at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passport: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub passport_expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passport_id: Option<String>,
    /// The policy version that decided; `null` when none is active.
    pub policy: Option<PolicyRef>,
    pub reasons: Vec<Reason>,
    /// The review, when escalated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<OpenedReview>,
    pub status: CaseStatus,
    /// The trust scores the verdict used.
    pub trust: TrustSnapshot,
    pub verdict: Verdict,
}

/// One approver's decision on a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecisionView {
    pub approver: String,
    #[schema(format = DateTime)]
    pub at: String,
    pub comment: String,
    /// `approve` or `reject`.
    pub decision: String,
    /// The approver's roles when deciding.
    pub roles: Vec<String>,
    /// Why an approval no longer counts (its approver was revoked before the review closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
}

/// A case's review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewDoc {
    pub approvals_required: u32,
    #[schema(format = DateTime)]
    pub closed_at: Option<String>,
    pub decisions: Vec<DecisionView>,
    #[schema(format = DateTime)]
    pub deadline: String,
    pub id: String,
    #[schema(format = DateTime)]
    pub opened_at: String,
    /// Required roles no counted approval covers yet.
    pub roles_missing: Vec<String>,
    pub roles_required: Vec<String>,
    pub status: ReviewStatus,
}

/// A case in `GET /v1/cases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CaseSummary {
    pub action: String,
    pub agent: String,
    pub amount: Option<Amount>,
    pub audience: String,
    pub case_id: String,
    pub counterparty: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub status: CaseStatus,
    pub verdict: Verdict,
}

/// `GET /v1/cases`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CaseList {
    pub cases: Vec<CaseSummary>,
}

/// What the agent asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RequestView {
    pub action: String,
    pub amount: Option<Amount>,
    pub audience: String,
    /// Free-form, as the agent sent it (an object; `{}` when none was sent).
    #[schema(value_type = Object)]
    pub context: serde_json::Value,
    pub counterparty: String,
    pub description: String,
    pub idempotency_key: Option<String>,
}

/// The passport's id and lifetime; `token` only for its own agent while usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PassportInfo {
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub id: String,
    #[schema(format = DateTime)]
    pub issued_at: String,
    pub kid: String,
    pub token: Option<String>,
}

/// An execution report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionView {
    pub actor: String,
    #[schema(format = DateTime)]
    pub at: String,
    pub passport_id: String,
    pub reference: Option<String>,
}

/// A recorded outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutcomeView {
    pub actor: String,
    #[schema(format = DateTime)]
    pub at: String,
    pub detail: Option<String>,
    pub outcome: Outcome,
}

/// What every document about one case holds (`GET /v1/cases/{id}` and the review).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CaseCore {
    pub case_id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The case's ledger entries, in chain order, with their digests.
    #[schema(value_type = Vec<LedgerEntrySchema>)]
    pub events: Vec<DigestedEntry>,
    pub executions: Vec<ExecutionView>,
    pub outcomes: Vec<OutcomeView>,
    /// The passport (compact JWS), shown only to its own agent while usable.
    pub passport: Option<String>,
    pub passport_info: Option<PassportInfo>,
    /// Until when an approved case's passport may be picked up.
    #[schema(format = DateTime)]
    pub pickup_deadline: Option<String>,
    pub policy: Option<PolicyRef>,
    pub reasons: Vec<Reason>,
    pub request: RequestView,
    pub review: Option<ReviewDoc>,
    pub status: CaseStatus,
    /// The trust scores the verdict used.
    pub trust: TrustSnapshot,
    pub verdict: Verdict,
}

/// `GET /v1/cases/{id}` (and the answers of execution and outcome reports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CaseView {
    /// The agent's id.
    pub agent: String,
    #[serde(flatten)]
    pub core: CaseCore,
    pub counterparty: CounterpartyBrief,
}

/// A review in `GET /v1/reviews` and the review queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewSummary {
    pub action: String,
    pub agent: String,
    pub amount: Option<Amount>,
    /// Approvals counted so far.
    pub approvals: usize,
    pub approvals_required: u32,
    pub case_id: String,
    pub counterparty: CounterpartyBrief,
    /// When the request came.
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub deadline: String,
    /// The approvers who decided, in order.
    pub decided_by: Vec<String>,
    /// The review's id.
    pub id: String,
    /// The agent's accountable owner (`null` if the agent record is gone).
    pub owner: Option<String>,
    pub roles_missing: Vec<String>,
    pub roles_required: Vec<String>,
    /// The rules that decided.
    pub rules: Vec<Reason>,
    /// Until the deadline, 0 once past.
    pub seconds_left: i64,
    pub status: ReviewStatus,
    /// The trust scores the verdict used.
    pub trust: TrustSnapshot,
}

/// `GET /v1/reviews`: one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewList {
    pub reviews: Vec<ReviewSummary>,
    /// How many reviews match in all.
    pub total: u64,
    /// Pass it as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// Who is reading, for pages that show what they may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Viewer {
    /// The approver's id.
    pub id: String,
    pub name: Option<String>,
    pub roles: Vec<String>,
}

/// One page of the review queue ([`Engine::review_queue`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewQueue {
    /// How many reviews match the filter in all.
    pub total: u64,
    pub reviews: Vec<ReviewSummary>,
    /// The approver reading (`None` for the admin).
    pub viewer: Option<Viewer>,
}

/// One move of a trust score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrustMove {
    pub after: i64,
    #[schema(format = DateTime)]
    pub at: String,
    pub before: i64,
    /// The case whose outcome moved it.
    pub case: String,
    pub outcome: Outcome,
}

/// A trust standing as of now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrustDoc {
    /// 0–1, three decimals: how much evidence the score rests on.
    #[schema(minimum = 0, maximum = 1)]
    pub confidence: f64,
    /// The last 20 moves, newest first.
    pub history: Vec<TrustMove>,
    pub outcomes: OutcomeCounts,
    #[schema(minimum = 0, maximum = 100)]
    pub score: i64,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

/// A decision on an earlier case, beside a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryDecision {
    pub approver: String,
    #[schema(format = DateTime)]
    pub at: String,
    pub comment: String,
    /// `approve` or `reject`.
    pub decision: String,
    /// The approver's roles when deciding.
    pub roles: Vec<String>,
}

/// The review of an earlier case, beside a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryReview {
    pub decisions: Vec<HistoryDecision>,
    pub id: String,
    pub status: ReviewStatus,
}

/// An earlier case beside a review (of the same agent, or with the same counterparty):
/// its outcomes and the decisions on its review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryCase {
    pub action: String,
    pub agent: String,
    pub amount: Option<Amount>,
    pub case_id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub outcomes: Vec<Outcome>,
    pub review: Option<HistoryReview>,
    pub status: CaseStatus,
}

/// The agent of a reviewed case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReviewAgent {
    pub id: String,
    pub name: Option<String>,
    pub owner: Option<String>,
    /// Its other cases, newest first.
    pub recent_cases: Vec<HistoryCase>,
    pub suspended: Option<bool>,
    pub trust: TrustDoc,
}

/// The counterparty of a reviewed case, today and at the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReviewCounterparty {
    pub id: String,
    pub name: String,
    /// Its recent cases (of any agent, reviewed or not), newest first.
    pub recent_cases: Vec<HistoryCase>,
    pub risk: Risk,
    pub risk_at_decision: Risk,
    pub trust: TrustDoc,
}

/// A rule that decided, with its Cedar source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuleSource {
    pub reason: String,
    pub rule: Option<String>,
    pub source: Option<String>,
    pub verdict: RuleVerdict,
}

/// `GET /v1/reviews/{id}`: the case with everything an approver needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReviewView {
    pub agent: ReviewAgent,
    /// The names of the approvers who decided, on this review and on the cases of the
    /// history, by id (`null`: no name registered).
    pub approver_names: BTreeMap<String, Option<String>>,
    #[serde(flatten)]
    pub core: CaseCore,
    pub counterparty: ReviewCounterparty,
    /// The review's id.
    pub id: Option<String>,
    pub rules: Vec<RuleSource>,
    /// The approver reading (`null` for the admin).
    pub viewer: Option<Viewer>,
}

/// One policy's verdict on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyVerdict {
    pub policy: Option<PolicyRef>,
    pub reasons: Vec<Reason>,
    pub verdict: Verdict,
}

/// A live request on which the shadow version's verdict differed from the active one's
/// (stored as it is served).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShadowDivergence {
    pub action: String,
    pub active: PolicyVerdict,
    pub agent: String,
    pub amount: Option<Amount>,
    #[schema(format = DateTime)]
    pub at: String,
    pub case_id: String,
    pub counterparty: String,
    pub shadow: PolicyVerdict,
}

/// `GET /v1/agents/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    #[schema(format = DateTime)]
    pub created_at: String,
    pub id: String,
    /// RFC 7638 thumbprint of `public_jwk` (what a passport's `cnf.jkt` names).
    pub jkt: Option<String>,
    pub name: Option<String>,
    pub owner: String,
    /// The Ed25519 public key the agent's holder proofs are signed with.
    #[schema(value_type = Option<JwkSchema>)]
    pub public_jwk: Option<Jwk>,
    pub suspended: bool,
    pub trust: TrustDoc,
}

/// `GET /v1/counterparties/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CounterpartyView {
    pub id: String,
    pub name: String,
    pub risk: Risk,
    pub trust: TrustDoc,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

fn brief(case: &Case) -> CounterpartyBrief {
    let c = &case.decision.counterparty;
    CounterpartyBrief { id: c.id.clone(), name: c.name.clone(), risk: c.risk }
}

fn review_doc(r: &Review) -> ReviewDoc {
    ReviewDoc {
        approvals_required: r.approvals_required,
        closed_at: r.closed_at_ms.map(rfc3339_ms),
        decisions: r
            .decisions
            .iter()
            .map(|d| DecisionView {
                approver: d.approver.clone(),
                at: rfc3339_ms(d.at_ms),
                comment: d.comment.clone(),
                decision: d.decision.clone(),
                roles: d.roles.clone(),
                withdrawn: d.withdrawn.clone(),
            })
            .collect(),
        deadline: rfc3339_ms(r.deadline_ms),
        id: r.id.clone(),
        opened_at: rfc3339_ms(r.opened_at_ms),
        roles_missing: r.roles_missing(),
        roles_required: r.roles_required.clone(),
        status: r.status,
    }
}

/// The 201 body of `POST /v1/requests`, as it was when the case was decided: built from
/// what does not change afterwards, so an idempotent retry gets the same body.
pub fn submit_response(case: &Case) -> SubmitResponse {
    let initial = match case.decision.verdict {
        Verdict::Authorized => CaseStatus::Authorized,
        Verdict::Escalated => CaseStatus::PendingReview,
        Verdict::Rejected => CaseStatus::Rejected,
    };
    // Only a case authorized at once had its passport in the first response.
    let passport = case.passport.as_ref().filter(|_| initial == CaseStatus::Authorized);
    SubmitResponse {
        case_id: case.id.clone(),
        passport: passport.map(|p| p.token.clone()),
        passport_expires_at: passport.map(|p| rfc3339_ms(p.expires_at_ms)),
        passport_id: passport.map(|p| p.id.clone()),
        policy: case.decision.policy.clone(),
        reasons: case.decision.reasons.clone(),
        review: case.review.as_ref().map(|r| OpenedReview {
            approvals_required: r.approvals_required,
            deadline: rfc3339_ms(r.deadline_ms),
            id: r.id.clone(),
            roles_required: r.roles_required.clone(),
        }),
        status: initial,
        trust: case.decision.trust,
        verdict: case.decision.verdict,
    }
}

/// A short line about a case, for lists.
pub(crate) fn case_summary(case: &Case) -> CaseSummary {
    CaseSummary {
        action: case.request.action.clone(),
        agent: case.agent.clone(),
        amount: case.request.amount.clone(),
        audience: case.request.audience.clone(),
        case_id: case.id.clone(),
        counterparty: case.request.counterparty.clone(),
        created_at: rfc3339_ms(case.created_at_ms),
        status: case.status,
        verdict: case.decision.verdict,
    }
}

/// What every document about the case holds, as `by` may see it. Only the agent sees the
/// passport itself (it is a bearer credential unless key-bound); others see its id and
/// lifetime.
fn case_core(ctx: &Ctx, snap: &mut dyn Snapshot, case: &Case, by: &Principal) -> Result<CaseCore> {
    let now = ctx.now();
    let events = snap.chain_entries(Some(&case.id))?;
    let passport_info = case.passport.as_ref().map(|p| {
        let usable = case.status == CaseStatus::Authorized && p.expires_at_ms > now;
        let show = usable && matches!(by, Principal::Agent(a) if *a == case.agent);
        PassportInfo {
            expires_at: rfc3339_ms(p.expires_at_ms),
            id: p.id.clone(),
            issued_at: rfc3339_ms(p.issued_at_ms),
            kid: p.kid.clone(),
            token: show.then(|| p.token.clone()),
        }
    });
    let r = &case.request;
    Ok(CaseCore {
        case_id: case.id.clone(),
        created_at: rfc3339_ms(case.created_at_ms),
        events,
        executions: case
            .executions
            .iter()
            .map(|e| ExecutionView {
                actor: e.actor.clone(),
                at: rfc3339_ms(e.at_ms),
                passport_id: e.passport_id.clone(),
                reference: e.reference.clone(),
            })
            .collect(),
        outcomes: case
            .outcomes
            .iter()
            .map(|o| OutcomeView {
                actor: o.actor.clone(),
                at: rfc3339_ms(o.at_ms),
                detail: o.detail.clone(),
                outcome: o.outcome,
            })
            .collect(),
        passport: passport_info.as_ref().and_then(|p| p.token.clone()),
        passport_info,
        pickup_deadline: case.pickup_deadline_ms.map(rfc3339_ms),
        policy: case.decision.policy.clone(),
        reasons: case.decision.reasons.clone(),
        request: RequestView {
            action: r.action.clone(),
            amount: r.amount.clone(),
            audience: r.audience.clone(),
            context: r.context.clone(),
            counterparty: r.counterparty.clone(),
            description: r.description.clone(),
            idempotency_key: r.idempotency_key.clone(),
        },
        review: case.review.as_ref().map(review_doc),
        status: case.status,
        trust: case.decision.trust,
        verdict: case.decision.verdict,
    })
}

/// The whole case as `by` may see it.
pub(crate) fn case_view(ctx: &Ctx, snap: &mut dyn Snapshot, case: &Case, by: &Principal) -> Result<CaseView> {
    Ok(CaseView { agent: case.agent.clone(), core: case_core(ctx, snap, case, by)?, counterparty: brief(case) })
}

/// A review in the queue (`None` for a case without a review); `owners` caches the
/// agents' owners across one page.
pub(crate) fn review_summary(
    ctx: &Ctx,
    snap: &mut dyn Snapshot,
    case: &Case,
    owners: &mut HashMap<String, Option<String>>,
) -> Result<Option<ReviewSummary>> {
    let Some(r) = case.review.as_ref() else { return Ok(None) };
    let owner = match owners.get(&case.agent) {
        Some(o) => o.clone(),
        None => {
            let a: Option<AgentRecord> = get(snap, RecordKind::Agent, &case.agent)?;
            let o = a.map(|a| a.owner);
            owners.insert(case.agent.clone(), o.clone());
            o
        }
    };
    Ok(Some(ReviewSummary {
        action: case.request.action.clone(),
        agent: case.agent.clone(),
        amount: case.request.amount.clone(),
        approvals: r.approvals().count(),
        approvals_required: r.approvals_required,
        case_id: case.id.clone(),
        counterparty: brief(case),
        created_at: rfc3339_ms(case.created_at_ms),
        deadline: rfc3339_ms(r.deadline_ms),
        decided_by: r.decisions.iter().map(|d| d.approver.clone()).collect(),
        id: r.id.clone(),
        owner,
        roles_missing: r.roles_missing(),
        roles_required: r.roles_required.clone(),
        rules: case.decision.reasons.clone(),
        seconds_left: ((r.deadline_ms - ctx.now()) / 1000).max(0),
        status: r.status,
        trust: case.decision.trust,
    }))
}

/// Who is reading, for pages that show what they may do: an approver's id, name and
/// roles (`None` for the admin).
pub(crate) fn viewer(snap: &mut dyn Snapshot, by: &Principal) -> Result<Option<Viewer>> {
    let Principal::Approver(id) = by else { return Ok(None) };
    let a: Option<ApproverRecord> = get(snap, RecordKind::Approver, id)?;
    Ok(Some(Viewer {
        id: id.clone(),
        name: a.as_ref().and_then(|a| a.name.clone()),
        roles: a.map(|a| a.roles).unwrap_or_default(),
    }))
}

/// An earlier case as history beside a review: outcome and the review's decisions.
fn history_case(c: &Case) -> HistoryCase {
    HistoryCase {
        action: c.request.action.clone(),
        agent: c.agent.clone(),
        amount: c.request.amount.clone(),
        case_id: c.id.clone(),
        created_at: rfc3339_ms(c.created_at_ms),
        outcomes: c.outcomes.iter().map(|o| o.outcome).collect(),
        review: c.review.as_ref().map(|r| HistoryReview {
            decisions: r
                .decisions
                .iter()
                .map(|d| HistoryDecision {
                    approver: d.approver.clone(),
                    at: rfc3339_ms(d.at_ms),
                    comment: d.comment.clone(),
                    decision: d.decision.clone(),
                    roles: d.roles.clone(),
                })
                .collect(),
            id: r.id.clone(),
            status: r.status,
        }),
        status: c.status,
    }
}

fn trust_doc(ctx: &Ctx, state: &TrustState) -> TrustDoc {
    let v = state.view(&ctx.config.trust, ctx.now());
    TrustDoc {
        confidence: (v.confidence * 1000.0).round() / 1000.0,
        history: state
            .history
            .iter()
            .rev()
            .take(20)
            .map(|e| TrustMove {
                after: e.after,
                at: rfc3339_ms(e.at_ms),
                before: e.before,
                case: e.case.clone(),
                outcome: e.outcome,
            })
            .collect(),
        outcomes: state.counts,
        score: v.score,
        updated_at: state.updated_at_ms.map(rfc3339_ms),
    }
}

/// Everything an approver needs: the case, the agent (owner, trust, recent cases), the
/// counterparty (trust, earlier reviews), the rules that decided (with their Cedar
/// source), the names of the approvers who decided, and who is reading.
pub(crate) fn review_view(ctx: &Ctx, snap: &mut dyn Snapshot, case: &Case, by: &Principal) -> Result<ReviewView> {
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
            rules.push(RuleSource {
                reason: reason.reason.clone(),
                rule: reason.rule.clone(),
                source,
                verdict: reason.verdict,
            });
        }
    }
    // Whose decisions the page shows: of this review and of the cases in its history.
    let mut deciders = std::collections::BTreeSet::new();
    let mut note_deciders = |c: &Case| {
        for d in c.review.iter().flat_map(|r| &r.decisions) {
            deciders.insert(d.approver.clone());
        }
    };
    note_deciders(case);
    let mut recent_cases = Vec::new();
    let filter = CaseFilter { agent: Some(case.agent.clone()), limit: 20, ..Default::default() };
    for c in super::data::cases(snap.list_cases(&filter)?)? {
        if c.id != case.id {
            note_deciders(&c);
            recent_cases.push(history_case(&c));
        }
    }
    // The counterparty's recent cases (of any agent, reviewed or not), with their outcomes
    // and the decisions on them.
    let mut counterparty_cases = Vec::new();
    let filter =
        CaseFilter { counterparty: Some(case.decision.counterparty.id.clone()), limit: 11, ..Default::default() };
    for c in super::data::cases(snap.list_cases(&filter)?)? {
        if c.id != case.id && counterparty_cases.len() < 10 {
            note_deciders(&c);
            counterparty_cases.push(history_case(&c));
        }
    }
    let mut approver_names = BTreeMap::new();
    for id in deciders {
        let a: Option<ApproverRecord> = get(snap, RecordKind::Approver, &id)?;
        approver_names.insert(id, a.and_then(|a| a.name));
    }
    Ok(ReviewView {
        agent: ReviewAgent {
            id: case.agent.clone(),
            name: agent.as_ref().and_then(|a| a.name.clone()),
            owner: agent.as_ref().map(|a| a.owner.clone()),
            recent_cases,
            suspended: agent.as_ref().map(|a| a.suspended),
            trust: trust_doc(ctx, &agent_trust),
        },
        approver_names,
        core: case_core(ctx, snap, case, by)?,
        counterparty: ReviewCounterparty {
            id: case.decision.counterparty.id.clone(),
            name: cp.as_ref().map(|c| c.name.clone()).unwrap_or_else(|| case.decision.counterparty.name.clone()),
            recent_cases: counterparty_cases,
            risk: cp.as_ref().map_or(case.decision.counterparty.risk, |c| c.risk),
            risk_at_decision: case.decision.counterparty.risk,
            trust: trust_doc(ctx, &cp_trust),
        },
        id: case.review.as_ref().map(|r| r.id.clone()),
        rules,
        viewer: viewer(snap, by)?,
    })
}

impl Engine {
    /// `GET /v1/agents/{id}`: an agent reads only itself.
    pub async fn agent_view(&self, by: &Principal, id: &str) -> Result<AgentView> {
        access::check(by, Op::ReadAgent(id))?;
        let id = id.to_owned();
        self.read(move |ctx, snap| {
            let agent: AgentRecord = get(snap, RecordKind::Agent, &id)?
                .ok_or_else(|| Error::NotFound(format!("agent {id} does not exist")))?;
            let trust = trust_state(snap, RecordKind::AgentTrust, &id)?;
            Ok(AgentView {
                created_at: rfc3339_ms(agent.created_at_ms),
                jkt: agent.public_jwk.as_ref().map(|j| j.thumbprint()),
                id: agent.id,
                name: agent.name,
                owner: agent.owner,
                public_jwk: agent.public_jwk,
                suspended: agent.suspended,
                trust: trust_doc(ctx, &trust),
            })
        })
        .await
    }

    /// `GET /v1/counterparties/{id}`.
    pub async fn counterparty_view(&self, by: &Principal, id: &str) -> Result<CounterpartyView> {
        access::check(by, Op::ReadCounterparty)?;
        let id = id.to_owned();
        self.read(move |ctx, snap| {
            let cp: CounterpartyRecord = get(snap, RecordKind::Counterparty, &id)?
                .ok_or_else(|| Error::NotFound(format!("counterparty {id} does not exist")))?;
            let trust = trust_state(snap, RecordKind::CounterpartyTrust, &id)?;
            Ok(CounterpartyView {
                id: cp.id,
                name: cp.name,
                risk: cp.risk,
                trust: trust_doc(ctx, &trust),
                updated_at: rfc3339_ms(cp.updated_at_ms),
            })
        })
        .await
    }
}
