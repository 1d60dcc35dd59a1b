//! Property tests: no alteration of a signed passport verifies, and no input panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod passport_fixtures;

use agentsigna_verify::clock::ManualClock;
use agentsigna_verify::gate::{Gate, GateRequest};
use agentsigna_verify::{jws, proof};
use passport_fixtures::*;
use proptest::prelude::*;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_single_character_change_is_refused(pos in any::<prop::sample::Index>(), with in 0..ALPHABET.len()) {
        let token = sign(&claims("prop-1"));
        let i = pos.index(token.len());
        let replacement = ALPHABET[with];
        prop_assume!(token.as_bytes()[i] != replacement);
        let mut bytes = token.into_bytes();
        bytes[i] = replacement;
        let altered = String::from_utf8(bytes).unwrap();
        prop_assert!(verifier().verify_at(&altered, T0).is_err());
    }

    #[test]
    fn truncation_is_refused(cut in 1usize..200) {
        let token = sign(&claims("prop-2"));
        let cut = cut.min(token.len());
        prop_assert!(verifier().verify_at(&token[..token.len() - cut], T0).is_err());
    }

    #[test]
    fn arbitrary_input_never_panics(s in "\\PC{0,300}", proof in proptest::option::of("[A-Za-z0-9._-]{0,200}")) {
        let _ = verifier().verify_at(&s, T0);
        let _ = jws::parse(&s);
        let _ = proof::verify_proof(&s, "p", "jkt", "POST", &s, T0, 60);
        let gate = Gate::new(verifier());
        let _ = gate.check(&GateRequest { passport: &s, proof: proof.as_deref(), method: "POST", url: &s }, &ManualClock::new(0));
    }

    #[test]
    fn dotted_base64_garbage_never_verifies(a in "[A-Za-z0-9_-]{0,120}", b in "[A-Za-z0-9_-]{0,120}", c in "[A-Za-z0-9_-]{0,100}") {
        let token = format!("{a}.{b}.{c}");
        prop_assert!(verifier().verify_at(&token, T0).is_err());
    }

    #[test]
    fn validity_window_matches_leeway(now in (T0 - 100)..(T0 + TTL + 100), leeway in 0i64..60) {
        let token = sign(&claims("prop-3"));
        let expect_ok = now >= T0 - leeway && now < T0 + TTL + leeway;
        prop_assert_eq!(verifier().with_leeway(leeway).verify_at(&token, now).is_ok(), expect_ok);
    }
}
