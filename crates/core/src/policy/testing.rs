//! Test support for the policy module: the example environment, inputs and policy the unit
//! tests share, and [`check`], the one helper every accept/refuse case goes through: the
//! fixtures in `crates/core/testdata/policy/` (see the README there) and the generated
//! sources of the complexity tests.

use std::path::{Path, PathBuf};

use super::{CompiledPolicy, Evaluation, PolicyEnv, PolicyInput};

pub(super) const PO: &str = "purchase_order.create";
pub(super) const PAY: &str = "payment.send";

/// Three declared actions and three roles.
pub(super) fn env() -> PolicyEnv {
    PolicyEnv {
        actions: vec![PO.into(), PAY.into(), "vendor.onboard".into()],
        roles: vec!["finance".into(), "risk".into(), "legal".into()],
    }
}

pub(super) fn compile(src: &str) -> CompiledPolicy {
    match CompiledPolicy::compile(src, &env()) {
        Ok(p) => p,
        Err(e) => panic!("policy refused: {}", e.describe()),
    }
}

pub(super) fn input(action: &str, amount: i64) -> PolicyInput<'_> {
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
pub(super) fn eval(p: &CompiledPolicy, i: &PolicyInput<'_>) -> Evaluation {
    let fast = p.evaluate(i);
    let reference = p.evaluate_reference(i);
    assert_eq!(fast, reference, "fast path and Cedar disagree for {i:?}");
    fast
}

pub(super) const BASE: &str = r#"
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

// ---------------------------------------------------------------------------------------
// check: compile a source and compare the outcome with its expectations

/// The directives an expectation may use (one `key: value` per line).
const DIRECTIVES: [&str; 11] =
    ["expect", "message", "at", "rule", "describe", "approvals", "deadline", "ttl", "reason", "actions", "roles"];

/// Where an error must point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    /// Somewhere (a column is given).
    Known,
    Exactly(u32),
    After(u32),
}

/// Compile `source` and return what differs from `expect`, one line per difference
/// (empty when every expectation holds). See `testdata/policy/README.md` for the
/// directives.
fn differences(source: &str, expect: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut env = env();
    let mut outcome: Option<Option<String>> = None; // Some(None) = ok, Some(Some(s)) = error
    let mut messages = Vec::new();
    let mut at: Option<(u32, Column)> = None;
    let mut rule: Option<Option<String>> = None;
    let mut describe = None;
    let mut fields = Vec::new();
    for line in expect.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((key, value)) = line.split_once(':') else {
            out.push(format!("not a `key: value` directive: {line:?}"));
            continue;
        };
        let value = value.trim();
        let list = |v: &str| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        match key {
            "expect" if value == "ok" => outcome = Some(None),
            "expect" => match value.strip_prefix("error:") {
                Some(needle) => outcome = Some(Some(needle.trim().to_owned())),
                None => out.push(format!("`expect:` must be `ok` or `error: <substring>`, not {value:?}")),
            },
            "message" => messages.push(value.to_owned()),
            "at" => {
                let (line, column) = value.split_once(':').unwrap_or((value, ""));
                let column = match column {
                    "" => Some(Column::Known),
                    c => match c.strip_prefix('>') {
                        Some(n) => n.parse().ok().map(Column::After),
                        None => c.parse().ok().map(Column::Exactly),
                    },
                };
                match (line.parse(), column) {
                    (Ok(line), Some(column)) => at = Some((line, column)),
                    _ => out.push(format!("`at:` must be `LINE`, `LINE:COLUMN` or `LINE:>COLUMN`, not {value:?}")),
                }
            }
            "rule" => rule = Some((value != "none").then(|| value.to_owned())),
            "describe" => describe = Some(value.to_owned()),
            "approvals" | "deadline" | "ttl" | "reason" => fields.push((key, value.to_owned())),
            "actions" => env.actions = list(value),
            "roles" => env.roles = list(value),
            _ => out.push(format!("unknown directive {key:?} (known: {})", DIRECTIVES.join(", "))),
        }
    }
    let Some(outcome) = outcome else {
        out.push("no `expect:` directive".to_owned());
        return out;
    };
    match (CompiledPolicy::compile(source, &env), outcome) {
        (Ok(policy), None) => {
            if at.is_some() || describe.is_some() || !messages.is_empty() {
                out.push("`at`, `describe` and `message` only apply to refused policies".to_owned());
            }
            let Some(id) = rule.flatten() else {
                if !fields.is_empty() {
                    out.push("rule fields need a `rule: <id>` to check".to_owned());
                }
                return out;
            };
            let Some(r) = policy.rule(&id) else {
                out.push(format!("no rule {id:?} in the compiled policy"));
                return out;
            };
            let shown = |v: Option<String>| v.unwrap_or_else(|| "none".to_owned());
            for (key, expected) in fields {
                let actual = match key {
                    "approvals" => shown(r.approvals.map(|n| n.to_string())),
                    "deadline" => shown(r.deadline_secs.map(|n| n.to_string())),
                    "ttl" => shown(r.ttl_secs.map(|n| n.to_string())),
                    _ => shown(r.reason.clone()),
                };
                if actual != expected {
                    out.push(format!("rule {id}: {key} is {actual}, expected {expected}"));
                }
            }
        }
        (Ok(_), Some(needle)) => out.push(format!("accepted, expected an error containing {needle:?}")),
        (Err(e), None) => out.push(format!("refused, expected ok: {}", e.describe())),
        (Err(e), Some(needle)) => {
            for needle in std::iter::once(&needle).chain(&messages) {
                if !e.message.contains(needle.as_str()) {
                    out.push(format!("message {:?} lacks {needle:?}", e.message));
                }
            }
            if let Some((line, column)) = at {
                let column_ok = match (column, e.column) {
                    (_, None) => false,
                    (Column::Known, Some(_)) => true,
                    (Column::Exactly(c), Some(actual)) => actual == c,
                    (Column::After(c), Some(actual)) => actual > c,
                };
                if e.line != Some(line) || !column_ok {
                    out.push(format!("error at line {:?}, column {:?}; expected {line}, {column:?}", e.line, e.column));
                }
            }
            if let Some(rule) = rule {
                if e.rule != rule {
                    out.push(format!("error names rule {:?}, expected {rule:?}", e.rule));
                }
            }
            if let Some(prefix) = describe {
                if !e.describe().starts_with(&prefix) {
                    out.push(format!("describe() is {:?}, expected it to start with {prefix:?}", e.describe()));
                }
            }
            if !fields.is_empty() {
                out.push("rule fields only apply to accepted policies".to_owned());
            }
        }
    }
    out
}

/// Compile `source` and insist that every expectation of `expect` holds.
#[track_caller]
pub(super) fn check(source: &str, expect: &str) {
    let differences = differences(source, expect);
    assert!(differences.is_empty(), "{}\nsource:\n{source}", differences.join("\n"));
}

/// The expectations of a fixture: its leading comment lines that read `// key: value`
/// with a known key (other leading comments are prose).
fn fixture_expectations(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().take_while(|l| l.starts_with("//")) {
        let rest = line.trim_start_matches('/').trim_start();
        let is_directive = rest
            .split_once(':')
            .is_some_and(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        if is_directive {
            out.push_str(rest);
            out.push('\n');
        }
    }
    out
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/policy")
}

/// Every `testdata/policy/*.cedar` is compiled as it is (its header comments included, so
/// that lines are those an editor shows) and checked against its header.
#[test]
fn fixtures() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("testdata/policy exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 30, "fixtures missing: {paths:?}");
    let mut failures = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).expect("readable fixture");
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        failures.extend(differences(&text, &fixture_expectations(&text)).into_iter().map(|d| format!("{name}: {d}")));
    }
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n{}", failures.len(), paths.len(), failures.join("\n"));
}

/// The helper itself: a wrong expectation is reported, not ignored.
#[test]
fn check_reports_every_difference() {
    let src = "@id(\"p\")\n@verdict(\"escalate\")\npermit(principal, action, resource);";
    assert!(differences(src, "expect: error: @verdict is only allowed\nat: 2:1\nrule: p").is_empty());
    let d = differences(src, "expect: error: nope\nat: 3:>4\nrule: none\ndescribe: x\nttl: 4");
    assert_eq!(d.len(), 5, "{d:?}");
    assert_eq!(differences(src, "expect: ok").len(), 1);
    assert_eq!(differences("", "expect: error:").len(), 1);
    assert_eq!(differences("", "expcet: ok").len(), 2, "a typo is an error, and no expectation remains");
    assert_eq!(
        fixture_expectations(
            "// A prose line: not a directive.\n// expect: ok\n// é\n// rule: a\n@id(\"a\")\n// ttl: 1"
        ),
        "expect: ok\nrule: a\n"
    );
}
