//! The webhook outbox: notifications queued by the engine in the transaction of the
//! event they announce, read and retired by the server's notifier.

use serde_json::json;

use super::draft::Draft;
use super::Engine;
use crate::model::Case;
use crate::store::RecordKind;
use crate::Result;
use agentsigna_verify::clock::rfc3339_ms;

impl Engine {
    /// Every queued notification (JSON bodies, oldest first).
    pub async fn outbox_items(&self) -> Result<Vec<String>> {
        self.read(|_, snap| Ok(snap.records(RecordKind::Outbox)?)).await
    }

    /// One queued notification, read from a fresh snapshot (`None`: retired meanwhile).
    pub async fn outbox_item(&self, id: &str) -> Result<Option<String>> {
        let id = id.to_owned();
        self.read(move |_, snap| Ok(snap.record(RecordKind::Outbox, &id)?.map(|v| v.body))).await
    }

    /// Retires delivered (or discarded) notifications.
    pub async fn outbox_remove(&self, ids: Vec<String>) -> Result<()> {
        let keys: Vec<String> = ids.iter().map(|i| format!("outbox:{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.transact(&keys, move |_, d| {
            for id in &ids {
                if d.record(RecordKind::Outbox, id)?.is_some() {
                    d.delete(RecordKind::Outbox, id);
                }
            }
            Ok(())
        })
        .await
    }

    /// Records the delivery state of a notification still queued (another node may have
    /// delivered and retired it meanwhile: then nothing is written).
    pub async fn outbox_update(&self, id: String, body: String) -> Result<()> {
        let key = format!("outbox:{id}");
        self.transact(&[&key], move |_, d| {
            if d.record(RecordKind::Outbox, &id)?.is_some() {
                d.put_raw(RecordKind::Outbox, &id, body.clone());
            }
            Ok(())
        })
        .await
    }
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
