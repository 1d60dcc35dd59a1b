//! Tool results: the API's JSON as `structuredContent`, a one-paragraph summary for
//! people as text, and refusals as tool errors (`isError`) that name the rule or problem.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::Value;

use super::client::ApiFailure;
use agentsigna_core::text::visible;

/// A result carrying `structured` and the summary `text`.
/// The summary is for people: hidden characters in it (from reasons, comments or
/// anything else a request carried) are shown as markers (`⟨U+202E⟩`).
pub fn result(structured: Value, text: String, is_error: bool) -> CallToolResult {
    let mut r =
        if is_error { CallToolResult::structured_error(structured) } else { CallToolResult::structured(structured) };
    r.content = vec![ContentBlock::text(visible(&text).into_owned())];
    r
}

/// A tool error with only a message (no API document behind it).
pub fn error_text(text: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(visible(&text).into_owned())])
}

/// A tool error for a failed API call.
pub fn api_error(what: &str, e: &ApiFailure) -> CallToolResult {
    let field = e.field().map(|f| format!(" (field {f})")).unwrap_or_default();
    result(e.body(), format!("{what} failed: {}{field}.", e.describe()), true)
}

/// `rule large-po (escalate): Purchase orders above …; rule …` from a verdict's `reasons`.
pub fn reasons(body: &Value) -> String {
    let Some(list) = body["reasons"].as_array().filter(|l| !l.is_empty()) else {
        return "no rule named".to_owned();
    };
    list.iter()
        .map(|r| {
            let reason = r["reason"].as_str().unwrap_or("");
            match r["rule"].as_str() {
                Some(rule) => format!("rule {rule} ({}): {reason}", r["verdict"].as_str().unwrap_or("?")),
                None => format!("default deny: {reason}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The case id of a request answer (`case_id`) or a case document.
pub fn case_id(body: &Value) -> &str {
    body["case_id"].as_str().unwrap_or("?")
}

/// The review id of a request answer or a case document, when there is one.
pub fn review_id(body: &Value) -> Option<&str> {
    body["review"]["id"].as_str()
}

/// What a review still needs, e.g. `1 approval(s), roles finance, deadline …`.
pub fn review_needs(body: &Value) -> String {
    let r = &body["review"];
    let mut parts = Vec::new();
    if let Some(n) = r["approvals_required"].as_u64() {
        let done = r["decisions"].as_array().map_or(0, |d| d.iter().filter(|d| d["decision"] == "approve").count());
        parts.push(format!("{done} of {n} approval(s)"));
    }
    let roles = r["roles_missing"].as_array().or(r["roles_required"].as_array());
    if let Some(roles) = roles.filter(|r| !r.is_empty()) {
        let names: Vec<&str> = roles.iter().filter_map(Value::as_str).collect();
        parts.push(format!("role(s) {} still needed", names.join(", ")));
    }
    if let Some(d) = r["deadline"].as_str() {
        parts.push(format!("deadline {d}"));
    }
    parts.join(", ")
}

/// One paragraph about a request answer or a case document, and whether it is a refusal.
pub fn verdict(body: &Value) -> (String, bool) {
    let case = case_id(body);
    let status = body["status"].as_str().unwrap_or("");
    let verdict = body["verdict"].as_str().unwrap_or("");
    match status {
        "authorized" => {
            let until = body["passport_expires_at"].as_str().or(body["passport_info"]["expires_at"].as_str());
            let passport = if body["passport"].is_string() {
                format!(
                    "The passport (valid until {}) is in `passport`: present it to the target system once.",
                    until.unwrap_or("its exp")
                )
            } else {
                "Its passport is not shown here.".to_owned()
            };
            (format!("Authorized: case {case} ({}). {passport}", reasons(body)), false)
        }
        "pending_review" => {
            let review = review_id(body).unwrap_or("?");
            (
                format!(
                    "Escalated to human review: case {case}, review {review} ({}). Needs {}. Call get_case \
                     with wait_seconds to wait for the decision; nothing may be executed before it.",
                    reasons(body),
                    review_needs(body)
                ),
                false,
            )
        }
        "rejected" => {
            let why = if verdict == "escalated" {
                format!("the review {} was rejected or expired", review_id(body).unwrap_or("?"))
            } else {
                reasons(body)
            };
            (format!("Rejected: case {case} ({why}). The action must not be carried out."), true)
        }
        "expired" => {
            (format!("Expired: case {case}; its passport or pickup window ran out unused. Submit a new request."), true)
        }
        "executed" => (format!("Executed: case {case} was carried out; its outcome is not recorded yet."), false),
        "closed" => {
            let outcomes: Vec<&str> = body["outcomes"]
                .as_array()
                .map(|o| o.iter().filter_map(|o| o["outcome"].as_str()).collect())
                .unwrap_or_default();
            (format!("Closed: case {case}, outcome(s) {}.", outcomes.join(", ")), false)
        }
        other => (format!("Case {case} has status {other:?} (verdict {verdict:?})."), false),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn summaries_show_hidden_characters_as_markers() {
        let body = serde_json::json!({
            "case_id": "case_1", "status": "rejected", "verdict": "rejected",
            "reasons": [{"rule": "r", "verdict": "reject", "reason": "over \u{202E}000,1\u{202C} USD"}],
        });
        let (text, refused) = verdict(&body);
        let r = result(body, text, refused);
        let shown: Vec<String> = r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
        assert_eq!(shown.len(), 1);
        assert!(shown[0].contains("over ⟨U+202E⟩000,1⟨U+202C⟩ USD"), "{}", shown[0]);
        assert!(!shown[0].contains('\u{202E}'));
        let e = error_text("bad \u{200B}".into());
        assert!(e.content.iter().filter_map(|c| c.as_text()).all(|t| t.text == "bad ⟨U+200B⟩"));
    }
}
