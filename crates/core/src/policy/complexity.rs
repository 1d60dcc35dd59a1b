//! Refuses rules deep or long enough to exhaust a thread's stack, before Cedar sees them.

use super::PolicyError;

/// Deepest bracket nesting accepted in a rule (see [`check_complexity`]).
const MAX_NESTING: usize = 32;
/// Most operators accepted in one rule (see [`check_complexity`]).
const MAX_OPERATORS: usize = 64;

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
pub(super) fn check_complexity(source: &str) -> Result<(), PolicyError> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use crate::policy::testing::{check, env, input, PO};
    use crate::policy::{CompiledPolicy, Verdict};

    /// Generated sources (too long to read as fixtures), checked like the fixtures.
    #[test]
    fn overly_deep_or_complex_rules_are_refused() {
        let ok = format!(
            "@id(\"a\") permit(principal, action, resource) when {{ {} }};",
            vec!["context.amount > 1"; 20].join(" && ")
        );
        check(&ok, "expect: ok");
        // A second rule of the same size is fine: the budget is per rule.
        check(&format!("{ok}\n{}", ok.replace("\"a\"", "\"b\"")), "expect: ok");
        let chain = format!(
            "// a comment with && || . and \"quotes\n@id(\"a\") permit(principal, action, resource)\nwhen {{ {} }};",
            vec!["context.amount > 1"; 50].join(" && ")
        );
        check(&chain, "expect: error: rule is too complex: more than 64 operators\nat: 3:>100");
        let nested = format!(
            "@id(\"a\") permit(principal, action, resource) when {{ {}true{} }};",
            "(".repeat(40),
            ")".repeat(40)
        );
        check(&nested, "expect: error: nested too deeply: more than 32 levels\nat: 1");
        // Strings and comments do not count.
        let quoted = format!(
            "@id(\"a\") @reason(\"{}\") permit(principal, action, resource); // {}",
            "((((&&||..".repeat(100),
            "((((&&||..".repeat(100)
        );
        check(&quoted, "expect: ok");
        // 1,000 nested parentheses used to abort the process (stack overflow).
        let deep = format!(
            "@id(\"a\") permit(principal, action, resource) when {{ {}true{} }};",
            "(".repeat(1000),
            ")".repeat(1000)
        );
        check(&deep, "expect: error: nested too deeply");
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
}
