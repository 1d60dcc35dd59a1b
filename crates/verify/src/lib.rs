//! # agentsigna-verify
//!
//! Everything a third party needs to check AgentSigna's output **offline**, with public
//! keys only:
//!
//! - [`passport`]: the Passport (a compact JWS, `typ: passport+jwt`, EdDSA) and its
//!   [`Verifier`](passport::Verifier);
//! - [`proof`]: the holder proof (`typ: passport-proof+jwt`, in the spirit of DPoP);
//! - [`gate`]: the [`Gate`](gate::Gate) a business system embeds at its API boundary
//!   (verification + single use + holder proof);
//! - `tower` (feature `tower`): the gate as a tower `Layer` for Rust HTTP services;
//! - [`jwk`]: Ed25519 JWKs, JWK sets and RFC 7638 thumbprints;
//! - [`ledger`]: ledger entries, their digests and case-chain verification;
//! - [`merkle`]: RFC 6962 / RFC 9162 Merkle tree hashing and proofs;
//! - [`note`]: C2SP signed notes and `tlog-checkpoint`s;
//! - [`evidence`]: offline ledger bundles and per-case evidence bundles;
//! - [`signer`]: the [`Ed25519Signer`](signer::Ed25519Signer) the signing functions take.
//!
//! Architecture invariant: this crate knows nothing about async runtimes, databases or
//! policy engines, nor about HTTP outside the optional `tower` feature (which adds only
//! the `http`, `tower-layer`, `tower-service` and `pin-project-lite` crates).
//! Its dependency tree is small crypto and serde crates.

pub mod b64;
pub mod clock;
pub mod error;
pub mod evidence;
pub mod gate;
pub mod jwk;
pub mod jws;
pub mod ledger;
pub mod merkle;
pub mod note;
pub mod passport;
pub mod proof;
pub mod signer;
#[cfg(test)]
mod testing;
#[cfg(feature = "tower")]
pub mod tower;

pub use clock::{Clock, SystemClock};
pub use error::Error;
