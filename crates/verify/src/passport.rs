//! The Passport: a compact JWS (`typ: passport+jwt`, `alg: EdDSA`) carrying one case's
//! whole decision record, verifiable offline with the issuer's JWK set.
//!
//! ```
//! use agentsigna_verify::jwk::{Jwk, Jwks};
//! use agentsigna_verify::passport::{self, PassportClaims, Verifier};
//!
//! let issuer = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
//! let claims: PassportClaims = serde_json::from_value(serde_json::json!({
//!     "iss": "agentsigna", "sub": "agent-1", "aud": "erp",
//!     "iat": 1_800_000_000, "nbf": 1_800_000_000, "exp": 1_800_000_300, "jti": "p-1",
//!     "authorization_details": [{"type": "agentsigna_action", "action": "purchase_order.create",
//!         "counterparty": {"id": "acme", "name": "ACME", "risk": "low"},
//!         "amount": {"value": "1200.00", "currency": "EUR"}, "description": "laptops"}],
//!     "decision": {"verdict": "authorized", "policy": {"version": 3, "digest": "ab12"},
//!         "rules": ["small-orders"], "decided_at": "2027-01-15T08:00:00.000Z",
//!         "trust": {"agent": 72, "counterparty": 64}},
//!     "approvals": [], "case": {"id": "c-1", "seq": 4, "head": "cd34"}
//! })).unwrap();
//! let token = passport::sign(&claims, &issuer).unwrap();
//!
//! let jwks = Jwks { keys: vec![Jwk::from_verifying_key(&issuer.verifying_key())] };
//! let verifier = Verifier::new(jwks, "erp");
//! let verified = verifier.verify_at(&token, 1_800_000_100).unwrap();
//! assert_eq!(verified.claims, claims);
//! assert_eq!(verifier.verify_at(&token, 1_800_000_400).unwrap_err().code(), "expired");
//! ```

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize};

use crate::jwk::Jwks;
use crate::jws::{self, MAX_TOKEN_BYTES};
use crate::signer::Ed25519Signer;
use crate::{Clock, Error};

/// The JOSE `typ` of a passport.
pub const PASSPORT_TYP: &str = "passport+jwt";

/// The `type` of every [`AuthorizationDetail`] AgentSigna issues (RFC 9396 style).
pub const AUTHORIZATION_DETAIL_TYPE: &str = "agentsigna_action";

/// Default clock-skew tolerance of a [`Verifier`], in seconds.
pub const DEFAULT_LEEWAY_SECS: i64 = 30;

/// Largest leeway a [`Verifier`] accepts; larger values are clamped to it.
pub const MAX_LEEWAY_SECS: i64 = 300;

/// The claims of a passport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassportClaims {
    /// Issuer (default `agentsigna`).
    pub iss: String,
    /// The agent id.
    pub sub: String,
    /// The target system (one value; a one-element array is accepted when reading).
    #[serde(deserialize_with = "one_audience")]
    pub aud: String,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Not before (unix seconds).
    pub nbf: i64,
    /// Expiry (unix seconds).
    pub exp: i64,
    /// Passport id: the single-use key.
    pub jti: String,
    /// What is authorized.
    pub authorization_details: Vec<AuthorizationDetail>,
    /// The decision record.
    pub decision: Decision,
    /// The approval chain; empty when authorized directly.
    pub approvals: Vec<Approval>,
    /// Ledger position of the case.
    pub case: CaseRef,
    /// Holder binding: present when the agent registered a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// One authorized action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationDetail {
    /// Always [`AUTHORIZATION_DETAIL_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The action type, e.g. `purchase_order.create`.
    pub action: String,
    /// The counterparty.
    pub counterparty: CounterpartyRef,
    /// The amount, when the action has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    /// The agent's description of the action.
    pub description: String,
}

/// The counterparty of an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterpartyRef {
    /// Counterparty id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Risk class.
    pub risk: String,
}

/// A monetary amount; the value is a decimal string (never a float).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    /// Decimal string, e.g. `1200.00`.
    pub value: String,
    /// ISO 4217 currency code.
    pub currency: String,
}

/// The policy decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// `authorized` or `approved`.
    pub verdict: String,
    /// The policy that decided.
    pub policy: PolicyRef,
    /// Ids of the rules that produced the verdict.
    pub rules: Vec<String>,
    /// RFC 3339 instant of the decision.
    pub decided_at: String,
    /// Trust scores used.
    pub trust: TrustRef,
}

/// A policy version and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// Policy version.
    pub version: u64,
    /// Policy digest.
    pub digest: String,
}

/// Trust scores at decision time (0–100).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRef {
    /// The agent's score.
    pub agent: i64,
    /// The counterparty's score.
    pub counterparty: i64,
}

/// One human approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Approver id.
    pub approver: String,
    /// The approver's roles.
    pub roles: Vec<String>,
    /// `approve`.
    pub decision: String,
    /// RFC 3339 instant.
    pub at: String,
}

/// The case's chain head at issuance: the `seq` and digest of its last entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRef {
    /// Case id.
    pub id: String,
    /// `seq` of the case's last entry before issuance (its chain head).
    pub seq: u64,
    /// Digest (lowercase hex) of that entry.
    pub head: String,
}

/// Holder binding (RFC 7800 `cnf`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 7638 thumbprint of the agent's key.
    pub jkt: String,
}

fn one_audience<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    match Aud::deserialize(de)? {
        Aud::One(aud) => Ok(aud),
        Aud::Many(mut auds) if auds.len() == 1 => Ok(auds.remove(0)),
        Aud::Many(_) => Err(serde::de::Error::custom("aud must name exactly one audience")),
    }
}

/// Signs `claims` with the issuer key. Header:
/// `{"alg":"EdDSA","kid":<RFC 7638 thumbprint>,"typ":"passport+jwt"}`.
///
/// Fails ([`Error::Malformed`]) when the token would exceed
/// [`MAX_TOKEN_BYTES`], since no verifier would accept it.
/// See the [module example](self).
pub fn sign(claims: &PassportClaims, key: &(impl Ed25519Signer + ?Sized)) -> Result<String, Error> {
    let kid = key.thumbprint();
    // Written by hand so the header bytes never depend on serde_json features; the
    // thumbprint is base64url and needs no escaping.
    let header = format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"{PASSPORT_TYP}"}}"#);
    let payload = serde_json::to_vec(claims).map_err(|e| Error::Malformed(e.to_string()))?;
    let token = jws::sign_compact_json(&header, &payload, key);
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::Malformed(format!("passport would be {} bytes, more than {MAX_TOKEN_BYTES}", token.len())));
    }
    Ok(token)
}

/// Reads a passport's claims **without verifying anything**: for displaying a refused
/// passport or routing before verification, never for authorization.
///
/// ```
/// let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
/// let token = agentsigna_verify::jws::sign_compact(&serde_json::json!({"alg": "none"}), b"{}", &key);
/// assert_eq!(agentsigna_verify::passport::decode_unverified(&token).unwrap_err().code(), "malformed");
/// ```
pub fn decode_unverified(token: &str) -> Result<PassportClaims, Error> {
    let parsed = jws::parse(token)?;
    parse_claims(&parsed.payload)
}

fn parse_claims(payload: &[u8]) -> Result<PassportClaims, Error> {
    serde_json::from_slice(payload).map_err(|e| Error::Malformed(format!("claims: {e}")))
}

/// A passport that passed every check of a [`Verifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPassport {
    /// The `kid` of the issuer key that signed it.
    pub kid: String,
    /// Its claims.
    pub claims: PassportClaims,
}

/// Verifies passports against a JWK set, an audience and the clock.
///
/// Checks, in order (the first failure is returned): size ≤ [`MAX_TOKEN_BYTES`], three
/// base64url parts and a JSON-object header (`malformed`); `typ` exactly
/// `passport+jwt` (`wrong_type`); `alg` exactly `EdDSA` (`alg_not_allowed`); no `crit`
/// and no embedded key (`jwk`, `jku`, `x5u`, `x5c`: `malformed`, keys come only from the
/// JWK set); `kid` present and in the set (`unknown_key`); Ed25519 strict signature
/// (`bad_signature`); claims parse (`malformed`); `now < exp + leeway` (`expired`);
/// `now ≥ nbf − leeway` (`not_yet_valid`); `aud` equals the audience (`wrong_audience`).
///
/// Verifying keys are decoded once, when the JWK set is installed, not per token.
#[derive(Debug, Clone)]
pub struct Verifier {
    jwks: Jwks,
    /// `(kid, key)` for every usable key of `jwks`, in order; the first match wins.
    keys: Vec<(String, VerifyingKey)>,
    audience: String,
    leeway: i64,
    at: Option<i64>,
}

/// Header members that carry or point to a key; a passport's key comes only from the
/// verifier's JWK set.
const EMBEDDED_KEY_HEADERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

impl Verifier {
    /// A verifier for passports addressed to `audience`, with leeway
    /// [`DEFAULT_LEEWAY_SECS`]. Keys of `jwks` that are not usable Ed25519 signing keys
    /// are ignored (tokens naming them fail with `unknown_key`).
    ///
    /// ```
    /// use agentsigna_verify::{jwk::Jwks, passport::Verifier};
    /// let verifier = Verifier::new(Jwks::default(), "erp");
    /// assert_eq!((verifier.audience(), verifier.leeway()), ("erp", 30));
    /// ```
    pub fn new(jwks: Jwks, audience: impl Into<String>) -> Verifier {
        let keys = usable_keys(&jwks);
        Verifier { jwks, keys, audience: audience.into(), leeway: DEFAULT_LEEWAY_SECS, at: None }
    }

    /// Sets the clock-skew tolerance in seconds, clamped to `0..=300`.
    ///
    /// ```
    /// use agentsigna_verify::{jwk::Jwks, passport::Verifier};
    /// assert_eq!(Verifier::new(Jwks::default(), "erp").with_leeway(9_999).leeway(), 300);
    /// assert_eq!(Verifier::new(Jwks::default(), "erp").with_leeway(-5).leeway(), 0);
    /// ```
    pub fn with_leeway(mut self, secs: i64) -> Verifier {
        self.leeway = secs.clamp(0, MAX_LEEWAY_SECS);
        self
    }

    /// Checks validity at a fixed instant (unix seconds) instead of the clock's: for
    /// audits. [`Verifier::verify`] then ignores its clock; [`Verifier::verify_at`]
    /// always uses the instant it is given.
    ///
    /// ```
    /// use agentsigna_verify::{jwk::Jwks, passport::Verifier, SystemClock};
    /// let verifier = Verifier::new(Jwks::default(), "erp").at(1_800_000_000);
    /// assert_eq!(verifier.fixed_instant(), Some(1_800_000_000));
    /// assert_eq!(verifier.now(&SystemClock), 1_800_000_000);
    /// ```
    pub fn at(mut self, instant_secs: i64) -> Verifier {
        self.at = Some(instant_secs);
        self
    }

    /// The JWK set in use.
    ///
    /// ```
    /// use agentsigna_verify::{jwk::Jwks, passport::Verifier};
    /// assert!(Verifier::new(Jwks::default(), "erp").jwks().keys.is_empty());
    /// ```
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// Replaces the JWK set (key rotation, refetch on an unknown `kid`).
    ///
    /// ```
    /// use agentsigna_verify::{jwk::{Jwk, Jwks}, passport::Verifier};
    /// let mut verifier = Verifier::new(Jwks::default(), "erp");
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
    /// verifier.set_jwks(Jwks { keys: vec![Jwk::from_verifying_key(&key)] });
    /// assert_eq!(verifier.jwks().keys.len(), 1);
    /// ```
    pub fn set_jwks(&mut self, jwks: Jwks) {
        self.keys = usable_keys(&jwks);
        self.jwks = jwks;
    }

    /// The audience passports must name.
    ///
    /// ```
    /// use agentsigna_verify::{jwk::Jwks, passport::Verifier};
    /// assert_eq!(Verifier::new(Jwks::default(), "erp").audience(), "erp");
    /// ```
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The clock-skew tolerance in seconds.
    ///
    /// ```
    /// use agentsigna_verify::{jwk::Jwks, passport::Verifier};
    /// assert_eq!(Verifier::new(Jwks::default(), "erp").with_leeway(5).leeway(), 5);
    /// ```
    pub fn leeway(&self) -> i64 {
        self.leeway
    }

    /// The fixed instant set with [`Verifier::at`], if any.
    ///
    /// ```
    /// use agentsigna_verify::{jwk::Jwks, passport::Verifier};
    /// assert_eq!(Verifier::new(Jwks::default(), "erp").fixed_instant(), None);
    /// ```
    pub fn fixed_instant(&self) -> Option<i64> {
        self.at
    }

    /// The instant [`Verifier::verify`] checks against: the fixed instant, else the
    /// clock's now (unix seconds).
    ///
    /// ```
    /// use agentsigna_verify::{clock::ManualClock, jwk::Jwks, passport::Verifier};
    /// let verifier = Verifier::new(Jwks::default(), "erp");
    /// assert_eq!(verifier.now(&ManualClock::new(5_000)), 5);
    /// ```
    pub fn now(&self, clock: &dyn Clock) -> i64 {
        self.at.unwrap_or_else(|| clock.now_secs())
    }

    /// Verifies `token` at [`Verifier::now`]. See [`Verifier`] for the checks.
    ///
    /// ```
    /// use agentsigna_verify::{jwk::Jwks, passport::Verifier, SystemClock};
    /// let verifier = Verifier::new(Jwks::default(), "erp");
    /// assert_eq!(verifier.verify("x.y.z", &SystemClock).unwrap_err().code(), "malformed");
    /// ```
    pub fn verify(&self, token: &str, clock: &dyn Clock) -> Result<VerifiedPassport, Error> {
        self.verify_at(token, self.now(clock))
    }

    /// Verifies `token` at the instant `now_secs` (unix seconds). See [`Verifier`] for
    /// the checks and the [module example](self).
    pub fn verify_at(&self, token: &str, now_secs: i64) -> Result<VerifiedPassport, Error> {
        let parsed = jws::parse(token)?;
        parsed.check_typ(PASSPORT_TYP)?;
        parsed.check_alg()?;
        parsed.check_crit()?;
        if let Some(name) = EMBEDDED_KEY_HEADERS.iter().find(|h| parsed.header.contains_key(**h)) {
            return Err(Error::Malformed(format!("passport header must not carry {name}")));
        }
        let kid = parsed.header_str("kid").ok_or_else(|| Error::UnknownKey("(no kid)".to_owned()))?;
        let key = self
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, key)| key)
            .ok_or_else(|| Error::UnknownKey(kid.to_owned()))?;
        parsed.verify_signature(key)?;
        let claims = parse_claims(&parsed.payload)?;
        if now_secs >= claims.exp.saturating_add(self.leeway) {
            return Err(Error::Expired { exp: claims.exp, now: now_secs });
        }
        if now_secs < claims.nbf.saturating_sub(self.leeway) {
            return Err(Error::NotYetValid { nbf: claims.nbf, now: now_secs });
        }
        if claims.aud != self.audience {
            return Err(Error::WrongAudience { expected: self.audience.clone(), found: claims.aud });
        }
        Ok(VerifiedPassport { kid: kid.to_owned(), claims })
    }
}

fn usable_keys(jwks: &Jwks) -> Vec<(String, VerifyingKey)> {
    jwks.keys.iter().filter_map(|jwk| jwk.verifying_key().ok().map(|key| (jwk.effective_kid(), key))).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::b64;
    use crate::clock::ManualClock;
    use crate::jwk::Jwk;
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    const T0: i64 = 1_800_000_000;

    fn issuer() -> SigningKey {
        SigningKey::from_bytes(&[1; 32])
    }

    fn claims() -> PassportClaims {
        PassportClaims {
            iss: "agentsigna".into(),
            sub: "agent-1".into(),
            aud: "erp".into(),
            iat: T0,
            nbf: T0,
            exp: T0 + 300,
            jti: "p-1".into(),
            authorization_details: vec![AuthorizationDetail {
                kind: AUTHORIZATION_DETAIL_TYPE.into(),
                action: "purchase_order.create".into(),
                counterparty: CounterpartyRef { id: "acme".into(), name: "ACME".into(), risk: "low".into() },
                amount: Some(Amount { value: "1200.00".into(), currency: "EUR".into() }),
                description: "laptops".into(),
            }],
            decision: Decision {
                verdict: "approved".into(),
                policy: PolicyRef { version: 3, digest: "ab".into() },
                rules: vec!["r1".into()],
                decided_at: "2027-01-15T08:00:00.000Z".into(),
                trust: TrustRef { agent: 50, counterparty: 60 },
            },
            approvals: vec![Approval {
                approver: "alice@example.com".into(),
                roles: vec!["finance".into()],
                decision: "approve".into(),
                at: "2027-01-15T08:00:00.000Z".into(),
            }],
            case: CaseRef { id: "c-1".into(), seq: 7, head: "cd".into() },
            cnf: None,
        }
    }

    fn verifier() -> Verifier {
        Verifier::new(Jwks { keys: vec![Jwk::from_verifying_key(&issuer().verifying_key())] }, "erp")
    }

    /// Re-signs arbitrary header/claims JSON with the issuer key.
    fn forge(header: serde_json::Value, payload: serde_json::Value) -> String {
        jws::sign_compact(&header, payload.to_string().as_bytes(), &issuer())
    }

    fn kid() -> String {
        Jwk::public_only(&issuer().verifying_key()).thumbprint()
    }

    #[test]
    fn sign_and_verify() {
        let token = sign(&claims(), &issuer()).unwrap();
        let header = jws::parse(&token).unwrap().header;
        assert_eq!(serde_json::Value::Object(header), json!({"alg": "EdDSA", "kid": kid(), "typ": "passport+jwt"}));
        let v = verifier().verify_at(&token, T0).unwrap();
        assert_eq!(v, VerifiedPassport { kid: kid(), claims: claims() });
        let v = verifier().verify(&token, &ManualClock::new(T0 * 1000)).unwrap();
        assert_eq!(v.claims.jti, "p-1");
        assert_eq!(decode_unverified(&token).unwrap(), claims());
    }

    #[test]
    fn cnf_round_trip_and_optional_amount() {
        let mut c = claims();
        c.cnf = Some(Confirmation { jkt: "abc".into() });
        c.authorization_details[0].amount = None;
        let token = sign(&c, &issuer()).unwrap();
        let payload = String::from_utf8(jws::parse(&token).unwrap().payload).unwrap();
        assert!(payload.contains(r#""cnf":{"jkt":"abc"}"#));
        assert!(!payload.contains("amount"));
        assert_eq!(verifier().verify_at(&token, T0).unwrap().claims, c);
    }

    #[test]
    fn leeway_boundaries() {
        let token = sign(&claims(), &issuer()).unwrap();
        let v = verifier(); // leeway 30
        let exp = T0 + 300;
        assert!(v.verify_at(&token, exp + 29).is_ok());
        assert_eq!(v.verify_at(&token, exp + 30).unwrap_err(), Error::Expired { exp, now: exp + 30 });
        assert!(v.verify_at(&token, T0 - 30).is_ok());
        assert_eq!(v.verify_at(&token, T0 - 31).unwrap_err(), Error::NotYetValid { nbf: T0, now: T0 - 31 });
        let strict = verifier().with_leeway(0);
        assert!(strict.verify_at(&token, exp - 1).is_ok());
        assert_eq!(strict.verify_at(&token, exp).unwrap_err().code(), "expired");
        assert!(strict.verify_at(&token, T0).is_ok());
        assert_eq!(strict.verify_at(&token, T0 - 1).unwrap_err().code(), "not_yet_valid");
        let wide = verifier().with_leeway(1_000);
        assert_eq!(wide.leeway(), 300);
        assert!(wide.verify_at(&token, exp + 299).is_ok());
        assert_eq!(wide.verify_at(&token, exp + 300).unwrap_err().code(), "expired");
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let mut c = claims();
        c.exp = i64::MAX;
        c.nbf = i64::MIN;
        let token = sign(&c, &issuer()).unwrap();
        assert!(verifier().verify_at(&token, T0).is_ok());
        assert!(verifier().verify_at(&token, i64::MAX - 1).is_ok());
    }

    #[test]
    fn fixed_instant_overrides_clock() {
        let token = sign(&claims(), &issuer()).unwrap();
        let clock = ManualClock::new((T0 + 10_000) * 1000);
        assert_eq!(verifier().verify(&token, &clock).unwrap_err().code(), "expired");
        assert!(verifier().at(T0 + 1).verify(&token, &clock).is_ok());
        // verify_at uses its own instant, not the fixed one.
        assert_eq!(verifier().at(T0 + 1).verify_at(&token, T0 + 10_000).unwrap_err().code(), "expired");
    }

    #[test]
    fn audience() {
        let token = sign(&claims(), &issuer()).unwrap();
        let other = Verifier::new(verifier().jwks().clone(), "crm");
        assert_eq!(
            other.verify_at(&token, T0).unwrap_err(),
            Error::WrongAudience { expected: "crm".into(), found: "erp".into() }
        );
        let mut payload = serde_json::to_value(claims()).unwrap();
        payload["aud"] = json!(["erp"]);
        let header = json!({"alg": "EdDSA", "kid": kid(), "typ": "passport+jwt"});
        let t = forge(header.clone(), payload.clone());
        assert_eq!(verifier().verify_at(&t, T0).unwrap().claims.aud, "erp");
        payload["aud"] = json!(["erp", "crm"]);
        let t = forge(header.clone(), payload.clone());
        assert_eq!(verifier().verify_at(&t, T0).unwrap_err().code(), "malformed");
        payload["aud"] = json!([]);
        let t = forge(header, payload);
        assert_eq!(verifier().verify_at(&t, T0).unwrap_err().code(), "malformed");
    }

    #[test]
    fn header_checks() {
        let payload = serde_json::to_value(claims()).unwrap();
        let k = kid();
        let cases = [
            (json!({"alg": "EdDSA", "kid": k}), "wrong_type"),
            (json!({"alg": "EdDSA", "kid": k, "typ": "JWT"}), "wrong_type"),
            (json!({"alg": "EdDSA", "kid": k, "typ": "passport-proof+jwt"}), "wrong_type"),
            (json!({"alg": "none", "kid": k, "typ": "passport+jwt"}), "alg_not_allowed"),
            (json!({"kid": k, "typ": "passport+jwt"}), "alg_not_allowed"),
            (json!({"alg": "EdDSA", "typ": "passport+jwt"}), "unknown_key"),
            (json!({"alg": "EdDSA", "kid": 5, "typ": "passport+jwt"}), "unknown_key"),
            (json!({"alg": "EdDSA", "kid": "other", "typ": "passport+jwt"}), "unknown_key"),
            (json!({"alg": "EdDSA", "kid": k, "typ": "passport+jwt", "crit": ["exp"]}), "malformed"),
            (json!({"alg": "EdDSA", "kid": k, "typ": "passport+jwt", "jku": "https://x"}), "malformed"),
            (json!({"alg": "EdDSA", "kid": k, "typ": "passport+jwt", "x5u": "https://x"}), "malformed"),
            (json!({"alg": "EdDSA", "kid": k, "typ": "passport+jwt", "x5c": []}), "malformed"),
            (
                json!({"alg": "EdDSA", "kid": k, "typ": "passport+jwt",
                       "jwk": Jwk::public_only(&issuer().verifying_key())}),
                "malformed",
            ),
            // Unknown, non-critical header members are fine.
            (json!({"alg": "EdDSA", "kid": k, "typ": "passport+jwt", "x-note": 1}), "valid"),
        ];
        for (header, code) in cases {
            let token = forge(header.clone(), payload.clone());
            let result = verifier().verify_at(&token, T0);
            let got = result.map(|_| "valid").unwrap_or_else(|e| e.code());
            assert_eq!(got, code, "{header}");
        }
    }

    #[test]
    fn claims_must_parse_after_signature() {
        let header = json!({"alg": "EdDSA", "kid": kid(), "typ": "passport+jwt"});
        let mut missing = serde_json::to_value(claims()).unwrap();
        missing.as_object_mut().unwrap().remove("exp");
        let mut float_exp = serde_json::to_value(claims()).unwrap();
        float_exp["exp"] = json!(1.8e9);
        for payload in [json!([]), json!("x"), missing, float_exp] {
            let token = forge(header.clone(), payload.clone());
            assert_eq!(verifier().verify_at(&token, T0).unwrap_err().code(), "malformed", "{payload}");
        }
        // Duplicate claims are refused by serde's derive.
        let token = jws::sign_compact(&header, br#"{"exp":1,"exp":2}"#, &issuer());
        assert_eq!(verifier().verify_at(&token, T0).unwrap_err().code(), "malformed");
        // Non-JSON payload signed by someone else: signature fails first.
        let other = SigningKey::from_bytes(&[2; 32]);
        let token = jws::sign_compact(&header, b"garbage", &other);
        assert_eq!(verifier().verify_at(&token, T0).unwrap_err().code(), "bad_signature");
        // Unknown claims are tolerated (forward compatibility).
        let mut extra = serde_json::to_value(claims()).unwrap();
        extra["x-extra"] = json!({"a": 1});
        assert!(verifier().verify_at(&forge(header, extra), T0).is_ok());
    }

    #[test]
    fn altered_claims_fail_signature() {
        let token = sign(&claims(), &issuer()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut c = claims();
        c.authorization_details[0].amount = Some(Amount { value: "999999.00".into(), currency: "EUR".into() });
        let altered = format!("{}.{}.{}", parts[0], b64::url_encode(serde_json::to_vec(&c).unwrap()), parts[2]);
        assert_eq!(verifier().verify_at(&altered, T0).unwrap_err(), Error::BadSignature);
    }

    #[test]
    fn key_rotation_and_unusable_keys() {
        let token = sign(&claims(), &issuer()).unwrap();
        let mut v = Verifier::new(Jwks::default(), "erp");
        assert_eq!(v.verify_at(&token, T0).unwrap_err().code(), "unknown_key");
        // A key named like the issuer's but unusable is skipped, not trusted.
        let mut broken = Jwk::from_verifying_key(&issuer().verifying_key());
        broken.crv = "X25519".into();
        v.set_jwks(Jwks { keys: vec![broken] });
        assert_eq!(v.verify_at(&token, T0).unwrap_err().code(), "unknown_key");
        // A bare key (no kid) answers to its thumbprint.
        v.set_jwks(Jwks { keys: vec![Jwk::public_only(&issuer().verifying_key())] });
        assert!(v.verify_at(&token, T0).is_ok());
        // The right kid with the wrong key material: bad signature.
        let mut impostor = Jwk::from_verifying_key(&SigningKey::from_bytes(&[2; 32]).verifying_key());
        impostor.kid = Some(kid());
        v.set_jwks(Jwks { keys: vec![impostor] });
        assert_eq!(v.verify_at(&token, T0).unwrap_err().code(), "bad_signature");
    }

    #[test]
    fn oversized_claims_refused_at_signing() {
        let mut c = claims();
        c.authorization_details[0].description = "x".repeat(MAX_TOKEN_BYTES);
        assert_eq!(sign(&c, &issuer()).unwrap_err().code(), "malformed");
    }
}
