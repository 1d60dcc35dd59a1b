//! Sessions of the approver web pages, and the cookies and CSRF tokens that go with them.
//!
//! A session is a random 192-bit token (the cookie value). The database keeps, keyed by
//! the token's SHA-256 (never the token itself), the principal that logged in, the expiry,
//! a one-shot message for the next page and the chosen time zone
//! ([`agentsigna_core::engine::sessions`]), so that every node behind a load balancer
//! knows every session and a logout ends it on all of them at once. The session's CSRF token is derived from the session token (a hash
//! of it under its own label), so it needs no storage and is worthless without the
//! cookie. Sessions expire 12 hours after login, measured on an injected [`Clock`] (the
//! wall clock unless told otherwise), so tests move time instead of sleeping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

pub use agentsigna_core::engine::sessions::FormError;
use agentsigna_core::engine::sessions::StoredSession;
use agentsigna_core::engine::Engine;
use agentsigna_core::model::Principal;
use agentsigna_core::{Clock, SystemClock};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "agentsigna_session";
/// Name of the cookie carrying the login form's CSRF token (before a session exists).
pub const LOGIN_COOKIE: &str = "agentsigna_login";
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// What a handler learns about the current session.
#[derive(Debug, Clone)]
pub struct Current {
    /// The session's stored id (the SHA-256 of its token).
    pub id: String,
    /// Who logged in.
    pub principal: Principal,
    /// The CSRF token every form of this session must carry.
    pub csrf: String,
    /// Whether a one-shot message waits for the next page.
    pub has_flash: bool,
    /// Whether a refused form waits for the page it came from.
    pub has_form_error: bool,
    /// The IANA time zone chosen for the pages (`None`: UTC).
    pub time_zone: Option<String>,
}

/// The sessions of every node, as this one reads and writes them.
#[derive(Debug)]
pub struct Sessions {
    engine: Arc<Engine>,
    /// Session lifetime in milliseconds.
    ttl_ms: i64,
    clock: Arc<dyn Clock>,
    /// Set when the server is reached over TLS (`--public-url https://…`): cookies get
    /// `Secure` even without `X-Forwarded-Proto`.
    always_secure: AtomicBool,
}

/// The stored id of a session token: its SHA-256, hex.
pub fn token_id(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The CSRF token of a session: a hash of its token under a label of its own.
fn csrf_of(token: &str) -> String {
    let digest = Sha256::new().chain_update(b"agentsigna-ui-csrf\0").chain_update(token.as_bytes()).finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..24])
}

impl Sessions {
    /// The session table of `engine`'s database; sessions last 12 hours on the wall clock.
    pub fn new(engine: Arc<Engine>) -> Sessions {
        Sessions::with_clock(engine, SESSION_TTL, Arc::new(SystemClock))
    }

    /// The session table of `engine`'s database; sessions last `ttl`, measured on `clock`.
    pub fn with_clock(engine: Arc<Engine>, ttl: Duration, clock: Arc<dyn Clock>) -> Sessions {
        Sessions {
            engine,
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

    /// Opens a session for a principal; returns its token (the cookie value).
    pub async fn create(&self, principal: Principal) -> agentsigna_core::Result<String> {
        let token = random_token();
        let now = self.clock.now_ms();
        let stored = StoredSession {
            id: token_id(&token),
            principal,
            expires_ms: now.saturating_add(self.ttl_ms),
            flash: None,
            form_error: None,
            time_zone: None,
        };
        self.engine.session_open(stored, now).await?;
        Ok(token)
    }

    /// The live session with this token (`None`: unknown, logged out or expired).
    pub async fn get(&self, token: &str) -> agentsigna_core::Result<Option<Current>> {
        let id = token_id(token);
        let Some(s) = self.engine.session(&id).await? else { return Ok(None) };
        if s.expires_ms <= self.clock.now_ms() {
            return Ok(None);
        }
        Ok(Some(Current {
            id,
            principal: s.principal,
            csrf: csrf_of(token),
            has_flash: s.flash.is_some(),
            has_form_error: s.form_error.is_some(),
            time_zone: s.time_zone,
        }))
    }

    /// The session of a request, from its cookie.
    pub async fn current(&self, headers: &HeaderMap) -> agentsigna_core::Result<Option<Current>> {
        match cookie(headers, SESSION_COOKIE) {
            Some(token) => self.get(&token).await,
            None => Ok(None),
        }
    }

    /// Ends a session (by its stored id) on every node.
    pub async fn remove(&self, id: &str) -> agentsigna_core::Result<()> {
        self.engine.session_close(id).await
    }

    /// Leaves a message for the next page of this session.
    pub async fn set_flash(&self, id: &str, message: String) -> agentsigna_core::Result<()> {
        self.engine.session_flash(id, Some(message)).await.map(|_| ())
    }

    /// Takes the pending message of this session, if any.
    pub async fn take_flash(&self, cur: &Current) -> Option<String> {
        if !cur.has_flash {
            return None;
        }
        match self.engine.session_flash(&cur.id, None).await {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!(error = %err, "cannot take the session's message");
                None
            }
        }
    }

    /// Remembers the time zone the session's pages show times in (`None`: UTC).
    pub async fn set_time_zone(&self, cur: &Current, zone: Option<String>) -> agentsigna_core::Result<()> {
        self.engine.session_set_time_zone(&cur.id, zone).await
    }

    /// Keeps a refused form for the next page of this session.
    pub async fn set_form_error(&self, cur: &Current, error: FormError) -> agentsigna_core::Result<()> {
        self.engine.session_set_form_error(&cur.id, error).await
    }

    /// The refused form of `page`, once.
    pub async fn take_form_error(&self, cur: &Current, page: &str) -> Option<FormError> {
        if !cur.has_form_error {
            return None;
        }
        match self.engine.session_take_form_error(&cur.id, page).await {
            Ok(e) => e,
            Err(err) => {
                tracing::warn!(error = %err, "cannot take the session's refused form");
                None
            }
        }
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
    use agentsigna_core::keys::Keyring;
    use agentsigna_core::ManualClock;
    use agentsigna_store::sqlite::{SqliteOptions, SqliteStore};

    fn engine(dir: &std::path::Path, clock: Arc<ManualClock>) -> Arc<Engine> {
        let keys = Keyring::load_or_create(&dir.join("keys"), None, 0).unwrap();
        let store = SqliteStore::open(&dir.join("db"), keys.ledger.clone(), SqliteOptions::default()).unwrap();
        Arc::new(Engine::new(Arc::new(store), clock, keys, agentsigna_core::engine::Config::default()))
    }

    #[tokio::test]
    async fn sessions_are_stored_by_hash_expire_on_the_clock_and_end_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let e = engine(dir.path(), clock.clone());
        // Two nodes' tables over one database.
        let (a, b) = (
            Sessions::with_clock(e.clone(), SESSION_TTL, clock.clone()),
            Sessions::with_clock(e.clone(), SESSION_TTL, clock.clone()),
        );
        let token = a.create(Principal::Approver("carol".into())).await.unwrap();
        assert_eq!(token.len(), 32, "192 bits");
        let cur = b.get(&token).await.unwrap().expect("known on the other node");
        assert_eq!(cur.principal, Principal::Approver("carol".into()));
        assert_eq!(cur.id, token_id(&token));
        assert!(e.session(&token).await.unwrap().is_none(), "the raw token is not a key");
        let stored = e.session(&cur.id).await.unwrap().unwrap();
        assert!(!serde_json::to_string(&stored).unwrap().contains(&token), "the token itself is not stored");
        assert_ne!(cur.csrf, token);
        assert_eq!(a.get(&token).await.unwrap().unwrap().csrf, cur.csrf, "one CSRF token per session");

        // A message left on one node is shown once, on whichever node serves the next page.
        a.set_flash(&cur.id, "hi".into()).await.unwrap();
        let cur = b.get(&token).await.unwrap().unwrap();
        assert_eq!(b.take_flash(&cur).await.as_deref(), Some("hi"));
        let cur = a.get(&token).await.unwrap().unwrap();
        assert_eq!(a.take_flash(&cur).await, None);

        clock.advance_secs(12 * 3600 - 1);
        assert!(b.get(&token).await.unwrap().is_some(), "live until 12 hours after login");
        clock.advance_secs(1);
        assert!(b.get(&token).await.unwrap().is_none(), "gone at 12 hours");

        // Logout on one node ends the session on the other; a later login sweeps expired ones.
        let other = a.create(Principal::Approver("dave".into())).await.unwrap();
        assert!(e.session(&token_id(&token)).await.unwrap().is_none(), "the expired session was deleted");
        let cur = a.get(&other).await.unwrap().unwrap();
        a.remove(&cur.id).await.unwrap();
        assert!(b.get(&other).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn cookies_parse_and_secure_follows_the_proxy() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sessions::new(engine(dir.path(), Arc::new(ManualClock::new(0))));
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; agentsigna_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(!s.secure_for(&h));
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(s.secure_for(&h));
        let c = set_cookie(SESSION_COOKIE, "abc", SESSION_TTL, true);
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/ui") && c.ends_with("Secure")
        );
    }
}
