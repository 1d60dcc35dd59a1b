//! Policy evaluation throughput: a generated 1,000-rule policy over 10 declared actions.
//!
//! Quality target (DESIGN.md): Cedar evaluation ≥ 100,000/s per core with 1,000 rules.
//! `evaluate` is the production path (sliced per action, compiled conditions, Cedar for
//! anything the compiler does not cover); `evaluate_reference` is the same sliced policy
//! evaluated by the Cedar interpreter only, for comparison. Each iteration includes
//! building the request (for the Cedar path: the two entities and the context).
//!
//! Run: `cargo bench -p agentsigna-core --bench policy`.

use std::hint::black_box;
use std::time::Duration;

use agentsigna_core::policy::{CompiledPolicy, PolicyEnv, PolicyInput, Verdict};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const ACTIONS: usize = 10;
const RULES: usize = 1_000;
/// Input risk classes, weighted towards ordinary counterparties.
const INPUT_RISKS: [&str; 8] = ["low", "low", "low", "medium", "medium", "high", "high", "blocked"];

/// Deterministic pseudo-random numbers (no dependency, same policy on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

fn env() -> PolicyEnv {
    PolicyEnv {
        actions: (0..ACTIONS).map(action).collect(),
        roles: vec!["finance".into(), "risk".into(), "legal".into()],
    }
}

fn action(i: usize) -> String {
    format!("action_{i}.execute")
}

/// 1,000 rules: per action a mix of permits with amount/trust/risk conditions, escalate
/// forbids (approvals, roles, deadlines) and reject forbids; 1% of the rules apply to
/// every action.
fn policy_source() -> String {
    let mut rng = Lcg(42);
    let mut src = String::new();
    for i in 0..RULES {
        let scope =
            if i % 100 == 99 { "action".to_owned() } else { format!("action == Action::\"{}\"", action(i % ACTIONS)) };
        let amount = (rng.next(500) + 1) * 10_000;
        let big = (rng.next(300) + 300) * 10_000;
        let trust = rng.next(80);
        let rule = match rng.next(10) {
            0..=2 => format!(
                "@id(\"permit-{i}\")\n@ttl(\"PT{}M\")\npermit(principal, {scope}, resource)\n\
                 when {{ context.amount <= {amount} && principal.trust >= {trust} && resource.risk != \"blocked\" }};\n",
                rng.next(30) + 1
            ),
            3 => format!(
                "@id(\"permit-{i}\")\npermit(principal, {scope}, resource)\n\
                 when {{ resource.trust > {trust} && [\"low\", \"medium\"].contains(resource.risk) && context.currency == \"USD\" }};\n"
            ),
            4 => format!(
                "@id(\"permit-{i}\")\npermit(principal, {scope}, resource)\n\
                 when {{ principal.owner like \"*@example.com\" && context.amount < {amount} }}\n\
                 unless {{ resource.risk == \"high\" }};\n"
            ),
            5 | 6 => format!(
                "@id(\"escalate-{i}\")\n@verdict(\"escalate\")\n@approvals(\"{}\")\n@approver_role(\"{}\")\n@deadline(\"PT{}H\")\n\
                 @reason(\"amount above {big}\")\nforbid(principal, {scope}, resource)\n\
                 when {{ context.amount > {big} || (resource.risk == \"high\" && principal.trust < {}) }};\n",
                rng.next(3) + 1,
                ["finance", "risk", "legal"][rng.next(3) as usize],
                rng.next(24) + 1,
                trust / 4
            ),
            7 => format!(
                "@id(\"escalate-{i}\")\n@verdict(\"escalate\")\nforbid(principal, {scope}, resource)\n\
                 when {{ resource.trust < {} && context.amount > {amount} }};\n",
                trust / 4
            ),
            8 => format!(
                "@id(\"reject-{i}\")\n@reason(\"blocked counterparty\")\nforbid(principal, {scope}, resource)\n\
                 when {{ resource.risk == \"blocked\" && principal.trust < {trust} }};\n"
            ),
            _ => format!(
                "@id(\"reject-{i}\")\n@verdict(\"reject\")\nforbid(principal, {scope}, resource)\n\
                 when {{ principal.trust + resource.trust < {} }};\n",
                trust / 8
            ),
        };
        src.push_str(&rule);
    }
    src
}

struct Owned {
    action: String,
    risk: &'static str,
    agent_trust: i64,
    counterparty_trust: i64,
    amount: i64,
}

fn inputs() -> Vec<Owned> {
    let mut rng = Lcg(7);
    (0..256)
        .map(|_| Owned {
            action: action(rng.next(ACTIONS as u64) as usize),
            risk: INPUT_RISKS[rng.next(8) as usize],
            agent_trust: rng.next(101) as i64,
            counterparty_trust: rng.next(101) as i64,
            amount: (rng.next(600) * 10_000) as i64,
        })
        .collect()
}

fn as_input(o: &Owned) -> PolicyInput<'_> {
    PolicyInput {
        agent_id: "buyer-1",
        agent_owner: "alice@example.com",
        agent_trust: o.agent_trust,
        action: &o.action,
        counterparty_id: "acme",
        counterparty_risk: o.risk,
        counterparty_trust: o.counterparty_trust,
        amount_minor: o.amount,
        currency: "USD",
    }
}

fn bench(c: &mut Criterion) {
    let source = policy_source();
    let env = env();
    let policy = match CompiledPolicy::compile(&source, &env) {
        Ok(p) => p,
        Err(e) => panic!("generated policy refused: {}", e.describe()),
    };
    let inputs = inputs();
    let stats = policy.stats();
    let mut mix = [0usize; 3];
    for o in &inputs {
        let e = policy.evaluate(&as_input(o));
        assert_eq!(e, policy.evaluate_reference(&as_input(o)));
        mix[match e.verdict {
            Verdict::Authorized => 0,
            Verdict::Escalated => 1,
            Verdict::Rejected => 2,
        }] += 1;
    }
    eprintln!(
        "policy: {} rules, {} actions, largest slice {} rules, {} on the fast path, {} via Cedar; \
         verdict mix over {} inputs: {} authorized, {} escalated, {} rejected",
        stats.rules,
        stats.actions,
        stats.max_slice,
        stats.fast_rules,
        stats.cedar_rules,
        inputs.len(),
        mix[0],
        mix[1],
        mix[2]
    );

    let mut group = c.benchmark_group("policy_1000_rules");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    let mut n = 0usize;
    group.bench_function("evaluate", |b| {
        b.iter(|| {
            n = (n + 1) % inputs.len();
            black_box(policy.evaluate(black_box(&as_input(&inputs[n]))))
        })
    });
    group.bench_function("evaluate_reference_cedar_only", |b| {
        b.iter(|| {
            n = (n + 1) % inputs.len();
            black_box(policy.evaluate_reference(black_box(&as_input(&inputs[n]))))
        })
    });
    group.sample_size(10);
    group.throughput(Throughput::Elements(RULES as u64));
    group
        .bench_function("compile", |b| b.iter(|| black_box(CompiledPolicy::compile(black_box(&source), &env).is_ok())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
