//! Comparisons of secrets, in time independent of their contents.
//!
//! Every comparison of a secret the server receives goes through here (CSRF tokens of
//! the web pages) or through a hash lookup (bearer credentials are looked up by their
//! SHA-256, never compared as they are). Webhook receivers written in Rust verify
//! signatures with [`verify_webhook_signature`].

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// Whether two secrets are equal, in time that depends only on their lengths.
pub fn same_secret(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Checks an `AgentSigna-Signature` header (`sha256=<hex HMAC-SHA256(secret, body)>`)
/// against the raw body, in constant time.
pub fn verify_webhook_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(mac_hex) = header.trim().strip_prefix("sha256=") else { return false };
    let Ok(expected) = hex::decode(mac_hex) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn same_secret_compares_whole_values() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }

    #[test]
    fn webhook_signatures_verify_only_for_the_exact_body() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        mac.update(b"{\"a\":1}");
        let header = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(verify_webhook_signature(b"k", b"{\"a\":1}", &header));
        assert!(!verify_webhook_signature(b"k", b"{\"a\":2}", &header));
        assert!(!verify_webhook_signature(b"other", b"{\"a\":1}", &header));
        assert!(!verify_webhook_signature(b"k", b"{\"a\":1}", "sha256=zz"));
        assert!(!verify_webhook_signature(b"k", b"{\"a\":1}", &header[7..]));
    }
}
