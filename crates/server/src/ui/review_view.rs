//! The case page's view model, built from `Engine::get_review` (a typed `ReviewView`): the decision summary
//! (amount, counterparty and risk, agent and trust, the escalating rules, time left,
//! approvals), whether the reader may decide (and why not), then the details: request,
//! rules with their Cedar source, decisions, history of agent and counterparty, timeline.

use std::collections::BTreeMap;

use askama::Template;

use agentsigna_core::engine::views;

use super::format::{agent_text, approvals, status_words, time_left, Approvals, Times};
use super::pages::{amount_text, number_text, rule_lines, Chrome, RuleLine};

/// An entry of a trust history.
#[derive(Debug, Clone)]
pub struct HistoryLine {
    /// Case id.
    pub case: String,
    /// Outcome (CSS class) and in words.
    pub outcome: String,
    /// Outcome in words.
    pub outcome_words: String,
    /// Score before → after.
    pub change: String,
    /// When.
    pub at: String,
}

/// An earlier case beside the review: of the same agent, or with the same counterparty.
#[derive(Debug, Clone)]
pub struct HistoryCase {
    /// Case id.
    pub case_id: String,
    /// Its review page, if it had a review.
    pub href: Option<String>,
    /// Agent.
    pub agent: String,
    /// Action type.
    pub action: String,
    /// Formatted amount.
    pub amount: String,
    /// Case status (CSS class).
    pub status: String,
    /// In words.
    pub status_words: String,
    /// Outcomes reported, comma separated.
    pub outcomes: String,
    /// When it came.
    pub created: String,
    /// Who decided what, with their comments.
    pub decisions: Vec<String>,
}

/// The agent block of the case page.
#[derive(Debug, Clone, Default)]
pub struct AgentView {
    /// Agent id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Accountable owner.
    pub owner: String,
    /// Current trust score.
    pub trust_score: String,
    /// Confidence of the score.
    pub confidence: String,
    /// Score the verdict used.
    pub trust_at_decision: String,
    /// Outcome counts.
    pub outcomes: String,
    /// Suspended by the admin.
    pub suspended: bool,
    /// Trust history, newest first.
    pub history: Vec<HistoryLine>,
    /// Other cases of the agent, newest first.
    pub recent: Vec<HistoryCase>,
}

/// The counterparty block of the case page.
#[derive(Debug, Clone, Default)]
pub struct CounterpartyView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Risk class now (CSS class).
    pub risk: String,
    /// In words.
    pub risk_words: String,
    /// Risk class the verdict used, in words.
    pub risk_at_decision: String,
    /// Current trust score.
    pub trust_score: String,
    /// Confidence.
    pub confidence: String,
    /// Score the verdict used.
    pub trust_at_decision: String,
    /// Outcome counts.
    pub outcomes: String,
    /// Its recent cases (of any agent, reviewed or not), newest first.
    pub recent: Vec<HistoryCase>,
}

/// A rule that decided, with its Cedar source.
#[derive(Debug, Clone)]
pub struct RuleView {
    /// Rule id.
    pub id: String,
    /// `escalate`, `reject`, `authorize`.
    pub verdict: String,
    /// In words.
    pub verdict_words: String,
    /// Its `@reason`.
    pub reason: String,
    /// The Cedar text of the rule.
    pub source: Option<String>,
}

/// An approver's decision.
#[derive(Debug, Clone)]
pub struct DecisionView {
    /// Approver id.
    pub approver: String,
    /// Name and id, as shown.
    pub who: String,
    /// Their roles.
    pub roles: String,
    /// `approve` or `reject` (CSS class).
    pub decision: String,
    /// In words.
    pub words: String,
    /// Their comment.
    pub comment: String,
    /// When.
    pub at: String,
}

/// A ledger entry of the case.
#[derive(Debug, Clone)]
pub struct EventView {
    /// Global index.
    pub index: String,
    /// Position in the case chain.
    pub seq: String,
    /// Event type.
    pub kind: String,
    /// When.
    pub at: String,
    /// Who.
    pub actor: String,
    /// Entry digest.
    pub digest: String,
    /// Its data, pretty JSON.
    pub data: String,
}

/// `GET /ui/reviews/{id}`: the case with everything needed to decide.
#[derive(Template)]
#[template(path = "review.html")]
pub struct ReviewPage {
    /// Frame.
    pub chrome: Chrome,
    /// A message left by the previous action.
    pub flash: Option<String>,
    /// Why the decision just submitted was refused (the form as a whole).
    pub error: Option<String>,
    /// Why the comment was refused.
    pub comment_error: Option<String>,
    /// Why the retyped amount was refused.
    pub confirm_error: Option<String>,
    /// Review id.
    pub review_id: String,
    /// Review status (CSS class).
    pub review_status: String,
    /// In words.
    pub review_words: String,
    /// Case id.
    pub case_id: String,
    /// Case status in words.
    pub case_status: String,
    /// Policy verdict in words.
    pub verdict: String,
    /// When the request came (time and age).
    pub created_at: String,
    /// Action type.
    pub action: String,
    /// Formatted amount.
    pub amount: String,
    /// Target system.
    pub audience: String,
    /// Free text of the agent.
    pub description: String,
    /// Request context, pretty JSON.
    pub context_json: String,
    /// The agent's idempotency key.
    pub idempotency_key: Option<String>,
    /// `version 3 (sha256:…)`.
    pub policy: String,
    /// The agent.
    pub agent: AgentView,
    /// The counterparty.
    pub counterparty: CounterpartyView,
    /// The rules that escalated, for the summary.
    pub summary_rules: Vec<RuleLine>,
    /// Rules that decided.
    pub rules: Vec<RuleView>,
    /// Approvals, in the one wording.
    pub approvals: Approvals,
    /// Decisions so far.
    pub decisions: Vec<DecisionView>,
    /// Review deadline.
    pub deadline: String,
    /// Time left until it.
    pub time_left: String,
    /// When the review closed.
    pub closed_at: Option<String>,
    /// Passport summary, once issued.
    pub passport: Option<String>,
    /// The case's ledger entries.
    pub events: Vec<EventView>,
    /// Whether the decide form is shown.
    pub can_decide: bool,
    /// Why it is not (shown in its place).
    pub refusal: Option<String>,
    /// Warnings above the decide form.
    pub notes: Vec<String>,
    /// Whether approving needs the amount retyped (above the server's threshold).
    pub confirm_needed: bool,
    /// The comment to put back in the form (after an error).
    pub comment: String,
    /// The next review the reader may decide, once this one is not theirs to decide.
    pub next_review: Option<String>,
}

/// An approver as shown: `Carol (Finance) (carol@example.com)`, or the id alone.
fn approver_label(names: &BTreeMap<String, Option<String>>, id: &str) -> String {
    match names.get(id).and_then(Option::as_deref) {
        Some(n) => format!("{} ({})", agent_text(n), agent_text(id)),
        None => agent_text(id),
    }
}

fn history_case(c: &views::HistoryCase, times: &Times, names: &BTreeMap<String, Option<String>>) -> HistoryCase {
    let status = c.status.as_str().to_owned();
    let decisions = c
        .review
        .as_ref()
        .map(|r| {
            r.decisions
                .iter()
                .map(|d| {
                    let verb = if d.decision == "approve" { "approved" } else { "rejected" };
                    let comment = agent_text(&d.comment);
                    let who = approver_label(names, &d.approver);
                    let roles = d.roles.join(", ");
                    let who = if roles.is_empty() { who } else { format!("{who} ({roles})") };
                    if comment.is_empty() {
                        format!("{who} {verb}")
                    } else {
                        format!("{who} {verb}: “{comment}”")
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let outcomes = c.outcomes.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", ");
    HistoryCase {
        case_id: c.case_id.clone(),
        href: c.review.as_ref().map(|r| format!("/ui/reviews/{}", r.id)),
        agent: agent_text(&c.agent),
        action: agent_text(&c.action),
        amount: amount_text(c.amount.as_ref()),
        status_words: status_words(&status),
        status,
        outcomes: if outcomes.is_empty() { "none yet".to_owned() } else { outcomes },
        created: times.when_and_age(&c.created_at),
        decisions,
    }
}

fn outcome_counts(trust: &views::TrustDoc) -> String {
    let o = &trust.outcomes;
    format!("{} completed, {} reversed, {} rejected, {} disputed", o.completed, o.reversed, o.rejected, o.disputed)
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// The case page's data from `Engine::get_review`; `me` is the signed-in approver's id
/// (`None` for the admin), `times` puts times into words (server clock, session's zone),
/// `confirm_above` the amount above which approving needs the amount retyped.
pub fn review_page(
    doc: &views::ReviewView,
    chrome: Chrome,
    me: Option<&str>,
    times: &Times,
    confirm_above: Option<f64>,
) -> ReviewPage {
    let case = &doc.core;
    let review = case.review.as_ref();
    let agent = &doc.agent;
    let cp = &doc.counterparty;
    let decisions: Vec<DecisionView> = review
        .map(|r| {
            r.decisions
                .iter()
                .map(|d| {
                    let id = agent_text(&d.approver);
                    let who = approver_label(&doc.approver_names, &d.approver);
                    DecisionView {
                        who,
                        approver: id,
                        roles: d.roles.join(", "),
                        words: if d.decision == "approve" { "Approved" } else { "Rejected" }.to_owned(),
                        decision: d.decision.clone(),
                        comment: agent_text(&d.comment),
                        at: times.when_and_age(&d.at),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let status = review.map_or("", |r| r.status.as_str()).to_owned();
    let pending = status == "pending";
    let owner = agent.owner.as_deref().map(agent_text).unwrap_or_default();
    let mut notes = Vec::new();
    let refusal = if !pending {
        Some(format!(
            "This review is closed ({}): there is nothing left to decide.",
            status_words(&status).to_lowercase()
        ))
    } else {
        match me {
            None => Some(
                "You are signed in with the admin credential: you can read reviews, but only approvers decide."
                    .to_owned(),
            ),
            Some(me) => {
                if me == owner {
                    Some(format!(
                        "You own agent {}: separation of duties does not let you decide on its requests.",
                        agent_text(&agent.id)
                    ))
                } else {
                    decisions
                        .iter()
                        .find(|d| d.approver == me)
                        .map(|d| format!("You already decided on this review ({} {}).", d.words.to_lowercase(), d.at))
                }
            }
        }
    };
    let required = review.map_or(0, |r| usize::try_from(r.approvals_required).unwrap_or(usize::MAX));
    let given = decisions.iter().filter(|d| d.decision == "approve").count();
    let missing: &[String] = review.map_or(&[], |r| &r.roles_missing);
    if refusal.is_none() && given >= required && !missing.is_empty() {
        let mine: &[String] = doc.viewer.as_ref().map_or(&[], |v| &v.roles);
        if !missing.iter().any(|m| mine.contains(m)) {
            notes.push(format!(
                "Your approval would not complete this review: it still needs the role {}, which you do not hold.",
                missing.join(", ")
            ));
        }
    }
    let seconds_left = review
        .and_then(|r| agentsigna_verify::clock::parse_rfc3339_ms(&r.deadline))
        .map(|deadline| (deadline - times.now_ms) / 1000);
    let policy = match &case.policy {
        None => "none".to_owned(),
        Some(p) => format!("version {} ({})", p.version, p.digest),
    };
    let passport = case
        .passport_info
        .as_ref()
        .map(|p| format!("{} (issued {}, expires {})", p.id, times.when(&p.issued_at), times.when(&p.expires_at)));
    let request = &case.request;
    let amount_value = request.amount.as_ref().and_then(|a| a.value.parse::<f64>().ok());
    let confirm_needed = matches!((confirm_above, amount_value), (Some(t), Some(v)) if v > t);
    let roles_required: &[String] = review.map_or(&[], |r| &r.roles_required);
    ReviewPage {
        chrome,
        flash: None,
        error: None,
        comment_error: None,
        confirm_error: None,
        review_id: doc.id.clone().unwrap_or_default(),
        review_words: status_words(&status),
        review_status: status,
        case_id: case.case_id.clone(),
        case_status: status_words(case.status.as_str()),
        verdict: status_words(case.verdict.as_str()),
        created_at: times.when_and_age(&case.created_at),
        action: agent_text(&request.action),
        amount: amount_text(request.amount.as_ref()),
        audience: agent_text(&request.audience),
        description: agent_text(&request.description),
        context_json: agent_text(&pretty(&request.context)),
        idempotency_key: request.idempotency_key.as_deref().map(agent_text),
        policy,
        agent: AgentView {
            id: agent_text(&agent.id),
            name: agent.name.as_deref().map(agent_text),
            owner,
            trust_score: agent.trust.score.to_string(),
            confidence: number_text(agent.trust.confidence),
            trust_at_decision: case.trust.agent.to_string(),
            outcomes: outcome_counts(&agent.trust),
            suspended: agent.suspended.unwrap_or(false),
            history: agent
                .trust
                .history
                .iter()
                .map(|h| HistoryLine {
                    case: h.case.clone(),
                    outcome_words: status_words(h.outcome.as_str()),
                    outcome: h.outcome.as_str().to_owned(),
                    change: format!("{} → {}", h.before, h.after),
                    at: times.when_and_age(&h.at),
                })
                .collect(),
            recent: agent.recent_cases.iter().map(|c| history_case(c, times, &doc.approver_names)).collect(),
        },
        counterparty: CounterpartyView {
            id: agent_text(&cp.id),
            name: agent_text(&cp.name),
            risk_words: status_words(cp.risk.as_str()),
            risk: cp.risk.as_str().to_owned(),
            risk_at_decision: status_words(cp.risk_at_decision.as_str()),
            trust_score: cp.trust.score.to_string(),
            confidence: number_text(cp.trust.confidence),
            trust_at_decision: case.trust.counterparty.to_string(),
            outcomes: outcome_counts(&cp.trust),
            recent: cp.recent_cases.iter().map(|c| history_case(c, times, &doc.approver_names)).collect(),
        },
        summary_rules: rule_lines(doc.rules.iter().map(|r| (r.rule.as_deref(), r.verdict, r.reason.as_str()))),
        rules: doc
            .rules
            .iter()
            .map(|r| RuleView {
                id: r.rule.clone().unwrap_or_else(|| "(no rule)".to_owned()),
                verdict_words: status_words(r.verdict.as_str()),
                verdict: r.verdict.as_str().to_owned(),
                reason: agent_text(&r.reason),
                source: r.source.clone(),
            })
            .collect(),
        approvals: approvals(required, given, roles_required, missing, pending),
        decisions,
        deadline: times.when(review.map_or("", |r| r.deadline.as_str())),
        time_left: seconds_left.map(time_left).unwrap_or_default(),
        closed_at: review.and_then(|r| r.closed_at.as_deref()).map(|c| times.when_and_age(c)),
        passport,
        events: case
            .events
            .iter()
            .map(|e| EventView {
                index: e.index.to_string(),
                seq: e.entry.seq.to_string(),
                kind: e.entry.kind.clone(),
                at: times.when(&e.entry.at),
                actor: agent_text(&e.entry.actor),
                digest: e.digest.clone(),
                data: agent_text(&pretty(&e.entry.data)),
            })
            .collect(),
        can_decide: refusal.is_none(),
        refusal,
        notes,
        confirm_needed,
        comment: String::new(),
        next_review: None,
    }
}
