//! The attack matrix, end to end through `Verifier` and `Gate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod passport_fixtures;

use agentsigna_verify::clock::ManualClock;
use agentsigna_verify::gate::{Gate, GateRequest};
use agentsigna_verify::jwk::{Jwk, Jwks};
use agentsigna_verify::jws::MAX_TOKEN_BYTES;
use agentsigna_verify::passport::Verifier;
use agentsigna_verify::{b64, Error};
use passport_fixtures::*;
use serde_json::json;

fn code(result: Result<impl std::fmt::Debug, Error>) -> &'static str {
    match result {
        Ok(_) => "valid",
        Err(e) => e.code(),
    }
}

fn at(secs: i64) -> ManualClock {
    ManualClock::new(secs * 1000)
}

fn gate() -> Gate {
    Gate::new(verifier())
}

fn req<'a>(passport: &'a str, proof: Option<&'a str>) -> GateRequest<'a> {
    GateRequest { passport, proof, method: METHOD, url: URL }
}

#[test]
fn valid_passports() {
    let v = verifier();
    let token = sign(&claims("p-1"));
    let verified = v.verify_at(&token, T0 + 1).unwrap();
    assert_eq!(verified.kid, kid(&issuer()));
    assert_eq!(verified.claims, claims("p-1"));
    assert_eq!(code(v.verify_at(&sign(&approved_claims("p-2")), T0)), "valid");
    // Signed with the older key, still in the set.
    let old = agentsigna_verify::passport::sign(&claims("p-3"), &old_issuer()).unwrap();
    assert_eq!(v.verify_at(&old, T0).unwrap().kid, kid(&old_issuer()));
    // Through the system clock as well.
    let now = agentsigna_verify::Clock::now_secs(&agentsigna_verify::SystemClock);
    let mut live = claims("p-4");
    (live.iat, live.nbf, live.exp) = (now, now, now + TTL);
    assert_eq!(code(v.verify(&sign(&live), &agentsigna_verify::SystemClock)), "valid");
}

#[test]
fn altered_claim_is_bad_signature() {
    let token = sign(&claims("p-1"));
    let mut c = claims("p-1");
    c.authorization_details[0].amount.as_mut().unwrap().value = "1200000.00".into();
    assert_eq!(code(verifier().verify_at(&with_altered_claims(&token, &c), T0)), "bad_signature");
    let mut c = claims("p-1");
    c.aud = "crm".into();
    let forged = with_altered_claims(&token, &c);
    assert_eq!(code(Verifier::new(jwks(), "crm").verify_at(&forged, T0)), "bad_signature");
    let mut c = claims("p-1");
    c.exp += 3600;
    assert_eq!(code(verifier().verify_at(&with_altered_claims(&token, &c), T0 + 1000)), "bad_signature");
}

#[test]
fn altered_header_is_bad_signature() {
    // Same alg/kid/typ, different bytes (member order): the signature covers the bytes.
    let token = sign(&claims("p-1"));
    let header = json!({"typ": "passport+jwt", "kid": kid(&issuer()), "alg": "EdDSA", "x": 1});
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{}.{}", b64::url_encode(header.to_string()), parts[1], parts[2]);
    assert_eq!(code(verifier().verify_at(&forged, T0)), "bad_signature");
}

#[test]
fn alg_none_and_hmac_and_rsa() {
    let c = claims("p-1");
    assert_eq!(code(verifier().verify_at(&none_passport(&c), T0)), "alg_not_allowed");
    assert_eq!(code(verifier().verify_at(&hs256_passport(&c), T0)), "alg_not_allowed");
    for alg in ["RS256", "ES256", "HS512", "NONE", "Ed25519", ""] {
        let header = json!({"alg": alg, "kid": kid(&issuer()), "typ": "passport+jwt"});
        let token = forge(&header, &serde_json::to_value(&c).unwrap(), &issuer());
        assert_eq!(code(verifier().verify_at(&token, T0)), "alg_not_allowed", "{alg}");
    }
}

#[test]
fn unknown_and_missing_kid() {
    let c = serde_json::to_value(claims("p-1")).unwrap();
    // The attacker signs with its own key and names it.
    let header = json!({"alg": "EdDSA", "kid": kid(&attacker()), "typ": "passport+jwt"});
    assert_eq!(code(verifier().verify_at(&forge(&header, &c, &attacker()), T0)), "unknown_key");
    let header = json!({"alg": "EdDSA", "typ": "passport+jwt"});
    assert_eq!(code(verifier().verify_at(&forge(&header, &c, &issuer()), T0)), "unknown_key");
    // The attacker signs with its own key and names the issuer's.
    assert_eq!(code(verifier().verify_at(&forge(&passport_header(), &c, &attacker()), T0)), "bad_signature");
    // An empty JWK set knows nothing.
    let empty = Verifier::new(Jwks::default(), AUDIENCE);
    assert_eq!(code(empty.verify_at(&sign(&claims("p-1")), T0)), "unknown_key");
}

#[test]
fn embedded_keys_are_never_trusted() {
    let c = serde_json::to_value(claims("p-1")).unwrap();
    let jwk = Jwk::from_verifying_key(&attacker().verifying_key());
    let cases = [
        json!({"alg": "EdDSA", "kid": kid(&attacker()), "typ": "passport+jwt", "jwk": jwk}),
        json!({"alg": "EdDSA", "kid": kid(&issuer()), "typ": "passport+jwt", "jwk": jwk}),
        json!({"alg": "EdDSA", "kid": kid(&issuer()), "typ": "passport+jwt", "jku": "https://evil/jwks"}),
        json!({"alg": "EdDSA", "kid": kid(&issuer()), "typ": "passport+jwt", "x5u": "https://evil/cert"}),
        json!({"alg": "EdDSA", "kid": kid(&issuer()), "typ": "passport+jwt", "crit": ["exp"], "exp": 1}),
    ];
    for header in cases {
        assert_eq!(code(verifier().verify_at(&forge(&header, &c, &attacker()), T0)), "malformed", "{header}");
    }
}

#[test]
fn wrong_type() {
    let c = serde_json::to_value(claims("p-1")).unwrap();
    for typ in [json!("JWT"), json!("passport-proof+jwt"), json!("at+jwt"), json!(null)] {
        let header = json!({"alg": "EdDSA", "kid": kid(&issuer()), "typ": typ});
        assert_eq!(code(verifier().verify_at(&forge(&header, &c, &issuer()), T0)), "wrong_type");
    }
    // A holder proof presented as a passport.
    let p = proof(&sign(&claims("p-1")), T0, "n");
    assert_eq!(code(verifier().verify_at(&p, T0)), "wrong_type");
}

#[test]
fn time_bounds_and_leeway() {
    let token = sign(&claims("p-1"));
    let exp = T0 + TTL;
    let v = verifier();
    assert_eq!(code(v.verify_at(&token, exp - 1)), "valid");
    assert_eq!(code(v.verify_at(&token, exp + 29)), "valid");
    assert_eq!(v.verify_at(&token, exp + 30).unwrap_err(), Error::Expired { exp, now: exp + 30 });
    assert_eq!(code(v.verify_at(&token, T0 - 30)), "valid");
    assert_eq!(v.verify_at(&token, T0 - 31).unwrap_err(), Error::NotYetValid { nbf: T0, now: T0 - 31 });
    let strict = verifier().with_leeway(0);
    assert_eq!(code(strict.verify_at(&token, exp)), "expired");
    assert_eq!(code(strict.verify_at(&token, T0 - 1)), "not_yet_valid");
    // An audit at a past instant.
    let audit = verifier().at(T0 + 10);
    assert_eq!(code(audit.verify(&token, &at(T0 + 86_400))), "valid");
}

#[test]
fn wrong_audience() {
    let token = sign(&claims("p-1"));
    assert_eq!(
        Verifier::new(jwks(), "crm").verify_at(&token, T0).unwrap_err(),
        Error::WrongAudience { expected: "crm".into(), found: AUDIENCE.into() }
    );
    // Audience comparison is exact.
    assert_eq!(code(Verifier::new(jwks(), "ERP").verify_at(&token, T0)), "wrong_audience");
}

#[test]
fn oversized_and_malformed() {
    let token = sign(&claims("p-1"));
    let parts: Vec<&str> = token.split('.').collect();
    let big = format!("{}.{}.{}", parts[0], "A".repeat(MAX_TOKEN_BYTES), parts[2]);
    let cases = [
        big,
        String::new(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{token}.{}", parts[2]),
        format!("{}.{}!.{}", parts[0], parts[1], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", b64::url_encode("not json"), parts[1], parts[2]),
        format!("{}.{}.{}", b64::url_encode("[1,2]"), parts[1], parts[2]),
        " ".repeat(10),
        format!(" {token}"),
    ];
    for t in &cases {
        assert_eq!(code(verifier().verify_at(t, T0)), "malformed", "{t:.80}");
        assert_eq!(code(gate().check(&req(t, None), &at(T0))), "malformed");
    }
    // Signed, but the claims are not a passport.
    let payload = json!({"sub": "agent-7", "aud": AUDIENCE, "exp": T0 + 60});
    assert_eq!(code(verifier().verify_at(&forge(&passport_header(), &payload, &issuer()), T0)), "malformed");
    // Exactly at the limit is accepted by the size check (then fails the signature).
    let filler = MAX_TOKEN_BYTES - parts[0].len() - parts[2].len() - 2;
    let at_limit = format!("{}.{}.{}", parts[0], "A".repeat(filler), parts[2]);
    assert_eq!(at_limit.len(), MAX_TOKEN_BYTES);
    assert_ne!(code(verifier().verify_at(&at_limit, T0)), "valid");
}

#[test]
fn gate_replay() {
    let g = gate();
    let token = sign(&claims("p-1"));
    assert_eq!(code(g.check(&req(&token, None), &at(T0))), "valid");
    assert_eq!(code(g.check(&req(&token, None), &at(T0 + 5))), "replayed");
    // A second gate (another process) has its own cache: share one to enforce globally.
    let cache = std::sync::Arc::new(agentsigna_verify::gate::MemoryReplayCache::new(100));
    let g1 = Gate::new(verifier()).with_replay_cache(cache.clone());
    let g2 = Gate::new(verifier()).with_replay_cache(cache);
    let token = sign(&claims("p-2"));
    assert_eq!(code(g1.check(&req(&token, None), &at(T0))), "valid");
    assert_eq!(code(g2.check(&req(&token, None), &at(T0))), "replayed");
}

#[test]
fn gate_refusals_do_not_burn_the_passport() {
    let g = gate();
    let token = sign(&claims("p-1"));
    // Too early, then valid: the refused attempt left no trace.
    assert_eq!(code(g.check(&req(&token, None), &at(T0 - 100))), "not_yet_valid");
    let wrong_aud = Gate::new(Verifier::new(jwks(), "crm"));
    assert_eq!(code(wrong_aud.check(&req(&token, None), &at(T0))), "wrong_audience");
    assert_eq!(code(g.check(&req(&token, None), &at(T0))), "valid");
}

#[test]
fn key_bound_passport() {
    let g = gate();
    let token = sign(&bound_claims("p-1"));
    // Without proof.
    assert_eq!(g.check(&req(&token, None), &at(T0)).unwrap_err(), Error::ProofMissing);
    // Proof signed by another key.
    let by_attacker = agentsigna_verify::proof::sign_proof(&attacker(), &token, METHOD, URL, T0, "n-1");
    assert_eq!(code(g.check(&req(&token, Some(&by_attacker)), &at(T0))), "proof_invalid");
    // Proof made for another passport.
    let other = sign(&bound_claims("p-2"));
    let for_other = proof(&other, T0, "n-2");
    assert_eq!(code(g.check(&req(&token, Some(&for_other)), &at(T0))), "proof_invalid");
    // Proof for another request.
    let wrong_url =
        agentsigna_verify::proof::sign_proof(&agent(), &token, METHOD, "https://erp.example/v1/payments", T0, "n-3");
    assert_eq!(code(g.check(&req(&token, Some(&wrong_url)), &at(T0))), "proof_invalid");
    let wrong_method = agentsigna_verify::proof::sign_proof(&agent(), &token, "DELETE", URL, T0, "n-4");
    assert_eq!(code(g.check(&req(&token, Some(&wrong_method)), &at(T0))), "proof_invalid");
    // Stale and future proofs.
    assert_eq!(code(g.check(&req(&token, Some(&proof(&token, T0 - 61, "n-5"))), &at(T0))), "proof_invalid");
    assert_eq!(code(g.check(&req(&token, Some(&proof(&token, T0 + 61, "n-6"))), &at(T0))), "proof_invalid");
    // Garbage proof.
    assert_eq!(code(g.check(&req(&token, Some("x.y")), &at(T0))), "proof_invalid");
    // Finally the right proof, with a query string on the URL: accepted once.
    let good = proof(&token, T0 + 60, "n-7");
    let with_query =
        GateRequest { passport: &token, proof: Some(&good), method: METHOD, url: &format!("{URL}?dry_run=0") };
    assert_eq!(code(g.check(&with_query, &at(T0))), "valid");
    // Replayed proof on a fresh passport.
    let fresh = sign(&bound_claims("p-3"));
    let replayed_jti = proof(&fresh, T0, "n-7");
    assert_eq!(code(g.check(&req(&fresh, Some(&replayed_jti)), &at(T0))), "replayed");
    // ...which did not burn p-3.
    assert_eq!(code(g.check(&req(&fresh, Some(&proof(&fresh, T0, "n-8"))), &at(T0))), "valid");
}

#[test]
fn proof_jti_forgotten_after_its_window() {
    // The proof cache keeps a jti until iat + window, long enough that the iat check
    // refuses any later reuse.
    let g = gate();
    let t1 = sign(&bound_claims("p-1"));
    assert_eq!(code(g.check(&req(&t1, Some(&proof(&t1, T0, "n"))), &at(T0))), "valid");
    let t2 = sign(&bound_claims("p-2"));
    let same_jti = proof(&t2, T0, "n");
    assert_eq!(code(g.check(&req(&t2, Some(&same_jti)), &at(T0 + 60))), "replayed");
    assert_eq!(code(g.check(&req(&t2, Some(&same_jti)), &at(T0 + 61))), "proof_invalid");
}
