//! Human review: who may decide, quorum, roles, one rejection ends it.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::cases::process_due_case;
use super::data::{case_event, read_case};
use super::draft::Draft;
use super::outbox::queue_notification;
use super::verdict::{recheck, reject_on_recheck};
use super::views::{self, ReviewList, ReviewQueue, ReviewView};
use super::{Ctx, Engine};
use crate::access::{self, CaseOp, Op};
use crate::model::{AgentRecord, ApproverRecord, Case, CaseStatus, Principal, ReviewDecision, ReviewStatus};
use crate::store::{RecordKind, ReviewCursor, ReviewFilter};
use crate::{Error, Result};

/// `POST /v1/reviews/{id}/decisions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"decision": "approve", "comment": "Budget line IT-7 confirmed"})))]
pub struct DecisionInput {
    /// `approve` or `reject`.
    pub decision: String,
    /// Required to reject.
    #[serde(default)]
    pub comment: String,
}

/// What deciding found, before it is answered (after the commit).
enum Decided {
    /// The decision was recorded.
    Recorded { case_id: String },
    /// The deadline had passed: the expiry was recorded instead, and the approver is told.
    Expired,
}

/// `GET /v1/reviews`: which reviews, and where the page starts (every member as given in
/// the query; the engine checks them and names the one at fault).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewListQuery {
    /// `pending` (the default), `approved`, `rejected`, `expired` or `all`.
    pub status: Option<String>,
    pub agent: Option<String>,
    pub counterparty: Option<String>,
    pub action: Option<String>,
    /// Only pending reviews that still miss this role.
    pub role: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Reviews per page, 1..=500 (default 100).
    pub limit: Option<u32>,
}

/// Largest page of `GET /v1/reviews`.
pub const MAX_REVIEW_PAGE: u32 = 500;

/// The sort key of a listed case (see [`ReviewCursor`]).
fn cursor_of(case: &Case) -> ReviewCursor {
    ReviewCursor {
        deadline_ms: case.review.as_ref().map_or(0, |r| r.deadline_ms),
        created_at_ms: case.created_at_ms,
        id: case.id.clone(),
    }
}

/// The opaque `next_cursor` of a page that ended at `last`, in the order of `filter`.
fn encode_cursor(filter: &ReviewFilter, last: &ReviewCursor) -> String {
    let text = if filter.by_deadline() {
        format!("d.{}.{}.{}", last.deadline_ms, last.created_at_ms, last.id)
    } else {
        format!("n.{}.{}", last.created_at_ms, last.id)
    };
    agentsigna_verify::b64::url_encode(text)
}

/// Reads a cursor made by [`encode_cursor`] for a listing in the order of `filter`.
fn decode_cursor(filter: &ReviewFilter, cursor: &str) -> Result<ReviewCursor> {
    let bad = |why: &str| Error::invalid("cursor", format!("cursor {why}; pass the next_cursor of the previous page"));
    let text = agentsigna_verify::b64::url_decode(cursor)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| bad("is not one this server made"))?;
    let number = |v: Option<&str>| v.and_then(|v| v.parse::<i64>().ok());
    let (deadline_ms, rest) = match (filter.by_deadline(), text.split_once('.')) {
        (true, Some(("d", rest))) => {
            let (d, rest) = rest.split_once('.').ok_or_else(|| bad("is not one this server made"))?;
            (number(Some(d)).ok_or_else(|| bad("is not one this server made"))?, rest)
        }
        (false, Some(("n", rest))) => (0, rest),
        (_, Some(("d" | "n", _))) => return Err(bad("belongs to a listing of another status")),
        _ => return Err(bad("is not one this server made")),
    };
    let (created, id) = rest.split_once('.').ok_or_else(|| bad("is not one this server made"))?;
    let created_at_ms = number(Some(created)).ok_or_else(|| bad("is not one this server made"))?;
    if id.is_empty() {
        return Err(bad("is not one this server made"));
    }
    Ok(ReviewCursor { deadline_ms, created_at_ms, id: id.to_owned() })
}

/// A filter value of the query: trimmed, empty as absent, bounded.
fn filter_value(field: &str, v: Option<String>) -> Result<Option<String>> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.len() > 256 => Err(Error::invalid(field, format!("{field} must be at most 256 bytes"))),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

impl Engine {
    /// `GET /v1/reviews`: one page of reviews (pending ones by deadline, the others newest
    /// first), with how many match in all and the cursor of the next page (`null` on the
    /// last one).
    pub async fn list_reviews(&self, by: &Principal, q: ReviewListQuery) -> Result<ReviewList> {
        access::check(by, Op::ReadReviews)?;
        let status = filter_value("status", q.status)?.unwrap_or_else(|| "pending".to_owned());
        let limit = q.limit.unwrap_or(100);
        if !(1..=MAX_REVIEW_PAGE).contains(&limit) {
            return Err(Error::invalid("limit", format!("limit must be 1 to {MAX_REVIEW_PAGE} (got {limit})")));
        }
        let mut filter = ReviewFilter {
            status: if status == "all" { None } else { Some(status) },
            agent: filter_value("agent", q.agent)?,
            counterparty: filter_value("counterparty", q.counterparty)?,
            action: filter_value("action", q.action)?,
            roles: filter_value("role", q.role)?.map(|r| vec![r]),
            // One more than asked: whether a next page exists.
            limit: limit + 1,
            ..Default::default()
        };
        if let Some(c) = filter_value("cursor", q.cursor)? {
            filter.after = Some(decode_cursor(&filter, &c)?);
        }
        let order = filter.clone();
        let (page, keys) = self.queue_page(by, filter).await?;
        let mut reviews = page.reviews;
        let mut next_cursor = None;
        if reviews.len() > limit as usize {
            reviews.truncate(limit as usize);
            next_cursor = keys.get(limit as usize - 1).map(|last| encode_cursor(&order, last));
        }
        Ok(ReviewList { reviews, total: page.total, next_cursor })
    }

    /// The roles the signed-in approver holds (none for anyone else): what the queue's
    /// "a role I can cover" filter looks for.
    pub async fn approver_roles(&self, by: &Principal) -> Result<Vec<String>> {
        let Principal::Approver(id) = by.clone() else { return Ok(Vec::new()) };
        self.read(move |_, snap| {
            let a: Option<ApproverRecord> = super::data::get(snap, RecordKind::Approver, &id)?;
            Ok(a.map(|a| a.roles).unwrap_or_default())
        })
        .await
    }

    /// One page of reviews, queried by review (every case with a review, not only the
    /// recent ones), with how many match in all and who is asking (`viewer`: the
    /// approver's id, name and roles, so that pages can tell which reviews they may
    /// decide). Each summary also carries the agent's `owner` and who `decided_by`.
    pub async fn review_queue(&self, by: &Principal, filter: ReviewFilter) -> Result<ReviewQueue> {
        Ok(self.queue_page(by, filter).await?.0)
    }

    /// [`Engine::review_queue`], with the sort key of every review of the page (cursors).
    async fn queue_page(&self, by: &Principal, filter: ReviewFilter) -> Result<(ReviewQueue, Vec<ReviewCursor>)> {
        access::check(by, Op::ReadReviews)?;
        if let Some(s) = &filter.status {
            if !matches!(s.as_str(), "pending" | "approved" | "rejected" | "expired") {
                return Err(Error::invalid(
                    "status",
                    format!("status must be pending, approved, rejected, expired or all (got {s:?})"),
                ));
            }
        }
        let by = by.clone();
        self.read(move |ctx, snap| {
            let (total, listed) = snap.list_reviews(&filter)?;
            let mut owners = std::collections::HashMap::new();
            let mut reviews = Vec::new();
            let mut keys = Vec::new();
            for case in super::data::cases(listed)? {
                if let Some(summary) = views::review_summary(ctx, snap, &case, &mut owners)? {
                    reviews.push(summary);
                    keys.push(cursor_of(&case));
                }
            }
            Ok((ReviewQueue { total, reviews, viewer: views::viewer(snap, &by)? }, keys))
        })
        .await
    }

    /// One review with everything an approver needs to decide.
    pub async fn get_review(&self, by: &Principal, review_id: &str) -> Result<ReviewView> {
        access::check(by, Op::ReadReviews)?;
        let by = by.clone();
        let review_id = review_id.to_owned();
        self.read(move |ctx, snap| {
            let stored = snap
                .case_by_review(&review_id)?
                .ok_or_else(|| Error::NotFound(format!("review {review_id} does not exist")))?;
            let case = super::stored::case(stored)?;
            views::review_view(ctx, snap, &case, &by)
        })
        .await
    }

    /// An approver's decision. Exactly one outcome under concurrency: decisions on one
    /// review are serialized by the case's version (and queue on its lock in-process).
    pub async fn decide_review(&self, by: &Principal, review_id: &str, input: DecisionInput) -> Result<ReviewView> {
        access::check(by, Op::DecideReview)?;
        let Principal::Approver(approver_id) = by.clone() else {
            return Err(Error::Forbidden("only approvers decide reviews".into()));
        };
        let decision = match input.decision.as_str() {
            "approve" | "reject" => input.decision.clone(),
            other => {
                return Err(Error::invalid(
                    "decision",
                    format!("decision must be \"approve\" or \"reject\" (got {other:?})"),
                ))
            }
        };
        let comment = input.comment.trim().to_owned();
        if decision == "reject" && comment.is_empty() {
            return Err(Error::invalid("comment", "a comment is required to reject"));
        }
        if comment.chars().count() > 2000 {
            return Err(Error::invalid("comment", "comment must be at most 2000 characters"));
        }
        crate::text::check_free("comment", &comment)?;
        let by2 = by.clone();
        let rid = review_id.to_owned();
        let lock = format!("review:{review_id}");
        let decided = self
            .transact(&[&lock], move |ctx, d| decide_on(ctx, d, &by2, &approver_id, &rid, &decision, &comment))
            .await?;
        match decided {
            Decided::Expired => Err(Error::Conflict(format!("review {review_id} expired at its deadline"))),
            Decided::Recorded { case_id } => {
                let by = by.clone();
                self.read(move |ctx, snap| {
                    let case = read_case(snap, &case_id)?;
                    views::review_view(ctx, snap, &case, &by)
                })
                .await
            }
        }
    }
}

/// One decision on a draft.
fn decide_on(
    ctx: &Ctx,
    d: &mut Draft<'_>,
    by: &Principal,
    approver_id: &str,
    review_id: &str,
    decision: &str,
    comment: &str,
) -> Result<Decided> {
    let mut case =
        d.case_by_review(review_id)?.ok_or_else(|| Error::NotFound(format!("review {review_id} does not exist")))?;
    access::case(by, &case, CaseOp::Read)?;
    // A deadline that passed wins over a late decision: the expiry is committed, then the
    // approver is told.
    if process_due_case(ctx, d, &mut case)? {
        d.save_case(&case)?;
        return Ok(Decided::Expired);
    }
    let approver: ApproverRecord = d
        .get(RecordKind::Approver, approver_id)?
        .ok_or_else(|| Error::Unauthenticated(format!("approver {approver_id} no longer exists")))?;
    if approver.revoked_at_ms.is_some() {
        // Also reached by a web session opened before the revocation.
        return Err(Error::Unauthenticated(format!("the token of approver {approver_id} was revoked")));
    }
    let agent: AgentRecord = d
        .get(RecordKind::Agent, &case.agent)?
        .ok_or_else(|| Error::data(format!("agent {} is missing", case.agent)))?;
    let review = case.review.as_ref().ok_or_else(|| Error::NotFound(format!("review {review_id} does not exist")))?;
    if review.status != ReviewStatus::Pending {
        return Err(Error::Conflict(format!("review {review_id} is already {}", review.status.as_str())));
    }
    access::decide_for(&approver.id, &agent.id, &agent.owner)?;
    if review.decisions.iter().any(|x| x.approver == approver.id) {
        return Err(Error::Conflict(format!("{} has already decided on review {review_id}", approver.id)));
    }
    // Approvals of approvers revoked meanwhile stop counting before this one is added
    // (a pending review has no quorum to lose: nothing to reject here).
    withdraw_revoked_approvals(ctx, d, &mut case)?;
    let now = ctx.now();
    let record = ReviewDecision {
        approver: approver.id.clone(),
        roles: approver.roles.clone(),
        decision: decision.to_owned(),
        comment: comment.to_owned(),
        at_ms: now,
        withdrawn: None,
    };
    let (review_status, case_status) = {
        let review = case.review.as_mut().ok_or_else(|| Error::data("review vanished"))?;
        review.decisions.push(record);
        if decision == "reject" {
            review.status = ReviewStatus::Rejected;
            review.closed_at_ms = Some(now);
        } else if review.satisfied() {
            review.status = ReviewStatus::Approved;
            review.closed_at_ms = Some(now);
        }
        let cs = match review.status {
            ReviewStatus::Approved => CaseStatus::Authorized,
            ReviewStatus::Rejected => CaseStatus::Rejected,
            _ => CaseStatus::PendingReview,
        };
        (review.status, cs)
    };
    let (approvals, missing, required) = {
        let r = case.review.as_ref().ok_or_else(|| Error::data("review vanished"))?;
        (r.approvals().count(), r.roles_missing(), r.approvals_required)
    };
    case_event(
        d,
        &mut case,
        "review.decided",
        now,
        &by.actor(),
        json!({
            "review": review_id, "approver": approver.id, "roles": approver.roles,
            "decision": decision, "comment": comment, "review_status": review_status.as_str(),
            "approvals": approvals, "approvals_required": required, "roles_missing": missing,
        }),
    )?;
    case.status = case_status;
    // What changed under the pending case (suspension, a blocked counterparty, a new reject
    // rule) may forbid authorizing it: checked at every approval.
    if decision == "approve" {
        if let Some(eval) = recheck(ctx, d, &case)? {
            reject_on_recheck(ctx, d, &mut case, &eval, "review")?;
            d.save_case(&case)?;
            return Ok(Decided::Recorded { case_id: case.id });
        }
    }
    if case_status == CaseStatus::Authorized {
        case.pickup_deadline_ms = Some(now + ctx.config.pickup_window_secs * 1000);
    }
    if review_status != ReviewStatus::Pending {
        let event = format!("review.{}", review_status.as_str());
        queue_notification(d, &case, Some(&agent.owner), &event, now)?;
    }
    d.save_case(&case)?;
    Ok(Decided::Recorded { case_id: case.id })
}

/// Withdraws the approvals whose approver's token was revoked since (each recorded as
/// `review.approval_withdrawn`, with the reason): a revoked approver's approval no longer
/// counts towards a quorum that has not yet produced a passport. Returns the rejection
/// to apply when an approved review lost its quorum by that (`approver-revoked`).
pub(crate) fn withdraw_revoked_approvals(
    ctx: &Ctx,
    d: &mut Draft<'_>,
    case: &mut Case,
) -> Result<Option<crate::policy::Evaluation>> {
    let Some(review) = case.review.as_ref() else { return Ok(None) };
    let candidates: Vec<String> = review.approvals().map(|a| a.approver.clone()).collect();
    let review_id = review.id.clone();
    let mut withdrawn = Vec::new();
    for id in candidates {
        let approver: Option<ApproverRecord> = d.get(RecordKind::Approver, &id)?;
        if approver.is_some_and(|a| a.revoked_at_ms.is_none()) {
            continue;
        }
        let reason = format!("the token of approver {id} was revoked before the passport was issued");
        if let Some(r) = case.review.as_mut() {
            for x in r.decisions.iter_mut().filter(|x| x.approver == id && x.decision == "approve") {
                x.withdrawn = Some(reason.clone());
            }
        }
        let now = ctx.now();
        case_event(
            d,
            case,
            "review.approval_withdrawn",
            now,
            "server",
            json!({"review": review_id, "approver": id, "reason": reason}),
        )?;
        withdrawn.push(id);
    }
    let Some(review) = case.review.as_ref() else { return Ok(None) };
    if withdrawn.is_empty() || review.status != ReviewStatus::Approved || review.satisfied() {
        return Ok(None);
    }
    Ok(Some(super::verdict::reject_with(
        Some("approver-revoked"),
        &format!(
            "the review lost its quorum: the approval of {} no longer counts (token revoked); {} of {} approvals remain",
            withdrawn.join(", "),
            review.approvals().count(),
            review.approvals_required
        ),
    )))
}
