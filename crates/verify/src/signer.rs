//! The signing side's one abstraction: an Ed25519 key that signs.
//!
//! Ed25519 signatures are deterministic (RFC 8032 §5.1.6): one key and one message give
//! the same 64 bytes whatever implementation computes them. This crate's signing
//! functions ([`jws::sign_compact_json`](crate::jws::sign_compact_json),
//! [`passport::sign`](crate::passport::sign), [`proof::sign_proof`](crate::proof::sign_proof),
//! [`NoteSigner`](crate::note::NoteSigner)) take any [`Ed25519Signer`], so that a server can
//! sign with a faster implementation than ed25519-dalek's while this crate, which third
//! parties build to verify, stays pure Rust. `ed25519_dalek::SigningKey` is one.

use ed25519_dalek::{Signature, Signer as _, SigningKey};

use crate::jwk::Jwk;

/// An Ed25519 secret key that signs.
pub trait Ed25519Signer: Send + Sync {
    /// The key itself (its seed and public key).
    fn signing_key(&self) -> &SigningKey;

    /// The RFC 8032 signature of `message` under [`Ed25519Signer::signing_key`]: the same
    /// bytes as ed25519-dalek's, computed by whatever implementation the type chooses.
    fn sign_message(&self, message: &[u8]) -> Signature {
        self.signing_key().sign(message)
    }

    /// The RFC 7638 thumbprint of the public key, a passport's `kid` (a type that signs
    /// many passports may keep it instead of hashing the JWK each time).
    fn thumbprint(&self) -> String {
        Jwk::public_only(&self.signing_key().verifying_key()).thumbprint()
    }
}

impl Ed25519Signer for SigningKey {
    fn signing_key(&self) -> &SigningKey {
        self
    }
}
