//! The pages (askama templates, HTML-escaped) and the frame they share; the view models
//! of the queue and the case page, built from the engine's typed documents
//! (`agentsigna_core::engine::views`), are in `queue_view` and `review_view`. Text from requests is shown unambiguously: hidden
//! characters as markers (`format::agent_text`), and the templates isolate it (`<bdi>`,
//! `dir="ltr"` on JSON) so that it cannot reorder the page.

use askama::Template;

use agentsigna_core::money::Amount;
use agentsigna_core::policy::RuleVerdict;

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

/// An amount (or none) for people.
pub fn amount_text(v: Option<&Amount>) -> String {
    v.map_or_else(|| "no amount".to_owned(), Amount::to_string)
}

/// A fraction as the API writes it (`0.0`, `0.25`), as the pages always showed it.
pub fn number_text(v: f64) -> String {
    serde_json::Number::from_f64(v).map(|n| n.to_string()).unwrap_or_default()
}

/// A rule named in a queue row or the decision summary.
#[derive(Debug, Clone)]
pub struct RuleLine {
    /// Rule id (`large-po`), or `(no rule)`.
    pub id: String,
    /// Its `@reason`.
    pub reason: String,
}

/// The rules that escalated (or all of them when none escalated), from `(rule id,
/// verdict, reason)` of each rule that decided.
pub fn rule_lines<'a>(rules: impl IntoIterator<Item = (Option<&'a str>, RuleVerdict, &'a str)>) -> Vec<RuleLine> {
    let all: Vec<_> = rules.into_iter().collect();
    let escalating: Vec<_> = all.iter().copied().filter(|(_, verdict, _)| *verdict == RuleVerdict::Escalate).collect();
    let chosen = if escalating.is_empty() { all } else { escalating };
    chosen
        .into_iter()
        .map(|(rule, _, reason)| RuleLine {
            id: rule.unwrap_or("(no rule)").to_owned(),
            reason: super::format::agent_text(reason),
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
        let amount = |value: &str, currency: &str| Amount { value: value.into(), currency: currency.into() };
        assert_eq!(amount_text(Some(&amount("40000.00", "USD"))), "40,000.00 USD");
        assert_eq!(amount_text(Some(&amount("999.5", ""))), "999.5");
        assert_eq!(amount_text(None), "no amount");
        assert_eq!((number_text(0.0), number_text(0.25)), ("0.0".to_owned(), "0.25".to_owned()));
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
