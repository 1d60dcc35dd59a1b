//! Compilation: a policy source parsed, annotated, validated in strict mode and prepared
//! for evaluation, once per policy version: rules sliced per declared action, forbids
//! turned into permits for one-call evaluation, conditions translated for the fast path.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;

use cedar_policy::{
    pst, ActionConstraint, Authorizer, Effect, EntityId, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet,
    Schema, ValidationMode, Validator,
};
use sha2::{Digest, Sha256};

use super::annotations::{default_reason_text, rule_from_policy};
use super::complexity::check_complexity;
use super::error::{diagnostic_message, diagnostic_offset, line_col, parse_error};
use super::fast::{compile_condition, FastRules, SymbolTable, Symbols};
use super::schema::{declared_actions, schema_text};
use super::{PolicyEnv, PolicyError, PolicyStats, Reason, Rule, ACTION_TYPE, AGENT_TYPE, COUNTERPARTY_TYPE};

/// Stack of the thread that compiles a policy (reserved, not committed, memory).
const COMPILE_STACK: usize = 64 << 20;

/// A validated policy, ready to evaluate. Compile once per policy version and share it
/// (`Arc<CompiledPolicy>`): it is immutable, `Send` and `Sync`.
pub struct CompiledPolicy {
    source: String,
    digest: String,
    pub(super) rules: Vec<Rule>,
    /// Per rule: its entry in `reasons` when it decides.
    pub(super) rule_reasons: Vec<Reason>,
    /// `@id` → index into `rules`.
    pub(super) index: HashMap<String, u32>,
    /// Declared action type → its slice.
    pub(super) slices: HashMap<String, Slice>,
    /// String literals of fast-path conditions.
    pub(super) symbols: SymbolTable,
    /// The whole validated set with its original effects (for cross-checks).
    cedar_set: PolicySet,
    warnings: Vec<PolicyError>,
    pub(super) authorizer: Authorizer,
    pub(super) agent_type: EntityTypeName,
    pub(super) counterparty_type: EntityTypeName,
}

/// The rules that can apply to one action.
pub(super) struct Slice {
    pub(super) action_uid: EntityUid,
    /// Rules evaluated by the compiled fast path, source order.
    pub(super) fast: FastRules,
    /// Cedar set (forbids turned into permits) of the rules the fast path cannot express.
    pub(super) slow: Option<PolicySet>,
    /// Cedar set (forbids turned into permits) of every rule of the slice.
    pub(super) full: PolicySet,
    /// Number of rules in the slice.
    pub(super) len: usize,
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
                match conds.get(i as usize).and_then(Option::as_ref) {
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

    /// The validated Cedar policy set: every rule, original effects, Cedar ids = `@id`s.
    pub fn cedar_policy_set(&self) -> &PolicySet {
        &self.cedar_set
    }
}

/// A policy id as text.
pub(super) fn pid(id: &PolicyId) -> &str {
    AsRef::<str>::as_ref(id)
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
pub(super) fn generated_index(id: &PolicyId) -> usize {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    use crate::policy::testing::{compile, env, BASE};
    use crate::policy::{parse_iso_duration, CompiledPolicy, RuleVerdict};

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
}
