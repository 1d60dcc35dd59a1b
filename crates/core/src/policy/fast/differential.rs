//! Differential testing of the fast path: on generated policies and requests, the compiled
//! fast path, the sliced Cedar path and plain Cedar over the whole policy agree.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use cedar_policy::{AuthorizationError, Authorizer};
use proptest::prelude::*;

use crate::policy::compile::pid;
use crate::policy::testing::{env, PAY, PO};
use crate::policy::{CompiledPolicy, PolicyInput, Verdict};

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
        (arb_long(), arith, arb_long(), cmp, arb_long()).prop_map(|(a, x, b, o, c)| format!("({a} {x} {b}) {o} {c}")),
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
