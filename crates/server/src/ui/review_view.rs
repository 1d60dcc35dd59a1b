//! The case page's view model, built from `Engine::get_review`: the decision summary
//! (amount, counterparty and risk, agent and trust, the escalating rules, time left,
//! approvals), whether the reader may decide (and why not), then the details: request,
//! rules with their Cedar source, decisions, history of agent and counterparty, timeline.

use askama::Template;
use serde_json::Value;

use super::format::{agent_text, approvals, status_words, time_left, Approvals, Times};
use super::pages::{amount_text, rule_lines, s, strings, Chrome, RuleLine};

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
fn approver_label(names: &Value, id: &str) -> String {
    match names[id].as_str() {
        Some(n) => format!("{} ({id})", agent_text(n)),
        None => id.to_owned(),
    }
}

fn history_case(c: &Value, times: &Times, names: &Value) -> HistoryCase {
    let status = s(&c["status"]);
    let decisions = c["review"]["decisions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    let verb = if d["decision"] == "approve" { "approved" } else { "rejected" };
                    let who = approver_label(names, &s(&d["approver"]));
                    let roles = strings(&d["roles"]).join(", ");
                    let who = if roles.is_empty() { who } else { format!("{who} ({roles})") };
                    let comment = agent_text(&s(&d["comment"]));
                    if comment.is_empty() {
                        format!("{who} {verb}")
                    } else {
                        format!("{who} {verb}: “{comment}”")
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let outcomes = strings(&c["outcomes"]).join(", ");
    HistoryCase {
        case_id: s(&c["case_id"]),
        href: c["review"]["id"].as_str().map(|id| format!("/ui/reviews/{id}")),
        agent: s(&c["agent"]),
        action: s(&c["action"]),
        amount: amount_text(&c["amount"]),
        status_words: status_words(&status),
        status,
        outcomes: if outcomes.is_empty() { "none yet".to_owned() } else { outcomes },
        created: times.when_and_age(&s(&c["created_at"])),
        decisions,
    }
}

fn outcome_counts(trust: &Value) -> String {
    let o = &trust["outcomes"];
    format!(
        "{} completed, {} reversed, {} rejected, {} disputed",
        s(&o["completed"]),
        s(&o["reversed"]),
        s(&o["rejected"]),
        s(&o["disputed"])
    )
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn list_of(v: &Value, f: impl Fn(&Value) -> HistoryCase) -> Vec<HistoryCase> {
    v.as_array().map(|a| a.iter().map(f).collect()).unwrap_or_default()
}

/// The case page's data from `Engine::get_review`; `me` is the signed-in approver's id
/// (`None` for the admin), `times` puts times into words (server clock, session's zone),
/// `confirm_above` the amount above which approving needs the amount retyped.
pub fn review_page(
    doc: &Value,
    chrome: Chrome,
    me: Option<&str>,
    times: &Times,
    confirm_above: Option<f64>,
) -> ReviewPage {
    let review = &doc["review"];
    let agent = &doc["agent"];
    let cp = &doc["counterparty"];
    let names = &doc["approver_names"];
    let decisions: Vec<DecisionView> = review["decisions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    let id = s(&d["approver"]);
                    let who = approver_label(names, &id);
                    DecisionView {
                        who,
                        approver: id,
                        roles: strings(&d["roles"]).join(", "),
                        words: if d["decision"] == "approve" { "Approved" } else { "Rejected" }.to_owned(),
                        decision: s(&d["decision"]),
                        comment: agent_text(&s(&d["comment"])),
                        at: times.when_and_age(&s(&d["at"])),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let status = s(&review["status"]);
    let pending = status == "pending";
    let owner = s(&agent["owner"]);
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
                        s(&agent["id"])
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
    let required = usize::try_from(review["approvals_required"].as_u64().unwrap_or(0)).unwrap_or(0);
    let given = decisions.iter().filter(|d| d.decision == "approve").count();
    let missing = strings(&review["roles_missing"]);
    if refusal.is_none() && given >= required && !missing.is_empty() {
        let mine = strings(&doc["viewer"]["roles"]);
        if !missing.iter().any(|m| mine.contains(m)) {
            notes.push(format!(
                "Your approval would not complete this review: it still needs the role {}, which you do not hold.",
                missing.join(", ")
            ));
        }
    }
    let seconds_left = review["deadline"]
        .as_str()
        .and_then(agentsigna_verify::clock::parse_rfc3339_ms)
        .map(|deadline| (deadline - times.now_ms) / 1000);
    let policy = match &doc["policy"] {
        Value::Null => "none".to_owned(),
        p => format!("version {} ({})", s(&p["version"]), s(&p["digest"])),
    };
    let passport = doc["passport_info"].as_object().map(|p| {
        let field = |k: &str| p.get(k).map(s).unwrap_or_default();
        format!(
            "{} (issued {}, expires {})",
            field("id"),
            times.when(&field("issued_at")),
            times.when(&field("expires_at"))
        )
    });
    let amount_value = doc["request"]["amount"]["value"].as_str().and_then(|v| v.parse::<f64>().ok());
    let confirm_needed = matches!((confirm_above, amount_value), (Some(t), Some(v)) if v > t);
    ReviewPage {
        chrome,
        flash: None,
        error: None,
        comment_error: None,
        confirm_error: None,
        review_id: s(&doc["id"]),
        review_words: status_words(&status),
        review_status: status,
        case_id: s(&doc["case_id"]),
        case_status: status_words(&s(&doc["status"])),
        verdict: status_words(&s(&doc["verdict"])),
        created_at: times.when_and_age(&s(&doc["created_at"])),
        action: s(&doc["request"]["action"]),
        amount: amount_text(&doc["request"]["amount"]),
        audience: s(&doc["request"]["audience"]),
        description: agent_text(&s(&doc["request"]["description"])),
        context_json: agent_text(&pretty(&doc["request"]["context"])),
        idempotency_key: doc["request"]["idempotency_key"].as_str().map(agent_text),
        policy,
        agent: AgentView {
            id: s(&agent["id"]),
            name: agent["name"].as_str().map(agent_text),
            owner,
            trust_score: s(&agent["trust"]["score"]),
            confidence: s(&agent["trust"]["confidence"]),
            trust_at_decision: s(&doc["trust"]["agent"]),
            outcomes: outcome_counts(&agent["trust"]),
            suspended: agent["suspended"].as_bool().unwrap_or(false),
            history: agent["trust"]["history"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|h| HistoryLine {
                            case: s(&h["case"]),
                            outcome_words: status_words(&s(&h["outcome"])),
                            outcome: s(&h["outcome"]),
                            change: format!("{} → {}", s(&h["before"]), s(&h["after"])),
                            at: times.when_and_age(&s(&h["at"])),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            recent: list_of(&agent["recent_cases"], |c| history_case(c, times, names)),
        },
        counterparty: CounterpartyView {
            id: s(&cp["id"]),
            name: agent_text(&s(&cp["name"])),
            risk_words: status_words(&s(&cp["risk"])),
            risk: s(&cp["risk"]),
            risk_at_decision: status_words(&s(&cp["risk_at_decision"])),
            trust_score: s(&cp["trust"]["score"]),
            confidence: s(&cp["trust"]["confidence"]),
            trust_at_decision: s(&doc["trust"]["counterparty"]),
            outcomes: outcome_counts(&cp["trust"]),
            recent: list_of(&cp["recent_cases"], |c| history_case(c, times, names)),
        },
        summary_rules: rule_lines(&doc["rules"]),
        rules: doc["rules"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| RuleView {
                        id: r["rule"].as_str().map(str::to_owned).unwrap_or_else(|| "(no rule)".to_owned()),
                        verdict_words: status_words(&s(&r["verdict"])),
                        verdict: s(&r["verdict"]),
                        reason: agent_text(&s(&r["reason"])),
                        source: r["source"].as_str().map(str::to_owned),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        approvals: approvals(required, given, &strings(&review["roles_required"]), &missing, pending),
        decisions,
        deadline: times.when(&s(&review["deadline"])),
        time_left: seconds_left.map(time_left).unwrap_or_default(),
        closed_at: review["closed_at"].as_str().map(|c| times.when_and_age(c)),
        passport,
        events: doc["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| EventView {
                        index: s(&e["index"]),
                        seq: s(&e["seq"]),
                        kind: s(&e["type"]),
                        at: times.when(&s(&e["at"])),
                        actor: s(&e["actor"]),
                        digest: s(&e["digest"]),
                        data: agent_text(&pretty(&e["data"])),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        can_decide: refusal.is_none(),
        refusal,
        notes,
        confirm_needed,
        comment: String::new(),
        next_review: None,
    }
}
