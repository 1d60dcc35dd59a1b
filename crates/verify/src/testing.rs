//! Fixtures shared by the unit tests of the gate and its tower layer.
#![allow(clippy::unwrap_used)]

use crate::jwk::{Jwk, Jwks};
use crate::passport::{Confirmation, PassportClaims};

/// The instant the fixtures are issued at (unix seconds).
pub const T0: i64 = 1_800_000_000;

/// The issuer's signing key.
pub fn issuer() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[1; 32])
}

/// The JWK set publishing [`issuer`].
pub fn issuer_jwks() -> Jwks {
    Jwks { keys: vec![Jwk::from_verifying_key(&issuer().verifying_key())] }
}

/// The agent's holder key.
pub fn agent() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[2; 32])
}

/// Minimal claims for `aud`, valid for 300 s from [`T0`], of case `case-<jti>`;
/// bound to [`agent`] when `bound`.
pub fn claims(jti: &str, aud: &str, bound: bool) -> PassportClaims {
    let mut c: PassportClaims = serde_json::from_value(serde_json::json!({
        "iss": "agentsigna", "sub": "agent-1", "aud": aud,
        "iat": T0, "nbf": T0, "exp": T0 + 300, "jti": jti,
        "authorization_details": [], "approvals": [],
        "decision": {"verdict": "authorized", "policy": {"version": 1, "digest": "ab"},
            "rules": [], "decided_at": "x", "trust": {"agent": 50, "counterparty": 50}},
        "case": {"id": format!("case-{jti}"), "seq": 0, "head": "cd"}
    }))
    .unwrap();
    if bound {
        c.cnf = Some(Confirmation { jkt: Jwk::public_only(&agent().verifying_key()).thumbprint() });
    }
    c
}
