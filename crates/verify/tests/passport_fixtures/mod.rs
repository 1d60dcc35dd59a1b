//! Shared fixtures of the passport and gate integration tests: fixed keys, claims and
//! hand-forged tokens.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use agentsigna_verify::b64;
use agentsigna_verify::jwk::{Jwk, Jwks};
use agentsigna_verify::jws;
use agentsigna_verify::passport::{
    self, Amount, Approval, AuthorizationDetail, CaseRef, Confirmation, CounterpartyRef, Decision, PassportClaims,
    PolicyRef, TrustRef, Verifier,
};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// Issuance instant of the fixture passports (2027-01-15T08:00:00Z).
pub const T0: i64 = 1_800_000_000;
/// Lifetime of the fixture passports.
pub const TTL: i64 = 300;
pub const AUDIENCE: &str = "erp";
pub const URL: &str = "https://erp.example/v1/orders";
pub const METHOD: &str = "POST";

pub fn issuer() -> SigningKey {
    SigningKey::from_bytes(&[0x11; 32])
}
/// A second, older issuer key still published in the JWK set (rotation).
pub fn old_issuer() -> SigningKey {
    SigningKey::from_bytes(&[0x44; 32])
}
pub fn agent() -> SigningKey {
    SigningKey::from_bytes(&[0x22; 32])
}
pub fn attacker() -> SigningKey {
    SigningKey::from_bytes(&[0x33; 32])
}

pub fn kid(key: &SigningKey) -> String {
    Jwk::public_only(&key.verifying_key()).thumbprint()
}

pub fn jwks() -> Jwks {
    Jwks {
        keys: vec![
            Jwk::from_verifying_key(&issuer().verifying_key()),
            Jwk::from_verifying_key(&old_issuer().verifying_key()),
        ],
    }
}

pub fn verifier() -> Verifier {
    Verifier::new(jwks(), AUDIENCE)
}

pub fn claims(jti: &str) -> PassportClaims {
    PassportClaims {
        iss: "agentsigna".into(),
        sub: "agent-7".into(),
        aud: AUDIENCE.into(),
        iat: T0,
        nbf: T0,
        exp: T0 + TTL,
        jti: jti.into(),
        authorization_details: vec![AuthorizationDetail {
            kind: passport::AUTHORIZATION_DETAIL_TYPE.into(),
            action: "purchase_order.create".into(),
            counterparty: CounterpartyRef {
                id: "acme".into(),
                name: "ACME Office Supplies".into(),
                risk: "low".into(),
            },
            amount: Some(Amount { value: "1200.00".into(), currency: "EUR".into() }),
            description: "12 laptops for the Lyon office".into(),
        }],
        decision: Decision {
            verdict: "authorized".into(),
            policy: PolicyRef {
                version: 3,
                digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            },
            rules: vec!["small-purchase-orders".into()],
            decided_at: "2027-01-15T08:00:00.000Z".into(),
            trust: TrustRef { agent: 72, counterparty: 64 },
        },
        approvals: vec![],
        case: CaseRef {
            id: "case-0001".into(),
            seq: 4,
            head: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".into(),
        },
        cnf: None,
    }
}

pub fn approved_claims(jti: &str) -> PassportClaims {
    let mut c = claims(jti);
    c.decision.verdict = "approved".into();
    c.decision.rules = vec!["large-orders-need-finance".into()];
    c.authorization_details[0].amount = Some(Amount { value: "48000.00".into(), currency: "EUR".into() });
    c.approvals = vec![
        Approval {
            approver: "alice@example.com".into(),
            roles: vec!["finance".into()],
            decision: "approve".into(),
            at: "2027-01-15T07:58:00.000Z".into(),
        },
        Approval {
            approver: "bob@example.com".into(),
            roles: vec!["risk".into()],
            decision: "approve".into(),
            at: "2027-01-15T07:59:00.000Z".into(),
        },
    ];
    c
}

pub fn bound_claims(jti: &str) -> PassportClaims {
    let mut c = claims(jti);
    c.cnf = Some(Confirmation { jkt: kid(&agent()) });
    c
}

pub fn sign(claims: &PassportClaims) -> String {
    passport::sign(claims, &issuer()).unwrap()
}

pub fn passport_header() -> Value {
    json!({"alg": "EdDSA", "kid": kid(&issuer()), "typ": "passport+jwt"})
}

/// Signs arbitrary header and payload JSON with `key`.
pub fn forge(header: &Value, payload: &Value, key: &SigningKey) -> String {
    jws::sign_compact(header, jws::sorted_json(payload).as_bytes(), key)
}

/// `base64url(header).base64url(payload).signature_b64`, signed by nobody.
pub fn unsigned(header: &Value, payload: &Value, signature_b64: &str) -> String {
    format!(
        "{}.{}.{}",
        b64::url_encode(jws::sorted_json(header)),
        b64::url_encode(jws::sorted_json(payload)),
        signature_b64
    )
}

/// HMAC-SHA256 (RFC 2104), by hand, for the classic "public key as HMAC secret" attack.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// A passport with `alg: HS256`, MACed with the issuer's public JWK text as the secret.
pub fn hs256_passport(claims: &PassportClaims) -> String {
    let header = json!({"alg": "HS256", "kid": kid(&issuer()), "typ": "passport+jwt"});
    let secret = serde_json::to_string(&Jwk::from_verifying_key(&issuer().verifying_key())).unwrap();
    let input = format!(
        "{}.{}",
        b64::url_encode(jws::sorted_json(&header)),
        b64::url_encode(serde_json::to_vec(claims).unwrap())
    );
    let mac = hmac_sha256(secret.as_bytes(), input.as_bytes());
    format!("{input}.{}", b64::url_encode(mac))
}

/// A passport with `alg: none` and an empty signature.
pub fn none_passport(claims: &PassportClaims) -> String {
    let header = json!({"alg": "none", "kid": kid(&issuer()), "typ": "passport+jwt"});
    format!("{}.{}.", b64::url_encode(jws::sorted_json(&header)), b64::url_encode(serde_json::to_vec(claims).unwrap()))
}

/// The token with its payload replaced by `claims` but the original signature kept.
pub fn with_altered_claims(token: &str, claims: &PassportClaims) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64::url_encode(serde_json::to_vec(claims).unwrap()), parts[2])
}

pub fn proof(passport: &str, iat: i64, jti: &str) -> String {
    agentsigna_verify::proof::sign_proof(&agent(), passport, METHOD, URL, iat, jti)
}
