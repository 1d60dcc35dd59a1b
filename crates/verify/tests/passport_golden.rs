//! Golden vectors: fixed keys and claims give byte-stable tokens (Ed25519 is
//! deterministic), stored in `testdata/passports/` for other implementations and for
//! catching accidental format changes.
//!
//! Regenerate after an intentional format change with
//! `cargo test -p agentsigna-verify --test passport_golden -- --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod passport_fixtures;

use std::path::PathBuf;

use agentsigna_verify::clock::ManualClock;
use agentsigna_verify::gate::{Gate, GateRequest};
use agentsigna_verify::jwk::{Jwk, Jwks};
use agentsigna_verify::passport::Verifier;
use agentsigna_verify::{b64, proof as holder};
use passport_fixtures::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Vector {
    name: String,
    token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proof: Option<String>,
    audience: String,
    now: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    expect: String,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/passports")
}

fn vector(name: &str, token: String, now: i64, expect: &str) -> Vector {
    Vector {
        name: name.into(),
        token,
        proof: None,
        audience: AUDIENCE.into(),
        now,
        method: None,
        url: None,
        expect: expect.into(),
    }
}

fn with_proof(mut v: Vector, proof: String, method: &str, url: &str) -> Vector {
    v.proof = Some(proof);
    v.method = Some(method.into());
    v.url = Some(url.into());
    v
}

fn generate() -> (String, String) {
    let now = T0 + 60;
    let exp = T0 + TTL;
    let valid = sign(&claims("pp-valid"));
    let c = claims("pp-attack");
    let cv = serde_json::to_value(&c).unwrap();
    let mut v = Vec::new();

    v.push(vector("valid_authorized", valid.clone(), now, "valid"));
    v.push(vector("valid_approved_m_of_n", sign(&approved_claims("pp-approved")), now, "valid"));
    v.push(vector(
        "valid_signed_with_older_key",
        agentsigna_verify::passport::sign(&claims("pp-old"), &old_issuer()).unwrap(),
        now,
        "valid",
    ));
    let mut array_aud = serde_json::to_value(claims("pp-aud-array")).unwrap();
    array_aud["aud"] = json!([AUDIENCE]);
    v.push(vector("valid_aud_as_one_element_array", forge(&passport_header(), &array_aud, &issuer()), now, "valid"));
    v.push(vector("valid_just_before_exp_plus_leeway", valid.clone(), exp + 29, "valid"));
    v.push(vector("expired_at_exp_plus_leeway", valid.clone(), exp + 30, "expired"));
    v.push(vector("expired_long_ago", valid.clone(), exp + 86_400, "expired"));
    v.push(vector("valid_at_nbf_minus_leeway", valid.clone(), T0 - 30, "valid"));
    v.push(vector("not_yet_valid_before_nbf_minus_leeway", valid.clone(), T0 - 31, "not_yet_valid"));
    let mut wrong_aud = vector("wrong_audience", valid.clone(), now, "wrong_audience");
    wrong_aud.audience = "crm".into();
    v.push(wrong_aud);

    let mut richer = c.clone();
    richer.authorization_details[0].amount.as_mut().unwrap().value = "1200000.00".into();
    v.push(vector("altered_amount", with_altered_claims(&sign(&c), &richer), now, "bad_signature"));
    v.push(vector(
        "signed_by_attacker_with_issuer_kid",
        forge(&passport_header(), &cv, &attacker()),
        now,
        "bad_signature",
    ));
    v.push(vector("alg_none", none_passport(&c), now, "alg_not_allowed"));
    v.push(vector("alg_hs256_public_key_as_secret", hs256_passport(&c), now, "alg_not_allowed"));
    v.push(vector(
        "alg_rs256",
        unsigned(
            &json!({"alg": "RS256", "kid": kid(&issuer()), "typ": "passport+jwt"}),
            &cv,
            &b64::url_encode([7u8; 256]),
        ),
        now,
        "alg_not_allowed",
    ));
    v.push(vector(
        "unknown_kid",
        forge(&json!({"alg": "EdDSA", "kid": kid(&attacker()), "typ": "passport+jwt"}), &cv, &attacker()),
        now,
        "unknown_key",
    ));
    v.push(vector(
        "missing_kid",
        forge(&json!({"alg": "EdDSA", "typ": "passport+jwt"}), &cv, &issuer()),
        now,
        "unknown_key",
    ));
    v.push(vector(
        "typ_jwt",
        forge(&json!({"alg": "EdDSA", "kid": kid(&issuer()), "typ": "JWT"}), &cv, &issuer()),
        now,
        "wrong_type",
    ));
    v.push(vector(
        "typ_missing",
        forge(&json!({"alg": "EdDSA", "kid": kid(&issuer())}), &cv, &issuer()),
        now,
        "wrong_type",
    ));
    v.push(vector(
        "embedded_jwk_header",
        forge(
            &json!({"alg": "EdDSA", "kid": kid(&attacker()), "typ": "passport+jwt",
                    "jwk": Jwk::public_only(&attacker().verifying_key())}),
            &cv,
            &attacker(),
        ),
        now,
        "malformed",
    ));
    v.push(vector(
        "unknown_crit_header",
        forge(
            &json!({"alg": "EdDSA", "kid": kid(&issuer()), "typ": "passport+jwt", "crit": ["x-policy"], "x-policy": 1}),
            &cv,
            &issuer(),
        ),
        now,
        "malformed",
    ));
    let parts: Vec<&str> = valid.split('.').collect();
    v.push(vector("two_parts", format!("{}.{}", parts[0], parts[1]), now, "malformed"));
    v.push(vector("bad_base64", format!("{}.{}$.{}", parts[0], parts[1], parts[2]), now, "malformed"));
    v.push(vector(
        "non_json_header",
        format!("{}.{}.{}", b64::url_encode("passport"), parts[1], parts[2]),
        now,
        "malformed",
    ));
    v.push(vector(
        "claims_not_a_passport",
        forge(&passport_header(), &json!({"sub": "agent-7", "aud": AUDIENCE, "exp": exp}), &issuer()),
        now,
        "malformed",
    ));
    v.push(vector("oversized", format!("{}.{}.{}", parts[0], "A".repeat(16 * 1024), parts[2]), now, "malformed"));

    // Key-bound passports, checked through the gate.
    let bound = sign(&bound_claims("pp-bound"));
    v.push(with_proof(
        vector("bound_with_proof", bound.clone(), now, "valid"),
        proof(&bound, now, "nonce-1"),
        METHOD,
        URL,
    ));
    v.push(with_proof(
        vector("bound_with_proof_url_with_query", bound.clone(), now, "valid"),
        proof(&bound, now - 60, "nonce-2"),
        METHOD,
        &format!("{URL}?dry_run=false"),
    ));
    v.push(vector("bound_without_proof", bound.clone(), now, "proof_missing"));
    v.push(with_proof(
        vector("bound_proof_by_another_key", bound.clone(), now, "proof_invalid"),
        holder::sign_proof(&attacker(), &bound, METHOD, URL, now, "nonce-3"),
        METHOD,
        URL,
    ));
    let other = sign(&bound_claims("pp-bound-other"));
    v.push(with_proof(
        vector("bound_proof_for_another_passport", bound.clone(), now, "proof_invalid"),
        proof(&other, now, "nonce-4"),
        METHOD,
        URL,
    ));
    v.push(with_proof(
        vector("bound_proof_wrong_method", bound.clone(), now, "proof_invalid"),
        proof(&bound, now, "nonce-5"),
        "PUT",
        URL,
    ));
    v.push(with_proof(
        vector("bound_proof_wrong_url", bound.clone(), now, "proof_invalid"),
        proof(&bound, now, "nonce-6"),
        METHOD,
        "https://erp.example/v1/payments",
    ));
    v.push(with_proof(
        vector("bound_proof_stale", bound.clone(), now, "proof_invalid"),
        proof(&bound, now - 61, "nonce-7"),
        METHOD,
        URL,
    ));
    v.push(with_proof(
        vector("bound_proof_is_a_passport", bound.clone(), now, "proof_invalid"),
        valid.clone(),
        METHOD,
        URL,
    ));

    let jwks = serde_json::to_string_pretty(&jwks()).unwrap() + "\n";
    let vectors = serde_json::to_string_pretty(&v).unwrap() + "\n";
    (jwks, vectors)
}

fn check(jwks: &Jwks, v: &Vector) -> &'static str {
    let gate = Gate::new(Verifier::new(jwks.clone(), v.audience.clone()));
    let req = GateRequest {
        passport: &v.token,
        proof: v.proof.as_deref(),
        method: v.method.as_deref().unwrap_or(METHOD),
        url: v.url.as_deref().unwrap_or(URL),
    };
    let gate_result = match gate.check(&req, &ManualClock::new(v.now * 1000)) {
        Ok(_) => "valid",
        Err(e) => e.code(),
    };
    // Without a proof, the bare verifier must agree with the gate (except for key-bound
    // passports, which only the gate refuses).
    if v.proof.is_none() && v.expect != "proof_missing" {
        let verifier_result = match Verifier::new(jwks.clone(), v.audience.clone()).verify_at(&v.token, v.now) {
            Ok(_) => "valid",
            Err(e) => e.code(),
        };
        assert_eq!(verifier_result, gate_result, "{}", v.name);
    }
    gate_result
}

#[test]
fn golden_vectors_verify_as_expected() {
    let jwks = Jwks::from_json(&std::fs::read_to_string(dir().join("jwks.json")).unwrap()).unwrap();
    assert_eq!(jwks.keys.len(), 2);
    let vectors: Vec<Vector> =
        serde_json::from_str(&std::fs::read_to_string(dir().join("vectors.json")).unwrap()).unwrap();
    assert!(vectors.len() >= 30);
    let mut failures = Vec::new();
    for v in &vectors {
        let got = check(&jwks, v);
        if got != v.expect {
            failures.push(format!("{}: expected {}, got {got}", v.name, v.expect));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Claims of the current format: `case` is `{id, seq, head}`.
    let valid = vectors.iter().find(|v| v.name == "valid_authorized").unwrap();
    let claims = Verifier::new(jwks.clone(), AUDIENCE).verify_at(&valid.token, valid.now).unwrap().claims;
    assert_eq!((claims.case.id.as_str(), claims.case.seq), ("case-0001", 4));
    let payload: serde_json::Value =
        serde_json::from_slice(&b64::url_decode(valid.token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(payload["case"], json!({"id": "case-0001", "seq": 4, "head": claims.case.head}));
    // Every error code of the passport path is covered.
    for code in [
        "valid",
        "malformed",
        "wrong_type",
        "alg_not_allowed",
        "unknown_key",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "proof_missing",
        "proof_invalid",
    ] {
        assert!(vectors.iter().any(|v| v.expect == code), "no vector for {code}");
    }
}

#[test]
fn golden_vectors_are_current() {
    // Compared as JSON values: member order depends on serde_json's `preserve_order`,
    // which other crates of the workspace may switch on; the tokens themselves do not.
    let (jwks, vectors) = generate();
    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
    assert_eq!(
        parse(&std::fs::read_to_string(dir().join("jwks.json")).unwrap()),
        parse(&jwks),
        "regenerate golden vectors"
    );
    assert_eq!(
        parse(&std::fs::read_to_string(dir().join("vectors.json")).unwrap()),
        parse(&vectors),
        "regenerate golden vectors"
    );
}

#[test]
#[ignore = "writes testdata/passports; run after an intentional format change"]
fn regenerate_golden_vectors() {
    let (jwks, vectors) = generate();
    std::fs::create_dir_all(dir()).unwrap();
    std::fs::write(dir().join("jwks.json"), jwks).unwrap();
    std::fs::write(dir().join("vectors.json"), vectors).unwrap();
}
