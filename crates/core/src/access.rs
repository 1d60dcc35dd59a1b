//! Who may do what: the one access rule of every operation of the API and the web pages.
//!
//! The engine asks here before it reads or changes anything on a principal's behalf; the
//! HTTP layer and the pages hold no rule of their own (they authenticate and map the
//! error). Two kinds of question:
//!
//! - [`check`]: may this principal perform this [`Op`] at all (admin operations, policy
//!   sources, reviews, the ledger, another agent's record)? A refusal is 403.
//! - [`case`]: what may this principal do with this case? Whoever may not read a case
//!   gets 404, not 403, so that case ids do not leak (an existence oracle otherwise).
//!
//! The route × principal matrix test (`crates/server/tests/it/matrix.rs`) checks these
//! rules from outside, through every route.

use crate::model::{Case, Principal};
use crate::trust::Outcome;
use crate::{Error, Result};

/// An operation that does not depend on a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    /// Registering principals, counterparties and action types; uploading, activating
    /// and shadowing policies; suspending, resuming and revoking.
    Administer,
    /// Policy versions, their sources, their rules' sources and the shadow divergences
    /// (rule sources show thresholds: not for agents or target systems).
    ReadPolicies,
    /// An agent's record (an agent reads only its own).
    ReadAgent(&'a str),
    /// A counterparty's record and standing.
    ReadCounterparty,
    /// The review queue and a review with its full context.
    ReadReviews,
    /// Deciding a review (approvers only; the admin reads but does not decide).
    DecideReview,
    /// Ledger entries and proofs (the checkpoint and ledger key are public).
    ReadLedger,
    /// Asking for authority (`POST /v1/requests`): agents only.
    SubmitRequest,
    /// Signing in to the web pages: approvers and the admin.
    SignIn,
    /// The declared action types (every principal: `mcp-gate` checks its tools file).
    ReadActions,
    /// `GET /metrics` on the API port (the admin; `--metrics-listen` serves them apart).
    ReadMetrics,
}

/// Whether `by` may perform `op`; 403 with the rule otherwise.
pub fn check(by: &Principal, op: Op<'_>) -> Result<()> {
    let staff = matches!(by, Principal::Admin | Principal::Approver(_));
    let (ok, rule) = match op {
        Op::Administer => (matches!(by, Principal::Admin), "this operation needs the admin credential"),
        Op::ReadPolicies => (staff, "only approvers and the admin read policies and their rules"),
        Op::ReadAgent(id) => {
            (staff || matches!(by, Principal::Agent(a) if a == id), "agents read only their own record")
        }
        Op::ReadCounterparty => (staff, "only approvers and the admin read counterparties"),
        Op::ReadReviews => (staff, "only approvers and the admin see reviews"),
        Op::DecideReview => (matches!(by, Principal::Approver(_)), "only approvers decide reviews"),
        Op::ReadLedger => (staff, "only approvers and the admin read the ledger"),
        Op::SubmitRequest => (matches!(by, Principal::Agent(_)), "only agents submit requests"),
        Op::SignIn => (staff, "only approvers (and the admin) sign in to the web pages"),
        Op::ReadActions => (true, ""),
        Op::ReadMetrics => (matches!(by, Principal::Admin), "the metrics need the admin credential"),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Forbidden(rule.into()))
    }
}

/// What a principal does with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseOp {
    /// Reading it (and its evidence, and waiting on it).
    Read,
    /// Reporting that the action was carried out.
    ReportExecution,
    /// Reporting an outcome.
    ReportOutcome(Outcome),
}

/// How an allowed outcome report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The report is evidence for trust (the target system, an approver, the admin).
    Authoritative,
    /// The case's own agent reporting its failure: recorded, and counted as such.
    Agent,
}

/// Who may read a case: its agent, its target system, approvers and the admin; others
/// get 404. Execution: the case's agent, its target system or the admin. Outcomes: its
/// target system, approvers and the admin; its agent only `rejected` or `disputed` (its
/// own success is not evidence).
pub fn case(by: &Principal, case: &Case, op: CaseOp) -> Result<Standing> {
    let readable = match by {
        Principal::Admin | Principal::Approver(_) => true,
        Principal::Agent(a) => *a == case.agent,
        Principal::System(s) => *s == case.request.audience,
    };
    if !readable {
        return Err(Error::NotFound(format!("case {} does not exist", case.id)));
    }
    match op {
        CaseOp::Read => Ok(Standing::Authoritative),
        CaseOp::ReportExecution => match by {
            Principal::Agent(_) | Principal::System(_) | Principal::Admin => Ok(Standing::Authoritative),
            Principal::Approver(_) => {
                Err(Error::Forbidden("only the case's agent, its target system or the admin report execution".into()))
            }
        },
        CaseOp::ReportOutcome(outcome) => match by {
            Principal::Agent(_) if !matches!(outcome, Outcome::Rejected | Outcome::Disputed) => Err(Error::Forbidden(
                "an agent may report only its own failures (rejected, disputed); its success is not evidence".into(),
            )),
            Principal::Agent(_) => Ok(Standing::Agent),
            _ => Ok(Standing::Authoritative),
        },
    }
}

/// Who may read a target system's record: the admin and that system itself; anyone else
/// is told it does not exist (404, no existence oracle).
pub fn system(by: &Principal, id: &str) -> Result<()> {
    match by {
        Principal::Admin => Ok(()),
        Principal::System(own) if own == id => Ok(()),
        _ => Err(Error::NotFound(format!("target system {id} does not exist"))),
    }
}

/// Whether approver `approver` may decide on a request of an agent owned by `owner`:
/// never on their own agent's requests.
pub fn decide_for(approver: &str, agent: &str, owner: &str) -> Result<()> {
    if approver == owner {
        return Err(Error::Forbidden(format!("{approver} owns agent {agent} and may not decide on its requests")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn agents_and_systems_read_no_policy_and_only_approvers_decide() {
        for p in [Principal::Agent("a".into()), Principal::System("erp".into())] {
            assert!(check(&p, Op::ReadPolicies).is_err());
            assert!(check(&p, Op::ReadReviews).is_err());
            assert!(check(&p, Op::ReadLedger).is_err());
        }
        assert!(check(&Principal::Admin, Op::DecideReview).is_err());
        assert!(check(&Principal::Approver("c".into()), Op::DecideReview).is_ok());
        assert!(check(&Principal::Agent("a".into()), Op::ReadAgent("a")).is_ok());
        assert!(check(&Principal::Agent("a".into()), Op::ReadAgent("b")).is_err());
        assert!(decide_for("alice", "bot", "alice").is_err());
    }
}
