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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    pst, ActionConstraint, AuthorizationError, Authorizer, Context, Effect, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, Policy, PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Entity type of the principal.
const AGENT_TYPE: &str = "Agent";
/// Entity type of the resource.
const COUNTERPARTY_TYPE: &str = "Counterparty";
/// Entity type of actions (Cedar's convention).
const ACTION_TYPE: &str = "Action";
/// Reason text of the default deny (part of the external contract).
pub const DEFAULT_DENY_REASON: &str = "no rule permits this action";

/// Deepest bracket nesting accepted in a rule (see [`check_complexity`]).
const MAX_NESTING: usize = 32;
/// Most operators accepted in one rule (see [`check_complexity`]).
const MAX_OPERATORS: usize = 64;
/// Stack of the thread that compiles a policy (reserved, not committed, memory).
const COMPILE_STACK: usize = 64 << 20;

/// The annotations a rule may carry.
const KNOWN_ANNOTATIONS: [&str; 7] = ["id", "verdict", "reason", "approvals", "approver_role", "deadline", "ttl"];

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// A refused policy (or test suite): a readable message and, when known, where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    /// What is wrong (Cedar's message where Cedar found it).
    pub message: String,
    /// The `@id` of the offending rule, when known.
    pub rule: Option<String>,
    /// 1-based line in the source.
    pub line: Option<u32>,
    /// 1-based column (in characters) in the source.
    pub column: Option<u32>,
}

impl PolicyError {
    fn new(message: impl Into<String>) -> Self {
        PolicyError { message: message.into(), rule: None, line: None, column: None }
    }

    fn in_rule(mut self, rule: Option<&str>) -> Self {
        self.rule = rule.map(str::to_owned);
        self
    }

    fn at(mut self, source: &str, offset: Option<usize>) -> Self {
        if let Some(offset) = offset {
            let (line, column) = line_col(source, offset);
            self.line = Some(line);
            self.column = Some(column);
        }
        self
    }

    /// One line for people: `line 3, column 7, rule large-po: <message>`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(line) = self.line {
            let _ = write!(out, "line {line}");
            if let Some(column) = self.column {
                let _ = write!(out, ", column {column}");
            }
        }
        if let Some(rule) = &self.rule {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "rule {rule}");
        }
        if out.is_empty() {
            self.message.clone()
        } else {
            format!("{out}: {}", self.message)
        }
    }
}

/// One rule of a compiled policy, as declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// A validated policy, ready to evaluate. Compile once per policy version and share it
/// (`Arc<CompiledPolicy>`): it is immutable, `Send` and `Sync`.
pub struct CompiledPolicy {
    source: String,
    digest: String,
    rules: Vec<Rule>,
    /// Per rule: its entry in `reasons` when it decides.
    rule_reasons: Vec<Reason>,
    /// `@id` → index into `rules`.
    index: HashMap<String, u32>,
    /// Declared action type → its slice.
    slices: HashMap<String, Slice>,
    /// String literals of fast-path conditions.
    symbols: SymbolTable,
    /// The whole validated set with its original effects (for cross-checks).
    cedar_set: PolicySet,
    warnings: Vec<PolicyError>,
    authorizer: Authorizer,
    agent_type: EntityTypeName,
    counterparty_type: EntityTypeName,
}

/// The rules that can apply to one action.
struct Slice {
    action_uid: EntityUid,
    /// Rules evaluated by the compiled fast path, source order.
    fast: FastRules,
    /// Cedar set (forbids turned into permits) of the rules the fast path cannot express.
    slow: Option<PolicySet>,
    /// Cedar set (forbids turned into permits) of every rule of the slice.
    full: PolicySet,
    /// Number of rules in the slice.
    len: usize,
}

impl std::fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("digest", &self.digest)
            .field("rules", &self.rules.len())
            .field("actions", &self.slices.len())
            .finish_non_exhaustive()
    }
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

impl CompiledPolicy {
    /// Parse, validate (Cedar strict mode against [`schema_text`]) and prepare a policy.
    ///
    /// # Errors
    /// A [`PolicyError`] naming the first problem: a Cedar syntax error, a template, a
    /// missing/duplicate/invalid annotation, or a strict validation error (with rule, line
    /// and column).
    pub fn compile(source: &str, env: &PolicyEnv) -> Result<CompiledPolicy, PolicyError> {
        // Cedar's parser and validator recurse; give them a known stack whatever the
        // caller's (a tokio worker has 2 MiB, and debug builds use several times more stack
        // than release builds). This also turns a panic inside Cedar into an error.
        std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("policy-compile".to_owned())
                .stack_size(COMPILE_STACK)
                .spawn_scoped(scope, || Self::compile_here(source, env));
            match worker {
                Ok(handle) => {
                    handle.join().unwrap_or_else(|_| Err(PolicyError::new("internal error while compiling the policy")))
                }
                // No thread to be had: compile on this one (within the complexity limits
                // that is still safe on an ordinary stack in release builds).
                Err(_) => Self::compile_here(source, env),
            }
        })
    }

    fn compile_here(source: &str, env: &PolicyEnv) -> Result<CompiledPolicy, PolicyError> {
        let actions = declared_actions(env)?;
        let schema_src = schema_text(env);
        let (schema, _) = Schema::from_cedarschema_str(&schema_src).map_err(|e| {
            PolicyError::new(format!(
                "the declared action types do not form a valid schema: {}",
                diagnostic_message(&e)
            ))
        })?;

        check_complexity(source)?;
        let parsed = PolicySet::from_str(source).map_err(|e| parse_error(source, &e))?;
        if let Some(template) = parsed.templates().next() {
            let text = template.to_cedar();
            return Err(PolicyError::new(
                "templates (rules with ?principal or ?resource slots) are not supported; \
                 write the entity into the rule",
            )
            .at(source, source.find(text.as_str())));
        }

        // Cedar names parsed policies `policy0`, `policy1`, … in source order; the set's
        // iteration order is not guaranteed to be that, and rule order is part of the output.
        let mut parsed_policies: Vec<&Policy> = parsed.policies().collect();
        parsed_policies.sort_by_key(|p| generated_index(p.id()));

        let mut rules = Vec::with_capacity(parsed_policies.len());
        let mut offsets: Vec<Option<usize>> = Vec::with_capacity(parsed_policies.len());
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut renamed = Vec::with_capacity(parsed_policies.len());
        let mut cursor = 0usize;
        for policy in parsed_policies {
            let text = policy.to_cedar().unwrap_or_default();
            // Rules appear in source order, so searching forward finds each one's own text
            // even when two rules are textually identical.
            let offset = source.get(cursor..).and_then(|rest| rest.find(text.as_str())).map(|i| cursor + i);
            if let Some(o) = offset {
                cursor = o + text.len();
            }
            let rule = rule_from_policy(policy, text, env).map_err(|e| {
                // Point at the annotation itself when it can be found, else at the rule.
                let at = e
                    .annotation
                    .and_then(|key| {
                        let rule_text = offset.and_then(|o| source.get(o..cursor))?;
                        rule_text.find(&format!("@{key}")).map(|i| i + offset.unwrap_or(0))
                    })
                    .or(offset);
                e.error.at(source, at)
            })?;
            if let Some(&first) = index.get(&rule.id) {
                let first_line = offsets
                    .get(first as usize)
                    .copied()
                    .flatten()
                    .map(|o| format!(" (first used at line {})", line_col(source, o).0))
                    .unwrap_or_default();
                return Err(PolicyError::new(format!(
                    "duplicate rule id `{}`{first_line}; every @id must be unique",
                    rule.id
                ))
                .in_rule(Some(&rule.id))
                .at(source, offset));
            }
            let idx = u32::try_from(rules.len()).map_err(|_| PolicyError::new("too many rules in one policy"))?;
            index.insert(rule.id.clone(), idx);
            renamed.push(policy.new_id(PolicyId::new(&rule.id)));
            offsets.push(offset);
            rules.push(rule);
        }

        // Renamed to their @id so Cedar's own messages name rules the way people do.
        let cedar_set = PolicySet::from_policies(renamed.iter().cloned())
            .map_err(|e| PolicyError::new(format!("invalid policy set: {e}")))?;
        let validator = Validator::new(schema);
        let result = validator.validate(&cedar_set, ValidationMode::Strict);
        let mut errors: Vec<PolicyError> = result
            .validation_errors()
            .map(|e| {
                PolicyError::new(diagnostic_message(e))
                    .in_rule(Some(e.policy_id().as_ref()))
                    .at(source, diagnostic_offset(e))
            })
            .collect();
        if !errors.is_empty() {
            errors.sort_by_key(|e| (e.line, e.column));
            let more = errors.len() - 1;
            let mut first = errors.swap_remove(0);
            if more > 0 {
                let _ = write!(first.message, " (and {more} more validation error(s))");
            }
            return Err(first);
        }
        let warnings = result
            .validation_warnings()
            .map(|w| {
                PolicyError::new(diagnostic_message(w))
                    .in_rule(Some(w.policy_id().as_ref()))
                    .at(source, diagnostic_offset(w))
            })
            .collect();

        // Per rule: the evaluation form (forbid → permit) and the fast-path condition.
        let mut flipped = Vec::with_capacity(renamed.len());
        let mut conds = Vec::with_capacity(renamed.len());
        let mut symbols = Symbols::default();
        for (policy, rule) in renamed.iter().zip(&rules) {
            let pst_policy = policy.to_pst().ok();
            conds.push(pst_policy.as_ref().and_then(|p| compile_condition(p.body(), &mut symbols)));
            flipped.push(as_permit(policy, pst_policy).map_err(|e| e.in_rule(Some(&rule.id)))?);
        }

        let mut slices = HashMap::with_capacity(actions.len());
        for action in &actions {
            let members: Vec<u32> = renamed
                .iter()
                .enumerate()
                .filter(|(_, p)| applies_to(p, action))
                .filter_map(|(i, _)| u32::try_from(i).ok())
                .collect();
            let mut fast = FastRules::default();
            let mut slow = Vec::new();
            for &i in &members {
                match conds.get(i as usize).and_then(Option::as_deref) {
                    Some(conjuncts) => fast.push(i, conjuncts)?,
                    None => slow.push(i),
                }
            }
            let pick = |ids: &[u32]| {
                PolicySet::from_policies(ids.iter().filter_map(|&i| flipped.get(i as usize).cloned()))
                    .map_err(|e| PolicyError::new(format!("invalid policy set: {e}")))
            };
            let slice = Slice {
                action_uid: entity_uid(ACTION_TYPE, action)?,
                fast,
                slow: if slow.is_empty() { None } else { Some(pick(&slow)?) },
                full: pick(&members)?,
                len: members.len(),
            };
            slices.insert(action.clone(), slice);
        }

        let rule_reasons = rules
            .iter()
            .map(|r| Reason { rule: Some(r.id.clone()), verdict: r.tier, reason: default_reason_text(r) })
            .collect();
        Ok(CompiledPolicy {
            source: source.to_owned(),
            digest: digest_of(source),
            rules,
            rule_reasons,
            index,
            slices,
            symbols: symbols.finish(),
            cedar_set,
            warnings,
            authorizer: Authorizer::new(),
            agent_type: type_name(AGENT_TYPE)?,
            counterparty_type: type_name(COUNTERPARTY_TYPE)?,
        })
    }

    /// `sha256:<hex>` of the source bytes.
    pub fn digest(&self) -> String {
        self.digest.clone()
    }

    /// The source text as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The rules, in source order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// A rule by `@id`.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.index.get(id).and_then(|&i| self.rules.get(i as usize))
    }

    /// Cedar's validation warnings (e.g. a rule that can never apply); not fatal.
    pub fn warnings(&self) -> &[PolicyError] {
        &self.warnings
    }

    /// How the policy will be evaluated.
    pub fn stats(&self) -> PolicyStats {
        let fast: HashSet<u32> = self.slices.values().flat_map(|s| s.fast.rules.iter().map(|r| r.rule)).collect();
        let covered: HashSet<u32> = self
            .slices
            .values()
            .flat_map(|s| {
                s.fast.rules.iter().map(|r| r.rule).chain(
                    s.slow.iter().flat_map(|p| p.policies().filter_map(|p| self.index.get(pid(p.id())).copied())),
                )
            })
            .collect();
        PolicyStats {
            rules: self.rules.len(),
            actions: self.slices.len(),
            max_slice: self.slices.values().map(|s| s.len).max().unwrap_or(0),
            fast_rules: fast.len(),
            cedar_rules: covered.len() - fast.len(),
        }
    }

    /// Evaluate one request. Never panics; an undeclared action is rejected.
    pub fn evaluate(&self, input: &PolicyInput<'_>) -> Evaluation {
        let Some(slice) = self.slices.get(input.action) else {
            return undeclared(input.action);
        };
        let facts = Facts::new(input, &self.symbols);
        let mut satisfied: Vec<u32> = Vec::with_capacity(16);
        if slice.fast.eval(&facts, &mut satisfied).is_err() {
            // Rare (integer overflow); Cedar re-evaluates the slice so that the reasons
            // carry its own error messages.
            return self.evaluate_with(&slice.full, slice, input);
        }
        let mut errors = Vec::new();
        if let Some(slow) = &slice.slow {
            match self.run_cedar(slow, slice, input) {
                Ok((more, errs)) => {
                    satisfied.extend(more);
                    satisfied.sort_unstable();
                    errors = errs;
                }
                Err(e) => return internal_error(&e),
            }
        }
        self.decide(&satisfied, &errors)
    }

    /// Evaluate one request with the Cedar interpreter only (no compiled fast path).
    /// Same result as [`evaluate`](Self::evaluate), slower; kept for cross-checking.
    pub fn evaluate_reference(&self, input: &PolicyInput<'_>) -> Evaluation {
        match self.slices.get(input.action) {
            Some(slice) => self.evaluate_with(&slice.full, slice, input),
            None => undeclared(input.action),
        }
    }

    fn evaluate_with(&self, set: &PolicySet, slice: &Slice, input: &PolicyInput<'_>) -> Evaluation {
        match self.run_cedar(set, slice, input) {
            Ok((mut satisfied, errors)) => {
                satisfied.sort_unstable();
                self.decide(&satisfied, &errors)
            }
            Err(e) => internal_error(&e),
        }
    }

    /// One Cedar call over a set whose rules are all permits: returns every satisfied rule
    /// and every erroring rule (sorted by rule index).
    #[allow(clippy::type_complexity)]
    fn run_cedar(
        &self,
        set: &PolicySet,
        slice: &Slice,
        input: &PolicyInput<'_>,
    ) -> Result<(Vec<u32>, Vec<(u32, String)>), String> {
        let request = self.cedar_request(slice, input)?;
        let response = self.authorizer.is_authorized(&request.0, set, &request.1);
        let lookup = |id: &PolicyId| {
            self.index.get(pid(id)).copied().ok_or_else(|| format!("unknown rule id {id} in a Cedar response"))
        };
        let satisfied = response.diagnostics().reason().map(lookup).collect::<Result<Vec<_>, _>>()?;
        let mut errors = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                AuthorizationError::PolicyEvaluationError(pe) => {
                    lookup(pe.policy_id()).map(|i| (i, pe.inner().to_string()))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        errors.sort();
        Ok((satisfied, errors))
    }

    /// The two entities and the request, built directly (no JSON, no schema-based parsing).
    fn cedar_request(&self, slice: &Slice, input: &PolicyInput<'_>) -> Result<(Request, Entities), String> {
        let agent = EntityUid::from_type_name_and_id(self.agent_type.clone(), EntityId::new(input.agent_id));
        let counterparty =
            EntityUid::from_type_name_and_id(self.counterparty_type.clone(), EntityId::new(input.counterparty_id));
        let agent_entity = Entity::new(
            agent.clone(),
            HashMap::from([
                ("owner".to_owned(), RestrictedExpression::new_string(input.agent_owner.to_owned())),
                ("trust".to_owned(), RestrictedExpression::new_long(input.agent_trust)),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let counterparty_entity = Entity::new(
            counterparty.clone(),
            HashMap::from([
                ("risk".to_owned(), RestrictedExpression::new_string(input.counterparty_risk.to_owned())),
                ("trust".to_owned(), RestrictedExpression::new_long(input.counterparty_trust)),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let entities = Entities::from_entities([agent_entity, counterparty_entity], None).map_err(|e| e.to_string())?;
        let context = Context::from_pairs([
            ("amount".to_owned(), RestrictedExpression::new_long(input.amount_minor)),
            ("currency".to_owned(), RestrictedExpression::new_string(input.currency.to_owned())),
        ])
        .map_err(|e| e.to_string())?;
        let request =
            Request::new(agent, slice.action_uid.clone(), counterparty, context, None).map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    /// The verdict from the satisfied rules and the erroring rules (both in source order).
    fn decide(&self, satisfied: &[u32], errors: &[(u32, String)]) -> Evaluation {
        if !errors.is_empty() {
            let reasons = errors
                .iter()
                .map(|(i, msg)| {
                    let id = self.rule_id(*i);
                    Reason {
                        rule: Some(id.to_owned()),
                        verdict: RuleVerdict::Reject,
                        reason: format!("evaluation error in rule {id}: {msg}"),
                    }
                })
                .collect();
            return Evaluation {
                verdict: Verdict::Rejected,
                reasons,
                approvals_required: 0,
                roles_required: Vec::new(),
                deadline_secs: None,
                ttl_secs: None,
            };
        }
        // Counting first lets every Vec be allocated once, at its final size.
        let tier = |i: u32| self.rules.get(i as usize).map(|r| r.tier);
        let (mut permits, mut rejects, mut escalates) = (0usize, 0usize, 0usize);
        for &i in satisfied {
            match tier(i) {
                Some(RuleVerdict::Authorize) => permits += 1,
                Some(RuleVerdict::Reject) => rejects += 1,
                Some(RuleVerdict::Escalate) => escalates += 1,
                None => {}
            }
        }
        let of = |t: RuleVerdict| satisfied.iter().copied().filter(move |&i| tier(i) == Some(t));
        let reasons_of = |t: RuleVerdict, n: usize| {
            let mut out = Vec::with_capacity(n);
            out.extend(of(t).filter_map(|i| self.rule_reasons.get(i as usize).cloned()));
            out
        };
        let min_ttl = |t: RuleVerdict| of(t).filter_map(|i| self.rules.get(i as usize).and_then(|r| r.ttl_secs)).min();
        let refused = |reasons| Evaluation {
            verdict: Verdict::Rejected,
            reasons,
            approvals_required: 0,
            roles_required: Vec::new(),
            deadline_secs: None,
            ttl_secs: None,
        };
        if rejects > 0 {
            return refused(reasons_of(RuleVerdict::Reject, rejects));
        }
        if permits == 0 {
            // Escalate-tier forbids can only hold back something a permit allows.
            return Evaluation::rejected_plain(DEFAULT_DENY_REASON.to_owned());
        }
        if escalates == 0 {
            return Evaluation {
                verdict: Verdict::Authorized,
                reasons: reasons_of(RuleVerdict::Authorize, permits),
                approvals_required: 0,
                roles_required: Vec::new(),
                deadline_secs: None,
                ttl_secs: min_ttl(RuleVerdict::Authorize),
            };
        }
        let escalating = || of(RuleVerdict::Escalate).filter_map(|i| self.rules.get(i as usize));
        let roles: BTreeSet<&str> = escalating().filter_map(|r| r.approver_role.as_deref()).collect();
        Evaluation {
            verdict: Verdict::Escalated,
            reasons: reasons_of(RuleVerdict::Escalate, escalates),
            approvals_required: escalating().map(|r| r.approvals.unwrap_or(1)).max().unwrap_or(1),
            roles_required: roles.into_iter().map(str::to_owned).collect(),
            deadline_secs: escalating().filter_map(|r| r.deadline_secs).min(),
            // The permits that make the request allowable bound the passport too.
            ttl_secs: min_ttl(RuleVerdict::Escalate).into_iter().chain(min_ttl(RuleVerdict::Authorize)).min(),
        }
    }

    fn rule_id(&self, i: u32) -> &str {
        self.rules.get(i as usize).map_or("?", |r| r.id.as_str())
    }

    /// The validated Cedar policy set: every rule, original effects, Cedar ids = `@id`s.
    pub fn cedar_policy_set(&self) -> &PolicySet {
        &self.cedar_set
    }
}

/// A policy id as text.
fn pid(id: &PolicyId) -> &str {
    AsRef::<str>::as_ref(id)
}

fn undeclared(action: &str) -> Evaluation {
    Evaluation::rejected_plain(format!("action {action} is not declared"))
}

fn internal_error(e: &str) -> Evaluation {
    // Fail closed: a request that cannot be evaluated is refused.
    Evaluation::rejected_plain(format!("internal policy evaluation error: {e}"))
}

fn default_reason_text(rule: &Rule) -> String {
    match &rule.reason {
        Some(r) => r.clone(),
        None => match rule.tier {
            RuleVerdict::Authorize => format!("permitted by rule {}", rule.id),
            RuleVerdict::Escalate => format!("escalated by rule {}", rule.id),
            RuleVerdict::Reject => format!("rejected by rule {}", rule.id),
        },
    }
}

fn digest_of(source: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(source.as_bytes())))
}

fn type_name(name: &str) -> Result<EntityTypeName, PolicyError> {
    EntityTypeName::from_str(name).map_err(|e| PolicyError::new(format!("invalid entity type {name}: {e}")))
}

fn entity_uid(ty: &str, id: &str) -> Result<EntityUid, PolicyError> {
    Ok(EntityUid::from_type_name_and_id(type_name(ty)?, EntityId::new(id)))
}

/// `policyN` → N (Cedar's generated ids follow source order).
fn generated_index(id: &PolicyId) -> usize {
    pid(id).strip_prefix("policy").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX)
}

/// Does a rule's action scope admit `action`?
fn applies_to(policy: &Policy, action: &str) -> bool {
    let names = |uid: &EntityUid| uid.type_name().to_string() == ACTION_TYPE && uid.id().unescaped() == action;
    match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => names(&uid),
        ActionConstraint::In(uids) => uids.iter().any(names),
    }
}

/// The same rule as a `permit` (same id, same condition), so that one Cedar call reports
/// every satisfied rule whatever its effect.
fn as_permit(policy: &Policy, pst_policy: Option<pst::Policy>) -> Result<Policy, PolicyError> {
    if policy.effect() == Effect::Permit {
        return Ok(policy.clone());
    }
    let fail = |what: &str| PolicyError::new(format!("cannot prepare rule for evaluation: {what}"));
    let pst_policy = pst_policy.ok_or_else(|| fail("no structured form"))?;
    let mut body = pst_policy.body().clone();
    body.effect = pst::Effect::Permit;
    let static_policy = pst::StaticPolicy::try_from(body).map_err(|e| fail(&e.to_string()))?;
    let permit = Policy::from_pst(pst::Policy::Static(static_policy)).map_err(|e| fail(&e.to_string()))?;
    Ok(permit.new_id(policy.id().clone()))
}

/// Refuse rules deep enough to exhaust a thread's stack, before Cedar sees them.
///
/// Cedar's parser recurses per nesting level and per chained operator (about 1,000 nested
/// parentheses overflow an 8 MiB stack and abort the process), and its evaluator reports
/// "recursion limit reached" once less than 100 KiB of the *calling thread's* stack
/// remains (about 4 KiB per level), so a deep rule would evaluate differently on different
/// threads. Bounding nesting and operators per rule keeps every stage far from those limits
/// on a 2 MiB (tokio worker) stack, even in debug builds, and the compiled fast path agrees
/// with Cedar. Real rules stay well below (a large rule has some 20 operators, and long
/// alternatives are better written as sets).
fn check_complexity(source: &str) -> Result<(), PolicyError> {
    let bytes = source.as_bytes();
    let mut i = 0usize;
    let mut depth = 0usize;
    let mut operators = 0usize;
    let too_complex = |at: usize| {
        PolicyError::new(format!(
            "rule is too complex: more than {MAX_OPERATORS} operators; split it into several \
             rules, or use sets (`resource in [...]`, `[...].contains(...)`)"
        ))
        .at(source, Some(at))
    };
    while let Some(&b) = bytes.get(i) {
        let next = bytes.get(i + 1).copied();
        match b {
            b'/' if next == Some(b'/') => {
                // Comment: skip to the end of the line.
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                // String literal (annotations, ids): skip, honouring escapes.
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    i += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' {
                        break;
                    }
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(PolicyError::new(format!(
                        "rule is nested too deeply: more than {MAX_NESTING} levels of brackets"
                    ))
                    .at(source, Some(i)));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b';' if depth == 0 => operators = 0,
            b'&' | b'|' | b'=' | b'!' | b'<' | b'>' if next == Some(b) || next == Some(b'=') => {
                operators += 1;
                i += 2;
                if operators > MAX_OPERATORS {
                    return Err(too_complex(i - 2));
                }
                continue;
            }
            b'<' | b'>' | b'+' | b'-' | b'*' | b'!' | b'.' => operators += 1,
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while bytes.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
                    i += 1;
                }
                if let Some(word) = source.get(start..i) {
                    if matches!(word, "in" | "has" | "like" | "is" | "if") {
                        operators += 1;
                    }
                }
                if operators > MAX_OPERATORS {
                    return Err(too_complex(start));
                }
                continue;
            }
            _ => {}
        }
        if operators > MAX_OPERATORS {
            return Err(too_complex(i));
        }
        i += 1;
    }
    Ok(())
}

/// Declared actions, deduplicated, in declaration order.
fn declared_actions(env: &PolicyEnv) -> Result<Vec<String>, PolicyError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for a in &env.actions {
        if a.is_empty() {
            return Err(PolicyError::new("an action type must not be empty"));
        }
        if seen.insert(a.as_str()) {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// The Cedar schema (human-readable syntax) policies are validated against.
pub fn schema_text(env: &PolicyEnv) -> String {
    let mut out = String::from(
        "// Generated by AgentSigna from its entity model and the organization's declared\n\
         // action types. Policies are validated against it in strict mode.\n\
         entity Agent {\n  owner: String,\n  trust: Long\n};\n\
         entity Counterparty {\n  risk: String,\n  trust: Long\n};\n",
    );
    let mut seen = HashSet::new();
    for action in &env.actions {
        if action.is_empty() || !seen.insert(action.as_str()) {
            continue;
        }
        let _ = write!(
            out,
            "action \"{}\" appliesTo {{\n  principal: [Agent],\n  resource: [Counterparty],\n  \
             context: {{\n    amount: Long,\n    currency: String\n  }}\n}};\n",
            escape_cedar_string(action)
        );
    }
    out
}

fn escape_cedar_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Seconds of an ISO 8601 duration `PnW` or `P[nD][T[nH][nM][nS]]` (integers only,
/// e.g. `P1D`, `PT4H`, `PT30M`, `PT90S`, `P1DT2H`). `None` when malformed or too large.
pub fn parse_iso_duration(text: &str) -> Option<i64> {
    let rest = text.strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => {
            if t.is_empty() {
                return None; // "P1DT" has a dangling time designator
            }
            (d, Some(t))
        }
        None => (rest, None),
    };
    let mut total: i64 = 0;
    let mut add = |part: &str, units: &[(char, i64)]| -> Option<()> {
        let mut digits = String::new();
        let mut last_unit = None;
        for c in part.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            // Designators must come in order, each at most once, each after a number.
            let pos = units.iter().position(|(u, _)| *u == c)?;
            if digits.is_empty() || last_unit.is_some_and(|l| pos <= l) {
                return None;
            }
            last_unit = Some(pos);
            let n: i64 = digits.parse().ok()?;
            total = total.checked_add(n.checked_mul(units.get(pos)?.1)?)?;
            digits.clear();
        }
        digits.is_empty().then_some(())
    };
    add(date, &[('W', 604_800), ('D', 86_400)])?;
    if date.contains('W') && (date.contains('D') || time.is_some()) {
        return None; // ISO 8601 allows weeks only on their own
    }
    if let Some(t) = time {
        add(t, &[('H', 3_600), ('M', 60), ('S', 1)])?;
    }
    Some(total)
}

/// An annotation problem, with the annotation to point at.
struct AnnotationError {
    error: PolicyError,
    annotation: Option<&'static str>,
}

fn rule_from_policy(policy: &Policy, text: String, env: &PolicyEnv) -> Result<Rule, AnnotationError> {
    let fail = |key: Option<&'static str>, rule: Option<&str>, msg: String| AnnotationError {
        error: PolicyError::new(msg).in_rule(rule),
        annotation: key,
    };
    for (key, _) in policy.annotations() {
        if !KNOWN_ANNOTATIONS.contains(&key) {
            let rule = policy.annotation("id");
            return Err(fail(
                None,
                rule,
                format!("unknown annotation @{key} (known: @{})", KNOWN_ANNOTATIONS.join(", @")),
            ));
        }
    }
    let id = match policy.annotation("id") {
        None => return Err(fail(None, None, "every rule needs an @id(\"rule-name\") annotation".to_owned())),
        Some(id) => id.trim(),
    };
    if id.is_empty() || id.chars().any(char::is_control) || id.len() > 200 {
        return Err(fail(
            Some("id"),
            None,
            "@id must be a non-empty name (at most 200 characters, no control characters)".to_owned(),
        ));
    }
    let rule = Some(id);
    let is_forbid = policy.effect() == Effect::Forbid;
    let tier = match (is_forbid, policy.annotation("verdict")) {
        (false, None) => RuleVerdict::Authorize,
        (false, Some(_)) => {
            return Err(fail(
                Some("verdict"),
                rule,
                "@verdict is only allowed on forbid rules (a permit authorizes)".to_owned(),
            ))
        }
        (true, None | Some("reject")) => RuleVerdict::Reject,
        (true, Some("escalate")) => RuleVerdict::Escalate,
        (true, Some(other)) => {
            return Err(fail(
                Some("verdict"),
                rule,
                format!("@verdict must be \"escalate\" or \"reject\", not \"{other}\""),
            ))
        }
    };
    let escalate_only = |key: &'static str| -> Result<(), AnnotationError> {
        if tier == RuleVerdict::Escalate {
            Ok(())
        } else {
            Err(fail(
                Some(key),
                rule,
                format!("@{key} only applies to escalate rules (forbid with @verdict(\"escalate\"))"),
            ))
        }
    };
    let approvals = match policy.annotation("approvals") {
        None => None,
        Some(v) => {
            escalate_only("approvals")?;
            let n = v
                .trim()
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.trim().parse::<u32>().ok())
                .flatten()
                .filter(|n| *n > 0);
            match n {
                Some(n) => Some(n),
                None => {
                    return Err(fail(
                        Some("approvals"),
                        rule,
                        format!("@approvals must be a positive integer such as \"2\", not \"{v}\""),
                    ))
                }
            }
        }
    };
    let approver_role = match policy.annotation("approver_role") {
        None => None,
        Some(role) => {
            escalate_only("approver_role")?;
            if !env.roles.iter().any(|r| r == role) {
                let known = if env.roles.is_empty() {
                    "no roles are declared".to_owned()
                } else {
                    format!("known roles: {}", env.roles.join(", "))
                };
                return Err(fail(Some("approver_role"), rule, format!("unknown approver role \"{role}\" ({known})")));
            }
            Some(role.to_owned())
        }
    };
    let duration = |key: &'static str| -> Result<Option<i64>, AnnotationError> {
        match policy.annotation(key) {
            None => Ok(None),
            Some(v) => match parse_iso_duration(v.trim()) {
                Some(secs) if secs > 0 => Ok(Some(secs)),
                _ => Err(fail(
                    Some(key),
                    rule,
                    format!(
                        "@{key} must be a positive ISO 8601 duration such as \"PT4H\", \
                         \"PT30M\" or \"P1D\", not \"{v}\""
                    ),
                )),
            },
        }
    };
    let deadline_secs = duration("deadline")?;
    if deadline_secs.is_some() {
        escalate_only("deadline")?;
    }
    let ttl_secs = duration("ttl")?;
    let reason = policy.annotation("reason").map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned);
    Ok(Rule {
        id: id.to_owned(),
        effect: if is_forbid { "forbid" } else { "permit" }.to_owned(),
        tier,
        reason,
        source: text,
        approvals,
        approver_role,
        deadline_secs,
        ttl_secs,
    })
}

// ---------------------------------------------------------------------------------------
// Error mapping

/// 1-based line and column (in characters) of a byte offset.
fn line_col(source: &str, offset: usize) -> (u32, u32) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = source.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX))
}

fn diagnostic_message(d: &dyn Diagnostic) -> String {
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        let _ = write!(message, " ({help})");
    }
    message
}

fn diagnostic_offset(d: &dyn Diagnostic) -> Option<usize> {
    let mut labels = d.labels()?;
    labels.next().map(|l| l.offset())
}

fn parse_error(source: &str, errors: &cedar_policy::ParseErrors) -> PolicyError {
    let all: Vec<_> = errors.iter().collect();
    let Some(first) = all.first() else {
        return PolicyError::new(errors.to_string());
    };
    let mut out = PolicyError::new(diagnostic_message(*first)).at(source, diagnostic_offset(*first));
    if all.len() > 1 {
        let more: Vec<String> = all
            .iter()
            .skip(1)
            .take(4)
            .map(|e| {
                let at = diagnostic_offset(*e)
                    .map(|o| {
                        let (l, c) = line_col(source, o);
                        format!("{l}:{c}: ")
                    })
                    .unwrap_or_default();
                format!("{at}{}", diagnostic_message(*e))
            })
            .collect();
        let _ = write!(out.message, "; also {}", more.join("; "));
        if all.len() > 5 {
            let _ = write!(out.message, "; and {} more", all.len() - 5);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Fast path: rule conditions compiled to typed expression trees over the request facts.
//
// The translation covers what AgentSigna rules are made of (comparisons, arithmetic,
// boolean logic, string equality and `like`, literal sets, entity equality/`in`/`is`).
// Anything else makes the whole rule fall back to Cedar. Evaluation order and
// short-circuiting follow Cedar's, and the only possible runtime error (integer overflow)
// sends the request to Cedar, so the fast path either agrees with Cedar or defers to it.
//
// Layout matters more than instruction count here (a slice of ~100 rules is evaluated per
// request): nodes are 16 bytes, a slice's top-level conjuncts sit in one contiguous
// array, and string literals compared with request facts are interned so that those
// comparisons are integer (or bitmask) tests.

/// "Let Cedar decide": an evaluation error (integer overflow) or an internal inconsistency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Defer;

/// Symbol id of a string that no rule compares against.
const NO_SYMBOL: u32 = u32::MAX;

/// String literals that rules compare request facts with, numbered at compile time.
#[derive(Debug, Default)]
struct Symbols {
    ids: HashMap<Box<str>, u32>,
}

impl Symbols {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.ids.len()).unwrap_or(NO_SYMBOL);
        self.ids.insert(s.into(), id);
        id
    }

    fn finish(self) -> SymbolTable {
        let mut sorted: Vec<(Box<str>, u32)> = self.ids.into_iter().collect();
        sorted.sort();
        SymbolTable { sorted }
    }
}

/// Read-only symbol table, searched once per string fact per request.
#[derive(Debug, Default)]
struct SymbolTable {
    sorted: Vec<(Box<str>, u32)>,
}

impl SymbolTable {
    fn lookup(&self, s: &str) -> u32 {
        self.sorted
            .binary_search_by(|(k, _)| (**k).cmp(s))
            .ok()
            .and_then(|i| self.sorted.get(i))
            .map_or(NO_SYMBOL, |(_, id)| *id)
    }
}

/// The request as the fast path sees it.
struct Facts<'a> {
    input: &'a PolicyInput<'a>,
    /// Symbol ids of the string facts, indexed by [`StrField`].
    symbols: [u32; 3],
}

impl<'a> Facts<'a> {
    fn new(input: &'a PolicyInput<'a>, table: &SymbolTable) -> Self {
        Facts {
            input,
            symbols: [
                table.lookup(input.currency),
                table.lookup(input.agent_owner),
                table.lookup(input.counterparty_risk),
            ],
        }
    }
}

/// Long-valued request facts.
#[derive(Debug, Clone, Copy)]
enum LongField {
    Amount,
    AgentTrust,
    CounterpartyTrust,
}

/// String-valued request facts.
#[derive(Debug, Clone, Copy)]
enum StrField {
    Currency = 0,
    Owner = 1,
    Risk = 2,
}

impl LongField {
    #[inline]
    fn get(self, f: &Facts<'_>) -> i64 {
        match self {
            LongField::Amount => f.input.amount_minor,
            LongField::AgentTrust => f.input.agent_trust,
            LongField::CounterpartyTrust => f.input.counterparty_trust,
        }
    }
}

impl StrField {
    #[inline]
    fn get<'a>(self, f: &Facts<'a>) -> &'a str {
        match self {
            StrField::Currency => f.input.currency,
            StrField::Owner => f.input.agent_owner,
            StrField::Risk => f.input.counterparty_risk,
        }
    }

    #[inline]
    fn symbol(self, f: &Facts<'_>) -> u32 {
        f.symbols.get(self as usize).copied().unwrap_or(NO_SYMBOL)
    }
}

#[derive(Debug, Clone, Copy)]
enum CmpOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    #[inline]
    fn apply(self, x: i64, y: i64) -> bool {
        match self {
            CmpOp::Eq => x == y,
            CmpOp::Lt => x < y,
            CmpOp::Le => x <= y,
            CmpOp::Gt => x > y,
            CmpOp::Ge => x >= y,
        }
    }

    /// The operator with its operands swapped (`a < b` ⇔ `b > a`).
    fn swapped(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
        }
    }
}

/// Boolean expressions (16 bytes: anything larger than a leaf is boxed).
#[derive(Debug, Clone)]
enum B {
    Lit(bool),
    /// `fact op literal`
    FieldCmp(CmpOp, LongField, i64),
    /// `fact == "literal"` (interned)
    FieldSymEq(StrField, u32),
    /// `["a", "b"].contains(fact)` with every literal's symbol < 64
    FieldSymIn(StrField, u64),
    And(Box<(B, B)>),
    Or(Box<(B, B)>),
    Not(Box<B>),
    If(Box<(B, B, B)>),
    BoolEq(Box<(B, B)>),
    Cmp(CmpOp, Box<(L, L)>),
    StrEq(Box<(S, S)>),
    StrIn(Box<(S, Box<[Box<str>]>)>),
    EntEq(Box<(E, E)>),
    EntIn(Box<(E, Box<[E]>)>),
    LongIn(Box<(L, Box<[i64]>)>),
    Like(Box<(S, Like)>),
    Is(Box<(E, Box<str>)>),
}

/// A `like` pattern, specialised for the usual shapes (`"*@example.com"`, `"PO-*"`).
#[derive(Debug, Clone)]
enum Like {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    Contains(Box<str>),
    General(Box<[pst::PatternElem]>),
}

impl Like {
    fn new(pattern: &[pst::PatternElem]) -> Like {
        // Literal runs between wildcards: `a*b` → ["a", "b"].
        let mut runs = vec![String::new()];
        for elem in pattern {
            match elem {
                pst::PatternElem::Char(c) => {
                    if let Some(run) = runs.last_mut() {
                        run.push(*c);
                    }
                }
                pst::PatternElem::Wildcard => runs.push(String::new()),
            }
        }
        match runs.as_slice() {
            [exact] => Like::Exact(exact.as_str().into()),
            [first, last] if first.is_empty() => Like::Suffix(last.as_str().into()),
            [first, last] if last.is_empty() => Like::Prefix(first.as_str().into()),
            [first, mid, last] if first.is_empty() && last.is_empty() => Like::Contains(mid.as_str().into()),
            _ => Like::General(pattern.into()),
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Like::Exact(s) => text == &**s,
            Like::Prefix(s) => text.starts_with(&**s),
            Like::Suffix(s) => text.ends_with(&**s),
            Like::Contains(s) => text.contains(&**s),
            Like::General(p) => wildcard_match(text, p),
        }
    }
}

/// Long (i64) expressions.
#[derive(Debug, Clone)]
enum L {
    Lit(i64),
    Field(LongField),
    Add(Box<(L, L)>),
    Sub(Box<(L, L)>),
    Mul(Box<(L, L)>),
    Neg(Box<L>),
    If(Box<(B, L, L)>),
}

/// String expressions.
#[derive(Debug, Clone)]
enum S {
    Lit(Box<str>),
    Field(StrField),
    If(Box<(B, S, S)>),
}

/// Entity expressions (no entity has parents, so `in` is equality).
#[derive(Debug, Clone)]
enum E {
    Principal,
    Resource,
    Action,
    Lit(Box<(Box<str>, Box<str>)>),
}

impl B {
    /// Leaves inline, everything else through [`B::eval_node`]: most conjuncts are leaves,
    /// and the general evaluator's call frame costs more than a leaf test.
    #[inline(always)]
    fn eval(&self, f: &Facts<'_>) -> Result<bool, Defer> {
        match self {
            B::FieldCmp(op, field, n) => Ok(op.apply(field.get(f), *n)),
            B::FieldSymEq(field, sym) => Ok(field.symbol(f) == *sym),
            B::FieldSymIn(field, mask) => {
                let sym = field.symbol(f);
                Ok(sym < 64 && mask & (1u64 << sym) != 0)
            }
            _ => self.eval_node(f),
        }
    }

    #[inline(never)]
    fn eval_node(&self, f: &Facts<'_>) -> Result<bool, Defer> {
        Ok(match self {
            B::Lit(b) => *b,
            B::FieldCmp(..) | B::FieldSymEq(..) | B::FieldSymIn(..) => self.eval(f)?,
            B::And(ab) => ab.0.eval(f)? && ab.1.eval(f)?,
            B::Or(ab) => ab.0.eval(f)? || ab.1.eval(f)?,
            B::Not(a) => !a.eval(f)?,
            B::If(cte) => {
                if cte.0.eval(f)? {
                    cte.1.eval(f)?
                } else {
                    cte.2.eval(f)?
                }
            }
            B::BoolEq(ab) => ab.0.eval(f)? == ab.1.eval(f)?,
            B::Cmp(op, ab) => {
                let x = ab.0.eval(f)?;
                op.apply(x, ab.1.eval(f)?)
            }
            B::StrEq(ab) => ab.0.eval(f)? == ab.1.eval(f)?,
            B::StrIn(a) => {
                let x = a.0.eval(f)?;
                a.1.iter().any(|s| &**s == x)
            }
            B::EntEq(ab) => ab.0.eval(f) == ab.1.eval(f),
            B::EntIn(a) => {
                let x = a.0.eval(f);
                a.1.iter().any(|s| s.eval(f) == x)
            }
            B::LongIn(a) => {
                let x = a.0.eval(f)?;
                a.1.contains(&x)
            }
            B::Like(a) => a.1.matches(a.0.eval(f)?),
            B::Is(a) => a.0.eval(f).0 == &*a.1,
        })
    }
}

impl L {
    fn eval(&self, f: &Facts<'_>) -> Result<i64, Defer> {
        let both = |ab: &(L, L)| -> Result<(i64, i64), Defer> {
            let x = ab.0.eval(f)?;
            Ok((x, ab.1.eval(f)?))
        };
        match self {
            L::Lit(n) => Ok(*n),
            L::Field(field) => Ok(field.get(f)),
            L::Add(ab) => both(ab).and_then(|(x, y)| x.checked_add(y).ok_or(Defer)),
            L::Sub(ab) => both(ab).and_then(|(x, y)| x.checked_sub(y).ok_or(Defer)),
            L::Mul(ab) => both(ab).and_then(|(x, y)| x.checked_mul(y).ok_or(Defer)),
            L::Neg(a) => a.eval(f)?.checked_neg().ok_or(Defer),
            L::If(cte) => {
                if cte.0.eval(f)? {
                    cte.1.eval(f)
                } else {
                    cte.2.eval(f)
                }
            }
        }
    }
}

impl S {
    fn eval<'a>(&'a self, f: &Facts<'a>) -> Result<&'a str, Defer> {
        match self {
            S::Lit(s) => Ok(s),
            S::Field(field) => Ok(field.get(f)),
            S::If(cte) => {
                if cte.0.eval(f)? {
                    cte.1.eval(f)
                } else {
                    cte.2.eval(f)
                }
            }
        }
    }
}

impl E {
    /// (entity type, entity id)
    fn eval<'a>(&'a self, f: &Facts<'a>) -> (&'a str, &'a str) {
        match self {
            E::Principal => (AGENT_TYPE, f.input.agent_id),
            E::Resource => (COUNTERPARTY_TYPE, f.input.counterparty_id),
            E::Action => (ACTION_TYPE, f.input.action),
            E::Lit(lit) => (&lit.0, &lit.1),
        }
    }
}

/// The fast-path rules of one slice: every rule is a run of conjuncts in one array.
#[derive(Debug, Default)]
struct FastRules {
    conjuncts: Vec<B>,
    rules: Vec<FastRule>,
}

#[derive(Debug, Clone, Copy)]
struct FastRule {
    rule: u32,
    start: u32,
    end: u32,
}

impl FastRules {
    fn push(&mut self, rule: u32, conjuncts: &[B]) -> Result<(), PolicyError> {
        let index = |n: usize| u32::try_from(n).map_err(|_| PolicyError::new("policy too large to prepare"));
        let start = index(self.conjuncts.len())?;
        self.conjuncts.extend_from_slice(conjuncts);
        let end = index(self.conjuncts.len())?;
        self.rules.push(FastRule { rule, start, end });
        Ok(())
    }

    /// Push the satisfied rules (source order) onto `out`.
    fn eval(&self, f: &Facts<'_>, out: &mut Vec<u32>) -> Result<(), Defer> {
        'rules: for r in &self.rules {
            let parts = self.conjuncts.get(r.start as usize..r.end as usize).ok_or(Defer)?;
            for part in parts {
                if !part.eval(f)? {
                    continue 'rules;
                }
            }
            out.push(r.rule);
        }
        Ok(())
    }
}

/// Cedar's `like`: `*` matches any sequence of characters (greedy with backtracking).
fn wildcard_match(text: &str, pattern: &[pst::PatternElem]) -> bool {
    let mut p = 0usize; // index into pattern
    let mut t = 0usize; // byte index into text
    let mut star: Option<(usize, usize)> = None; // (pattern index after `*`, text index)
    loop {
        if let Some(c) = text.get(t..).and_then(|s| s.chars().next()) {
            match pattern.get(p) {
                Some(pst::PatternElem::Wildcard) => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                Some(pst::PatternElem::Char(pc)) if *pc == c => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                _ => {}
            }
            match star {
                Some((sp, st)) => {
                    // Let the last `*` swallow one more character and retry.
                    let width = text.get(st..).and_then(|s| s.chars().next()).map_or(1, char::len_utf8);
                    star = Some((sp, st + width));
                    p = sp;
                    t = st + width;
                }
                None => return false,
            }
        } else {
            return pattern.get(p..).is_some_and(|rest| rest.iter().all(|e| matches!(e, pst::PatternElem::Wildcard)));
        }
    }
}

/// A translated expression with its static type.
enum T {
    B(B),
    L(L),
    S(S),
    E(E),
    LongSet(Vec<i64>),
    StrSet(Vec<Box<str>>),
    EntSet(Vec<E>),
}

fn entity_type_name(ty: &pst::EntityType) -> Box<str> {
    ty.to_string().into_boxed_str()
}

fn entity_lit(uid: &pst::EntityUID) -> E {
    E::Lit(Box::new((entity_type_name(&uid.ty), uid.eid.as_str().into())))
}

fn ent_eq(a: E, b: E) -> B {
    B::EntEq(Box::new((a, b)))
}

fn is_type(e: E, ty: &pst::EntityType) -> B {
    B::Is(Box::new((e, entity_type_name(ty))))
}

enum ScopeKind<'a> {
    Any,
    Eq(&'a pst::EntityUID),
    In(&'a pst::EntityUID),
    Is(&'a pst::EntityType),
    IsIn(&'a pst::EntityType, &'a pst::EntityUID),
}

/// A scope constraint on principal or resource as a boolean (no hierarchy: `in` is `==`).
fn scope(var: E, c: ScopeKind<'_>) -> B {
    match c {
        ScopeKind::Any => B::Lit(true),
        ScopeKind::Eq(uid) | ScopeKind::In(uid) => ent_eq(var, entity_lit(uid)),
        ScopeKind::Is(ty) => is_type(var, ty),
        ScopeKind::IsIn(ty, uid) => B::And(Box::new((is_type(var.clone(), ty), ent_eq(var, entity_lit(uid))))),
    }
}

fn principal_scope(c: &pst::PrincipalConstraint) -> Option<ScopeKind<'_>> {
    use pst::{EntityOrSlot::Entity as Ent, PrincipalConstraint as P};
    Some(match c {
        P::Any => ScopeKind::Any,
        P::Eq(Ent(u)) => ScopeKind::Eq(u),
        P::In(Ent(u)) => ScopeKind::In(u),
        P::Is(t) => ScopeKind::Is(t),
        P::IsIn(t, Ent(u)) => ScopeKind::IsIn(t, u),
        _ => return None,
    })
}

fn resource_scope(c: &pst::ResourceConstraint) -> Option<ScopeKind<'_>> {
    use pst::{EntityOrSlot::Entity as Ent, ResourceConstraint as R};
    Some(match c {
        R::Any => ScopeKind::Any,
        R::Eq(Ent(u)) => ScopeKind::Eq(u),
        R::In(Ent(u)) => ScopeKind::In(u),
        R::Is(t) => ScopeKind::Is(t),
        R::IsIn(t, Ent(u)) => ScopeKind::IsIn(t, u),
        _ => return None,
    })
}

/// Translate a rule's condition into its conjuncts; `None` when it uses anything outside
/// the subset. The action scope is not part of it: slicing already guarantees it holds.
fn compile_condition(body: &pst::Template, symbols: &mut Symbols) -> Option<Vec<B>> {
    let mut parts = Vec::new();
    let principal = scope(E::Principal, principal_scope(&body.principal)?);
    let resource = scope(E::Resource, resource_scope(&body.resource)?);
    for part in [principal, resource] {
        if !matches!(part, B::Lit(true)) {
            push_conjuncts(&mut parts, part);
        }
    }
    let mut tr = Translator { symbols };
    for clause in body.clauses() {
        match clause {
            pst::Clause::When(e) => push_conjuncts(&mut parts, as_bool(tr.translate(e)?)?),
            pst::Clause::Unless(e) => parts.push(B::Not(Box::new(as_bool(tr.translate(e)?)?))),
        }
    }
    Some(parts)
}

/// `a && (b && c)` and `(a && b) && c` become `[a, b, c]`: the same left-to-right,
/// short-circuit evaluation with fewer indirections.
fn push_conjuncts(parts: &mut Vec<B>, b: B) {
    match b {
        B::And(ab) => {
            let (l, r) = *ab;
            push_conjuncts(parts, l);
            push_conjuncts(parts, r);
        }
        other => parts.push(other),
    }
}

fn as_bool(t: T) -> Option<B> {
    match t {
        T::B(b) => Some(b),
        _ => None,
    }
}

fn as_long(t: T) -> Option<L> {
    match t {
        T::L(l) => Some(l),
        _ => None,
    }
}

struct Translator<'a> {
    symbols: &'a mut Symbols,
}

impl Translator<'_> {
    fn translate(&mut self, e: &pst::Expr) -> Option<T> {
        use pst::{BinaryOp as Op, Expr as X, Literal as Lit, UnaryOp as U, Var};
        Some(match e {
            X::Literal(Lit::Bool(b)) => T::B(B::Lit(*b)),
            X::Literal(Lit::Long(n)) => T::L(L::Lit(*n)),
            X::Literal(Lit::String(s)) => T::S(S::Lit(s.as_str().into())),
            X::Literal(Lit::EntityUID(uid)) => T::E(entity_lit(uid)),
            X::Var(Var::Principal) => T::E(E::Principal),
            X::Var(Var::Resource) => T::E(E::Resource),
            X::Var(Var::Action) => T::E(E::Action),
            X::GetAttr { expr, attr } => match (&**expr, attr.as_str()) {
                (X::Var(Var::Context), "amount") => T::L(L::Field(LongField::Amount)),
                (X::Var(Var::Context), "currency") => T::S(S::Field(StrField::Currency)),
                (X::Var(Var::Principal), "owner") => T::S(S::Field(StrField::Owner)),
                (X::Var(Var::Principal), "trust") => T::L(L::Field(LongField::AgentTrust)),
                (X::Var(Var::Resource), "risk") => T::S(S::Field(StrField::Risk)),
                (X::Var(Var::Resource), "trust") => T::L(L::Field(LongField::CounterpartyTrust)),
                _ => return None,
            },
            X::UnaryOp { op: U::Not, expr } => T::B(B::Not(Box::new(as_bool(self.translate(expr)?)?))),
            X::UnaryOp { op: U::Neg, expr } => T::L(L::Neg(Box::new(as_long(self.translate(expr)?)?))),
            X::BinaryOp { op, left, right } => {
                let (l, r) = (self.translate(left)?, self.translate(right)?);
                let longs = |l: T, r: T| Some(Box::new((as_long(l)?, as_long(r)?)));
                let bools = |l: T, r: T| Some(Box::new((as_bool(l)?, as_bool(r)?)));
                match op {
                    Op::And => T::B(B::And(bools(l, r)?)),
                    Op::Or => T::B(B::Or(bools(l, r)?)),
                    Op::Eq => T::B(self.equality(l, r)?),
                    Op::NotEq => T::B(B::Not(Box::new(self.equality(l, r)?))),
                    Op::Less => T::B(long_cmp(CmpOp::Lt, *longs(l, r)?)),
                    Op::LessEq => T::B(long_cmp(CmpOp::Le, *longs(l, r)?)),
                    Op::Greater => T::B(long_cmp(CmpOp::Gt, *longs(l, r)?)),
                    Op::GreaterEq => T::B(long_cmp(CmpOp::Ge, *longs(l, r)?)),
                    Op::Add => T::L(L::Add(longs(l, r)?)),
                    Op::Sub => T::L(L::Sub(longs(l, r)?)),
                    Op::Mul => T::L(L::Mul(longs(l, r)?)),
                    Op::In => match (l, r) {
                        (T::E(a), T::E(b)) => T::B(ent_eq(a, b)),
                        (T::E(a), T::EntSet(set)) => T::B(B::EntIn(Box::new((a, set.into_boxed_slice())))),
                        _ => return None,
                    },
                    Op::Contains => match (l, r) {
                        (T::LongSet(set), T::L(x)) => T::B(B::LongIn(Box::new((x, set.into_boxed_slice())))),
                        (T::StrSet(set), T::S(x)) => T::B(self.str_in(x, set)),
                        (T::EntSet(set), T::E(x)) => T::B(B::EntIn(Box::new((x, set.into_boxed_slice())))),
                        _ => return None,
                    },
                    _ => return None,
                }
            }
            X::Like { expr, pattern } => match self.translate(expr)? {
                T::S(s) => T::B(B::Like(Box::new((s, Like::new(pattern))))),
                _ => return None,
            },
            X::Is { expr, entity_type, in_expr } => {
                let T::E(target) = self.translate(expr)? else {
                    return None;
                };
                let is = is_type(target.clone(), entity_type);
                match in_expr {
                    None => T::B(is),
                    Some(in_expr) => {
                        let within = match self.translate(in_expr)? {
                            T::E(b) => ent_eq(target, b),
                            T::EntSet(set) => B::EntIn(Box::new((target, set.into_boxed_slice()))),
                            _ => return None,
                        };
                        T::B(B::And(Box::new((is, within))))
                    }
                }
            }
            X::IfThenElse { cond, then_expr, else_expr } => {
                let c = as_bool(self.translate(cond)?)?;
                match (self.translate(then_expr)?, self.translate(else_expr)?) {
                    (T::B(t), T::B(e)) => T::B(B::If(Box::new((c, t, e)))),
                    (T::L(t), T::L(e)) => T::L(L::If(Box::new((c, t, e)))),
                    (T::S(t), T::S(e)) => T::S(S::If(Box::new((c, t, e)))),
                    _ => return None,
                }
            }
            X::Set(elems) => literal_set(elems)?,
            _ => return None,
        })
    }

    /// `==` on two operands of the same type. `fact == "literal"` becomes a symbol test;
    /// sound because evaluating a fact or a literal can neither fail nor have effects, so
    /// operand order does not matter.
    fn equality(&mut self, l: T, r: T) -> Option<B> {
        Some(match (l, r) {
            (T::B(a), T::B(b)) => B::BoolEq(Box::new((a, b))),
            (T::L(a), T::L(b)) => long_cmp(CmpOp::Eq, (a, b)),
            (T::S(S::Field(f)), T::S(S::Lit(s))) | (T::S(S::Lit(s)), T::S(S::Field(f))) => {
                B::FieldSymEq(f, self.symbols.intern(&s))
            }
            (T::S(a), T::S(b)) => B::StrEq(Box::new((a, b))),
            (T::E(a), T::E(b)) => ent_eq(a, b),
            _ => return None,
        })
    }

    /// `[literals].contains(x)`: a bitmask test when `x` is a fact and the symbols fit.
    fn str_in(&mut self, x: S, set: Vec<Box<str>>) -> B {
        if let S::Field(f) = x {
            let mut mask = 0u64;
            let mut fits = true;
            for s in &set {
                let sym = self.symbols.intern(s);
                if sym < 64 {
                    mask |= 1 << sym;
                } else {
                    fits = false;
                }
            }
            if fits {
                return B::FieldSymIn(f, mask);
            }
        }
        B::StrIn(Box::new((x, set.into_boxed_slice())))
    }
}

/// `a op b` on longs, as `fact op literal` when possible (same soundness argument as
/// [`Translator::equality`]).
fn long_cmp(op: CmpOp, (a, b): (L, L)) -> B {
    match (a, b) {
        (L::Field(f), L::Lit(n)) => B::FieldCmp(op, f, n),
        (L::Lit(n), L::Field(f)) => B::FieldCmp(op.swapped(), f, n),
        (a, b) => B::Cmp(op, Box::new((a, b))),
    }
}

/// A set literal whose elements are all literals of one type (Cedar sets of expressions
/// can error or mix types; those stay with Cedar).
fn literal_set(elems: &[std::sync::Arc<pst::Expr>]) -> Option<T> {
    use pst::{Expr as X, Literal as Lit};
    let first = elems.first()?;
    Some(match &**first {
        X::Literal(Lit::Long(_)) => T::LongSet(
            elems
                .iter()
                .map(|e| match &**e {
                    X::Literal(Lit::Long(n)) => Some(*n),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        X::Literal(Lit::String(_)) => T::StrSet(
            elems
                .iter()
                .map(|e| match &**e {
                    X::Literal(Lit::String(s)) => Some(s.as_str().into()),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        X::Literal(Lit::EntityUID(_)) => T::EntSet(
            elems
                .iter()
                .map(|e| match &**e {
                    X::Literal(Lit::EntityUID(u)) => Some(entity_lit(u)),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------
// Policy test suites (`agentsigna policy test PATH`)

/// Options of [`run_suite_with`]: what the caller (the CLI) already knows.
#[derive(Debug, Clone, Default)]
pub struct SuiteOptions {
    /// Policy file to test; overrides the suite's `policy` key.
    pub policy: Option<PathBuf>,
    /// Declared actions and roles (e.g. from the org file); used when the suite file does
    /// not list them itself.
    pub env: Option<PolicyEnv>,
}

/// The outcome of a test suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuiteReport {
    /// The suite file.
    pub suite: PathBuf,
    /// The policy file that was tested.
    pub policy: PathBuf,
    /// Digest of the tested policy source.
    pub digest: String,
    /// One entry per case, in file order.
    pub cases: Vec<CaseReport>,
}

/// The outcome of one test case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseReport {
    /// The case's `name`.
    pub name: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// What the policy answered.
    pub actual: Evaluation,
    /// One entry per expectation that did not hold.
    pub mismatches: Vec<Mismatch>,
}

/// An expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// `verdict`, `rules`, `approvals`, `roles`, `deadline` or `ttl`.
    pub field: String,
    /// What the case expected.
    pub expected: String,
    /// What the policy answered.
    pub actual: String,
    /// For sets: expected but missing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// For sets: present but not expected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unexpected: Vec<String>,
}

impl SuiteReport {
    /// True when every case passed.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.passed)
    }

    /// Number of failed cases.
    pub fn failures(&self) -> usize {
        self.cases.iter().filter(|c| !c.passed).count()
    }

    /// Human-readable report with an expected-vs-actual diff for every failure.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ =
            writeln!(out, "policy tests {} (policy {}, {})", self.suite.display(), self.policy.display(), self.digest);
        for case in &self.cases {
            if case.passed {
                let _ = writeln!(out, "  ok      {}", case.name);
                continue;
            }
            let _ = writeln!(out, "  FAILED  {}", case.name);
            for m in &case.mismatches {
                let label = format!("{}:", m.field);
                let _ = writeln!(out, "          {label:<10} expected {}", m.expected);
                let _ = writeln!(out, "          {:<10} actual   {}", "", m.actual);
                for r in &m.missing {
                    let _ = writeln!(out, "          {:<10} - {r} (expected, missing)", "");
                }
                for r in &m.unexpected {
                    let _ = writeln!(out, "          {:<10} + {r} (not expected)", "");
                }
            }
            for r in &case.actual.reasons {
                let _ = writeln!(
                    out,
                    "          reason:    [{}] {}: {}",
                    r.verdict.as_str(),
                    r.rule.as_deref().unwrap_or("(default)"),
                    r.reason
                );
            }
        }
        let failed = self.failures();
        let _ = writeln!(out, "{} case(s): {} passed, {} failed", self.cases.len(), self.cases.len() - failed, failed);
        out
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    policy: Option<String>,
    actions: Option<Vec<String>>,
    roles: Option<Vec<String>>,
    #[serde(default)]
    defaults: CaseInputSpec,
    #[serde(default, rename = "case")]
    cases: Vec<CaseSpec>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseInputSpec {
    action: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
    agent: Option<AgentSpec>,
    counterparty: Option<CounterpartySpec>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSpec {
    id: Option<String>,
    owner: Option<String>,
    trust: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterpartySpec {
    id: Option<String>,
    risk: Option<String>,
    trust: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    action: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
    agent: Option<AgentSpec>,
    counterparty: Option<CounterpartySpec>,
    expect: ExpectSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSpec {
    verdict: Verdict,
    rules: Option<Vec<String>>,
    approvals: Option<u32>,
    roles: Option<Vec<String>>,
    deadline: Option<String>,
    ttl: Option<String>,
}

/// Run the test cases of a suite file, with the policy it names.
///
/// # Errors
/// See [`run_suite_with`].
pub fn run_suite(path: &Path) -> Result<SuiteReport, PolicyError> {
    run_suite_with(path, &SuiteOptions::default())
}

/// Run the test cases of a suite file.
///
/// A failing case is not an error: it is reported in the [`SuiteReport`] (the CLI exits
/// non-zero when [`SuiteReport::passed`] is false).
///
/// # Format (TOML)
///
/// ```toml
/// policy = "policy.cedar"   # relative to this file; optional when the runner is given one
/// actions = ["purchase_order.create", "payment.send"]  # optional, see below
/// roles = ["finance", "risk"]                          # optional, see below
///
/// [defaults]                # optional: fields every case inherits unless it sets them
/// currency = "USD"
/// agent = { id = "buyer-1", owner = "alice@example.com", trust = 70 }
///
/// [[case]]
/// name = "small PO from a trusted agent is authorized"
/// action = "purchase_order.create"
/// amount = 50000            # integer minor units (500.00 USD); default 0
/// currency = "USD"          # default "USD"
/// agent = { id = "buyer-1", owner = "alice@example.com", trust = 70 }
/// counterparty = { id = "acme", risk = "low", trust = 80 }
/// expect = { verdict = "authorized", rules = ["small-po"] }
/// ```
///
/// * `expect.verdict` (required): `authorized`, `escalated` or `rejected`.
/// * `expect.rules` (optional): the exact set of rule ids in the verdict's reasons (order
///   does not matter; `[]` for the default deny).
/// * `expect.approvals`, `expect.roles` (set), `expect.deadline`, `expect.ttl` (ISO 8601
///   durations, compared in seconds): optional.
/// * Agent defaults: `id = "agent"`, `owner = "owner@example.com"`, `trust = 50`;
///   counterparty defaults: `id = "counterparty"`, `risk = "low"`, `trust = 50`. Trust
///   scores are 0–100, risk is `low|medium|high|blocked`.
/// * Declared actions: the suite's `actions`, else `options.env`, else every action the
///   policy's rules or the cases name. Roles likewise: `roles`, else `options.env`, else
///   every role the policy's `@approver_role` annotations name.
/// * Unknown keys are errors (a typo must not silently skip an expectation).
///
/// # Errors
/// A [`PolicyError`] when the suite cannot be read or parsed (line and column refer to the
/// suite file, whose path the message does not repeat), has no cases, a case is malformed,
/// or the policy does not compile (the message then starts with `policy-path:line:col:`).
pub fn run_suite_with(path: &Path, options: &SuiteOptions) -> Result<SuiteReport, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError::new(format!("cannot read test suite: {e}")))?;
    let suite: SuiteFile =
        toml::from_str(&text).map_err(|e| PolicyError::new(e.message().trim()).at(&text, e.span().map(|s| s.start)))?;
    if suite.cases.is_empty() {
        return Err(PolicyError::new("no test cases: add [[case]] tables (see the documented format)"));
    }
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let policy_path = match (&options.policy, &suite.policy) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => normalize(&base.join(p)),
        (None, None) => {
            return Err(PolicyError::new("no policy to test: set `policy = \"file.cedar\"` in the suite or pass one"))
        }
    };
    let policy_shown = policy_path.display().to_string();
    let source = std::fs::read_to_string(&policy_path)
        .map_err(|e| PolicyError::new(format!("cannot read policy {policy_shown}: {e}")))?;

    let inputs = suite
        .cases
        .iter()
        .map(|c| case_input(&suite.defaults, c).map_err(|m| PolicyError::new(format!("case \"{}\": {m}", c.name))))
        .collect::<Result<Vec<_>, _>>()?;
    let expectations = suite
        .cases
        .iter()
        .map(|c| {
            let dur = |field: &str, v: &Option<String>| match v {
                None => Ok(None),
                Some(v) => parse_iso_duration(v).map(Some).ok_or_else(|| {
                    PolicyError::new(format!(
                        "case \"{}\": expect.{field} must be an ISO 8601 duration such as \"PT4H\", not \"{v}\"",
                        c.name
                    ))
                }),
            };
            Ok((dur("deadline", &c.expect.deadline)?, dur("ttl", &c.expect.ttl)?))
        })
        .collect::<Result<Vec<_>, PolicyError>>()?;

    let env = PolicyEnv {
        actions: match (&suite.actions, &options.env) {
            (Some(a), _) => a.clone(),
            (None, Some(env)) => env.actions.clone(),
            (None, None) => {
                let mut actions = actions_named_in(&source);
                for input in &inputs {
                    if !actions.contains(&input.action) {
                        actions.push(input.action.clone());
                    }
                }
                actions
            }
        },
        roles: match (&suite.roles, &options.env) {
            (Some(r), _) => r.clone(),
            (None, Some(env)) => env.roles.clone(),
            (None, None) => roles_named_in(&source),
        },
    };
    // The error is about another file than the suite: say which, and where in it.
    let policy = CompiledPolicy::compile(&source, &env).map_err(|e| {
        let at = match (e.line, e.column) {
            (Some(l), Some(c)) => format!("{policy_shown}:{l}:{c}"),
            _ => policy_shown.clone(),
        };
        let rule = e.rule.as_deref().map(|r| format!(" rule {r}:")).unwrap_or_default();
        PolicyError::new(format!("{at}:{rule} {}", e.message))
    })?;

    let cases = suite
        .cases
        .iter()
        .zip(&inputs)
        .zip(&expectations)
        .map(|((case, input), (deadline, ttl))| {
            let actual = policy.evaluate(&input.as_input());
            let mismatches = compare(&case.expect, *deadline, *ttl, &actual);
            CaseReport { name: case.name.clone(), passed: mismatches.is_empty(), actual, mismatches }
        })
        .collect();
    Ok(SuiteReport { suite: path.to_path_buf(), policy: policy_path, digest: policy.digest(), cases })
}

/// `tests/../policy.cedar` → `policy.cedar`, lexically (for display; no file system access).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else {
                    out.push(part);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// A fully resolved case input (owned, so a [`PolicyInput`] can borrow from it).
struct OwnedInput {
    agent_id: String,
    agent_owner: String,
    agent_trust: i64,
    action: String,
    counterparty_id: String,
    counterparty_risk: String,
    counterparty_trust: i64,
    amount_minor: i64,
    currency: String,
}

impl OwnedInput {
    fn as_input(&self) -> PolicyInput<'_> {
        PolicyInput {
            agent_id: &self.agent_id,
            agent_owner: &self.agent_owner,
            agent_trust: self.agent_trust,
            action: &self.action,
            counterparty_id: &self.counterparty_id,
            counterparty_risk: &self.counterparty_risk,
            counterparty_trust: self.counterparty_trust,
            amount_minor: self.amount_minor,
            currency: &self.currency,
        }
    }
}

fn case_input(defaults: &CaseInputSpec, case: &CaseSpec) -> Result<OwnedInput, String> {
    let agent = case.agent.clone().unwrap_or_default();
    let agent_default = defaults.agent.clone().unwrap_or_default();
    let cp = case.counterparty.clone().unwrap_or_default();
    let cp_default = defaults.counterparty.clone().unwrap_or_default();
    let action = case
        .action
        .clone()
        .or_else(|| defaults.action.clone())
        .ok_or("no action (set `action` in the case or in [defaults])")?;
    let trust = |who: &str, v: i64| {
        if (0..=100).contains(&v) {
            Ok(v)
        } else {
            Err(format!("{who}.trust must be 0–100, not {v}"))
        }
    };
    let risk = cp.risk.or(cp_default.risk).unwrap_or_else(|| "low".to_owned());
    if !["low", "medium", "high", "blocked"].contains(&risk.as_str()) {
        return Err(format!("counterparty.risk must be low, medium, high or blocked, not \"{risk}\""));
    }
    Ok(OwnedInput {
        agent_id: agent.id.or(agent_default.id).unwrap_or_else(|| "agent".to_owned()),
        agent_owner: agent.owner.or(agent_default.owner).unwrap_or_else(|| "owner@example.com".to_owned()),
        agent_trust: trust("agent", agent.trust.or(agent_default.trust).unwrap_or(50))?,
        action,
        counterparty_id: cp.id.or(cp_default.id).unwrap_or_else(|| "counterparty".to_owned()),
        counterparty_risk: risk,
        counterparty_trust: trust("counterparty", cp.trust.or(cp_default.trust).unwrap_or(50))?,
        amount_minor: case.amount.or(defaults.amount).unwrap_or(0),
        currency: case.currency.clone().or_else(|| defaults.currency.clone()).unwrap_or_else(|| "USD".to_owned()),
    })
}

fn compare(expect: &ExpectSpec, deadline: Option<i64>, ttl: Option<i64>, actual: &Evaluation) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let plain = |field: &str, expected: String, actual: String| Mismatch {
        field: field.to_owned(),
        expected,
        actual,
        missing: Vec::new(),
        unexpected: Vec::new(),
    };
    let list = |v: &BTreeSet<&str>| format!("[{}]", v.iter().copied().collect::<Vec<_>>().join(", "));
    let set_mismatch = |field: &str, expected: &[String], actual: Vec<&str>| {
        let e: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
        let a: BTreeSet<&str> = actual.into_iter().collect();
        (e != a).then(|| Mismatch {
            field: field.to_owned(),
            expected: list(&e),
            actual: list(&a),
            missing: e.difference(&a).map(|s| (*s).to_owned()).collect(),
            unexpected: a.difference(&e).map(|s| (*s).to_owned()).collect(),
        })
    };
    if expect.verdict != actual.verdict {
        out.push(plain("verdict", expect.verdict.to_string(), actual.verdict.to_string()));
    }
    if let Some(rules) = &expect.rules {
        out.extend(set_mismatch("rules", rules, actual.rule_ids()));
    }
    if let Some(n) = expect.approvals {
        if n != actual.approvals_required {
            out.push(plain("approvals", n.to_string(), actual.approvals_required.to_string()));
        }
    }
    if let Some(roles) = &expect.roles {
        out.extend(set_mismatch("roles", roles, actual.roles_required.iter().map(String::as_str).collect()));
    }
    let secs = |v: Option<i64>| v.map_or_else(|| "default".to_owned(), |s| format!("{s}s"));
    if expect.deadline.is_some() && deadline != actual.deadline_secs {
        out.push(plain("deadline", secs(deadline), secs(actual.deadline_secs)));
    }
    if expect.ttl.is_some() && ttl != actual.ttl_secs {
        out.push(plain("ttl", secs(ttl), secs(actual.ttl_secs)));
    }
    out
}

/// Actions named by the action scopes of a policy (best effort: unparsable → none).
fn actions_named_in(source: &str) -> Vec<String> {
    let Ok(set) = PolicySet::from_str(source) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    let mut add = |uid: &EntityUid| {
        let a = uid.id().unescaped().to_owned();
        if !out.contains(&a) {
            out.push(a);
        }
    };
    let mut policies: Vec<&Policy> = set.policies().collect();
    policies.sort_by_key(|p| generated_index(p.id()));
    for p in policies {
        match p.action_constraint() {
            ActionConstraint::Any => {}
            ActionConstraint::Eq(uid) => add(&uid),
            ActionConstraint::In(uids) => uids.iter().for_each(&mut add),
        }
    }
    out
}

/// Roles named by `@approver_role` annotations (best effort).
fn roles_named_in(source: &str) -> Vec<String> {
    let Ok(set) = PolicySet::from_str(source) else {
        return Vec::new();
    };
    let roles: BTreeSet<String> =
        set.policies().filter_map(|p| p.annotation("approver_role").map(str::to_owned)).collect();
    roles.into_iter().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PO: &str = "purchase_order.create";
    const PAY: &str = "payment.send";

    fn env() -> PolicyEnv {
        PolicyEnv {
            actions: vec![PO.into(), PAY.into(), "vendor.onboard".into()],
            roles: vec!["finance".into(), "risk".into(), "legal".into()],
        }
    }

    fn compile(src: &str) -> CompiledPolicy {
        match CompiledPolicy::compile(src, &env()) {
            Ok(p) => p,
            Err(e) => panic!("policy refused: {}", e.describe()),
        }
    }

    fn refuse(src: &str) -> PolicyError {
        match CompiledPolicy::compile(src, &env()) {
            Ok(_) => panic!("policy accepted:\n{src}"),
            Err(e) => e,
        }
    }

    fn input(action: &str, amount: i64) -> PolicyInput<'_> {
        PolicyInput {
            agent_id: "buyer-1",
            agent_owner: "alice@example.com",
            agent_trust: 70,
            action,
            counterparty_id: "acme",
            counterparty_risk: "low",
            counterparty_trust: 80,
            amount_minor: amount,
            currency: "USD",
        }
    }

    /// Evaluate on both paths and insist they agree.
    fn eval(p: &CompiledPolicy, i: &PolicyInput<'_>) -> Evaluation {
        let fast = p.evaluate(i);
        let reference = p.evaluate_reference(i);
        assert_eq!(fast, reference, "fast path and Cedar disagree for {i:?}");
        fast
    }

    const BASE: &str = r#"
@id("small-po")
@reason("small purchase orders from trusted agents")
@ttl("PT10M")
permit(principal, action == Action::"purchase_order.create", resource)
when { context.amount <= 1000000 && principal.trust >= 50 };

@id("large-po")
@verdict("escalate")
@approvals("2")
@approver_role("finance")
@deadline("PT4H")
forbid(principal, action == Action::"purchase_order.create", resource)
when { context.amount > 500000 };

@id("risky-counterparty")
@verdict("escalate")
@approver_role("risk")
@deadline("PT2H")
@ttl("PT3M")
forbid(principal, action, resource)
when { resource.risk == "high" };

@id("blocked")
@reason("counterparty is blocked")
forbid(principal, action, resource)
when { resource.risk == "blocked" };

@id("low-trust")
@verdict("reject")
forbid(principal, action, resource)
when { principal.trust < 20 };
"#;

    #[test]
    fn authorized_names_satisfied_permits_with_reason_and_ttl() {
        let p = compile(BASE);
        let e = eval(&p, &input(PO, 50_000));
        assert_eq!(e.verdict, Verdict::Authorized);
        assert_eq!(
            e.reasons,
            vec![Reason {
                rule: Some("small-po".into()),
                verdict: RuleVerdict::Authorize,
                reason: "small purchase orders from trusted agents".into(),
            }]
        );
        assert_eq!(e.ttl_secs, Some(600));
        assert_eq!(e.approvals_required, 0);
        assert!(e.roles_required.is_empty());
        assert_eq!(e.deadline_secs, None);
    }

    #[test]
    fn default_deny_when_no_permit() {
        let p = compile(BASE);
        // No permit for payments at all.
        let e = eval(&p, &input(PAY, 10));
        assert_eq!(e.verdict, Verdict::Rejected);
        assert_eq!(
            e.reasons,
            vec![Reason { rule: None, verdict: RuleVerdict::Reject, reason: DEFAULT_DENY_REASON.into() }]
        );
        // Permit's condition false (too large, and not even escalated since no permit).
        let e = eval(&p, &input(PO, 2_000_000));
        assert_eq!(e.verdict, Verdict::Rejected);
        assert_eq!(e.reasons[0].rule, None);
        // An empty policy rejects everything.
        let empty = compile("// nothing yet\n");
        assert_eq!(eval(&empty, &input(PO, 1)).verdict, Verdict::Rejected);
        assert!(empty.rules().is_empty());
    }

    #[test]
    fn escalation_collects_approvals_roles_deadline_and_ttl() {
        let p = compile(BASE);
        let mut i = input(PO, 600_000);
        let e = eval(&p, &i);
        assert_eq!(e.verdict, Verdict::Escalated);
        assert_eq!(e.rule_ids(), vec!["large-po"]);
        assert_eq!(e.reasons[0].verdict, RuleVerdict::Escalate);
        assert_eq!(e.reasons[0].reason, "escalated by rule large-po");
        assert_eq!(e.approvals_required, 2);
        assert_eq!(e.roles_required, vec!["finance".to_owned()]);
        assert_eq!(e.deadline_secs, Some(4 * 3600));
        // ttl: the permit that makes it allowable still bounds the passport.
        assert_eq!(e.ttl_secs, Some(600));

        // Two escalate rules: max approvals, union of roles, shortest deadline and ttl.
        i.counterparty_risk = "high";
        let e = eval(&p, &i);
        assert_eq!(e.verdict, Verdict::Escalated);
        assert_eq!(e.rule_ids(), vec!["large-po", "risky-counterparty"]);
        assert_eq!(e.approvals_required, 2);
        assert_eq!(e.roles_required, vec!["finance".to_owned(), "risk".to_owned()]);
        assert_eq!(e.deadline_secs, Some(2 * 3600));
        assert_eq!(e.ttl_secs, Some(180));

        // One escalate rule without @approvals → 1 approval.
        i.amount_minor = 100;
        let e = eval(&p, &i);
        assert_eq!(e.rule_ids(), vec!["risky-counterparty"]);
        assert_eq!(e.approvals_required, 1);
        assert_eq!(e.roles_required, vec!["risk".to_owned()]);
    }

    #[test]
    fn roles_are_sorted_and_deduplicated() {
        let p = compile(
            r#"@id("ok") permit(principal, action, resource);
@id("e1") @verdict("escalate") @approver_role("risk") forbid(principal, action, resource);
@id("e2") @verdict("escalate") @approver_role("finance") @approvals("3") forbid(principal, action, resource);
@id("e3") @verdict("escalate") @approver_role("risk") forbid(principal, action, resource);"#,
        );
        let e = eval(&p, &input(PAY, 1));
        assert_eq!(e.verdict, Verdict::Escalated);
        assert_eq!(e.rule_ids(), vec!["e1", "e2", "e3"]);
        assert_eq!(e.roles_required, vec!["finance".to_owned(), "risk".to_owned()]);
        assert_eq!(e.approvals_required, 3);
        assert_eq!(e.deadline_secs, None);
    }

    #[test]
    fn reject_beats_escalate_and_permit() {
        let p = compile(BASE);
        let mut i = input(PO, 600_000); // escalates via large-po...
        i.counterparty_risk = "blocked"; // ...but blocked rejects
        let e = eval(&p, &i);
        assert_eq!(e.verdict, Verdict::Rejected);
        assert_eq!(
            e.reasons,
            vec![Reason {
                rule: Some("blocked".into()),
                verdict: RuleVerdict::Reject,
                reason: "counterparty is blocked".into()
            }]
        );
        assert_eq!(e.ttl_secs, None);
        // Two reject rules: both named, in source order; explicit @verdict("reject")
        // without @reason gets the default text.
        i.agent_trust = 10;
        let e = eval(&p, &i);
        assert_eq!(e.rule_ids(), vec!["blocked", "low-trust"]);
        assert_eq!(e.reasons[1].reason, "rejected by rule low-trust");
        // A reject rule beats a satisfied permit.
        let e = eval(&p, &PolicyInput { counterparty_risk: "blocked", ..input(PO, 100) });
        assert_eq!(e.verdict, Verdict::Rejected);
        assert_eq!(e.rule_ids(), vec!["blocked"]);
    }

    #[test]
    fn escalate_without_permit_is_rejected() {
        let p = compile(BASE);
        let mut i = input(PAY, 1); // no permit for payments
        i.counterparty_risk = "high"; // escalate rule fires
        let e = eval(&p, &i);
        assert_eq!(e.verdict, Verdict::Rejected);
        assert_eq!(e.reasons[0].rule, None);
        assert_eq!(e.reasons[0].reason, DEFAULT_DENY_REASON);
        assert_eq!(e.approvals_required, 0);
    }

    const OVERFLOW: &str = r#"
@id("allow-all") permit(principal, action, resource);
@id("overflowing") forbid(principal, action, resource)
when { context.amount * 9223372036854775807 > 0 };
@id("also-overflowing") @verdict("escalate") forbid(principal, action == Action::"payment.send", resource)
when { context.amount + 9223372036854775807 > 0 };
@id("guarded") forbid(principal, action, resource)
when { context.amount > 5 && context.amount * 9223372036854775807 > 0 };
"#;

    #[test]
    fn evaluation_error_fails_closed_naming_each_rule() {
        let p = compile(OVERFLOW);
        let e = eval(&p, &input(PO, 2));
        assert_eq!(e.verdict, Verdict::Rejected);
        assert_eq!(e.rule_ids(), vec!["overflowing"]);
        assert_eq!(e.reasons[0].verdict, RuleVerdict::Reject);
        assert!(
            e.reasons[0].reason.starts_with("evaluation error in rule overflowing: integer overflow"),
            "{}",
            e.reasons[0].reason
        );
        // Both erroring rules are named (and the guarded one too once its guard holds).
        let e = eval(&p, &input(PAY, 7));
        assert_eq!(e.rule_ids(), vec!["overflowing", "also-overflowing", "guarded"]);
        assert!(e.reasons.iter().all(|r| r.verdict == RuleVerdict::Reject));
        // Cedar alone would skip the erroring forbid and allow: check that we do not.
        let cedar = Authorizer::new();
        let (req, ents) = p.cedar_request(p.slices.get(PO).unwrap(), &input(PO, 2)).unwrap();
        let r = cedar.is_authorized(&req, p.cedar_policy_set(), &ents);
        assert_eq!(r.decision(), cedar_policy::Decision::Allow);
        // Amount 0: no overflow, the permit authorizes.
        assert_eq!(eval(&p, &input(PO, 0)).verdict, Verdict::Authorized);
    }

    #[test]
    fn undeclared_action_is_rejected() {
        let p = compile(BASE);
        let e = eval(&p, &input("wire.transfer", 1));
        assert_eq!(e.verdict, Verdict::Rejected);
        assert_eq!(e.reasons[0].rule, None);
        assert_eq!(e.reasons[0].reason, "action wire.transfer is not declared");
    }

    #[test]
    fn rules_digest_and_source() {
        let p = compile(BASE);
        let ids: Vec<&str> = p.rules().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(parse_iso_duration("P106751991167300D"), Some(9_223_372_036_854_720_000));
        assert_eq!(ids, ["small-po", "large-po", "risky-counterparty", "blocked", "low-trust"]);
        let large = p.rule("large-po").unwrap();
        assert_eq!(large.effect, "forbid");
        assert_eq!(large.tier, RuleVerdict::Escalate);
        assert_eq!(large.approvals, Some(2));
        assert_eq!(large.approver_role.as_deref(), Some("finance"));
        assert_eq!(large.deadline_secs, Some(14_400));
        assert!(large.source.starts_with("@id(\"large-po\")"), "{}", large.source);
        assert!(large.source.ends_with("when { context.amount > 500000 };"));
        assert_eq!(p.rule("blocked").unwrap().tier, RuleVerdict::Reject);
        assert_eq!(p.rule("small-po").unwrap().tier, RuleVerdict::Authorize);
        assert!(p.rule("nope").is_none());
        assert_eq!(p.source(), BASE);
        assert_eq!(p.digest(), format!("sha256:{}", hex::encode(Sha256::digest(BASE.as_bytes()))));
        assert_eq!(p.digest().len(), 7 + 64);
        let stats = p.stats();
        assert_eq!(stats.rules, 5);
        assert_eq!(stats.fast_rules, 5);
        assert_eq!(stats.cedar_rules, 0);
        assert_eq!(stats.max_slice, 5);
    }

    #[test]
    fn compiled_policy_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<CompiledPolicy>();
        check::<std::sync::Arc<CompiledPolicy>>();
    }

    #[test]
    fn fast_path_nodes_stay_small() {
        // The evaluation loop is bound by memory traffic; keep nodes at 16 bytes.
        assert_eq!(std::mem::size_of::<B>(), 16);
        assert_eq!(std::mem::size_of::<L>(), 16);
    }

    #[test]
    fn slicing_by_action_scope() {
        let p = compile(
            r#"@id("po") permit(principal, action == Action::"purchase_order.create", resource);
@id("both") permit(principal, action in [Action::"payment.send", Action::"vendor.onboard"], resource)
when { context.amount < 10 };
@id("any") forbid(principal, action, resource) when { context.currency == "XXX" };"#,
        );
        assert_eq!(p.slices.get(PO).unwrap().len, 2);
        assert_eq!(p.slices.get(PAY).unwrap().len, 2);
        assert_eq!(eval(&p, &input(PO, 100)).rule_ids(), vec!["po"]);
        assert_eq!(eval(&p, &input(PAY, 5)).rule_ids(), vec!["both"]);
        assert_eq!(eval(&p, &input("vendor.onboard", 5)).rule_ids(), vec!["both"]);
        assert_eq!(eval(&p, &input(PAY, 50)).verdict, Verdict::Rejected);
        let mut i = input(PO, 1);
        i.currency = "XXX";
        assert_eq!(eval(&p, &i).rule_ids(), vec!["any"]);
    }

    #[test]
    fn expressions_outside_the_fast_subset_use_cedar() {
        // `has`, containsAny and decimal() are not translated; they still work.
        let p = compile(
            r#"@id("has") permit(principal, action, resource) when { resource has risk && ["low","medium"].containsAny([resource.risk]) };
@id("fast") permit(principal, action, resource) when { principal.owner like "*@example.com" };
@id("dec") forbid(principal, action, resource) when { decimal("1.5").lessThan(decimal("1.0")) };"#,
        );
        let stats = p.stats();
        assert_eq!((stats.fast_rules, stats.cedar_rules), (1, 2));
        assert_eq!(eval(&p, &input(PO, 1)).rule_ids(), vec!["has", "fast"]);
        let mut i = input(PO, 1);
        i.agent_owner = "mallory@evil.test";
        i.counterparty_risk = "high";
        assert_eq!(eval(&p, &i).verdict, Verdict::Rejected);
    }

    #[test]
    fn like_matches_like_cedar() {
        let cases = [
            ("*@example.com", "alice@example.com", true),
            ("*@example.com", "alice@example.org", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("a**", "abc", true),
            ("é*ü", "éaaü", true),
            ("*a", "bbbba", true),
            ("*ab", "aab", true),
        ];
        for (pattern, text, expected) in cases {
            let elems: Vec<pst::PatternElem> = pattern
                .chars()
                .map(|c| if c == '*' { pst::PatternElem::Wildcard } else { pst::PatternElem::Char(c) })
                .collect();
            assert_eq!(wildcard_match(text, &elems), expected, "{pattern} ~ {text}");
        }
    }

    proptest! {
        #[test]
        fn specialised_like_agrees_with_the_general_matcher(
            pattern in "[ab*]{0,6}",
            text in "[abé]{0,6}",
        ) {
            let elems: Vec<pst::PatternElem> = pattern
                .chars()
                .map(|c| if c == '*' { pst::PatternElem::Wildcard } else { pst::PatternElem::Char(c) })
                .collect();
            prop_assert_eq!(Like::new(&elems).matches(&text), wildcard_match(&text, &elems));
        }
    }

    // --- annotations ---------------------------------------------------------------

    fn assert_refused(src: &str, needle: &str, line: u32) -> PolicyError {
        let e = refuse(src);
        assert!(e.message.contains(needle), "message {:?} lacks {needle:?}", e.message);
        assert_eq!(e.line, Some(line), "{e:?}");
        assert!(e.column.is_some(), "{e:?}");
        e
    }

    #[test]
    fn annotation_errors_are_refused_with_messages() {
        let e = assert_refused("permit(principal, action, resource);", "needs an @id", 1);
        assert_eq!(e.rule, None);
        assert_refused(
            "@id(\"a\") permit(principal, action, resource);\n@id(\"b\") permit(principal, action, resource);\n@id(\"a\") forbid(principal, action, resource);",
            "duplicate rule id `a` (first used at line 1)",
            3,
        );
        assert_refused("@id(\"  \") permit(principal, action, resource);", "@id must be a non-empty", 1);
        assert_refused("@id permit(principal, action, resource);", "@id must be a non-empty", 1);
        let e = assert_refused(
            "@id(\"p\")\n@verdict(\"escalate\")\npermit(principal, action, resource);",
            "@verdict is only allowed on forbid",
            2,
        );
        assert_eq!(e.rule.as_deref(), Some("p"));
        assert_eq!(e.column, Some(1));
        assert_refused(
            "@id(\"f\") @verdict(\"maybe\") forbid(principal, action, resource);",
            "@verdict must be \"escalate\" or \"reject\", not \"maybe\"",
            1,
        );
        for bad in ["0", "-1", "two", "1.5", "+2", ""] {
            assert_refused(
                &format!(
                    "@id(\"f\") @verdict(\"escalate\") @approvals(\"{bad}\") forbid(principal, action, resource);"
                ),
                "@approvals must be a positive integer",
                1,
            );
        }
        assert_refused(
            "@id(\"f\")\n@approvals(\"2\")\nforbid(principal, action, resource);",
            "@approvals only applies to escalate rules",
            2,
        );
        assert_refused(
            "@id(\"p\") @approvals(\"2\") permit(principal, action, resource);",
            "@approvals only applies to escalate rules",
            1,
        );
        assert_refused(
            "@id(\"f\") @verdict(\"escalate\") @approver_role(\"ceo\") forbid(principal, action, resource);",
            "unknown approver role \"ceo\" (known roles: finance, risk, legal)",
            1,
        );
        assert_refused(
            "@id(\"f\") @verdict(\"reject\") @approver_role(\"risk\") forbid(principal, action, resource);",
            "@approver_role only applies to escalate rules",
            1,
        );
        assert_refused(
            "@id(\"f\") @verdict(\"escalate\") @deadline(\"4 hours\") forbid(principal, action, resource);",
            "@deadline must be a positive ISO 8601 duration",
            1,
        );
        assert_refused(
            "@id(\"f\") @deadline(\"PT4H\") forbid(principal, action, resource);",
            "@deadline only applies to escalate rules",
            1,
        );
        assert_refused(
            "@id(\"p\") @ttl(\"PT0S\") permit(principal, action, resource);",
            "@ttl must be a positive ISO 8601 duration",
            1,
        );
        assert_refused(
            "@id(\"p\")\n  @approval(\"2\") permit(principal, action, resource);",
            "unknown annotation @approval",
            1,
        );
        // No roles declared at all.
        let e = CompiledPolicy::compile(
            "@id(\"f\") @verdict(\"escalate\") @approver_role(\"risk\") forbid(principal, action, resource);",
            &PolicyEnv { actions: vec![PO.into()], roles: vec![] },
        )
        .unwrap_err();
        assert!(e.message.contains("no roles are declared"), "{e:?}");
    }

    #[test]
    fn annotation_values_are_accepted() {
        let p = compile(
            "@id(\"f\") @verdict(\"escalate\") @approvals(\"12\") @approver_role(\"legal\") @deadline(\"P1D\") @ttl(\"PT90S\") @reason(\"  \") forbid(principal, action, resource);",
        );
        let r = p.rule("f").unwrap();
        assert_eq!((r.approvals, r.deadline_secs, r.ttl_secs), (Some(12), Some(86_400), Some(90)));
        assert_eq!(r.reason, None); // blank reason → default text
    }

    // --- Cedar errors with locations ------------------------------------------------

    #[test]
    fn strict_validation_errors_have_rule_line_and_column() {
        let e = assert_refused(
            "@id(\"a\")\npermit(principal, action, resource)\n  when { principal.trusty > 3 };",
            "attribute `trusty` on entity type `Agent` not found",
            3,
        );
        assert_eq!(e.rule.as_deref(), Some("a"));
        assert_eq!(e.column, Some(10));
        assert!(e.message.contains("did you mean `trust`?"), "{}", e.message);

        let e = assert_refused(
            "@id(\"ok\") permit(principal, action, resource);\n@id(\"b\") permit(principal, action == Action::\"wire.transfer\", resource);",
            "unrecognized action `Action::\"wire.transfer\"`",
            2,
        );
        assert_eq!(e.rule.as_deref(), Some("b"));
        assert_eq!(e.column, Some(38));

        assert_refused(
            "@id(\"t\") permit(principal, action, resource) when { context.amount > \"100\" };",
            "unexpected type",
            1,
        );
        assert_refused(
            "@id(\"c\") permit(principal, action, resource) when { context.cost_center == \"IT\" };",
            "cost_center",
            1,
        );
        assert_refused("@id(\"u\") permit(principal == User::\"x\", action, resource);", "User", 1);
        // `.describe()` is one readable line.
        let e = refuse("@id(\"a\")\npermit(principal, action, resource) when { principal.trusty > 3 };");
        assert!(e.describe().starts_with("line 2, column 44, rule a: "), "{}", e.describe());
    }

    #[test]
    fn syntax_errors_and_templates_have_locations() {
        let e = assert_refused(
            "@id(\"a\") permit(principal, action, resource);\n\n@id(\"b\") permit(principal, action, resource) when { context.amount > };",
            "",
            3,
        );
        assert!(e.column.unwrap() > 50, "{e:?}");
        let e = assert_refused(
            "@id(\"a\") permit(principal, action, resource);\n@id(\"t\") permit(principal == ?principal, action, resource);",
            "templates",
            2,
        );
        assert_eq!(e.column, Some(1));
        // Non-ASCII before the error: columns count characters.
        let e = refuse("// é\n@id(\"é\") permit(principal, action, resource) when { principal.x };");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.column, Some(53), "{e:?}"); // 54 if bytes were counted
    }

    #[test]
    fn overly_deep_or_complex_rules_are_refused() {
        let ok = format!(
            "@id(\"a\") permit(principal, action, resource) when {{ {} }};",
            vec!["context.amount > 1"; 20].join(" && ")
        );
        compile(&ok);
        // A second rule of the same size is fine: the budget is per rule.
        compile(&format!("{ok}\n{}", ok.replace("\"a\"", "\"b\"")));
        let chain = format!(
            "// a comment with && || . and \"quotes\n@id(\"a\") permit(principal, action, resource)\nwhen {{ {} }};",
            vec!["context.amount > 1"; 50].join(" && ")
        );
        let e = assert_refused(&chain, "rule is too complex: more than 64 operators", 3);
        assert!(e.column.unwrap() > 100, "{e:?}");
        let nested = format!(
            "@id(\"a\") permit(principal, action, resource) when {{ {}true{} }};",
            "(".repeat(40),
            ")".repeat(40)
        );
        assert_refused(&nested, "nested too deeply: more than 32 levels", 1);
        // Strings and comments do not count.
        compile(&format!(
            "@id(\"a\") @reason(\"{}\") permit(principal, action, resource); // {}",
            "((((&&||..".repeat(100),
            "((((&&||..".repeat(100)
        ));
        // 1,000 nested parentheses used to abort the process (stack overflow).
        let e = refuse(&format!(
            "@id(\"a\") permit(principal, action, resource) when {{ {}true{} }};",
            "(".repeat(1000),
            ")".repeat(1000)
        ));
        assert!(e.message.contains("nested too deeply"));
    }

    /// At the complexity limits, both evaluation paths fit in a tokio worker's 2 MiB stack,
    /// even in debug builds (release builds need a fraction of it), so they agree.
    #[test]
    fn rules_at_the_limits_fit_a_worker_stack() {
        let rules = [
            // 62 operators: 21 comparisons, 21 member accesses, 20 `&&`.
            vec!["context.amount > 1"; 21].join(" && "),
            // 63 operators through Cedar (`has` is not on the fast path).
            vec!["resource has risk"; 32].join(" || "),
            format!("{}context.amount > 1{}", "(".repeat(29), ")".repeat(29)),
        ];
        for body in rules {
            let src = format!("@id(\"a\") permit(principal, action, resource) when {{ {body} }};");
            let result = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || {
                    let p = CompiledPolicy::compile(&src, &env()).unwrap();
                    let i = input(PO, 5);
                    (p.evaluate(&i), p.evaluate_reference(&i))
                })
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(result.0, result.1);
            assert_eq!(result.0.verdict, Verdict::Authorized, "{:?}", result.0);
        }
    }

    #[test]
    fn bad_action_names_do_not_break_the_schema() {
        let env = PolicyEnv { actions: vec!["we\"ird\\name".into(), "ok".into(), "ok".into()], roles: vec![] };
        let p = CompiledPolicy::compile(
            "@id(\"w\") permit(principal, action == Action::\"we\\\"ird\\\\name\", resource);",
            &env,
        )
        .unwrap();
        assert_eq!(p.evaluate(&input("we\"ird\\name", 1)).verdict, Verdict::Authorized);
        assert_eq!(p.evaluate(&input("ok", 1)).verdict, Verdict::Rejected);
        let e = CompiledPolicy::compile("", &PolicyEnv { actions: vec![String::new()], roles: vec![] });
        assert!(e.is_err());
    }

    #[test]
    fn iso_durations() {
        let ok = [
            ("P1D", 86_400),
            ("PT4H", 14_400),
            ("PT30M", 1_800),
            ("PT90S", 90),
            ("P1DT2H3M4S", 86_400 + 7_200 + 180 + 4),
            ("PT1H30M", 5_400),
            ("P2W", 1_209_600),
            ("PT0S", 0),
        ];
        for (text, secs) in ok {
            assert_eq!(parse_iso_duration(text), Some(secs), "{text}");
        }
        for bad in [
            "",
            "P",
            "PT",
            "P1DT",
            "4H",
            "PT4",
            "PT4h",
            "PTH",
            "P1H",
            "PT1D",
            "PT1M1H",
            "PT1H1H",
            "P1.5D",
            "PT-1S",
            "P1W1D",
            "P99999999999999999999D",
            "P106751991167301D",
            " PT1H",
        ] {
            assert_eq!(parse_iso_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn schema_text_is_the_documented_schema() {
        let s = schema_text(&env());
        assert!(s.contains("entity Agent {\n  owner: String,\n  trust: Long\n};"));
        assert!(s.contains("entity Counterparty {\n  risk: String,\n  trust: Long\n};"));
        assert!(s.contains("action \"purchase_order.create\" appliesTo {"));
        assert_eq!(s.matches("action \"").count(), 3);
        assert!(Schema::from_cedarschema_str(&s).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

        #[test]
        fn garbage_is_refused_without_panic(src in ".{0,200}") {
            let _ = CompiledPolicy::compile(&src, &env());
        }

        #[test]
        fn token_soup_is_refused_without_panic(tokens in proptest::collection::vec(prop_oneof![
            Just("permit"), Just("forbid"), Just("("), Just(")"), Just("{"), Just("}"), Just(";"),
            Just("principal"), Just("action"), Just("resource"), Just("context"), Just(","),
            Just("when"), Just("unless"), Just("=="), Just("in"), Just("@id(\"x\")"), Just("@verdict(\"escalate\")"),
            Just("Action::\"payment.send\""), Just("."), Just("amount"), Just("1"), Just("\""), Just("?principal"),
            Just("&&"), Just("if"), Just("then"), Just("else"), Just("is"), Just("Agent"), Just("[") , Just("]"),
        ], 0..40)) {
            let src = tokens.join(" ");
            let _ = CompiledPolicy::compile(&src, &env());
        }
    }

    // --- differential testing: fast path == Cedar ------------------------------------

    fn arb_long() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("context.amount".to_owned()),
            Just("principal.trust".to_owned()),
            Just("resource.trust".to_owned()),
            (0i64..2_000_000).prop_map(|n| n.to_string()),
            Just("9223372036854775807".to_owned()),
        ]
    }

    fn arb_atom() -> impl Strategy<Value = String> {
        let cmp = prop_oneof![Just("<"), Just("<="), Just(">"), Just(">="), Just("=="), Just("!=")];
        let arith = prop_oneof![Just("+"), Just("-"), Just("*")];
        prop_oneof![
            (arb_long(), cmp.clone(), arb_long()).prop_map(|(a, o, b)| format!("{a} {o} {b}")),
            (arb_long(), arith, arb_long(), cmp, arb_long())
                .prop_map(|(a, x, b, o, c)| format!("({a} {x} {b}) {o} {c}")),
            arb_long().prop_map(|a| format!("-({a}) < 0")),
            prop_oneof![Just("low"), Just("medium"), Just("high"), Just("blocked")]
                .prop_map(|r| format!("resource.risk == \"{r}\"")),
            Just("[\"high\", \"blocked\"].contains(resource.risk)".to_owned()),
            Just("[1, 50, 70].contains(principal.trust)".to_owned()),
            Just("context.currency != \"USD\"".to_owned()),
            Just("principal.owner like \"*@example.com\"".to_owned()),
            Just("principal == Agent::\"buyer-1\"".to_owned()),
            Just("resource in [Counterparty::\"acme\", Counterparty::\"globex\"]".to_owned()),
            Just("action == Action::\"payment.send\"".to_owned()),
            Just("principal is Agent".to_owned()),
            Just("resource is Counterparty in Counterparty::\"acme\"".to_owned()),
            Just("(if principal.trust > 60 then context.amount else resource.trust) < 1000".to_owned()),
            Just("(if resource.trust > 60 then \"a\" else principal.owner) == \"a\"".to_owned()),
            Just("(principal.trust > 10) == (resource.trust > 10)".to_owned()),
            // Outside the fast subset: forces mixed fast/Cedar slices.
            Just("resource has risk".to_owned()),
            Just("[principal.trust, 5].contains(resource.trust)".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
        ]
    }

    fn arb_bool() -> impl Strategy<Value = String> {
        arb_atom().prop_recursive(3, 12, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} && {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} || {b})")),
                inner.clone().prop_map(|a| format!("!({a})")),
                (inner.clone(), inner.clone(), inner).prop_map(|(c, a, b)| format!("(if {c} then {a} else {b})")),
            ]
        })
    }

    fn arb_rule() -> impl Strategy<Value = (u8, u8, u8, u8, Vec<(bool, String)>)> {
        (0u8..4, 0u8..4, 0u8..3, 0u8..3, proptest::collection::vec((any::<bool>(), arb_bool()), 0..3))
    }

    fn render_rule(i: usize, (kind, act, pscope, rscope, clauses): &(u8, u8, u8, u8, Vec<(bool, String)>)) -> String {
        let head = match kind {
            0 | 1 => format!("@id(\"r{i}\") permit"),
            2 => format!("@id(\"r{i}\") @verdict(\"escalate\") @approvals(\"{}\") forbid", i % 3 + 1),
            _ => format!("@id(\"r{i}\") forbid"),
        };
        let action = match act {
            0 => "action".to_owned(),
            1 => "action == Action::\"purchase_order.create\"".to_owned(),
            2 => "action in [Action::\"payment.send\", Action::\"purchase_order.create\"]".to_owned(),
            _ => "action == Action::\"payment.send\"".to_owned(),
        };
        let principal = match pscope {
            0 => "principal",
            1 => "principal == Agent::\"buyer-1\"",
            _ => "principal is Agent",
        };
        let resource = match rscope {
            0 => "resource",
            1 => "resource in Counterparty::\"acme\"",
            _ => "resource is Counterparty",
        };
        let body: String =
            clauses.iter().map(|(when, b)| format!(" {} {{ {b} }}", if *when { "when" } else { "unless" })).collect();
        format!("{head}({principal}, {action}, {resource}){body};\n")
    }

    fn arb_input() -> impl Strategy<Value = (i64, i64, i64, usize, usize, usize, usize, usize)> {
        (
            prop_oneof![Just(0i64), Just(1), Just(999), 0i64..3_000_000, Just(i64::MAX), Just(i64::MIN), Just(-5)],
            0i64..=100,
            0i64..=100,
            0usize..4,
            0usize..2,
            0usize..2,
            0usize..3,
            0usize..2,
        )
    }

    proptest! {
        // PROPTEST_CASES raises the count for a longer soak.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
            .. ProptestConfig::default()
        })]

        /// The compiled fast path, the sliced Cedar path and plain Cedar over the whole
        /// policy agree on every request.
        #[test]
        fn fast_path_agrees_with_cedar(
            rules in proptest::collection::vec(arb_rule(), 1..8),
            inputs in proptest::collection::vec(arb_input(), 1..8),
        ) {
            let src: String = rules.iter().enumerate().map(|(i, r)| render_rule(i, r)).collect();
            let p = match CompiledPolicy::compile(&src, &env()) {
                Ok(p) => p,
                // The generator can exceed the documented complexity limits; those
                // refusals are tested on their own.
                Err(e) if e.message.contains("too complex") => return Ok(()),
                Err(e) => panic!("generated policy refused: {}\n{src}", e.describe()),
            };
            let cedar = Authorizer::new();
            for (amount, at, ct, risk, agent, cp, action, owner) in inputs {
                let i = PolicyInput {
                    agent_id: ["buyer-1", "buyer-2"][agent],
                    agent_owner: ["alice@example.com", "bob@elsewhere.org"][owner],
                    agent_trust: at,
                    action: [PO, PAY, "vendor.onboard"][action],
                    counterparty_id: ["acme", "initech"][cp],
                    counterparty_risk: ["low", "medium", "high", "blocked"][risk],
                    counterparty_trust: ct,
                    amount_minor: amount,
                    currency: "USD",
                };
                let fast = p.evaluate(&i);
                let reference = p.evaluate_reference(&i);
                prop_assert_eq!(&fast, &reference, "policy:\n{}\ninput {:?}", src, i);

                // Plain Cedar, original effects, all rules unsliced.
                let (req, ents) = p.cedar_request(p.slices.get(i.action).unwrap(), &i).unwrap();
                let r = cedar.is_authorized(&req, p.cedar_policy_set(), &ents);
                let errored: BTreeSet<String> = r.diagnostics().errors().map(|e| match e {
                    AuthorizationError::PolicyEvaluationError(pe) => pid(pe.policy_id()).to_owned(),
                }).collect();
                let cedar_reasons: BTreeSet<String> = r.diagnostics().reason().map(|id| pid(id).to_owned()).collect();
                let ours: BTreeSet<String> = fast.rule_ids().into_iter().map(str::to_owned).collect();
                if !errored.is_empty() {
                    prop_assert_eq!(fast.verdict, Verdict::Rejected);
                    prop_assert_eq!(&ours, &errored);
                } else {
                    match fast.verdict {
                        Verdict::Authorized => {
                            prop_assert_eq!(r.decision(), cedar_policy::Decision::Allow);
                            prop_assert_eq!(&ours, &cedar_reasons);
                        }
                        Verdict::Escalated => {
                            prop_assert_eq!(r.decision(), cedar_policy::Decision::Deny);
                            prop_assert_eq!(&ours, &cedar_reasons);
                        }
                        Verdict::Rejected => {
                            prop_assert_eq!(r.decision(), cedar_policy::Decision::Deny);
                            if fast.reasons[0].rule.is_some() {
                                prop_assert!(ours.is_subset(&cedar_reasons));
                            }
                        }
                    }
                }
            }
        }
    }

    // --- test suites -------------------------------------------------------------------

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("agentsigna-policy-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const SUITE: &str = r#"
policy = "policy.cedar"
actions = ["purchase_order.create", "payment.send"]
roles = ["finance", "risk"]

[defaults]
agent = { id = "buyer-1", owner = "alice@example.com", trust = 70 }

[[case]]
name = "small PO from a trusted agent is authorized"
action = "purchase_order.create"
amount = 50000
currency = "USD"
counterparty = { id = "acme", risk = "low", trust = 80 }
expect = { verdict = "authorized", rules = ["small-po"], ttl = "PT10M" }

[[case]]
name = "large PO escalates to finance"
action = "purchase_order.create"
amount = 600000
counterparty = { id = "acme", risk = "high" }
expect = { verdict = "escalated", rules = ["risky-counterparty", "large-po"], approvals = 2, roles = ["finance", "risk"], deadline = "PT2H" }

[[case]]
name = "payments are not permitted"
action = "payment.send"
expect = { verdict = "rejected", rules = [] }

[[case]]
name = "blocked counterparty"
action = "purchase_order.create"
amount = 100
counterparty = { risk = "blocked" }
expect = { verdict = "rejected", rules = ["blocked"] }
"#;

    #[test]
    fn suite_passes() {
        let dir = TempDir::new("pass");
        dir.write("policy.cedar", BASE);
        let path = dir.write("policy.test.toml", SUITE);
        let report = run_suite(&path).unwrap();
        assert!(report.passed(), "{}", report.render());
        assert_eq!(report.cases.len(), 4);
        assert_eq!(report.failures(), 0);
        assert_eq!(report.policy, dir.0.join("policy.cedar"));
        assert_eq!(report.digest, compile(BASE).digest());
        let text = report.render();
        assert!(text.contains("  ok      small PO from a trusted agent is authorized"), "{text}");
        assert!(text.ends_with("4 case(s): 4 passed, 0 failed\n"), "{text}");
    }

    #[test]
    fn suite_failure_shows_a_diff() {
        let dir = TempDir::new("fail");
        dir.write("policy.cedar", BASE);
        let path = dir.write(
            "t.toml",
            r#"policy = "policy.cedar"
[[case]]
name = "expects authorization of a large PO"
action = "purchase_order.create"
amount = 600000
expect = { verdict = "authorized", rules = ["small-po"], approvals = 1, roles = ["risk"] }

[[case]]
name = "passes"
action = "purchase_order.create"
amount = 1
expect = { verdict = "authorized" }
"#,
        );
        let report = run_suite(&path).unwrap();
        assert!(!report.passed());
        assert_eq!(report.failures(), 1);
        let failed = &report.cases[0];
        assert!(!failed.passed);
        let fields: Vec<&str> = failed.mismatches.iter().map(|m| m.field.as_str()).collect();
        assert_eq!(fields, ["verdict", "rules", "approvals", "roles"]);
        let rules = &failed.mismatches[1];
        assert_eq!(rules.missing, vec!["small-po".to_owned()]);
        assert_eq!(rules.unexpected, vec!["large-po".to_owned()]);
        let text = report.render();
        for needle in [
            "  FAILED  expects authorization of a large PO",
            "verdict:   expected authorized",
            "actual   escalated",
            "- small-po (expected, missing)",
            "+ large-po (not expected)",
            "approvals: expected 1",
            "actual   2",
            "roles:     expected [risk]",
            "actual   [finance]",
            "reason:    [escalate] large-po: escalated by rule large-po",
            "  ok      passes",
            "2 case(s): 1 passed, 1 failed",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        // JSON form for tools.
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["cases"][0]["actual"]["verdict"], "escalated");
    }

    #[test]
    fn suite_infers_actions_and_roles_and_accepts_a_given_policy() {
        let dir = TempDir::new("infer");
        let policy = dir.write("other.cedar", BASE);
        let path = dir.write(
            "t.toml",
            r#"[[case]]
name = "undeclared in the policy but named by the case"
action = "vendor.onboard"
expect = { verdict = "rejected", rules = [] }
[[case]]
name = "risk role inferred"
action = "payment.send"
counterparty = { risk = "high" }
expect = { verdict = "rejected" }
"#,
        );
        assert_eq!(normalize(Path::new("a/tests/../p.cedar")), PathBuf::from("a/p.cedar"));
        assert_eq!(normalize(Path::new("../x/./p.cedar")), PathBuf::from("../x/p.cedar"));
        let opts = SuiteOptions { policy: Some(policy.clone()), env: None };
        let report = run_suite_with(&path, &opts).unwrap();
        assert!(report.passed(), "{}", report.render());
        assert_eq!(report.policy, policy);
        // No policy anywhere → a clear error.
        let e = run_suite(&path).unwrap_err();
        assert!(e.message.contains("no policy to test"), "{e:?}");
    }

    #[test]
    fn suite_errors_are_readable() {
        let dir = TempDir::new("err");
        dir.write("policy.cedar", BASE);
        let path = dir.write("bad.toml", "policy = \"policy.cedar\"\n[[case]]\nname = \"x\"\naction = \"purchase_order.create\"\nexpect = { verdict = \"maybe\" }\n");
        let e = run_suite(&path).unwrap_err();
        assert!(e.message.contains("maybe"), "{e:?}");
        assert_eq!(e.line, Some(5));
        assert!(e.describe().starts_with("line 5, column "), "{}", e.describe());

        let path = dir.write("typo.toml", "policy = \"policy.cedar\"\n[[case]]\nname = \"x\"\naction = \"purchase_order.create\"\nexpect = { verdict = \"authorized\", rulez = [] }\n");
        let e = run_suite(&path).unwrap_err();
        assert!(e.message.contains("rulez"), "{e:?}");

        let path = dir.write("trust.toml", "policy = \"policy.cedar\"\n[[case]]\nname = \"x\"\naction = \"purchase_order.create\"\nagent = { trust = 700 }\nexpect = { verdict = \"authorized\" }\n");
        let e = run_suite(&path).unwrap_err();
        assert!(e.message.contains("case \"x\": agent.trust must be 0–100, not 700"), "{e:?}");

        dir.write("broken.cedar", "@id(\"a\") permit(principal, action, resource) when { principal.nope };");
        let path = dir.write(
            "broken.toml",
            "policy = \"broken.cedar\"\nactions = [\"payment.send\"]\n[[case]]\nname = \"x\"\naction = \"payment.send\"\nexpect = { verdict = \"rejected\" }\n",
        );
        let e = run_suite(&path).unwrap_err();
        assert!(
            e.message.contains(
                "broken.cedar:1:53: rule a: for policy `a`, attribute `nope` on entity type `Agent` not found"
            ),
            "{e:?}"
        );
        assert!(e.message.starts_with(&*dir.0.to_string_lossy()), "{e:?}");

        let path = dir.write("empty.toml", "policy = \"policy.cedar\"\n");
        let e = run_suite(&path).unwrap_err();
        assert!(e.message.contains("no test cases"), "{e:?}");

        let e = run_suite(&dir.0.join("missing.toml")).unwrap_err();
        assert!(e.message.contains("cannot read test suite"), "{e:?}");
    }
}
