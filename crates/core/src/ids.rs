//! Random identifiers and credentials.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// `N` random bytes from `rng`, base64url.
fn random_b64<const N: usize>(rng: &mut impl RngCore) -> String {
    let mut buf = [0u8; N];
    rng.fill_bytes(&mut buf);
    agentsigna_verify::b64::url_encode(buf)
}

/// A new identifier with a readable prefix, its creation time `now_ms` (from the
/// injected clock) and 96 random bits, e.g. `case_0193a5b2c4d1Xb3…`. The 12 hex digits of
/// milliseconds make newer ids sort after older ones, so the indexes on ids grow at their
/// right edge instead of dirtying a random page per insert. Uniqueness comes from the
/// random bits; the time is there for locality only.
pub fn new_id(prefix: &str, now_ms: i64) -> String {
    // The thread's CSPRNG (ChaCha12 seeded and reseeded from the OS): every id of a
    // request asked the kernel for 12 bytes before (a `getrandom` system call each).
    format!("{prefix}_{:012x}{}", now_ms.clamp(0, 0xffff_ffff_ffff), random_b64::<12>(&mut rand::thread_rng()))
}

/// A new secret credential: 192 random bits, prefixed with its kind so that a leaked
/// token is recognisable (`as_agent_…`).
pub fn new_secret(kind: &str) -> String {
    // Straight from the OS: credentials are few and long-lived.
    format!("as_{kind}_{}", random_b64::<24>(&mut rand::rngs::OsRng))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_valid_names_and_sort_by_creation_time() {
        let a = new_id("case", 1_800_000_000_000);
        let b = new_id("case", 1_800_000_000_001);
        let c = new_id("case", 1_800_000_000_001);
        assert!(a < b && a < c, "{a} {b} {c}");
        assert_ne!(b, c, "96 random bits tell ids of one millisecond apart");
        assert_eq!(&a[..17], "case_01a3185c5000");
        assert_eq!(a.len(), "case_".len() + 12 + 16);
        check_name("id", &new_id("case", -5)).unwrap();
        assert!(new_id("case", -5).starts_with("case_000000000000"));
    }
}
