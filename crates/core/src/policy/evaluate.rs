//! Evaluation: one request against the slice of its action, on the fast path with Cedar
//! for the rest, and the one verdict computed from every satisfied and erroring rule.

use std::collections::{BTreeSet, HashMap, HashSet};

use cedar_policy::{
    AuthorizationError, Context, Entities, Entity, EntityId, EntityUid, PolicyId, PolicySet, Request,
    RestrictedExpression,
};

use super::compile::{pid, Slice};
use super::fast::Facts;
use super::{CompiledPolicy, Evaluation, PolicyInput, Reason, RuleVerdict, Verdict, DEFAULT_DENY_REASON};

impl CompiledPolicy {
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
    pub(super) fn cedar_request(&self, slice: &Slice, input: &PolicyInput<'_>) -> Result<(Request, Entities), String> {
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
}

fn undeclared(action: &str) -> Evaluation {
    Evaluation::rejected_plain(format!("action {action} is not declared"))
}

fn internal_error(e: &str) -> Evaluation {
    // Fail closed: a request that cannot be evaluated is refused.
    Evaluation::rejected_plain(format!("internal policy evaluation error: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use cedar_policy::Authorizer;

    use crate::policy::testing::{compile, eval, input, BASE, PAY, PO};
    use crate::policy::{PolicyInput, Reason, RuleVerdict, Verdict, DEFAULT_DENY_REASON};

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
}
