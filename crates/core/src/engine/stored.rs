//! How a case is stored. Its row ([`CaseRow`]) holds the columns the stores index and the
//! state that changes over the case's life (review, passport details, executions,
//! outcomes, trust bookkeeping); its passport token is written once, beside the row. What
//! its ledger entries already hold is not repeated: the request and the decision are read
//! back from the case's first two entries, `request.submitted` and `decision.made`
//! ([`OPENING_ENTRIES`]), which every case read returns with the row.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{
    Case, CaseRequest, CaseStatus, CounterpartySnapshot, DecisionRecord, ExecutionRecord, OutcomeRecord,
    PassportRecord, PolicyRef, Review, ReviewStatus, Risk, TrustSnapshot,
};
use crate::money::Amount;
use crate::policy::{Reason, Verdict};
use crate::store::{CaseRow, StoredCase, OPENING_ENTRIES};
use crate::trust::Outcome;
use crate::{Error, Result};
use agentsigna_verify::clock::parse_rfc3339_ms;
use agentsigna_verify::ledger::{hex_lower, Entry};

/// The row's `body`: what changes after the case was decided. Empty members are left out.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    review: Option<Review>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pickup_deadline_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passport: Option<PassportState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    executions: Vec<ExecutionRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outcomes: Vec<OutcomeRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent_counted: Option<(Outcome, i64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    counterparty_counted: Option<(Outcome, i64)>,
    /// The counterparty's name as the policy saw it (`decision.made` records its id and
    /// risk, not its name).
    counterparty_name: String,
}

/// A passport without its token (stored apart, once).
#[derive(Debug, Serialize, Deserialize)]
struct PassportState {
    id: String,
    kid: String,
    issued_at_ms: i64,
    expires_at_ms: i64,
}

/// The request as `request.submitted` records it.
#[derive(Deserialize)]
struct Submitted {
    action: String,
    counterparty: String,
    amount: Option<Amount>,
    audience: String,
    description: String,
    context: Value,
    idempotency_key: Option<String>,
    request_hash: String,
}

/// The verdict as `decision.made` records it.
#[derive(Deserialize)]
struct Decided {
    verdict: Verdict,
    reasons: Vec<Reason>,
    policy: Option<PolicyRef>,
    inputs: Inputs,
    ttl_secs: Option<i64>,
}

#[derive(Deserialize)]
struct Inputs {
    agent: TrustInput,
    counterparty: CounterpartyInput,
    amount_minor: i64,
    currency: String,
}

#[derive(Deserialize)]
struct TrustInput {
    trust: i64,
}

#[derive(Deserialize)]
struct CounterpartyInput {
    id: String,
    risk: Risk,
    trust: i64,
}

/// The row a case is stored as. `issued_token`: whether this write issued the case's
/// passport (its token is written only then).
pub(crate) fn row(case: &Case, issued_token: bool) -> Result<CaseRow> {
    let state = State {
        review: case.review.clone(),
        pickup_deadline_ms: case.pickup_deadline_ms,
        passport: case.passport.as_ref().map(|p| PassportState {
            id: p.id.clone(),
            kid: p.kid.clone(),
            issued_at_ms: p.issued_at_ms,
            expires_at_ms: p.expires_at_ms,
        }),
        executions: case.executions.clone(),
        outcomes: case.outcomes.clone(),
        agent_counted: case.agent_counted,
        counterparty_counted: case.counterparty_counted,
        counterparty_name: case.decision.counterparty.name.clone(),
    };
    let body = serde_json::to_string(&state).map_err(|e| Error::data_from("cannot encode a case", e))?;
    let review = case.review.as_ref();
    Ok(CaseRow {
        id: case.id.clone(),
        agent: case.agent.clone(),
        audience: case.request.audience.clone(),
        status: case.status.as_str().to_owned(),
        idempotency_key: case.request.idempotency_key.clone(),
        review_id: review.map(|r| r.id.clone()),
        review_status: review.map(|r| r.status.as_str().to_owned()),
        review_pending: case.status == CaseStatus::PendingReview,
        roles_missing: review
            .filter(|r| r.status == ReviewStatus::Pending)
            .map(|r| r.roles_missing())
            .unwrap_or_default(),
        deadline_ms: review.map(|r| r.deadline_ms),
        due_ms: case.due_ms(),
        created_at_ms: case.created_at_ms,
        counterparty: case.decision.counterparty.id.clone(),
        action: case.request.action.clone(),
        body,
        passport: case.passport.as_ref().filter(|_| issued_token).map(|p| p.token.clone()),
    })
}

/// The case a stored row and its opening entries describe.
pub(crate) fn case(stored: StoredCase) -> Result<Case> {
    let StoredCase { row, head, opening, .. } = stored;
    let corrupt = |what: String| Error::data(format!("case {}: {what}", row.id));
    let state: State =
        serde_json::from_str(&row.body).map_err(|e| Error::data_from(format!("case {}: corrupt state", row.id), e))?;
    let [submitted, decided] = opening_pair(&opening).ok_or_else(|| {
        corrupt(format!("its first {OPENING_ENTRIES} ledger entries are not request.submitted and decision.made"))
    })?;
    let request: Submitted = serde_json::from_value(submitted.data.clone())
        .map_err(|e| Error::data_from(format!("case {}: unreadable request.submitted", row.id), e))?;
    let decision: Decided = serde_json::from_value(decided.data.clone())
        .map_err(|e| Error::data_from(format!("case {}: unreadable decision.made", row.id), e))?;
    let decided_at_ms =
        parse_rfc3339_ms(&decided.at).ok_or_else(|| corrupt(format!("decision time {:?}", decided.at)))?;
    let status = CaseStatus::parse(&row.status).ok_or_else(|| corrupt(format!("status {:?}", row.status)))?;
    let passport = match state.passport {
        None => None,
        Some(p) => Some(PassportRecord {
            id: p.id,
            token: row.passport.ok_or_else(|| corrupt("its passport token is missing".into()))?,
            kid: p.kid,
            issued_at_ms: p.issued_at_ms,
            expires_at_ms: p.expires_at_ms,
        }),
    };
    Ok(Case {
        id: row.id,
        agent: row.agent,
        status,
        created_at_ms: row.created_at_ms,
        request: CaseRequest {
            action: request.action,
            counterparty: request.counterparty,
            amount: request.amount,
            audience: request.audience,
            description: request.description,
            context: request.context,
            idempotency_key: request.idempotency_key,
        },
        request_hash: request.request_hash,
        decision: DecisionRecord {
            verdict: decision.verdict,
            reasons: decision.reasons,
            policy: decision.policy,
            trust: TrustSnapshot {
                agent: decision.inputs.agent.trust,
                counterparty: decision.inputs.counterparty.trust,
            },
            counterparty: CounterpartySnapshot {
                id: decision.inputs.counterparty.id,
                name: state.counterparty_name,
                risk: decision.inputs.counterparty.risk,
            },
            amount_minor: decision.inputs.amount_minor,
            currency: decision.inputs.currency,
            decided_at_ms,
            ttl_secs: decision.ttl_secs,
        },
        review: state.review,
        pickup_deadline_ms: state.pickup_deadline_ms,
        passport,
        executions: state.executions,
        outcomes: state.outcomes,
        agent_counted: state.agent_counted,
        counterparty_counted: state.counterparty_counted,
        head: head.map(|h| (h.seq, hex_lower(&h.digest))),
    })
}

/// `request.submitted` at `seq` 0 and `decision.made` at `seq` 1.
fn opening_pair(opening: &[Entry]) -> Option<[&Entry; 2]> {
    match opening {
        [a, b] if a.seq == 0 && a.kind == "request.submitted" && b.seq == 1 && b.kind == "decision.made" => {
            Some([a, b])
        }
        _ => None,
    }
}
