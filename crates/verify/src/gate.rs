//! The [`Gate`] a business system embeds at its API boundary: passport verification,
//! holder proof for key-bound passports, and single use.
//!
//! ```
//! use agentsigna_verify::gate::{Gate, GateRequest};
//! use agentsigna_verify::jwk::{Jwk, Jwks};
//! use agentsigna_verify::passport::{self, PassportClaims, Verifier};
//! use agentsigna_verify::clock::ManualClock;
//!
//! let issuer = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
//! let claims: PassportClaims = serde_json::from_value(serde_json::json!({
//!     "iss": "agentsigna", "sub": "agent-1", "aud": "erp",
//!     "iat": 1_800_000_000, "nbf": 1_800_000_000, "exp": 1_800_000_300, "jti": "p-1",
//!     "authorization_details": [], "approvals": [],
//!     "decision": {"verdict": "authorized", "policy": {"version": 1, "digest": "ab"},
//!         "rules": [], "decided_at": "2027-01-15T08:00:00.000Z",
//!         "trust": {"agent": 50, "counterparty": 50}},
//!     "case": {"id": "c-1", "seq": 0, "head": "cd"}
//! })).unwrap();
//! let token = passport::sign(&claims, &issuer).unwrap();
//!
//! let jwks = Jwks { keys: vec![Jwk::from_verifying_key(&issuer.verifying_key())] };
//! let gate = Gate::new(Verifier::new(jwks, "erp"));
//! let clock = ManualClock::new(1_800_000_010_000);
//! let req = GateRequest { passport: &token, proof: None, method: "POST", url: "https://erp/x" };
//! assert!(gate.check(&req, &clock).is_ok());
//! assert_eq!(gate.check(&req, &clock).unwrap_err().code(), "replayed");
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::passport::{VerifiedPassport, Verifier};
use crate::proof::{self, DEFAULT_PROOF_WINDOW_SECS};
use crate::{Clock, Error};

/// Remembers single-use keys (passport and proof ids) until they expire.
///
/// Implementations shared between gate instances (e.g. over Redis) must make
/// [`ReplayCache::consume`] atomic.
pub trait ReplayCache: Send + Sync {
    /// Atomically records `key` until `expires_at` (unix secs); returns false if it was
    /// already present (replay).
    fn consume(&self, key: &str, expires_at: i64, now_secs: i64) -> bool;
}

/// Default capacity of the [`MemoryReplayCache`] of [`Gate::new`]: room for about
/// 3,000 passports per second over a 5-minute lifetime.
pub const DEFAULT_REPLAY_CAPACITY: usize = 1_000_000;

/// An in-process [`ReplayCache`]: a mutex-guarded map from key to expiry.
///
/// Expired keys are purged when the map is full. When it is full of **unexpired** keys
/// the cache fails closed: [`ReplayCache::consume`] returns false for every new key
/// (so the gate refuses with `replayed`) until some expire. Size the capacity above the
/// peak number of passports and proofs accepted within one passport lifetime.
///
/// ```
/// use agentsigna_verify::gate::{MemoryReplayCache, ReplayCache};
/// let cache = MemoryReplayCache::new(10);
/// assert!(cache.consume("passport:p-1", 100, 50));
/// assert!(!cache.consume("passport:p-1", 100, 60));
/// assert!(cache.consume("passport:p-1", 200, 101)); // expired, so usable again
/// ```
#[derive(Debug)]
pub struct MemoryReplayCache {
    entries: Mutex<HashMap<String, i64>>,
    capacity: usize,
}

impl MemoryReplayCache {
    /// A cache holding at most `capacity` unexpired keys (at least 1).
    ///
    /// ```
    /// let cache = agentsigna_verify::gate::MemoryReplayCache::new(100);
    /// assert_eq!(cache.capacity(), 100);
    /// ```
    pub fn new(capacity: usize) -> MemoryReplayCache {
        MemoryReplayCache { entries: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// The maximum number of keys held.
    ///
    /// ```
    /// assert_eq!(agentsigna_verify::gate::MemoryReplayCache::new(0).capacity(), 1);
    /// ```
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of keys held, expired ones not yet purged included.
    ///
    /// ```
    /// use agentsigna_verify::gate::{MemoryReplayCache, ReplayCache};
    /// let cache = MemoryReplayCache::new(10);
    /// cache.consume("k", 10, 0);
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is held.
    ///
    /// ```
    /// assert!(agentsigna_verify::gate::MemoryReplayCache::new(10).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Drops every key that expired before `now_secs`.
    ///
    /// ```
    /// use agentsigna_verify::gate::{MemoryReplayCache, ReplayCache};
    /// let cache = MemoryReplayCache::new(10);
    /// cache.consume("k", 10, 0);
    /// cache.purge(11);
    /// assert!(cache.is_empty());
    /// ```
    pub fn purge(&self, now_secs: i64) {
        self.lock().retain(|_, expires_at| *expires_at >= now_secs);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        // A panic while holding the lock cannot leave the map inconsistent (single
        // insert/retain calls), so a poisoned lock is still safe to use.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for MemoryReplayCache {
    fn default() -> Self {
        MemoryReplayCache::new(DEFAULT_REPLAY_CAPACITY)
    }
}

impl ReplayCache for MemoryReplayCache {
    fn consume(&self, key: &str, expires_at: i64, now_secs: i64) -> bool {
        let mut entries = self.lock();
        match entries.get_mut(key) {
            // Still remembered: a replay.
            Some(until) if *until >= now_secs => false,
            // Remembered but expired: reuse the slot.
            Some(until) => {
                *until = expires_at;
                true
            }
            None => {
                if entries.len() >= self.capacity {
                    entries.retain(|_, until| *until >= now_secs);
                    if entries.len() >= self.capacity {
                        return false; // Fail closed rather than forget a live key.
                    }
                }
                entries.insert(key.to_owned(), expires_at);
                true
            }
        }
    }
}

/// One request at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateRequest<'a> {
    /// The passport (compact JWS).
    pub passport: &'a str,
    /// The holder proof (header `AgentSigna-Proof`), if any.
    pub proof: Option<&'a str>,
    /// The HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The URL as the agent called it (the public URL of the gate).
    pub url: &'a str,
}

/// Verification plus single use plus holder proof, with no call back to AgentSigna.
///
/// [`Gate::check`] verifies the passport ([`Verifier`]); when it is key-bound
/// (`cnf.jkt`) it requires a holder proof (`proof_missing`), verifies it
/// (`proof_invalid`, window ±60 s) and consumes the proof's `jti` (`replayed`, kept until
/// `iat + window`); only then it consumes the passport's `jti` (`replayed`, kept until
/// `exp + leeway`). A refused request therefore never burns the passport. A proof sent
/// with a passport that is not key-bound is ignored.
#[derive(Clone)]
pub struct Gate {
    verifier: Verifier,
    cache: Arc<dyn ReplayCache>,
    proof_window: i64,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("verifier", &self.verifier)
            .field("proof_window", &self.proof_window)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate with a [`MemoryReplayCache`] of [`DEFAULT_REPLAY_CAPACITY`].
    /// See the [module example](self).
    pub fn new(verifier: Verifier) -> Gate {
        Gate { verifier, cache: Arc::new(MemoryReplayCache::default()), proof_window: DEFAULT_PROOF_WINDOW_SECS }
    }

    /// Uses `cache` (shared between gates, bounded differently, external) for single use.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agentsigna_verify::{gate::{Gate, MemoryReplayCache}, jwk::Jwks, passport::Verifier};
    /// let gate = Gate::new(Verifier::new(Jwks::default(), "erp"))
    ///     .with_replay_cache(Arc::new(MemoryReplayCache::new(1_000)));
    /// assert_eq!(gate.verifier().audience(), "erp");
    /// ```
    pub fn with_replay_cache(mut self, cache: Arc<dyn ReplayCache>) -> Gate {
        self.cache = cache;
        self
    }

    /// Sets the allowed distance of a proof's `iat` from now, in seconds (default 60,
    /// clamped to `0..=300`).
    ///
    /// ```
    /// use agentsigna_verify::{gate::Gate, jwk::Jwks, passport::Verifier};
    /// let gate = Gate::new(Verifier::new(Jwks::default(), "erp")).with_proof_window(10);
    /// assert_eq!(gate.proof_window(), 10);
    /// ```
    pub fn with_proof_window(mut self, secs: i64) -> Gate {
        self.proof_window = secs.clamp(0, 300);
        self
    }

    /// The allowed distance of a proof's `iat` from now, in seconds.
    ///
    /// ```
    /// use agentsigna_verify::{gate::Gate, jwk::Jwks, passport::Verifier};
    /// assert_eq!(Gate::new(Verifier::new(Jwks::default(), "erp")).proof_window(), 60);
    /// ```
    pub fn proof_window(&self) -> i64 {
        self.proof_window
    }

    /// The passport verifier.
    ///
    /// ```
    /// use agentsigna_verify::{gate::Gate, jwk::Jwks, passport::Verifier};
    /// assert_eq!(Gate::new(Verifier::new(Jwks::default(), "erp")).verifier().audience(), "erp");
    /// ```
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The passport verifier, mutable: to install a refetched JWK set.
    ///
    /// ```
    /// use agentsigna_verify::{gate::Gate, jwk::Jwks, passport::Verifier};
    /// let mut gate = Gate::new(Verifier::new(Jwks::default(), "erp"));
    /// gate.verifier_mut().set_jwks(Jwks::default());
    /// ```
    pub fn verifier_mut(&mut self) -> &mut Verifier {
        &mut self.verifier
    }

    /// Checks one request; see [`Gate`] for the order. On success the passport (and its
    /// proof) are consumed.
    pub fn check(&self, req: &GateRequest<'_>, clock: &dyn Clock) -> Result<VerifiedPassport, Error> {
        let now = self.verifier.now(clock);
        let verified = self.verifier.verify_at(req.passport, now)?;
        if let Some(cnf) = &verified.claims.cnf {
            let proof = req.proof.ok_or(Error::ProofMissing)?;
            let claims =
                proof::verify_proof(proof, req.passport, &cnf.jkt, req.method, req.url, now, self.proof_window)?;
            // Scoped by key so one agent cannot burn another's proof ids.
            let key = format!("proof:{}:{}", cnf.jkt, claims.jti);
            if !self.cache.consume(&key, claims.iat.saturating_add(self.proof_window), now) {
                return Err(Error::Replayed(format!("proof {}", claims.jti)));
            }
        }
        let key = format!("passport:{}", verified.claims.jti);
        let until = verified.claims.exp.saturating_add(self.verifier.leeway());
        if !self.cache.consume(&key, until, now) {
            return Err(Error::Replayed(format!("passport {}", verified.claims.jti)));
        }
        Ok(verified)
    }
}

/// The header that carries a passport when `Authorization` is taken by something else.
pub const PASSPORT_HEADER: &str = "agentsigna-passport";
/// The header that carries the holder proof.
pub const PROOF_HEADER: &str = "agentsigna-proof";

/// Finds the passport in a request's headers: `AgentSigna-Passport: <jws>` or
/// `Authorization: Passport <jws>` (scheme in any case). `header` looks a header up by its lower-case name.
///
/// ```
/// use agentsigna_verify::gate::passport_from_headers;
/// let headers = [("authorization", "Passport a.b.c")];
/// let get = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
/// assert_eq!(passport_from_headers(get), Some("a.b.c"));
/// assert_eq!(passport_from_headers(|n| (n == "authorization").then_some("passport a.b.c")), Some("a.b.c"));
/// assert_eq!(passport_from_headers(|n| (n == "authorization").then_some("Bearer x")), None);
/// ```
pub fn passport_from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<&'a str> {
    if let Some(v) = header(PASSPORT_HEADER) {
        return Some(v.trim());
    }
    passport_from_authorization(header("authorization")?)
}

/// The passport of an `Authorization` header value with the `Passport` scheme (in any
/// case, as RFC 9110 makes schemes case-insensitive); `None` for other schemes.
///
/// ```
/// use agentsigna_verify::gate::passport_from_authorization;
/// assert_eq!(passport_from_authorization("PASSPORT a.b.c"), Some("a.b.c"));
/// assert_eq!(passport_from_authorization("Bearer a.b.c"), None);
/// ```
pub fn passport_from_authorization(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("passport").then(|| token.trim())
}

/// How a gate answers a refused request: an RFC 9457 problem whose `code` member is
/// the reason word ([`Error::code`]).
///
/// 401 for a missing or invalid passport or proof, 403 for a valid passport meant for
/// another audience, 409 for a reused passport or proof.
///
/// ```
/// use agentsigna_verify::{gate::Refusal, Error};
/// let r = Refusal::of(&Error::Replayed("passport p-1".into()));
/// assert_eq!((r.status, r.code), (409, "replayed"));
/// let body: serde_json::Value = serde_json::from_str(&r.problem_json()).unwrap();
/// assert_eq!(body["type"], "urn:agentsigna:problem:passport-refused");
/// assert_eq!(body["status"], 409);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status: 401, 403 or 409.
    pub status: u16,
    /// The problem's `title`.
    pub title: &'static str,
    /// The reason word.
    pub code: &'static str,
    /// The problem's `detail`.
    pub detail: String,
}

impl Refusal {
    /// The content type of [`Refusal::problem_json`].
    pub const CONTENT_TYPE: &'static str = "application/problem+json";
    /// The `WWW-Authenticate` challenge to send with a 401.
    pub const CHALLENGE: &'static str = "Passport";

    /// The refusal for a gate error.
    ///
    /// ```
    /// use agentsigna_verify::{gate::Refusal, Error};
    /// assert_eq!(Refusal::of(&Error::ProofMissing).status, 401);
    /// ```
    pub fn of(e: &Error) -> Refusal {
        let (status, title) = match e {
            Error::WrongAudience { .. } => (403, "Passport not meant for this system"),
            Error::Replayed(_) => (409, "Passport already used"),
            _ => (401, "Invalid passport"),
        };
        Refusal { status, title, code: e.code(), detail: e.to_string() }
    }

    /// The refusal for a request that carries no passport at all (`malformed`, 401).
    ///
    /// ```
    /// assert_eq!(agentsigna_verify::gate::Refusal::no_passport().code, "malformed");
    /// ```
    pub fn no_passport() -> Refusal {
        Refusal::of(&Error::Malformed("no passport: send Authorization: Passport <jws> or AgentSigna-Passport".into()))
    }

    /// The problem document (`type`, `title`, `status`, `detail`, `code`).
    ///
    /// ```
    /// let r = agentsigna_verify::gate::Refusal::no_passport();
    /// assert!(r.problem_json().contains(r#""code":"malformed""#));
    /// ```
    pub fn problem_json(&self) -> String {
        serde_json::json!({
            "type": "urn:agentsigna:problem:passport-refused",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        })
        .to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::passport::{self, PassportClaims};
    use crate::testing::{self, agent, issuer, issuer_jwks, T0};

    const URL: &str = "https://erp.example/v1/orders";

    fn claims(jti: &str, bound: bool) -> PassportClaims {
        testing::claims(jti, "erp", bound)
    }

    fn gate() -> Gate {
        Gate::new(Verifier::new(issuer_jwks(), "erp"))
    }

    fn clock(secs: i64) -> ManualClock {
        ManualClock::new(secs * 1000)
    }

    #[test]
    fn cache_semantics() {
        let cache = MemoryReplayCache::new(2);
        assert!(cache.consume("a", 10, 0));
        assert!(!cache.consume("a", 10, 10)); // inclusive expiry
        assert!(cache.consume("b", 20, 0));
        assert!(!cache.consume("c", 20, 5)); // full of live keys: fail closed
        assert!(cache.consume("c", 20, 11)); // "a" purged
        assert_eq!(cache.len(), 2);
        assert!(!cache.consume("a", 30, 12)); // "b" and "c" still live
        assert!(cache.consume("a", 30, 21));
        assert_eq!(cache.len(), 1);
        cache.purge(100);
        assert!(cache.is_empty());
    }

    #[test]
    fn unbound_passport_single_use() {
        let token = passport::sign(&claims("p-1", false), &issuer()).unwrap();
        let g = gate();
        let req = GateRequest { passport: &token, proof: None, method: "POST", url: URL };
        assert_eq!(g.check(&req, &clock(T0)).unwrap().claims.jti, "p-1");
        assert_eq!(g.check(&req, &clock(T0 + 1)).unwrap_err().code(), "replayed");
        // Still refused near the end of the leeway.
        assert_eq!(g.check(&req, &clock(T0 + 329)).unwrap_err().code(), "replayed");
        // After that the passport is expired anyway.
        assert_eq!(g.check(&req, &clock(T0 + 330)).unwrap_err().code(), "expired");
    }

    #[test]
    fn refused_attempts_do_not_burn() {
        let token = passport::sign(&claims("p-2", true), &issuer()).unwrap();
        let g = gate();
        let mut req = GateRequest { passport: &token, proof: None, method: "POST", url: URL };
        assert_eq!(g.check(&req, &clock(T0)).unwrap_err(), Error::ProofMissing);
        let wrong = proof::sign_proof(&agent(), &token, "GET", URL, T0, "n-1");
        req.proof = Some(&wrong);
        assert_eq!(g.check(&req, &clock(T0)).unwrap_err().code(), "proof_invalid");
        let good = proof::sign_proof(&agent(), &token, "POST", URL, T0, "n-2");
        req.proof = Some(&good);
        assert!(g.check(&req, &clock(T0)).is_ok());
        // Replay with a fresh proof: the passport is spent.
        let fresh = proof::sign_proof(&agent(), &token, "POST", URL, T0, "n-3");
        req.proof = Some(&fresh);
        assert_eq!(g.check(&req, &clock(T0)).unwrap_err().code(), "replayed");
    }

    #[test]
    fn replayed_proof() {
        let t1 = passport::sign(&claims("p-3", true), &issuer()).unwrap();
        let g = gate();
        let p = proof::sign_proof(&agent(), &t1, "POST", URL, T0, "n-1");
        let req = GateRequest { passport: &t1, proof: Some(&p), method: "POST", url: URL };
        assert!(g.check(&req, &clock(T0)).is_ok());
        // Same proof id with another passport.
        let t2 = passport::sign(&claims("p-4", true), &issuer()).unwrap();
        let p2 = proof::sign_proof(&agent(), &t2, "POST", URL, T0, "n-1");
        let req2 = GateRequest { passport: &t2, proof: Some(&p2), method: "POST", url: URL };
        let err = g.check(&req2, &clock(T0)).unwrap_err();
        assert_eq!(err.code(), "replayed");
        assert!(err.to_string().contains("proof"), "{err}");
        // p-4 was not burnt by the refused attempt.
        let p3 = proof::sign_proof(&agent(), &t2, "POST", URL, T0, "n-2");
        let req3 = GateRequest { passport: &t2, proof: Some(&p3), method: "POST", url: URL };
        assert!(g.check(&req3, &clock(T0)).is_ok());
    }

    #[test]
    fn proof_ignored_for_unbound_passport() {
        let token = passport::sign(&claims("p-5", false), &issuer()).unwrap();
        let req = GateRequest { passport: &token, proof: Some("junk"), method: "POST", url: URL };
        assert!(gate().check(&req, &clock(T0)).is_ok());
    }

    #[test]
    fn fixed_instant_is_used_for_everything() {
        let token = passport::sign(&claims("p-6", false), &issuer()).unwrap();
        let g = Gate::new(Verifier::new(issuer_jwks(), "erp").at(T0 + 1));
        let req = GateRequest { passport: &token, proof: None, method: "POST", url: URL };
        assert!(g.check(&req, &clock(0)).is_ok());
        assert!(format!("{g:?}").contains("Gate"));
    }
}
