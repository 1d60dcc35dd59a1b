//! Sessions of the approver web pages, and the cookies and CSRF tokens that go with them.
//!
//! A session is a random 192-bit id (the cookie value) mapped, in this process's memory,
//! to the principal that logged in and a random per-session CSRF token. Sessions expire
//! 12 hours after login and do not survive a restart (the approver logs in again); with
//! several server nodes behind a load balancer, sessions need sticky routing. That is
//! deliberate: the approver token stays the only durable credential. Expiry is measured
//! on an injected [`Clock`] (the wall clock unless told otherwise), so tests move time
//! instead of sleeping.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use rand::RngCore as _;

use agentsigna_core::model::Principal;
use agentsigna_core::{Clock, SystemClock};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "agentsigna_session";
/// Name of the cookie carrying the login form's CSRF token (before a session exists).
pub const LOGIN_COOKIE: &str = "agentsigna_login";
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How many sessions are kept at most (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

/// One logged-in person.
#[derive(Debug, Clone)]
struct Session {
    principal: Principal,
    csrf: String,
    /// Milliseconds since the epoch, on the table's clock.
    expires_ms: i64,
    /// A one-shot message shown on the next page (after a redirect).
    flash: Option<String>,
}

/// What a handler learns about the current session.
#[derive(Debug, Clone)]
pub struct Current {
    /// The session id (the cookie value).
    pub id: String,
    /// Who logged in.
    pub principal: Principal,
    /// The CSRF token every form of this session must carry.
    pub csrf: String,
}

/// The sessions of this server process.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// Session lifetime in milliseconds.
    ttl_ms: i64,
    clock: Arc<dyn Clock>,
    /// Set when the server is reached over TLS (`--public-url https://…`): cookies get
    /// `Secure` even without `X-Forwarded-Proto`.
    always_secure: AtomicBool,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(SESSION_TTL)
    }
}

impl Sessions {
    /// An empty session table whose sessions last `ttl` on the wall clock.
    pub fn new(ttl: Duration) -> Sessions {
        Sessions::with_clock(ttl, Arc::new(SystemClock))
    }

    /// An empty session table whose sessions last `ttl`, measured on `clock`.
    pub fn with_clock(ttl: Duration, clock: Arc<dyn Clock>) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            clock,
            always_secure: AtomicBool::new(false),
        }
    }

    /// Marks every cookie `Secure` (the server's public URL is `https://`).
    pub fn set_always_secure(&self, secure: bool) {
        self.always_secure.store(secure, Ordering::Relaxed);
    }

    /// Whether cookies for this request must be `Secure`: the public URL is `https://`,
    /// or a TLS-terminating proxy says so with `X-Forwarded-Proto: https`.
    pub fn secure_for(&self, headers: &HeaderMap) -> bool {
        self.always_secure.load(Ordering::Relaxed)
            || headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Opens a session for a principal; returns its id.
    pub fn create(&self, principal: Principal) -> String {
        let id = random_token();
        let now = self.clock.now_ms();
        let session =
            Session { principal, csrf: random_token(), expires_ms: now.saturating_add(self.ttl_ms), flash: None };
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires_ms > now);
        }
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires_ms).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), session);
        id
    }

    /// The live session with this id (an expired one is removed).
    pub fn get(&self, id: &str) -> Option<Current> {
        let mut map = self.lock();
        let s = map.get(id)?;
        if s.expires_ms <= self.clock.now_ms() {
            map.remove(id);
            return None;
        }
        Some(Current { id: id.to_owned(), principal: s.principal.clone(), csrf: s.csrf.clone() })
    }

    /// The session of a request, from its cookie.
    pub fn current(&self, headers: &HeaderMap) -> Option<Current> {
        cookie(headers, SESSION_COOKIE).and_then(|id| self.get(&id))
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Leaves a message for the next page of this session.
    pub fn set_flash(&self, id: &str, message: String) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some(message);
        }
    }

    /// Takes the pending message of this session, if any.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.lock().get_mut(id).and_then(|s| s.flash.take())
    }

    /// Number of live sessions (for tests and diagnostics).
    pub fn len(&self) -> usize {
        let now = self.clock.now_ms();
        self.lock().values().filter(|s| s.expires_ms > now).count()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 192 random bits, base64url without padding (32 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of a cookie of the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: `HttpOnly; SameSite=Strict; Path=/ui`, `Secure` when asked;
/// `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}", max_age.as_secs());
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn sessions_expire_and_tokens_are_192_bits() {
        let s = Sessions::new(Duration::from_millis(0));
        let id = s.create(Principal::Approver("carol".into()));
        assert_eq!(id.len(), 32);
        assert!(s.get(&id).is_none(), "a session past its expiry is gone");
        let s = Sessions::default();
        let id = s.create(Principal::Approver("carol".into()));
        let cur = s.get(&id).unwrap();
        assert_eq!(cur.principal, Principal::Approver("carol".into()));
        assert_ne!(cur.csrf, id);
        s.set_flash(&id, "hi".into());
        assert_eq!(s.take_flash(&id).as_deref(), Some("hi"));
        assert_eq!(s.take_flash(&id), None);
        s.remove(&id);
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn sessions_expire_on_the_injected_clock_without_sleeping() {
        let clock = Arc::new(agentsigna_core::ManualClock::new(1_700_000_000_000));
        let s = Sessions::with_clock(SESSION_TTL, clock.clone());
        let id = s.create(Principal::Approver("carol".into()));
        clock.advance_secs(12 * 3600 - 1);
        assert!(s.get(&id).is_some(), "live until 12 hours after login");
        clock.advance_ms(999);
        assert_eq!(s.len(), 1);
        clock.advance_ms(1);
        assert_eq!(s.len(), 0);
        assert!(s.get(&id).is_none(), "gone at 12 hours");
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn a_full_table_drops_expired_sessions_first_then_the_oldest() {
        let clock = Arc::new(agentsigna_core::ManualClock::new(1_700_000_000_000));
        let s = Sessions::with_clock(Duration::from_secs(60), clock.clone());
        let first = s.create(Principal::Approver("a".into()));
        clock.advance_secs(1);
        let second = s.create(Principal::Approver("b".into()));
        for _ in 2..MAX_SESSIONS {
            s.create(Principal::Approver("c".into()));
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        // Full, nothing expired: the oldest session goes.
        s.create(Principal::Approver("d".into()));
        assert!(s.get(&first).is_none() && s.get(&second).is_some());
        assert_eq!(s.len(), MAX_SESSIONS);
        // Full again, and every session expired: they all go at once.
        clock.advance_secs(60);
        let newest = s.create(Principal::Approver("e".into()));
        assert!(s.get(&second).is_none());
        s.create(Principal::Approver("f".into()));
        assert!(s.get(&newest).is_some());
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn cookies_parse_and_secure_follows_the_proxy() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; agentsigna_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        let s = Sessions::default();
        assert!(!s.secure_for(&h));
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(s.secure_for(&h));
        let c = set_cookie(SESSION_COOKIE, "abc", SESSION_TTL, true);
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/ui") && c.ends_with("Secure")
        );
    }
}
