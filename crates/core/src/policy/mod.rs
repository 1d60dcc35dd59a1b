//! The policy engine: Cedar policies compiled once per version, evaluated to exactly one
//! verdict per request.
//!
//! # Schema
//!
//! Policies are validated in Cedar's *strict* mode against a schema generated from the
//! product's entity model and the organization's declared action types ([`schema_text`]),
//! in the empty namespace:
//!
//! ```cedarschema
//! entity Agent { owner: String, trust: Long };
//! entity Counterparty { risk: String, trust: Long };
//! action "purchase_order.create" appliesTo {
//!   principal: [Agent], resource: [Counterparty],
//!   context: { amount: Long, currency: String }
//! };
//! ```
//!
//! One `action` declaration per declared action type; the action type string is the
//! `Action` entity id (`Action::"purchase_order.create"`).
//!
//! # Annotations
//!
//! | annotation | on | meaning |
//! | --- | --- | --- |
//! | `@id("rule-name")` | every rule, required, unique | the rule's name in verdicts |
//! | `@verdict("escalate" \| "reject")` | `forbid` only | tier; a `forbid` without it rejects |
//! | `@reason("text")` | any rule | the text shown to people (default: "permitted by rule X", …) |
//! | `@approvals("N")` | escalate rules | distinct approvers required (N ≥ 1, default 1; the largest applies) |
//! | `@approver_role("role")` | escalate rules | a role that must be covered; must be a known role |
//! | `@deadline("PT4H")` | escalate rules | review deadline, ISO 8601 duration (the shortest applies) |
//! | `@ttl("PT10M")` | any rule | passport lifetime, ISO 8601 duration (the shortest applies) |
//!
//! Any other annotation is refused, so that a typo (`@approval("2")`) cannot silently weaken
//! a control. Templates (`?principal`, `?resource`) are refused, and so are rules nested
//! more than 32 brackets deep or with more than 64 operators (Cedar recurses on both and
//! would exhaust a thread's stack).
//!
//! # Semantics
//!
//! [`CompiledPolicy::evaluate`] returns exactly one [`Verdict`]:
//!
//! 1. any evaluation error in any applicable rule → `rejected`, naming every erroring rule
//!    (fail closed; Cedar itself would skip an erroring `forbid`);
//! 2. a satisfied reject-tier `forbid` → `rejected`, naming those rules;
//! 3. satisfied escalate-tier `forbid`s only, and at least one satisfied `permit` →
//!    `escalated`, naming the escalate rules; approvals = the largest `@approvals`
//!    (default 1), roles = the union of `@approver_role`, deadline = the shortest `@deadline`;
//! 4. a satisfied `permit` and no satisfied `forbid` → `authorized`, naming the permits;
//! 5. otherwise → `rejected` with `{rule: null, verdict: reject, reason: "no rule permits this action"}`.
//!
//! `ttl_secs` is the shortest `@ttl` among the rules in `reasons`; for an escalation the
//! satisfied permits count too, because they are what makes the approved request allowable.
//!
//! # Performance
//!
//! Everything is prepared at compile time, once per policy version:
//!
//! * the rules are sliced per declared action (a rule whose action scope names actions
//!   only goes into those actions' slices; unconstrained rules go into every slice);
//! * every slice is also kept as a Cedar policy set in which each `forbid` is turned into
//!   a `permit` with the same condition: one Cedar call then returns *every* satisfied rule
//!   and every error, and the verdict is computed here (this replaces a second, permit-only
//!   evaluation for the escalation check);
//! * each rule's condition is translated into a small typed expression tree over the nine
//!   request facts (the *fast path*). Cedar's interpreter costs about a microsecond per
//!   rule, which cannot reach 100,000 evaluations/s over ~100 rules per slice; the tree
//!   evaluates a rule in tens of nanoseconds. Rules that use anything outside the
//!   translated subset are evaluated by Cedar (the *slow path*, with two entities built
//!   directly from [`RestrictedExpression`]s, no schema-based parsing). Whenever the fast
//!   path meets an evaluation error (integer overflow) the whole slice is re-evaluated by
//!   Cedar, so error messages are Cedar's own.
//!
//! [`CompiledPolicy::evaluate_reference`] evaluates with Cedar only; the tests check that
//! both paths agree, and that both agree with plain Cedar authorization on the unsliced set.
//!
//! # Policy test suites
//!
//! [`run_suite`] runs the test cases of a TOML file; see [`run_suite_with`] for the
//! format.
//!
//! # Layout
//!
//! One job per file: `schema` (the generated Cedar schema), `annotations` (a rule's, checked and
//! turned into a [`Rule`]), `complexity` (stack-safety limits), `compile`
//! ([`CompiledPolicy::compile`]: validation, slices), `evaluate` (the one verdict),
//! `fast/` (the expression tree and, in `fast/translate`, its translator from Cedar's
//! syntax tree), `suite` (TOML test suites), `error` ([`PolicyError`] and Cedar's
//! diagnostics). Accept/refuse cases are fixtures in `crates/core/testdata/policy/`, read
//! by the `check` helper of `testing`.
//!
//! [`RestrictedExpression`]: cedar_policy::RestrictedExpression

mod annotations;
mod compile;
mod complexity;
mod error;
mod evaluate;
mod fast;
mod schema;
mod suite;
#[cfg(test)]
mod testing;

use serde::{Deserialize, Serialize};

pub use annotations::parse_iso_duration;
pub use compile::CompiledPolicy;
pub use error::PolicyError;
pub use schema::schema_text;
pub use suite::{run_suite, run_suite_with, CaseReport, Mismatch, SuiteOptions, SuiteReport};

/// Entity type of the principal.
const AGENT_TYPE: &str = "Agent";
/// Entity type of the resource.
const COUNTERPARTY_TYPE: &str = "Counterparty";
/// Entity type of actions (Cedar's convention).
const ACTION_TYPE: &str = "Action";
/// Reason text of the default deny (part of the external contract).
pub const DEFAULT_DENY_REASON: &str = "no rule permits this action";

/// What a policy is validated against: the organization's declared action types and the
/// approver roles that exist.
#[derive(Debug, Clone, Default)]
pub struct PolicyEnv {
    /// Declared action types (`purchase_order.create`, …); each becomes `Action::"<type>"`.
    pub actions: Vec<String>,
    /// Known approver roles; `@approver_role` must name one of them.
    pub roles: Vec<String>,
}

/// The verdict of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Allowed at once.
    Authorized,
    /// Needs human review.
    Escalated,
    /// Refused.
    Rejected,
}

impl Verdict {
    /// The wire name (`authorized`, `escalated`, `rejected`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Authorized => "authorized",
            Verdict::Escalated => "escalated",
            Verdict::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one rule contributes to a verdict (its tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleVerdict {
    /// A satisfied `permit`.
    Authorize,
    /// A satisfied `@verdict("escalate")` forbid.
    Escalate,
    /// A satisfied reject-tier forbid, an erroring rule, or the default deny.
    Reject,
}

impl RuleVerdict {
    /// The wire name (`authorize`, `escalate`, `reject`).
    pub fn as_str(self) -> &'static str {
        match self {
            RuleVerdict::Authorize => "authorize",
            RuleVerdict::Escalate => "escalate",
            RuleVerdict::Reject => "reject",
        }
    }
}

/// One rule (or the default deny) that produced a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reason {
    /// The rule's `@id`; `None` for the default deny and undeclared actions.
    pub rule: Option<String>,
    /// What the rule contributed.
    pub verdict: RuleVerdict,
    /// Text for people: the rule's `@reason` or a default.
    pub reason: String,
}

/// The facts a verdict is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInput<'a> {
    /// `Agent` entity id.
    pub agent_id: &'a str,
    /// `principal.owner`.
    pub agent_owner: &'a str,
    /// `principal.trust` (0–100).
    pub agent_trust: i64,
    /// The action type (`Action` entity id).
    pub action: &'a str,
    /// `Counterparty` entity id.
    pub counterparty_id: &'a str,
    /// `resource.risk` (`low|medium|high|blocked`).
    pub counterparty_risk: &'a str,
    /// `resource.trust` (0–100).
    pub counterparty_trust: i64,
    /// `context.amount`, integer minor units (0 when the request has none).
    pub amount_minor: i64,
    /// `context.currency`.
    pub currency: &'a str,
}

/// The result of evaluating one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Exactly one verdict.
    pub verdict: Verdict,
    /// The rules that produced it (source order).
    pub reasons: Vec<Reason>,
    /// Distinct approvers required (escalated only; else 0).
    pub approvals_required: u32,
    /// Roles that must be covered (escalated only; sorted, deduplicated).
    pub roles_required: Vec<String>,
    /// Shortest `@deadline` of the escalating rules; `None` → the caller's default.
    pub deadline_secs: Option<i64>,
    /// Shortest `@ttl` of the deciding rules; `None` → the caller's default.
    pub ttl_secs: Option<i64>,
}

impl Evaluation {
    /// A rejection with one reason that names no rule.
    fn rejected_plain(reason: String) -> Self {
        Evaluation {
            verdict: Verdict::Rejected,
            reasons: vec![Reason { rule: None, verdict: RuleVerdict::Reject, reason }],
            approvals_required: 0,
            roles_required: Vec::new(),
            deadline_secs: None,
            ttl_secs: None,
        }
    }

    /// The ids of the rules in `reasons`, in order.
    pub fn rule_ids(&self) -> Vec<&str> {
        self.reasons.iter().filter_map(|r| r.rule.as_deref()).collect()
    }
}

/// One rule of a compiled policy, as declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rule {
    /// `@id`.
    pub id: String,
    /// `permit` or `forbid`.
    pub effect: String,
    /// `authorize` for permits, `escalate` or `reject` for forbids.
    pub tier: RuleVerdict,
    /// `@reason`, when given.
    pub reason: Option<String>,
    /// The rule's own source text (annotations included).
    pub source: String,
    /// `@approvals`.
    pub approvals: Option<u32>,
    /// `@approver_role`.
    pub approver_role: Option<String>,
    /// `@deadline`, in seconds.
    pub deadline_secs: Option<i64>,
    /// `@ttl`, in seconds.
    pub ttl_secs: Option<i64>,
}

/// Statistics about how a compiled policy will be evaluated (for `policy check` and benches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyStats {
    /// Rules in the policy.
    pub rules: usize,
    /// Declared actions.
    pub actions: usize,
    /// Largest number of rules applicable to one action.
    pub max_slice: usize,
    /// Rules whose condition runs on the compiled fast path.
    pub fast_rules: usize,
    /// Rules evaluated by the Cedar interpreter on every request of their actions.
    pub cedar_rules: usize,
}
