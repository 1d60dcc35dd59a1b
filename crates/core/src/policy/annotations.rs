//! Annotations: a rule's `@id`, `@verdict`, `@reason`, `@approvals`, `@approver_role`,
//! `@deadline` and `@ttl`, checked and turned into a [`Rule`]; and the ISO 8601 durations
//! they are written in.

use cedar_policy::{Effect, Policy};

use super::{PolicyEnv, PolicyError, Rule, RuleVerdict};

/// The annotations a rule may carry.
const KNOWN_ANNOTATIONS: [&str; 7] = ["id", "verdict", "reason", "approvals", "approver_role", "deadline", "ttl"];

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
pub(super) struct AnnotationError {
    pub(super) error: PolicyError,
    pub(super) annotation: Option<&'static str>,
}

pub(super) fn rule_from_policy(policy: &Policy, text: String, env: &PolicyEnv) -> Result<Rule, AnnotationError> {
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

pub(super) fn default_reason_text(rule: &Rule) -> String {
    match &rule.reason {
        Some(r) => r.clone(),
        None => match rule.tier {
            RuleVerdict::Authorize => format!("permitted by rule {}", rule.id),
            RuleVerdict::Escalate => format!("escalated by rule {}", rule.id),
            RuleVerdict::Reject => format!("rejected by rule {}", rule.id),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::parse_iso_duration;

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
}
