//! Reading cases (one case, the list, the `?wait` state) as principals may see them, and
//! expiry: reviews past their deadline, pickup windows and passports.

use serde_json::json;

use super::data::{case_event, read_case};
use super::draft::Draft;
use super::outbox::queue_notification;
use super::passport::issue_or_refuse_passport;
use super::views::{self, CaseList, CaseView};
use super::{Ctx, Engine};
use crate::access::{self, CaseOp};
use crate::model::{AgentRecord, Case, CaseStatus, Principal, ReviewStatus};
use crate::store::RecordKind;
use crate::{Error, Result};
use agentsigna_verify::clock::rfc3339_ms;

/// How long a node leases the due cases it processes ([`Engine::process_due`]): a lease
/// left by a node that died is retaken by another after this long.
pub const DUE_LEASE_MS: i64 = 60_000;

/// What reading a case for `?wait` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitState {
    pub status: CaseStatus,
    /// When the case next needs the server's attention (a deadline), if ever.
    pub due_ms: Option<i64>,
}

impl Engine {
    /// `GET /v1/cases/{id}`: the case as this principal may see it. An agent fetching
    /// its approved case picks up its passport.
    pub async fn get_case(&self, by: &Principal, id: &str) -> Result<CaseView> {
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
    pub(crate) async fn case_view_of(&self, by: &Principal, id: &str) -> Result<CaseView> {
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

    /// Expires due reviews, pickup windows and passports. Returns how many cases changed.
    pub async fn process_due(&self) -> Result<usize> {
        let due = self.read(|ctx, snap| Ok(snap.due_cases(ctx.now(), 200)?)).await?;
        if due.is_empty() {
            return Ok(0);
        }
        // With several nodes, each due case is processed by the one that leases it (the
        // others skip it); a lease left by a node that died runs out after a minute.
        let now = self.clock.now_ms();
        let keys: Vec<String> = due.iter().map(|id| format!("case:{id}")).collect();
        let leased = self.claim(keys, now, now.saturating_add(DUE_LEASE_MS)).await?;
        let due: Vec<String> = leased.iter().filter_map(|k| k.strip_prefix("case:").map(str::to_owned)).collect();
        let result = self.process_leased(due).await;
        self.release(leased).await?;
        result
    }

    async fn process_leased(&self, due: Vec<String>) -> Result<usize> {
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
    pub async fn list_cases(&self, by: &Principal, status: Option<String>, limit: u32) -> Result<CaseList> {
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
        self.read(move |_, snap| {
            let mut filter = crate::store::CaseFilter { status, limit: limit.clamp(1, 500), ..Default::default() };
            match &by {
                Principal::Agent(a) => filter.agent = Some(a.clone()),
                Principal::System(s) => filter.audience = Some(s.clone()),
                _ => {}
            }
            let mut out = Vec::new();
            for case in super::data::cases(snap.list_cases(&filter)?)? {
                out.push(views::case_summary(&case));
            }
            Ok(CaseList { cases: out })
        })
        .await
    }
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
