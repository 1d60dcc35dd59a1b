//! Passport verification cost compared with a bare Ed25519 `verify_strict` on the same
//! signing input (target: within 1.5×).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use agentsigna_verify::clock::ManualClock;
use agentsigna_verify::gate::{Gate, GateRequest, ReplayCache};
use agentsigna_verify::jwk::{Jwk, Jwks};
use agentsigna_verify::passport::{self, PassportClaims, Verifier};
use agentsigna_verify::{b64, proof};
use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::{Signature, SigningKey};

const T0: i64 = 1_800_000_000;

fn claims(bound: Option<String>) -> PassportClaims {
    let mut c: PassportClaims = serde_json::from_value(serde_json::json!({
        "iss": "agentsigna", "sub": "agent-7", "aud": "erp",
        "iat": T0, "nbf": T0, "exp": T0 + 300, "jti": "01J0BENCHPASSPORT0000000000",
        "authorization_details": [{"type": "agentsigna_action", "action": "purchase_order.create",
            "counterparty": {"id": "acme", "name": "ACME Office Supplies", "risk": "low"},
            "amount": {"value": "48000.00", "currency": "EUR"},
            "description": "12 laptops for the Lyon office"}],
        "decision": {"verdict": "approved",
            "policy": {"version": 3, "digest": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
            "rules": ["large-orders-need-finance"], "decided_at": "2027-01-15T08:00:00.000Z",
            "trust": {"agent": 72, "counterparty": 64}},
        "approvals": [{"approver": "alice@example.com", "roles": ["finance"], "decision": "approve",
            "at": "2027-01-15T07:58:00.000Z"}],
        "case": {"id": "case-0001", "seq": 4,
            "head": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"}
    }))
    .unwrap();
    c.cnf = bound.map(|jkt| passport::Confirmation { jkt });
    c
}

/// Accepts everything: isolates the gate's verification cost from the cache.
struct NoReplay;
impl ReplayCache for NoReplay {
    fn consume(&self, _: &str, _: i64, _: i64) -> bool {
        true
    }
}

fn bench(c: &mut Criterion) {
    let issuer = SigningKey::from_bytes(&[0x11; 32]);
    let agent = SigningKey::from_bytes(&[0x22; 32]);
    let token = passport::sign(&claims(None), &issuer).unwrap();
    let jwks = Jwks { keys: vec![Jwk::from_verifying_key(&issuer.verifying_key())] };
    let verifier = Verifier::new(jwks, "erp");

    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig_bytes: [u8; 64] = b64::url_decode(sig).unwrap().try_into().unwrap();
    let signature = Signature::from_bytes(&sig_bytes);
    let vk = issuer.verifying_key();
    assert!(vk.verify_strict(input.as_bytes(), &signature).is_ok());
    assert!(verifier.verify_at(&token, T0).is_ok());

    let mut group = c.benchmark_group("passport");
    group.bench_function("raw_ed25519_verify_strict", |b| {
        b.iter(|| vk.verify_strict(black_box(input.as_bytes()), black_box(&signature)))
    });
    // What the server pays per issued passport (the reference for `agentsigna bench`'s
    // CPU per authorized request in BENCHMARKS.md).
    group.bench_function("raw_ed25519_sign", |b| {
        b.iter(|| ed25519_dalek::Signer::sign(&issuer, black_box(input.as_bytes())))
    });
    group.bench_function("verifier_verify_at", |b| b.iter(|| verifier.verify_at(black_box(&token), black_box(T0))));
    // The non-cryptographic part alone: split, base64, header and claims parsing.
    group.bench_function("decode_unverified", |b| b.iter(|| passport::decode_unverified(black_box(&token))));

    let jkt = Jwk::public_only(&agent.verifying_key()).thumbprint();
    let bound = passport::sign(&claims(Some(jkt)), &issuer).unwrap();
    let url = "https://erp.example/v1/orders";
    let p = proof::sign_proof(&agent, &bound, "POST", url, T0, "n-1");
    let gate = Gate::new(verifier.clone()).with_replay_cache(Arc::new(NoReplay));
    let clock = ManualClock::new(T0 * 1000);
    let req = GateRequest { passport: &bound, proof: Some(&p), method: "POST", url };
    assert!(gate.check(&req, &clock).is_ok());
    group.bench_function("gate_check_with_proof", |b| b.iter(|| gate.check(black_box(&req), &clock)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
