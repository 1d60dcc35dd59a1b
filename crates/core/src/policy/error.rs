//! [`PolicyError`], the one error type of the policy module (a refused policy or test
//! suite), and the mapping of Cedar's diagnostics to it: message, rule, line and column.

use std::fmt::Write as _;

use miette::Diagnostic;

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
    pub(super) fn new(message: impl Into<String>) -> Self {
        PolicyError { message: message.into(), rule: None, line: None, column: None }
    }

    pub(super) fn in_rule(mut self, rule: Option<&str>) -> Self {
        self.rule = rule.map(str::to_owned);
        self
    }

    pub(super) fn at(mut self, source: &str, offset: Option<usize>) -> Self {
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

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(source: &str, offset: usize) -> (u32, u32) {
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

pub(super) fn diagnostic_message(d: &dyn Diagnostic) -> String {
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        let _ = write!(message, " ({help})");
    }
    message
}

pub(super) fn diagnostic_offset(d: &dyn Diagnostic) -> Option<usize> {
    let mut labels = d.labels()?;
    labels.next().map(|l| l.offset())
}

pub(super) fn parse_error(source: &str, errors: &cedar_policy::ParseErrors) -> PolicyError {
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
