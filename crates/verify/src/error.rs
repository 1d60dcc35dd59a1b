//! The one error type of this crate.

/// Why a passport, proof, entry, Merkle proof or signed note was refused.
///
/// [`Error::code`] gives the stable reason word printed by `agentsigna verify` and used in
/// problem+json responses of the gate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not a well-formed token, JSON document, key or note.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The JOSE `typ` header is not the expected one.
    #[error("wrong_type: expected {expected}, found {found}")]
    WrongType {
        /// The `typ` the verifier requires.
        expected: String,
        /// The `typ` the token carries (empty when absent).
        found: String,
    },
    /// The JOSE `alg` is not `EdDSA` (never `none`, never HMAC).
    #[error("alg_not_allowed: {0}")]
    AlgNotAllowed(String),
    /// The `kid` names no key of the JWK set.
    #[error("unknown_key: {0}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("bad_signature")]
    BadSignature,
    /// `exp` (plus leeway) is in the past.
    #[error("expired: exp {exp}, now {now}")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The instant of verification.
        now: i64,
    },
    /// `nbf` (minus leeway) is in the future.
    #[error("not_yet_valid: nbf {nbf}, now {now}")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The instant of verification.
        now: i64,
    },
    /// The passport names another audience.
    #[error("wrong_audience: expected {expected}, found {found}")]
    WrongAudience {
        /// The audience of this verifier.
        expected: String,
        /// The audience of the passport.
        found: String,
    },
    /// The passport (or proof) was already used.
    #[error("replayed: {0}")]
    Replayed(String),
    /// The passport is key-bound (`cnf.jkt`) and no holder proof came with it.
    #[error("proof_missing")]
    ProofMissing,
    /// The holder proof is invalid.
    #[error("proof_invalid: {0}")]
    ProofInvalid(String),
    /// A Merkle inclusion or consistency proof does not verify.
    #[error("bad_proof: {0}")]
    BadProof(String),
    /// A signed note or checkpoint does not verify.
    #[error("bad_note: {0}")]
    BadNote(String),
    /// A ledger entry is inconsistent (digest, index, chain).
    #[error("bad_entry at index {index}: {reason}")]
    BadEntry {
        /// Global ledger index of the first bad entry.
        index: u64,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// The stable reason word: `malformed`, `wrong_type`, `alg_not_allowed`,
    /// `unknown_key`, `bad_signature`, `expired`, `not_yet_valid`, `wrong_audience`,
    /// `replayed`, `proof_missing`, `proof_invalid`, `bad_proof`, `bad_note`, `bad_entry`.
    ///
    /// ```
    /// assert_eq!(agentsigna_verify::Error::BadSignature.code(), "bad_signature");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Error::Malformed(_) => "malformed",
            Error::WrongType { .. } => "wrong_type",
            Error::AlgNotAllowed(_) => "alg_not_allowed",
            Error::UnknownKey(_) => "unknown_key",
            Error::BadSignature => "bad_signature",
            Error::Expired { .. } => "expired",
            Error::NotYetValid { .. } => "not_yet_valid",
            Error::WrongAudience { .. } => "wrong_audience",
            Error::Replayed(_) => "replayed",
            Error::ProofMissing => "proof_missing",
            Error::ProofInvalid(_) => "proof_invalid",
            Error::BadProof(_) => "bad_proof",
            Error::BadNote(_) => "bad_note",
            Error::BadEntry { .. } => "bad_entry",
        }
    }
}
