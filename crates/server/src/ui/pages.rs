//! The pages (askama templates, HTML-escaped) and the frame they share; the view models
//! of the queue and the case page, built from the engine's JSON documents, are in
//! `queue_view` and `review_view`. Text from requests is shown unambiguously: hidden
//! characters as markers (`format::agent_text`), and the templates isolate it (`<bdi>`,
//! `dir="ltr"` on JSON) so that it cannot reorder the page.

use askama::Template;
use serde_json::Value;

use agentsigna_core::money::Amount;
use agentsigna_core::text::visible;

pub use super::queue_view::{QueueItem, QueuePage};
pub use super::review_view::ReviewPage;

/// What every page's frame shows: who is signed in, and the CSRF token of the sign-out form.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    /// The signed-in principal, as shown (`carol@example.com`, `admin`).
    pub user: Option<String>,
    /// The session's CSRF token.
    pub csrf: String,
    /// Which navigation entry is the current page (`queue`, `all`, `settings`), for
    /// `aria-current`.
    pub current: &'static str,
    /// The time zone the page's times are shown in (`UTC`, `Europe/Berlin`).
    pub zone: String,
}

/// `GET /ui/login`.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    /// Frame.
    pub chrome: Chrome,
    /// The login form's CSRF token (also in the login cookie).
    pub csrf: String,
    /// Where to go after signing in.
    pub next: String,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// `GET /ui/settings`: the approver's choice of time zone for this session.
#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    /// Frame.
    pub chrome: Chrome,
    /// A message left by the previous action.
    pub flash: Option<String>,
    /// The zone times are shown in now.
    pub zone: String,
    /// Its offset from UTC now (`UTC+01:00`).
    pub offset: String,
    /// What the field holds: the zone, or what was typed when it was refused.
    pub typed: String,
    /// Why the zone typed was refused, in plain words.
    pub error: Option<String>,
    /// Every zone name, as suggestions.
    pub zones: Vec<String>,
}

/// An error shown as a page.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// Frame.
    pub chrome: Chrome,
    /// Heading.
    pub title: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Link back.
    pub back: String,
}

/// Renders a template; a rendering failure becomes a plain message.
pub fn render<T: Template>(t: &T) -> String {
    match t.render() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot render a page");
            "<!doctype html><title>Error</title><p>The page could not be rendered; see the server log.</p>".to_owned()
        }
    }
}

/// A JSON member as text (`null` → empty).
pub fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => visible(s).into_owned(),
        other => visible(&other.to_string()).into_owned(),
    }
}

/// A JSON array of strings.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(s).collect()).unwrap_or_default()
}

/// An amount member (`{value, currency}` or null) for people.
pub fn amount_text(v: &Value) -> String {
    match (v.get("value").and_then(Value::as_str), v.get("currency").and_then(Value::as_str)) {
        (Some(value), currency) => {
            Amount { value: value.to_owned(), currency: currency.unwrap_or("").to_owned() }.to_string()
        }
        _ => "no amount".to_owned(),
    }
}

/// A rule named in a queue row or the decision summary.
#[derive(Debug, Clone)]
pub struct RuleLine {
    /// Rule id (`large-po`), or `(no rule)`.
    pub id: String,
    /// Its `@reason`.
    pub reason: String,
}

/// The rules that escalated (or all of them when none escalated).
pub fn rule_lines(rules: &Value) -> Vec<RuleLine> {
    let all: Vec<&Value> = rules.as_array().map(|a| a.iter().collect()).unwrap_or_default();
    let escalating: Vec<&Value> = all.iter().copied().filter(|r| r["verdict"] == "escalate").collect();
    let chosen = if escalating.is_empty() { all } else { escalating };
    chosen
        .into_iter()
        .map(|r| RuleLine {
            id: r["rule"].as_str().map(str::to_owned).unwrap_or_else(|| "(no rule)".to_owned()),
            reason: super::format::agent_text(&s(&r["reason"])),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn amounts_and_durations_read_well() {
        // The formatting itself is `Amount`'s `Display` (core::money), tested there.
        assert_eq!(amount_text(&serde_json::json!({"value": "40000.00", "currency": "USD"})), "40,000.00 USD");
        assert_eq!(amount_text(&serde_json::json!({"value": "999.5"})), "999.5");
        assert_eq!(amount_text(&Value::Null), "no amount");
    }

    #[test]
    fn pages_escape_what_agents_write() {
        let page = ErrorPage {
            chrome: Chrome::default(),
            title: "t".into(),
            message: "<script>alert(1)</script>".into(),
            back: "/ui/".into(),
        };
        let html = render(&page);
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>alert"));
    }
}
