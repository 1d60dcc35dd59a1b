//! The engine's data access: typed records, cases and trust standings read from a
//! snapshot or a draft, the policy environment, and the ledger events a draft appends.
//! Every other engine module reads and records through here.

use super::draft::Draft;
use super::stored;
use crate::model::{Case, Principal};
use crate::policy::PolicyEnv;
use crate::store::{RecordKind, Snapshot, StoredCase};
use crate::trust::TrustState;
use crate::{Error, Result};

/// A typed record of a snapshot.
pub(crate) fn get<T: serde::de::DeserializeOwned>(
    snap: &mut dyn Snapshot,
    kind: RecordKind,
    id: &str,
) -> Result<Option<T>> {
    match snap.record(kind, id)? {
        Some(v) => Ok(Some(serde_json::from_str(&v.body)?)),
        None => Ok(None),
    }
}

/// Typed records of a kind.
pub(crate) fn list<T: serde::de::DeserializeOwned>(snap: &mut dyn Snapshot, kind: RecordKind) -> Result<Vec<T>> {
    snap.records(kind)?.iter().map(|b| Ok(serde_json::from_str(b)?)).collect()
}

/// The environment policies are validated against: declared actions and approver roles.
pub(crate) fn policy_env(snap: &mut dyn Snapshot) -> Result<PolicyEnv> {
    let actions: Vec<crate::model::ActionRecord> = list(snap, RecordKind::Action)?;
    let approvers: Vec<crate::model::ApproverRecord> = list(snap, RecordKind::Approver)?;
    let mut roles: Vec<String> = approvers.into_iter().flat_map(|a| a.roles).collect();
    if let Some(declared) = snap.record(RecordKind::Setting, "roles")? {
        let declared: Vec<String> = serde_json::from_str(&declared.body)?;
        roles.extend(declared);
    }
    roles.sort();
    roles.dedup();
    Ok(PolicyEnv { actions: actions.into_iter().map(|a| a.action_type).collect(), roles })
}

/// Loads a case from a snapshot.
pub(crate) fn read_case(snap: &mut dyn Snapshot, id: &str) -> Result<Case> {
    match snap.case(id)? {
        Some(stored) => stored::case(stored),
        None => Err(Error::NotFound(format!("case {id} does not exist"))),
    }
}

/// The cases a snapshot listed.
pub(crate) fn cases(listed: Vec<StoredCase>) -> Result<Vec<Case>> {
    listed.into_iter().map(stored::case).collect()
}

/// Appends an organization event.
pub(crate) fn org_event(
    d: &mut Draft<'_>,
    kind: &str,
    at_ms: i64,
    actor: &Principal,
    data: serde_json::Value,
) -> Result<()> {
    d.append(None, kind, at_ms, &actor.actor(), data)?;
    Ok(())
}

/// Appends an event to a case's chain and moves its head.
pub(crate) fn case_event(
    d: &mut Draft<'_>,
    case: &mut Case,
    kind: &str,
    at_ms: i64,
    actor: &str,
    data: serde_json::Value,
) -> Result<()> {
    let head = d.append(Some(&case.id), kind, at_ms, actor, data)?;
    case.head = Some((head.seq, agentsigna_verify::ledger::hex_lower(&head.digest)));
    Ok(())
}

/// A trust standing as of the snapshot (for views).
pub(crate) fn trust_state(snap: &mut dyn Snapshot, kind: RecordKind, id: &str) -> Result<TrustState> {
    Ok(get(snap, kind, id)?.unwrap_or_default())
}

/// A trust standing a decision relies on (recorded as a precondition).
pub(crate) fn trust_of(d: &mut Draft<'_>, kind: RecordKind, id: &str) -> Result<TrustState> {
    Ok(d.get(kind, id)?.unwrap_or_default())
}
