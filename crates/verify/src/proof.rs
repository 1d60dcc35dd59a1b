//! The holder proof: a compact JWS in the spirit of DPoP (RFC 9449) that proves the
//! presenter of a key-bound passport (`cnf.jkt`) holds the agent's private key, for this
//! request (`htm`, `htu`), now (`iat`), for this passport (`ath`).
//!
//! ```
//! use agentsigna_verify::{jwk::Jwk, proof};
//! let agent = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
//! let jkt = Jwk::public_only(&agent.verifying_key()).thumbprint();
//! let passport = "eyJ...passport";
//! let p = proof::sign_proof(&agent, passport, "POST", "https://erp.example/orders", 1_800_000_000, "n-1");
//! let claims = proof::verify_proof(&p, passport, &jkt, "POST",
//!     "https://erp.example/orders?draft=1", 1_800_000_010, 60).unwrap();
//! assert_eq!(claims.jti, "n-1");
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::jwk::Jwk;
use crate::signer::Ed25519Signer;
use crate::{b64, jws, Error};

/// The JOSE `typ` of a holder proof.
pub const PROOF_TYP: &str = "passport-proof+jwt";

/// The `iat` window the gate allows a proof, in seconds either side of now.
pub const DEFAULT_PROOF_WINDOW_SECS: i64 = 60;

/// The claims of a holder proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofClaims {
    /// HTTP method of the request, e.g. `POST`.
    pub htm: String,
    /// The URL as the agent called it (query and fragment are ignored when comparing).
    pub htu: String,
    /// Creation instant (unix seconds).
    pub iat: i64,
    /// Unique proof id (single use).
    pub jti: String,
    /// [`ath`] of the passport this proof accompanies.
    pub ath: String,
}

/// `base64url(SHA-256(passport))`: binds a proof to one passport.
///
/// ```
/// assert_eq!(agentsigna_verify::proof::ath("").len(), 43);
/// ```
pub fn ath(passport: &str) -> String {
    b64::url_encode(Sha256::digest(passport.as_bytes()))
}

/// Signs a holder proof for `passport` and the request `htm htu`. Header:
/// `{"alg":"EdDSA","jwk":{"crv":"Ed25519","kty":"OKP","x":…},"typ":"passport-proof+jwt"}`.
///
/// ```
/// let agent = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
/// let p = agentsigna_verify::proof::sign_proof(&agent, "pp", "GET", "https://x/y", 0, "j");
/// assert_eq!(p.split('.').count(), 3);
/// ```
pub fn sign_proof(
    key: &(impl Ed25519Signer + ?Sized),
    passport: &str,
    htm: &str,
    htu: &str,
    iat: i64,
    jti: &str,
) -> String {
    let x = b64::url_encode(key.signing_key().verifying_key().as_bytes());
    // By hand so the header bytes are stable; `x` is base64url and needs no escaping.
    let header = format!(r#"{{"alg":"EdDSA","jwk":{{"crv":"Ed25519","kty":"OKP","x":"{x}"}},"typ":"{PROOF_TYP}"}}"#);
    let claims = ProofClaims { htm: htm.to_owned(), htu: htu.to_owned(), iat, jti: jti.to_owned(), ath: ath(passport) };
    // Serialising a struct of strings and integers cannot fail.
    let payload = serde_json::to_vec(&claims).unwrap_or_default();
    jws::sign_compact_json(&header, &payload, key)
}

/// Verifies a holder proof. Every failure is [`Error::ProofInvalid`] with a short
/// reason: malformed token, `typ` not `passport-proof+jwt`, `alg` not `EdDSA`, a `crit`
/// header, no usable public `jwk` header (a private `d` member is refused), its RFC 7638
/// thumbprint ≠ `jkt`, bad signature, unparsable claims, `htm` ≠ `htm`, `htu` ≠ `htu`
/// (compared without query and fragment, scheme and host case-insensitively, default
/// ports ignored), `|iat − now| > window_secs`, `ath` ≠ [`ath`]`(passport)`, empty `jti`.
///
/// Replay of the proof's `jti` is the caller's concern (the gate keeps a cache).
/// See the [module example](self).
pub fn verify_proof(
    proof: &str,
    passport: &str,
    jkt: &str,
    htm: &str,
    htu: &str,
    now_secs: i64,
    window_secs: i64,
) -> Result<ProofClaims, Error> {
    let invalid = |reason: String| Error::ProofInvalid(reason);
    let parsed = jws::parse(proof).map_err(|e| invalid(e.to_string()))?;
    parsed.check_typ(PROOF_TYP).map_err(|e| invalid(e.to_string()))?;
    parsed.check_alg().map_err(|e| invalid(e.to_string()))?;
    parsed.check_crit().map_err(|e| invalid(e.to_string()))?;
    let jwk_value = parsed.header.get("jwk").ok_or_else(|| invalid("no jwk header".into()))?;
    if jwk_value.get("d").is_some() {
        return Err(invalid("jwk header carries a private key".into()));
    }
    let jwk: Jwk = serde_json::from_value(jwk_value.clone()).map_err(|e| invalid(format!("jwk header: {e}")))?;
    if jwk.thumbprint() != jkt {
        return Err(invalid("jwk thumbprint does not match cnf.jkt".into()));
    }
    let key = jwk.verifying_key().map_err(|e| invalid(e.to_string()))?;
    parsed.verify_signature(&key).map_err(|_| invalid("bad signature".into()))?;
    let claims: ProofClaims = serde_json::from_slice(&parsed.payload).map_err(|e| invalid(format!("claims: {e}")))?;
    if claims.htm != htm {
        return Err(invalid(format!("htm {} does not match {htm}", claims.htm)));
    }
    if normalize_htu(&claims.htu) != normalize_htu(htu) {
        return Err(invalid(format!("htu {} does not match {htu}", claims.htu)));
    }
    let window = window_secs.max(0);
    if claims.iat.saturating_sub(now_secs).saturating_abs() > window {
        return Err(invalid(format!("iat {} outside ±{window} s of {now_secs}", claims.iat)));
    }
    if claims.ath != ath(passport) {
        return Err(invalid("ath does not match the passport".into()));
    }
    if claims.jti.is_empty() {
        return Err(invalid("empty jti".into()));
    }
    Ok(claims)
}

/// The comparable form of a URL: no query or fragment, lowercase scheme and authority,
/// default port dropped, empty path as `/` (RFC 9449 §4.3 asks for syntax-based
/// normalisation). Non-absolute URLs are compared as they are, minus query and fragment.
fn normalize_htu(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut authority = authority.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => Some(":443"),
        "http" => Some(":80"),
        _ => None,
    };
    if let Some(port) = default_port {
        if authority.ends_with(port) {
            authority.truncate(authority.len() - port.len());
        }
    }
    format!("{scheme}://{authority}{path}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const URL: &str = "https://erp.example/v1/orders";
    const PASSPORT: &str = "aaa.bbb.ccc";

    fn agent() -> SigningKey {
        SigningKey::from_bytes(&[2; 32])
    }

    fn jkt() -> String {
        Jwk::public_only(&agent().verifying_key()).thumbprint()
    }

    fn check(proof: &str) -> Result<ProofClaims, Error> {
        verify_proof(proof, PASSPORT, &jkt(), "POST", URL, NOW, 60)
    }

    fn reason(result: Result<ProofClaims, Error>) -> String {
        match result {
            Err(Error::ProofInvalid(r)) => r,
            other => panic!("expected proof_invalid, got {other:?}"),
        }
    }

    #[test]
    fn valid_proof() {
        let p = sign_proof(&agent(), PASSPORT, "POST", URL, NOW, "j1");
        let claims = check(&p).unwrap();
        assert_eq!(
            claims,
            ProofClaims { htm: "POST".into(), htu: URL.into(), iat: NOW, jti: "j1".into(), ath: ath(PASSPORT) }
        );
        let header = jws::parse(&p).unwrap().header;
        assert_eq!(
            serde_json::Value::Object(header),
            json!({"alg": "EdDSA", "typ": PROOF_TYP,
                   "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64::url_encode(agent().verifying_key().as_bytes())}})
        );
    }

    #[test]
    fn ath_is_sha256_base64url() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(ath("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    }

    #[test]
    fn iat_window_boundaries() {
        for (iat, ok) in [(NOW - 60, true), (NOW + 60, true), (NOW - 61, false), (NOW + 61, false)] {
            let p = sign_proof(&agent(), PASSPORT, "POST", URL, iat, "j");
            assert_eq!(check(&p).is_ok(), ok, "iat {iat}");
        }
        let p = sign_proof(&agent(), PASSPORT, "POST", URL, i64::MIN, "j");
        assert!(reason(check(&p)).contains("iat"));
    }

    #[test]
    fn request_binding() {
        let p = sign_proof(&agent(), PASSPORT, "POST", URL, NOW, "j");
        assert!(reason(verify_proof(&p, PASSPORT, &jkt(), "GET", URL, NOW, 60)).contains("htm"));
        assert!(reason(verify_proof(&p, PASSPORT, &jkt(), "post", URL, NOW, 60)).contains("htm"));
        for other in [
            "https://erp.example/v1/orders/2",
            "https://evil.example/v1/orders",
            "http://erp.example/v1/orders",
            "https://erp.example:8443/v1/orders",
        ] {
            assert!(reason(verify_proof(&p, PASSPORT, &jkt(), "POST", other, NOW, 60)).contains("htu"));
        }
        for same in [
            "https://erp.example/v1/orders?x=1",
            "https://erp.example/v1/orders#frag",
            "HTTPS://ERP.example/v1/orders",
            "https://erp.example:443/v1/orders",
        ] {
            assert!(verify_proof(&p, PASSPORT, &jkt(), "POST", same, NOW, 60).is_ok(), "{same}");
        }
        assert!(reason(verify_proof(&p, "other.pass.port", &jkt(), "POST", URL, NOW, 60)).contains("ath"));
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize_htu("https://A.b"), "https://a.b/");
        assert_eq!(normalize_htu("http://a:80/x?y"), "http://a/x");
        assert_eq!(normalize_htu("/rel/path?q"), "/rel/path");
        assert_eq!(normalize_htu("https://a/P"), "https://a/P");
    }

    #[test]
    fn key_binding() {
        let other = SigningKey::from_bytes(&[3; 32]);
        let p = sign_proof(&other, PASSPORT, "POST", URL, NOW, "j");
        assert!(reason(check(&p)).contains("thumbprint"));
        // The agent's jwk in the header, signed by another key.
        let header = json!({"alg": "EdDSA", "typ": PROOF_TYP, "jwk": Jwk::public_only(&agent().verifying_key())});
        let claims = json!({"htm": "POST", "htu": URL, "iat": NOW, "jti": "j", "ath": ath(PASSPORT)});
        let forged = jws::sign_compact(&header, claims.to_string().as_bytes(), &other);
        assert!(reason(check(&forged)).contains("signature"));
    }

    #[test]
    fn header_and_claims_failures() {
        let jwk = Jwk::public_only(&agent().verifying_key());
        let good_claims = json!({"htm": "POST", "htu": URL, "iat": NOW, "jti": "j", "ath": ath(PASSPORT)});
        let mut with_d = serde_json::to_value(&jwk).unwrap();
        with_d["d"] = json!(b64::url_encode(agent().to_bytes()));
        let mut bad_crv = jwk.clone();
        bad_crv.crv = "X25519".into();
        let cases = [
            (json!({"alg": "EdDSA", "typ": "passport+jwt", "jwk": jwk}), good_claims.clone(), "wrong_type"),
            (json!({"alg": "EdDSA", "jwk": jwk}), good_claims.clone(), "wrong_type"),
            (json!({"alg": "none", "typ": PROOF_TYP, "jwk": jwk}), good_claims.clone(), "alg_not_allowed"),
            (json!({"alg": "HS256", "typ": PROOF_TYP, "jwk": jwk}), good_claims.clone(), "alg_not_allowed"),
            (json!({"alg": "EdDSA", "typ": PROOF_TYP, "jwk": jwk, "crit": ["x"]}), good_claims.clone(), "critical"),
            (json!({"alg": "EdDSA", "typ": PROOF_TYP}), good_claims.clone(), "no jwk"),
            (json!({"alg": "EdDSA", "typ": PROOF_TYP, "jwk": "x"}), good_claims.clone(), "jwk header"),
            (json!({"alg": "EdDSA", "typ": PROOF_TYP, "jwk": with_d}), good_claims.clone(), "private"),
            (json!({"alg": "EdDSA", "typ": PROOF_TYP, "jwk": jwk}), json!({"htm": "POST"}), "claims"),
            (
                json!({"alg": "EdDSA", "typ": PROOF_TYP, "jwk": jwk}),
                json!({"htm": "POST", "htu": URL, "iat": NOW, "jti": "", "ath": ath(PASSPORT)}),
                "jti",
            ),
        ];
        for (header, claims, expect) in cases {
            let p = jws::sign_compact(&header, claims.to_string().as_bytes(), &agent());
            let r = reason(check(&p));
            assert!(r.contains(expect), "{header} {claims}: {r}");
        }
        // An unusable key whose thumbprint is presented as jkt.
        let header = json!({"alg": "EdDSA", "typ": PROOF_TYP, "jwk": bad_crv});
        let p = jws::sign_compact(&header, good_claims.to_string().as_bytes(), &agent());
        let r = reason(verify_proof(&p, PASSPORT, &bad_crv.thumbprint(), "POST", URL, NOW, 60));
        assert!(r.contains("unsupported"), "{r}");
        // Malformed and oversized tokens.
        assert!(reason(check("a.b")).contains("malformed"));
        assert!(reason(check(&"a".repeat(jws::MAX_TOKEN_BYTES + 1))).contains("malformed"));
    }
}
