//! The one clock abstraction of AgentSigna: every component that needs "now" takes a
//! [`Clock`], so tests can move time instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time, in milliseconds since the Unix epoch (UTC).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// The current instant in whole seconds since the Unix epoch (JWT `NumericDate`).
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The real wall clock.
///
/// ```
/// use agentsigna_verify::{Clock, SystemClock};
/// assert!(SystemClock.now_secs() > 1_700_000_000);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to: for tests and audits.
///
/// ```
/// use agentsigna_verify::clock::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// clock.advance_ms(500);
/// assert_eq!(clock.now_ms(), 1_500);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `now_ms` milliseconds since the epoch.
    pub fn new(now_ms: i64) -> Self {
        ManualClock { now_ms: AtomicI64::new(now_ms) }
    }

    /// Moves the clock to `now_ms`.
    pub fn set_ms(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the clock forward by `delta_ms` milliseconds.
    pub fn advance_ms(&self, delta_ms: i64) {
        self.now_ms.fetch_add(delta_ms, Ordering::SeqCst);
    }

    /// Moves the clock forward by `secs` seconds.
    pub fn advance_secs(&self, secs: i64) {
        self.advance_ms(secs.saturating_mul(1000));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds
/// (`2026-11-29T15:51:29.123Z`), the one timestamp format of the ledger.
///
/// ```
/// assert_eq!(agentsigna_verify::clock::rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
/// ```
pub fn rfc3339_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        // Digits written in place: every entry, case and passport carries several of
        // these, and `format!` with seven arguments cost ≈ 1 % of an authorized request.
        Ok(t) if (0..=9999).contains(&t.year()) => {
            let mut text = *b"0000-00-00T00:00:00.000Z";
            for (range, value) in [
                (0..4, t.year().unsigned_abs()),
                (5..7, u32::from(u8::from(t.month()))),
                (8..10, u32::from(t.day())),
                (11..13, u32::from(t.hour())),
                (14..16, u32::from(t.minute())),
                (17..19, u32::from(t.second())),
                (20..23, u32::from(t.millisecond())),
            ] {
                let mut v = value;
                for digit in text[range].iter_mut().rev() {
                    *digit = b'0' + (v % 10) as u8;
                    v /= 10;
                }
            }
            text.iter().map(|&b| char::from(b)).collect()
        }
        Ok(t) => formatted(t),
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// [`rfc3339_ms`]'s form through `format!`: years outside 0–9999 (and the tests' reference).
fn formatted(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses an RFC 3339 timestamp (any offset) into milliseconds since the epoch.
///
/// ```
/// use agentsigna_verify::clock::parse_rfc3339_ms;
/// assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1_500));
/// assert_eq!(parse_rfc3339_ms("yesterday"), None);
/// ```
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    /// The formatter as it was written before its digits were written in place.
    fn with_format(ms: i64) -> String {
        formatted(time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap())
    }

    #[test]
    fn formats_the_edges_of_the_four_digit_years() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(-62_167_219_200_000), "0000-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(1_764_431_489_123), "2025-11-29T15:51:29.123Z");
        assert_eq!(rfc3339_ms(-62_167_219_200_001), with_format(-62_167_219_200_001));
    }

    proptest! {
        #[test]
        fn formats_as_the_time_crate_does(ms in -62_167_219_200_000i64..=253_402_300_799_999) {
            let text = rfc3339_ms(ms);
            prop_assert_eq!(&text, &with_format(ms));
            prop_assert_eq!(parse_rfc3339_ms(&text), Some(ms));
        }
    }
}
