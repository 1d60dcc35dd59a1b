//! Steps 5–7: execution reports and outcomes, and the trust standings outcomes move.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::data::{case_event, read_case, trust_of};
use super::draft::Draft;
use super::request::check_text;
use super::views::CaseView;
use super::{Ctx, Engine};
use crate::access::{self, CaseOp, Standing};
use crate::model::{Case, CaseStatus, ExecutionRecord, OutcomeRecord, Principal};
use crate::store::RecordKind;
use crate::text;
use crate::trust::Outcome;
use crate::{Error, Result};

/// `POST /v1/cases/{id}/execution`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionInput {
    pub passport_id: String,
    #[serde(default)]
    pub reference: Option<String>,
}

/// `POST /v1/cases/{id}/outcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"outcome": "completed", "detail": "Delivered and invoiced as ordered"})))]
pub struct OutcomeInput {
    pub outcome: Outcome,
    #[serde(default)]
    pub detail: Option<String>,
}

impl Engine {
    /// Step 5 report: the action was carried out with the case's passport.
    pub async fn report_execution(&self, by: &Principal, id: &str, input: ExecutionInput) -> Result<CaseView> {
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
    pub async fn record_outcome(&self, by: &Principal, id: &str, input: OutcomeInput) -> Result<CaseView> {
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
