//! The pages (askama templates, HTML-escaped) and the view models built from the
//! engine's JSON documents (`Engine::list_reviews`, `Engine::get_review`). Text from
//! requests is shown unambiguously: hidden characters as markers ([`visible`]), and the
//! templates isolate it (`<bdi>`, `dir="ltr"` on JSON) so that it cannot reorder the page.

use askama::Template;
use serde_json::Value;

use agentsigna_core::money::Amount;
use agentsigna_core::text::visible;

/// What every page's frame shows: who is signed in, and the CSRF token of the sign-out form.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    /// The signed-in principal, as shown (`carol@example.com`, `admin`).
    pub user: Option<String>,
    /// The session's CSRF token.
    pub csrf: String,
}

/// `GET /ui/login`.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    /// Frame.
    pub chrome: Chrome,
    /// The login form's CSRF token (also in the login cookie).
    pub csrf: String,
    /// Where to go after signing in.
    pub next: String,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// An error shown as a page.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// Frame.
    pub chrome: Chrome,
    /// Heading.
    pub title: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Link back.
    pub back: String,
}

/// A rule named in a queue row.
#[derive(Debug, Clone)]
pub struct RuleLine {
    /// Rule id (`large-po`), or `(no rule)`.
    pub id: String,
    /// Its `@reason`.
    pub reason: String,
}

/// One row of the queue.
#[derive(Debug, Clone)]
pub struct QueueItem {
    /// Review id.
    pub review_id: String,
    /// Agent id.
    pub agent: String,
    /// Action type.
    pub action: String,
    /// Formatted amount.
    pub amount: String,
    /// Counterparty name.
    pub counterparty: String,
    /// Its risk class.
    pub counterparty_risk: String,
    /// The rules that escalated.
    pub rules: Vec<RuleLine>,
    /// `1 of 2`.
    pub approvals: String,
    /// Roles still missing, comma separated.
    pub roles_missing: String,
    /// Human time left (`3 h 12 min`).
    pub time_left: String,
    /// The deadline (RFC 3339).
    pub deadline: String,
    /// Review status.
    pub status: String,
}

/// `GET /ui/` and `GET /ui/reviews`.
#[derive(Template)]
#[template(path = "queue.html")]
pub struct QueuePage {
    /// Frame.
    pub chrome: Chrome,
    /// Page heading.
    pub heading: String,
    /// Whether this lists pending reviews (shows time left rather than status).
    pub pending: bool,
    /// Rows, pending ones by deadline.
    pub items: Vec<QueueItem>,
    /// A message left by the previous action.
    pub flash: Option<String>,
}

/// An entry of a trust history.
#[derive(Debug, Clone)]
pub struct HistoryLine {
    /// Case id.
    pub case: String,
    /// Outcome.
    pub outcome: String,
    /// Score before.
    pub before: String,
    /// Score after.
    pub after: String,
    /// When.
    pub at: String,
}

/// Another case of the same agent.
#[derive(Debug, Clone)]
pub struct RecentCase {
    /// Case id.
    pub case_id: String,
    /// Action type.
    pub action: String,
    /// Formatted amount.
    pub amount: String,
    /// Case status.
    pub status: String,
    /// Outcomes reported, comma separated.
    pub outcomes: String,
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
    pub recent: Vec<RecentCase>,
}

/// The counterparty block of the case page.
#[derive(Debug, Clone, Default)]
pub struct CounterpartyView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Risk class now.
    pub risk: String,
    /// Risk class the verdict used.
    pub risk_at_decision: String,
    /// Current trust score.
    pub trust_score: String,
    /// Confidence.
    pub confidence: String,
    /// Score the verdict used.
    pub trust_at_decision: String,
    /// Outcome counts.
    pub outcomes: String,
}

/// A rule that decided, with its Cedar source.
#[derive(Debug, Clone)]
pub struct RuleView {
    /// Rule id.
    pub id: String,
    /// `escalate`, `reject`, `authorize`.
    pub verdict: String,
    /// Its `@reason`.
    pub reason: String,
    /// The Cedar text of the rule.
    pub source: Option<String>,
}

/// An approver's decision.
#[derive(Debug, Clone)]
pub struct DecisionView {
    /// Who.
    pub approver: String,
    /// Their roles.
    pub roles: String,
    /// `approve` or `reject`.
    pub decision: String,
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
    /// Why the decision just submitted was refused.
    pub error: Option<String>,
    /// Review id.
    pub review_id: String,
    /// Review status.
    pub review_status: String,
    /// Case id.
    pub case_id: String,
    /// Case status.
    pub case_status: String,
    /// Policy verdict.
    pub verdict: String,
    /// When the request came.
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
    /// Rules that decided.
    pub rules: Vec<RuleView>,
    /// Approvals needed.
    pub approvals_required: String,
    /// Approvals given.
    pub approvals_count: String,
    /// Roles required, comma separated.
    pub roles_required: String,
    /// Roles not yet covered, comma separated.
    pub roles_missing: String,
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
    /// Warnings above the decide form.
    pub notes: Vec<String>,
    /// The comment to put back in the form (after an error).
    pub comment: String,
}

/// Renders a template; a rendering failure becomes a plain message.
pub fn render<T: Template>(t: &T) -> String {
    match t.render() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot render a page");
            "<!doctype html><title>Error</title><p>The page could not be rendered; see the server log.</p>".to_owned()
        }
    }
}

/// A member of an engine document as a person must read it: every invisible,
/// bidirectional or control character shown as a marker (`⟨U+202E⟩`). Every string the
/// pages show from a document goes through here (or [`pretty`]).
fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => visible(s).into_owned(),
        other => visible(&other.to_string()).into_owned(),
    }
}

fn list(v: &Value) -> String {
    v.as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

/// An amount member (`{value, currency}` or null) for people.
pub fn amount_text(v: &Value) -> String {
    match (v.get("value").and_then(Value::as_str), v.get("currency").and_then(Value::as_str)) {
        (Some(value), currency) => {
            Amount { value: value.to_owned(), currency: currency.unwrap_or("").to_owned() }.to_string()
        }
        _ => "no amount".to_owned(),
    }
}

/// `3 d 4 h`, `2 h 5 min`, `45 s`, `overdue`.
pub fn time_left(secs: i64) -> String {
    if secs <= 0 {
        return "overdue".to_owned();
    }
    let (d, h, m) = (secs / 86_400, (secs % 86_400) / 3600, (secs % 3600) / 60);
    if d > 0 {
        format!("{d} d {h} h left")
    } else if h > 0 {
        format!("{h} h {m} min left")
    } else if m > 0 {
        format!("{m} min left")
    } else {
        format!("{secs} s left")
    }
}

fn rule_lines(rules: &Value) -> Vec<RuleLine> {
    let all: Vec<&Value> = rules.as_array().map(|a| a.iter().collect()).unwrap_or_default();
    let escalating: Vec<&Value> = all.iter().copied().filter(|r| r["verdict"] == "escalate").collect();
    let chosen = if escalating.is_empty() { all } else { escalating };
    chosen
        .into_iter()
        .map(|r| RuleLine {
            id: r["rule"].as_str().map(str::to_owned).unwrap_or_else(|| "(no rule)".to_owned()),
            reason: s(&r["reason"]),
        })
        .collect()
}

/// Queue rows from `Engine::list_reviews`.
pub fn queue_items(doc: &Value) -> Vec<QueueItem> {
    let Some(reviews) = doc["reviews"].as_array() else { return Vec::new() };
    reviews
        .iter()
        .map(|r| QueueItem {
            review_id: s(&r["id"]),
            agent: s(&r["agent"]),
            action: s(&r["action"]),
            amount: amount_text(&r["amount"]),
            counterparty: {
                let name = s(&r["counterparty"]["name"]);
                if name.is_empty() {
                    s(&r["counterparty"]["id"])
                } else {
                    name
                }
            },
            counterparty_risk: s(&r["counterparty"]["risk"]),
            rules: rule_lines(&r["rules"]),
            approvals: format!("{} of {}", s(&r["approvals"]), s(&r["approvals_required"])),
            roles_missing: list(&r["roles_missing"]),
            time_left: time_left(r["seconds_left"].as_i64().unwrap_or(0)),
            deadline: s(&r["deadline"]),
            status: s(&r["status"]),
        })
        .collect()
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

/// Pretty JSON of a document member, with hidden characters shown as markers.
fn pretty(v: &Value) -> String {
    visible(&serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())).into_owned()
}

/// The case page's data from `Engine::get_review`; `me` is the signed-in approver's id
/// (`None` for the admin), `now_ms` the server clock.
pub fn review_page(doc: &Value, chrome: Chrome, me: Option<&str>, now_ms: i64) -> ReviewPage {
    let review = &doc["review"];
    let agent = &doc["agent"];
    let cp = &doc["counterparty"];
    let decisions: Vec<DecisionView> = review["decisions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| DecisionView {
                    approver: s(&d["approver"]),
                    roles: list(&d["roles"]),
                    decision: s(&d["decision"]),
                    comment: s(&d["comment"]),
                    at: s(&d["at"]),
                })
                .collect()
        })
        .unwrap_or_default();
    let owner = s(&agent["owner"]);
    let mut notes = Vec::new();
    let can_decide = match me {
        None => {
            notes.push(
                "You are signed in with the admin credential: you can read reviews, but only approvers decide."
                    .to_owned(),
            );
            false
        }
        Some(me) => {
            if let Some(d) = decisions.iter().find(|d| d.approver == me) {
                notes.push(format!("You already decided on this review ({} at {}).", d.decision, d.at));
                false
            } else {
                if me == owner {
                    notes.push(format!(
                        "You own agent {}: separation of duties does not let you decide on its requests.",
                        s(&agent["id"])
                    ));
                }
                true
            }
        }
    };
    let seconds_left = review["deadline"]
        .as_str()
        .and_then(agentsigna_verify::clock::parse_rfc3339_ms)
        .map(|deadline| (deadline - now_ms) / 1000);
    let policy = match &doc["policy"] {
        Value::Null => "none".to_owned(),
        p => format!("version {} ({})", s(&p["version"]), s(&p["digest"])),
    };
    let passport = doc["passport_info"].as_object().map(|p| {
        let field = |k: &str| p.get(k).map(s).unwrap_or_default();
        format!("{} (issued {}, expires {})", field("id"), field("issued_at"), field("expires_at"))
    });
    ReviewPage {
        chrome,
        flash: None,
        error: None,
        review_id: s(&doc["id"]),
        review_status: s(&review["status"]),
        case_id: s(&doc["case_id"]),
        case_status: s(&doc["status"]),
        verdict: s(&doc["verdict"]),
        created_at: s(&doc["created_at"]),
        action: s(&doc["request"]["action"]),
        amount: amount_text(&doc["request"]["amount"]),
        audience: s(&doc["request"]["audience"]),
        description: s(&doc["request"]["description"]),
        context_json: pretty(&doc["request"]["context"]),
        idempotency_key: doc["request"]["idempotency_key"].as_str().map(str::to_owned),
        policy,
        agent: AgentView {
            id: s(&agent["id"]),
            name: agent["name"].as_str().map(str::to_owned),
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
                            outcome: s(&h["outcome"]),
                            before: s(&h["before"]),
                            after: s(&h["after"]),
                            at: s(&h["at"]),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            recent: agent["recent_cases"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| RecentCase {
                            case_id: s(&c["case_id"]),
                            action: s(&c["action"]),
                            amount: amount_text(&c["amount"]),
                            status: s(&c["status"]),
                            outcomes: {
                                let o = list(&c["outcomes"]);
                                if o.is_empty() {
                                    "none".to_owned()
                                } else {
                                    o
                                }
                            },
                        })
                        .collect()
                })
                .unwrap_or_default(),
        },
        counterparty: CounterpartyView {
            id: s(&cp["id"]),
            name: s(&cp["name"]),
            risk: s(&cp["risk"]),
            risk_at_decision: s(&cp["risk_at_decision"]),
            trust_score: s(&cp["trust"]["score"]),
            confidence: s(&cp["trust"]["confidence"]),
            trust_at_decision: s(&doc["trust"]["counterparty"]),
            outcomes: outcome_counts(&cp["trust"]),
        },
        rules: doc["rules"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| RuleView {
                        id: r["rule"].as_str().map(str::to_owned).unwrap_or_else(|| "(no rule)".to_owned()),
                        verdict: s(&r["verdict"]),
                        reason: s(&r["reason"]),
                        source: r["source"].as_str().map(str::to_owned),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        approvals_required: s(&review["approvals_required"]),
        approvals_count: decisions.iter().filter(|d| d.decision == "approve").count().to_string(),
        roles_required: list(&review["roles_required"]),
        roles_missing: list(&review["roles_missing"]),
        decisions,
        deadline: s(&review["deadline"]),
        time_left: seconds_left.map(time_left).unwrap_or_default(),
        closed_at: review["closed_at"].as_str().map(str::to_owned),
        passport,
        events: doc["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| EventView {
                        index: s(&e["index"]),
                        seq: s(&e["seq"]),
                        kind: s(&e["type"]),
                        at: s(&e["at"]),
                        actor: s(&e["actor"]),
                        digest: s(&e["digest"]),
                        data: pretty(&e["data"]),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        can_decide,
        notes,
        comment: String::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn amounts_and_durations_read_well() {
        // The formatting itself is `Amount`'s `Display` (core::money), tested there.
        assert_eq!(amount_text(&serde_json::json!({"value": "40000.00", "currency": "USD"})), "40,000.00 USD");
        assert_eq!(amount_text(&serde_json::json!({"value": "999.5"})), "999.5");
        assert_eq!(amount_text(&Value::Null), "no amount");
        assert_eq!(time_left(0), "overdue");
        assert_eq!(time_left(86_400 + 7200), "1 d 2 h left");
        assert_eq!(time_left(3 * 3600 + 12 * 60), "3 h 12 min left");
        assert_eq!(time_left(59), "59 s left");
    }

    #[test]
    fn pages_escape_what_agents_write() {
        let page = ErrorPage {
            chrome: Chrome::default(),
            title: "t".into(),
            message: "<script>alert(1)</script>".into(),
            back: "/ui/".into(),
        };
        let html = render(&page);
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>alert"));
    }
}
