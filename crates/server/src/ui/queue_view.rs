//! The review queue's page: its filters, paging and rows, built from
//! `Engine::review_queue` (one page of reviews queried by review, with the total).

use askama::Template;

use agentsigna_core::engine::views::{ReviewQueue, ReviewSummary, Viewer};
use agentsigna_core::model::ReviewStatus;

use super::format::{agent_text, approvals, status_words, time_left, Times};
use super::pages::{amount_text, rule_lines, Chrome, RuleLine};

/// Rows per page.
pub const PAGE_SIZE: u32 = 50;

/// One row of the queue.
#[derive(Debug, Clone)]
pub struct QueueItem {
    /// Review id.
    pub review_id: String,
    /// Case id.
    pub case_id: String,
    /// Agent id.
    pub agent: String,
    /// Trust score the verdict used.
    pub trust: String,
    /// Action type.
    pub action: String,
    /// Formatted amount.
    pub amount: String,
    /// Counterparty name.
    pub counterparty: String,
    /// Its risk class (CSS class) and in words.
    pub counterparty_risk: String,
    /// The risk in words.
    pub risk_words: String,
    /// The rules that escalated.
    pub rules: Vec<RuleLine>,
    /// `1 of 2`.
    pub approvals: String,
    /// `Still needed: …` (empty once closed).
    pub still: String,
    /// How old the request is.
    pub age: String,
    /// Human time left (`3 h 12 min left`).
    pub time_left: String,
    /// The deadline, for people.
    pub deadline: String,
    /// Review status (CSS class).
    pub status: String,
    /// Review status in words.
    pub status_words: String,
    /// Why the signed-in approver cannot decide it (own agent, already decided, a role
    /// they lack), if so.
    pub mark: Option<String>,
}

/// A choice of the status filter.
#[derive(Debug, Clone)]
pub struct StatusOption {
    /// Query value.
    pub value: &'static str,
    /// Label.
    pub label: &'static str,
    /// Chosen now.
    pub selected: bool,
}

/// `GET /ui/` and `GET /ui/reviews`.
#[derive(Template)]
#[template(path = "queue.html")]
pub struct QueuePage {
    /// Frame.
    pub chrome: Chrome,
    /// Page heading (without the count).
    pub heading: String,
    /// How many reviews match in all.
    pub total: u64,
    /// Whether this lists pending reviews (shows time left rather than status).
    pub pending: bool,
    /// Status filter choices.
    pub statuses: Vec<StatusOption>,
    /// Agent filter as typed.
    pub agent: String,
    /// Counterparty filter as typed.
    pub counterparty: String,
    /// Action filter as typed.
    pub action: String,
    /// Review or case id searched for.
    pub q: String,
    /// Only reviews that still need a role the reader holds.
    pub mine: bool,
    /// The reader's roles (the role filter is offered to approvers with roles).
    pub my_roles: String,
    /// Rows of this page.
    pub items: Vec<QueueItem>,
    /// `Showing 1–50 of 612`.
    pub showing: String,
    /// Link to the previous page.
    pub prev: Option<String>,
    /// Link to the next page.
    pub next: Option<String>,
    /// A message left by the previous action.
    pub flash: Option<String>,
}

/// The status filter's choices, `chosen` selected.
pub fn status_options(chosen: &str) -> Vec<StatusOption> {
    [
        ("pending", "Waiting for a decision"),
        ("all", "All reviews"),
        ("approved", "Approved"),
        ("rejected", "Rejected"),
        ("expired", "Expired"),
    ]
    .into_iter()
    .map(|(value, label)| StatusOption { value, label, selected: value == chosen })
    .collect()
}

/// Why `viewer` (the engine's `viewer` member) cannot usefully decide on a review.
fn mark(r: &ReviewSummary, viewer: Option<&Viewer>) -> Option<String> {
    let viewer = viewer?;
    let me = viewer.id.as_str();
    if r.owner.as_deref() == Some(me) {
        return Some("Your own agent: you may not decide".to_owned());
    }
    if r.decided_by.iter().any(|d| d == me) {
        return Some("You already decided".to_owned());
    }
    if r.status != ReviewStatus::Pending {
        return None;
    }
    let missing = &r.roles_missing;
    let quorum_met = r.approvals >= usize::try_from(r.approvals_required).unwrap_or(usize::MAX);
    if quorum_met && !missing.is_empty() && !missing.iter().any(|m| viewer.roles.contains(m)) {
        return Some(format!("Needs the role {}, which you do not hold", missing.join(", ")));
    }
    None
}

/// Queue rows from `Engine::review_queue`; `times` puts times into words.
pub fn queue_items(doc: &ReviewQueue, times: &Times) -> Vec<QueueItem> {
    doc.reviews
        .iter()
        .map(|r| {
            let status = r.status.as_str().to_owned();
            let a = approvals(
                usize::try_from(r.approvals_required).unwrap_or(usize::MAX),
                r.approvals,
                &r.roles_required,
                &r.roles_missing,
                r.status == ReviewStatus::Pending,
            );
            let cp = &r.counterparty;
            let risk = cp.risk.as_str().to_owned();
            QueueItem {
                review_id: r.id.clone(),
                case_id: r.case_id.clone(),
                agent: agent_text(&r.agent),
                trust: r.trust.agent.to_string(),
                action: agent_text(&r.action),
                amount: amount_text(r.amount.as_ref()),
                counterparty: agent_text(if cp.name.is_empty() { &cp.id } else { &cp.name }),
                risk_words: status_words(&risk),
                counterparty_risk: risk,
                rules: rule_lines(r.rules.iter().map(|x| (x.rule.as_deref(), x.verdict, x.reason.as_str()))),
                approvals: a.so_far,
                still: a.still,
                age: times.age(&r.created_at),
                time_left: time_left(r.seconds_left),
                deadline: times.when(&r.deadline),
                status_words: status_words(&status),
                status,
                mark: mark(r, doc.viewer.as_ref()),
            }
        })
        .collect()
}
