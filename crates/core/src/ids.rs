//! Random identifiers and credentials.

use rand::RngCore;
use sha2::{Digest, Sha256};

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    agentsigna_verify::b64::url_encode(buf)
}

/// A new identifier with a readable prefix and 96 random bits, e.g. `case_Xb3…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_b64(12))
}

/// A new secret credential: 192 random bits, prefixed with its kind so that a leaked
/// token is recognisable (`as_agent_…`).
pub fn new_secret(kind: &str) -> String {
    format!("as_{kind}_{}", random_b64(24))
}

/// The stored form of a credential: SHA-256 hex. Credentials are high-entropy random
/// strings, so a fast hash is enough (no password stretching needed).
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Checks an identifier given by a user: 1–128 characters of `[A-Za-z0-9._@+-]`,
/// not starting with a dot or dash.
pub fn check_name(field: &str, value: &str) -> crate::Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-' | ':');
    if value.is_empty() || value.len() > 128 || !value.chars().all(ok_char) || value.starts_with(['.', '-']) {
        return Err(crate::Error::invalid(
            field,
            format!("{field} must be 1-128 characters of letters, digits and ._@+-: (got {value:?})"),
        ));
    }
    Ok(())
}
