//! Records of the domain, as stored (JSON) by every backend.

use serde::{Deserialize, Serialize};

use crate::money::Amount;
use crate::policy::{Reason, Verdict};
use crate::trust::Outcome;
use agentsigna_verify::jwk::Jwk;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "lowercase")]
pub enum Principal {
    /// The bootstrap administrator.
    Admin,
    /// A software agent.
    Agent(String),
    /// A human approver.
    Approver(String),
    /// A target (business) system.
    System(String),
}

impl Principal {
    /// The ledger `actor` string: `agent:<id>`, `approver:<id>`, `system:<id>`, `admin`.
    pub fn actor(&self) -> String {
        match self {
            Principal::Admin => "admin".to_owned(),
            Principal::Agent(id) => format!("agent:{id}"),
            Principal::Approver(id) => format!("approver:{id}"),
            Principal::System(id) => format!("system:{id}"),
        }
    }
}

/// The kinds of principal that hold a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// Bootstrap admin token.
    Admin,
    /// Agent API key.
    Agent,
    /// Approver token.
    Approver,
    /// Target system token.
    System,
}

impl CredentialKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Admin => "admin",
            CredentialKind::Agent => "agent",
            CredentialKind::Approver => "approver",
            CredentialKind::System => "system",
        }
    }
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: String,
    /// The accountable human.
    pub owner: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Ed25519 public key for holder binding.
    #[serde(default)]
    pub public_jwk: Option<Jwk>,
    #[serde(default)]
    pub suspended: bool,
    pub created_at_ms: i64,
    /// When the administrator revoked its API key: it no longer authenticates, and its
    /// pending cases are rejected at their next approval or passport pickup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<i64>,
}

/// A registered approver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproverRecord {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub created_at_ms: i64,
    /// When the administrator revoked its token: it no longer authenticates (nor do its
    /// web sessions), and its approvals stop counting towards any quorum not yet used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<i64>,
}

/// A registered target system (the audience of passports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemRecord {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub created_at_ms: i64,
}

/// Risk class of a counterparty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
    Blocked,
}

impl Risk {
    /// The wire name, as the policy sees it.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Blocked => "blocked",
        }
    }
}

/// A counterparty (vendor, payee, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterpartyRecord {
    pub id: String,
    pub name: String,
    pub risk: Risk,
    pub updated_at_ms: i64,
}

/// A declared action type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    #[serde(rename = "type")]
    pub action_type: String,
    pub description: String,
}

/// One immutable policy version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub version: u64,
    pub digest: String,
    pub source: String,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// Policy version and digest, recorded by every verdict, review and passport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyRef {
    pub version: u64,
    pub digest: String,
}

/// Status of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Escalated, waiting for approvers.
    PendingReview,
    /// Authorized (directly or approved): its passport is issued or waiting for pickup.
    Authorized,
    /// Rejected by the policy, an approver, or an expired review.
    Rejected,
    /// The passport (or its pickup window) expired unused.
    Expired,
    /// The action was reported as carried out.
    Executed,
    /// An outcome closed the case.
    Closed,
}

impl CaseStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::PendingReview => "pending_review",
            CaseStatus::Authorized => "authorized",
            CaseStatus::Rejected => "rejected",
            CaseStatus::Expired => "expired",
            CaseStatus::Executed => "executed",
            CaseStatus::Closed => "closed",
        }
    }

    /// Every status, in the order of the loop.
    pub const ALL: [CaseStatus; 6] = [
        CaseStatus::PendingReview,
        CaseStatus::Authorized,
        CaseStatus::Rejected,
        CaseStatus::Expired,
        CaseStatus::Executed,
        CaseStatus::Closed,
    ];

    /// The status of a wire name.
    pub fn parse(s: &str) -> Option<CaseStatus> {
        CaseStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// What the agent asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRequest {
    pub action: String,
    pub counterparty: String,
    pub amount: Option<Amount>,
    pub audience: String,
    pub description: String,
    pub context: serde_json::Value,
    pub idempotency_key: Option<String>,
}

/// The counterparty as the policy saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterpartySnapshot {
    pub id: String,
    pub name: String,
    pub risk: Risk,
}

/// Trust scores at decision time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrustSnapshot {
    pub agent: i64,
    pub counterparty: i64,
}

/// The policy verdict and everything it was based on (enough to replay it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    pub policy: Option<PolicyRef>,
    pub trust: TrustSnapshot,
    pub counterparty: CounterpartySnapshot,
    pub amount_minor: i64,
    pub currency: String,
    pub decided_at_ms: i64,
    pub ttl_secs: Option<i64>,
}

/// State of a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReviewStatus {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl ReviewStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Rejected => "rejected",
            ReviewStatus::Expired => "expired",
        }
    }
}

/// An approver's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewDecision {
    pub approver: String,
    pub roles: Vec<String>,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: String,
    pub at_ms: i64,
    /// Why this approval no longer counts (its approver's credential was revoked before
    /// the passport was issued), when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
}

/// Human review of an escalated case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub id: String,
    pub status: ReviewStatus,
    pub approvals_required: u32,
    pub roles_required: Vec<String>,
    pub deadline_ms: i64,
    pub opened_at_ms: i64,
    pub decisions: Vec<ReviewDecision>,
    pub closed_at_ms: Option<i64>,
}

impl Review {
    /// Approvals so far that still count (not withdrawn).
    pub fn approvals(&self) -> impl Iterator<Item = &ReviewDecision> {
        self.decisions.iter().filter(|d| d.decision == "approve" && d.withdrawn.is_none())
    }

    /// Required roles not yet covered by an approval.
    pub fn roles_missing(&self) -> Vec<String> {
        self.roles_required.iter().filter(|r| !self.approvals().any(|d| d.roles.contains(r))).cloned().collect()
    }

    /// Whether the quorum and the roles are covered.
    pub fn satisfied(&self) -> bool {
        self.approvals().count() >= self.approvals_required as usize && self.roles_missing().is_empty()
    }
}

/// The passport issued for a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassportRecord {
    pub id: String,
    pub token: String,
    pub kid: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
}

/// A report that the action was carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    pub passport_id: String,
    pub reference: Option<String>,
    pub actor: String,
    pub at_ms: i64,
}

/// A reported outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub outcome: Outcome,
    pub detail: Option<String>,
    pub actor: String,
    pub at_ms: i64,
}

/// A case: one request of one agent, through its whole loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub id: String,
    pub agent: String,
    pub status: CaseStatus,
    pub created_at_ms: i64,
    pub request: CaseRequest,
    /// SHA-256 of the canonical request, to answer idempotent retries.
    pub request_hash: String,
    pub decision: DecisionRecord,
    pub review: Option<Review>,
    /// When an approved case's passport must be picked up by.
    pub pickup_deadline_ms: Option<i64>,
    pub passport: Option<PassportRecord>,
    pub executions: Vec<ExecutionRecord>,
    pub outcomes: Vec<OutcomeRecord>,
    /// What the case counts as for the agent's trust (worst outcome) and since when.
    pub agent_counted: Option<(Outcome, i64)>,
    /// What the case counts as for the counterparty's trust and since when.
    pub counterparty_counted: Option<(Outcome, i64)>,
    /// `seq` and digest of the case's latest ledger entry (its chain head).
    pub head: Option<(u64, String)>,
}

impl Case {
    /// The instant the case next needs the server's attention (review deadline, pickup
    /// window, passport expiry), if any.
    pub fn due_ms(&self) -> Option<i64> {
        match self.status {
            CaseStatus::PendingReview => self.review.as_ref().map(|r| r.deadline_ms),
            CaseStatus::Authorized => match &self.passport {
                Some(p) => Some(p.expires_at_ms),
                None => self.pickup_deadline_ms,
            },
            _ => None,
        }
    }
}
