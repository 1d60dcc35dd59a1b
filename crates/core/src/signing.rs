//! The server's Ed25519 signer: the key as ed25519-dalek holds it (seed, public key, key
//! files, JWKs), signing with AWS-LC's implementation.
//!
//! Every authorized request signs its passport, and every batch of the serial step its
//! checkpoint; AWS-LC's signature (s2n-bignum's formally verified, constant-time field
//! arithmetic) takes about half of ed25519-dalek's time on the machines measured
//! (BENCHMARKS.md). Ed25519 is deterministic (RFC 8032 §5.1.6), so the bytes are
//! ed25519-dalek's exactly: the tests below check that on arbitrary keys and messages, and
//! the published vectors check it on AgentSigna's own formats.

use std::fmt;

use agentsigna_verify::jwk::Jwk;
use agentsigna_verify::signer::Ed25519Signer;
use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::signature::Ed25519KeyPair;
use ed25519_dalek::{Signature, SigningKey};

/// An Ed25519 key that signs with AWS-LC.
pub struct FastSigningKey {
    key: SigningKey,
    pair: Ed25519KeyPair,
    thumbprint: String,
}

impl FastSigningKey {
    /// The signer of `key`. AWS-LC derives the public key from the seed again and refuses
    /// the key if it is not ed25519-dalek's, so that a signature is always under the
    /// public key the JWKS and the checkpoints' verifier key publish.
    pub fn new(key: SigningKey) -> Result<FastSigningKey, KeyRejected> {
        let pair = Ed25519KeyPair::from_seed_and_public_key(&key.to_bytes(), key.verifying_key().as_bytes())?;
        let thumbprint = Jwk::public_only(&key.verifying_key()).thumbprint();
        Ok(FastSigningKey { key, pair, thumbprint })
    }
}

impl Ed25519Signer for FastSigningKey {
    fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    fn sign_message(&self, message: &[u8]) -> Signature {
        // AWS-LC's Ed25519 signature is always 64 bytes; were it not, ed25519-dalek's
        // (the same bytes, slower) rather than a signature no verifier accepts.
        match <[u8; 64]>::try_from(self.pair.sign(message).as_ref()) {
            Ok(bytes) => Signature::from_bytes(&bytes),
            Err(_) => ed25519_dalek::Signer::sign(&self.key, message),
        }
    }

    fn thumbprint(&self) -> String {
        self.thumbprint.clone()
    }
}

impl fmt::Debug for FastSigningKey {
    // Never print the secret key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastSigningKey").field("public", &self.key.verifying_key()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use agentsigna_verify::note::NoteSigner;
    use ed25519_dalek::Signer as _;
    use proptest::prelude::*;

    /// RFC 8032 §7.1, TEST 3 (a two-byte message).
    #[test]
    fn signs_the_rfc_8032_test_vector() {
        let seed = hex::decode("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7").unwrap();
        let key = FastSigningKey::new(SigningKey::from_bytes(&seed.try_into().unwrap())).unwrap();
        let sig = key.sign_message(&[0xaf, 0x82]);
        assert_eq!(
            hex::encode(sig.to_bytes()),
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac\
             18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The same 64 bytes as ed25519-dalek's, verifying under the key's public key.
        #[test]
        fn signs_as_ed25519_dalek_does(seed in any::<[u8; 32]>(), message in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let dalek = SigningKey::from_bytes(&seed);
            let fast = FastSigningKey::new(dalek.clone()).unwrap();
            let sig = fast.sign_message(&message);
            prop_assert_eq!(sig, dalek.sign(&message));
            prop_assert!(dalek.verifying_key().verify_strict(&message, &sig).is_ok());
        }
    }

    #[test]
    fn refuses_nothing_ed25519_dalek_accepts_and_publishes_the_same_key() {
        for seed in [[0u8; 32], [0xff; 32], [7; 32]] {
            let key = FastSigningKey::new(SigningKey::from_bytes(&seed)).unwrap();
            assert_eq!(key.thumbprint(), SigningKey::from_bytes(&seed).thumbprint());
            let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
            use aws_lc_rs::signature::KeyPair as _;
            assert_eq!(pair.public_key().as_ref(), key.signing_key().verifying_key().as_bytes());
        }
    }

    /// Every passport vector AgentSigna publishes (`agentsigna-verify`'s golden vectors,
    /// signed by ed25519-dalek) whose signature is by one of the fixtures' issuer keys: the
    /// server's signer gives the same token.
    #[test]
    fn reproduces_the_published_passport_vectors() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../verify/testdata/passports/vectors.json")).unwrap();
        let issuers = [[0x11; 32], [0x44; 32]].map(|seed| FastSigningKey::new(SigningKey::from_bytes(&seed)).unwrap());
        let mut reproduced = 0;
        for v in vectors.as_array().unwrap() {
            let token = v["token"].as_str().unwrap();
            let Some((input, sig)) = token.rsplit_once('.') else { continue };
            let Some(sig) = agentsigna_verify::b64::url_decode(sig).and_then(|s| <[u8; 64]>::try_from(s).ok()) else {
                continue;
            };
            let sig = Signature::from_bytes(&sig);
            for issuer in &issuers {
                if issuer.signing_key().verifying_key().verify_strict(input.as_bytes(), &sig).is_ok() {
                    assert_eq!(issuer.sign_message(input.as_bytes()), sig, "{}", v["name"]);
                    reproduced += 1;
                }
            }
        }
        assert!(reproduced >= 10, "only {reproduced} vectors are signed by the fixtures' issuers");
    }

    /// Go's signed-note vector (golang.org/x/mod sumdb/note), read in place from
    /// `shared/vectors/`: the checkpoint signer on AWS-LC writes the same bytes.
    #[test]
    fn signs_the_published_note_vector() {
        let path =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/signed-note.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            assert!(std::env::var_os("CI").is_none(), "{} is missing; CI requires it", path.display());
            println!("skipped: {} not found (shared/ beside the repository)", path.display());
            return;
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let parsed = NoteSigner::from_signer_key(v["signer_key"].as_str().unwrap()).unwrap();
        let seed = parsed.signer_key();
        let fast = FastSigningKey::new(parsed_key(&seed)).unwrap();
        let signer = NoteSigner::with_signer(parsed.name(), std::sync::Arc::new(fast)).unwrap();
        assert_eq!(signer.verifier_key(), v["verifier_key"].as_str().unwrap());
        assert_eq!(signer.sign(v["text"].as_str().unwrap()).unwrap(), v["signed_note"].as_str().unwrap());
    }

    /// The seed inside a `PRIVATE+KEY+<name>+<id>+<base64(0x01 ‖ seed)>` text.
    fn parsed_key(signer_key: &str) -> SigningKey {
        let b64 = signer_key.splitn(5, '+').nth(4).unwrap();
        let raw = agentsigna_verify::b64::std_decode(b64).unwrap();
        SigningKey::from_bytes(&raw[1..].try_into().unwrap())
    }

    #[test]
    fn debug_shows_no_secret() {
        let key = FastSigningKey::new(SigningKey::from_bytes(&[7; 32])).unwrap();
        let text = format!("{key:?}");
        assert!(!text.contains(&format!("{:?}", [7u8; 32])) && !text.contains(&hex::encode([7u8; 32])), "{text}");
    }
}
