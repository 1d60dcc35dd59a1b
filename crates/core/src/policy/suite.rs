//! Policy test suites (`agentsigna policy test PATH`): TOML files of cases with expected
//! verdicts, run against a policy file, reported with an expected-vs-actual diff.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{ActionConstraint, EntityUid, Policy, PolicySet};
use serde::{Deserialize, Serialize};

use super::compile::generated_index;
use super::{parse_iso_duration, CompiledPolicy, Evaluation, PolicyEnv, PolicyError, PolicyInput, Verdict};

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
    use std::path::{Path, PathBuf};

    use super::{normalize, run_suite, run_suite_with, SuiteOptions};
    use crate::policy::testing::{compile, BASE};

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
