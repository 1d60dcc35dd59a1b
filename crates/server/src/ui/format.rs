//! How the pages put values into words: times (relative age and a stated time zone),
//! statuses, durations, approval counts, and the one helper every piece of
//! agent-supplied text passes through before a person reads it.

use std::sync::LazyLock;

use agentsigna_verify::clock::parse_rfc3339_ms;
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::Timestamp;

/// Agent-supplied text (descriptions, context, comments, names) as displayed. Every place
/// a person reads text an agent or requester wrote calls this one function, so that a
/// change of how such text is shown (markers for invisible characters, bidi isolation)
/// happens in one place. Askama escapes the result.
pub fn agent_text(text: &str) -> String {
    agentsigna_core::text::visible(text).into_owned()
}

/// The bundled copy of the IANA time zone database: the same zones on every machine,
/// whether or not it has `/usr/share/zoneinfo`.
static TZDB: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);

/// The time zone the pages show absolute times in, named: UTC unless the approver chose
/// another IANA zone for the session.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

/// Why a zone name typed into the settings form was refused, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownZone(pub String);

impl Zone {
    /// UTC, the default.
    pub fn utc() -> Zone {
        Zone { name: "UTC".to_owned(), tz: TimeZone::UTC }
    }

    /// The zone with this IANA name (any letter case), under its canonical name.
    pub fn named(typed: &str) -> Result<Zone, UnknownZone> {
        let typed = typed.trim();
        let example = "Enter an IANA time zone name such as Europe/Berlin, America/New_York or UTC.";
        let well_formed = !typed.is_empty()
            && typed.len() <= 64
            && typed.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
        if !well_formed {
            return Err(UnknownZone(format!("That is not the name of a time zone. {example}")));
        }
        let found = TZDB.get(typed).ok().and_then(|tz| Some((tz.iana_name()?.to_owned(), tz)));
        match found {
            Some((name, tz)) => Ok(Zone { name, tz }),
            None => {
                Err(UnknownZone(format!("There is no time zone called “{typed}” in the time zone database. {example}")))
            }
        }
    }

    /// The zone a session stored (`None`: UTC; a name the database no longer knows: UTC).
    pub fn of_session(stored: Option<&str>) -> Zone {
        stored.and_then(|n| Zone::named(n).ok()).unwrap_or_else(Zone::utc)
    }

    /// Its IANA name (`UTC`, `Europe/Berlin`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it is UTC.
    pub fn is_utc(&self) -> bool {
        self.name == "UTC"
    }

    /// Its offset from UTC at `now_ms`: `UTC+01:00`, `UTC−03:30`, `UTC`.
    pub fn offset_at(&self, now_ms: i64) -> String {
        let Ok(ts) = Timestamp::from_millisecond(now_ms) else { return String::new() };
        let secs = self.tz.to_offset(ts).seconds();
        if secs == 0 {
            return "UTC".to_owned();
        }
        let sign = if secs < 0 { '−' } else { '+' };
        let secs = secs.unsigned_abs();
        format!("UTC{sign}{:02}:{:02}", secs / 3600, (secs % 3600) / 60)
    }

    /// Every zone name of the database, sorted (the settings form's suggestions).
    pub fn all_names() -> Vec<String> {
        let mut names: Vec<String> = TZDB.available().map(|n| n.as_str().to_owned()).collect();
        names.sort();
        names
    }

    /// An instant in this zone, to the minute: `2026-12-02 02:55`.
    fn local(&self, ms: i64) -> Option<String> {
        let z = Timestamp::from_millisecond(ms).ok()?.to_zoned_datetime(self.tz.clone());
        Some(format!("{:04}-{:02}-{:02} {:02}:{:02}", z.year(), z.month(), z.day(), z.hour(), z.minute()))
    }
}

/// How the pages of one request put times into words: relative to the server clock's
/// `now_ms`, absolute ones in the session's zone, always named.
#[derive(Debug, Clone)]
pub struct Times {
    /// The server clock.
    pub now_ms: i64,
    /// The session's zone.
    pub zone: Zone,
}

impl Times {
    /// A stored instant (RFC 3339) for people, in the zone, named: `2026-12-02 01:55 UTC`,
    /// `2026-12-02 02:55 Europe/Berlin`. Empty stays empty.
    pub fn when(&self, rfc3339: &str) -> String {
        match parse_rfc3339_ms(rfc3339).and_then(|ms| self.zone.local(ms)) {
            Some(local) => format!("{local} {}", self.zone.name),
            None => rfc3339.to_owned(),
        }
    }

    /// `2026-12-02 01:55 UTC (5 min ago)`.
    pub fn when_and_age(&self, rfc3339: &str) -> String {
        if rfc3339.is_empty() {
            return String::new();
        }
        format!("{} ({})", self.when(rfc3339), age(rfc3339, self.now_ms))
    }

    /// How long ago (or ahead) an instant is: see [`age`].
    pub fn age(&self, rfc3339: &str) -> String {
        age(rfc3339, self.now_ms)
    }
}

/// How long ago an instant was, relative to `now_ms`: `just now`, `5 min ago`, `3 h ago`,
/// `2 d ago` (`in 5 min` for the future).
pub fn age(rfc3339: &str, now_ms: i64) -> String {
    let Some(ms) = parse_rfc3339_ms(rfc3339) else { return String::new() };
    let secs = (now_ms - ms) / 1000;
    let (future, secs) = if secs < 0 { (true, -secs) } else { (false, secs) };
    let span = if secs < 60 {
        return "just now".to_owned();
    } else if secs < 3600 {
        format!("{} min", secs / 60)
    } else if secs < 86_400 {
        format!("{} h", secs / 3600)
    } else {
        format!("{} d", secs / 86_400)
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// `3 d 4 h left`, `2 h 5 min left`, `45 s left`, `overdue`.
pub fn time_left(secs: i64) -> String {
    if secs <= 0 {
        return "overdue".to_owned();
    }
    let (d, h, m) = (secs / 86_400, (secs % 86_400) / 3600, (secs % 3600) / 60);
    if d > 0 {
        format!("{d} d {h} h left")
    } else if h > 0 {
        format!("{h} h {m} min left")
    } else if m > 0 {
        format!("{m} min left")
    } else {
        format!("{secs} s left")
    }
}

/// A status identifier (review, case, verdict, outcome, risk) in words.
pub fn status_words(status: &str) -> String {
    match status {
        "pending" => "Waiting for a decision".to_owned(),
        "pending_review" => "Waiting for review".to_owned(),
        "approved" => "Approved".to_owned(),
        "rejected" => "Rejected".to_owned(),
        "expired" => "Expired".to_owned(),
        "authorized" => "Authorized".to_owned(),
        "escalated" | "escalate" => "Escalated".to_owned(),
        "reject" => "Reject".to_owned(),
        "approve" => "Approved".to_owned(),
        "authorize" => "Authorize".to_owned(),
        "low" => "Low risk".to_owned(),
        "medium" => "Medium risk".to_owned(),
        "high" => "High risk".to_owned(),
        "blocked" => "Blocked".to_owned(),
        "" => String::new(),
        other => {
            let words = other.replace(['_', '.'], " ");
            let mut c = words.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The approvals of a review in one wording, used by the queue and the case page alike:
/// what it needs, what it has, and (while pending) what is still missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvals {
    /// `Needs 1 approval, covering the roles finance and risk`.
    pub needed: String,
    /// `1 of 1 approvals given` (short form for the queue: `1 of 1`).
    pub so_far: String,
    /// `Still needed: 1 approval from role risk`; empty once closed.
    pub still: String,
}

fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The approvals of a review: `required` approvals, `given` so far, the roles it requires
/// and the roles not yet covered; `pending` whether it still waits.
pub fn approvals(required: usize, given: usize, roles: &[String], missing: &[String], pending: bool) -> Approvals {
    let needed = match roles {
        [] => format!("Needs {}", plural(required, "approval", "approvals")),
        [one] => format!("Needs {}, including the role {one}", plural(required, "approval", "approvals")),
        many => format!("Needs {}, covering the roles {}", plural(required, "approval", "approvals"), and_list(many)),
    };
    let so_far = format!("{given} of {required}");
    let still = if !pending {
        String::new()
    } else {
        let more = required.saturating_sub(given);
        match (more, missing.is_empty()) {
            (0, true) => String::new(),
            (n, true) => format!("Still needed: {}", plural(n, "more approval", "more approvals")),
            (0, false) => format!(
                "Still needed: an approval by {} {}",
                if missing.len() == 1 { "the role" } else { "the roles" },
                and_list(missing)
            ),
            (n, false) => format!(
                "Still needed: {}, covering {} {}",
                plural(n, "more approval", "more approvals"),
                if missing.len() == 1 { "the role" } else { "the roles" },
                and_list(missing)
            ),
        }
    };
    Approvals { needed, so_far, still }
}

/// Whether a retyped amount is the request's amount (`120,000.00`, `120000`, `120 000.00 USD`
/// all match `120000.00`).
pub fn same_amount(typed: &str, value: &str) -> bool {
    let clean: String = typed.chars().filter(|c| c.is_ascii_digit() || *c == '.').collect();
    match (clean.parse::<f64>(), value.parse::<f64>()) {
        (Ok(a), Ok(b)) => !clean.is_empty() && a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_read_well() {
        let utc = Times { now_ms: 0, zone: Zone::utc() };
        assert_eq!(utc.when("2026-12-02T01:55:23.123Z"), "2026-12-02 01:55 UTC");
        let at = parse_rfc3339_ms("2026-12-02T01:55:00Z").unwrap();
        assert_eq!(age("2026-12-02T01:55:00Z", at + 30_000), "just now");
        assert_eq!(age("2026-12-02T01:55:00Z", at + 5 * 60_000), "5 min ago");
        assert_eq!(age("2026-12-02T01:55:00Z", at - 2 * 3_600_000), "in 2 h");
        assert_eq!(time_left(0), "overdue");
        assert_eq!(time_left(86_400 + 7200), "1 d 2 h left");
        assert_eq!(time_left(3 * 3600 + 12 * 60), "3 h 12 min left");
        assert_eq!(time_left(59), "59 s left");
        assert_eq!(status_words("pending_review"), "Waiting for review");
        assert_eq!(status_words("suspended_now"), "Suspended now");
    }

    #[test]
    fn times_are_shown_in_the_chosen_zone_with_its_name() {
        // From the bundled database: the same answer on a machine without zoneinfo files.
        let berlin = Zone::named("europe/berlin").unwrap();
        assert_eq!(berlin.name(), "Europe/Berlin", "stored under its canonical name");
        let winter = Times { now_ms: 0, zone: berlin.clone() };
        assert_eq!(winter.when("2026-12-02T01:55:00Z"), "2026-12-02 02:55 Europe/Berlin");
        assert_eq!(winter.when("2026-07-02T01:55:00Z"), "2026-07-02 03:55 Europe/Berlin", "summer time");
        let at = parse_rfc3339_ms("2026-12-02T01:55:00Z").unwrap();
        assert_eq!(berlin.offset_at(at), "UTC+01:00");
        assert_eq!(Zone::named("America/St_Johns").unwrap().offset_at(at), "UTC−03:30");
        let kolkata = Times { now_ms: at + 120_000, zone: Zone::named("Asia/Kolkata").unwrap() };
        assert_eq!(kolkata.when_and_age("2026-12-02T01:55:00Z"), "2026-12-02 07:25 Asia/Kolkata (2 min ago)");
        assert_eq!(Zone::named(" utc ").unwrap().name(), "UTC");
        assert!(Zone::all_names().iter().any(|n| n == "Pacific/Auckland"));
        for bad in ["Mars/Olympus_Mons", "Etc/Unknown", "", "Europe/Berlin; DROP", "../../etc/passwd"] {
            let e = Zone::named(bad).unwrap_err();
            assert!(e.0.contains("Europe/Berlin, America/New_York or UTC"), "{bad}: {e:?}");
        }
        assert!(Zone::named("Mars/Olympus_Mons").unwrap_err().0.contains("no time zone called “Mars/Olympus_Mons”"));
        assert_eq!(Zone::of_session(Some("No/Such_Zone")).name(), "UTC", "a stored name no longer known");
        assert_eq!(Zone::of_session(None).name(), "UTC");
    }

    #[test]
    fn approvals_never_contradict_themselves() {
        let roles = vec!["finance".to_owned(), "risk".to_owned()];
        let a = approvals(1, 1, &roles, &["risk".to_owned()], true);
        assert_eq!(a.needed, "Needs 1 approval, covering the roles finance and risk");
        assert_eq!(a.still, "Still needed: an approval by the role risk");
        let a = approvals(2, 0, &roles[..1], &roles[..1], true);
        assert_eq!(a.still, "Still needed: 2 more approvals, covering the role finance");
        assert_eq!(approvals(1, 1, &roles, &["risk".to_owned()], false).still, "", "closed: nothing missing");
        assert!(same_amount("120,000.00", "120000.00") && same_amount("120000 USD", "120000.00"));
        assert!(!same_amount("12,000.00", "120000.00") && !same_amount("", "0"));
    }
}
