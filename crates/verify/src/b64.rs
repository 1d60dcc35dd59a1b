//! Base64 helpers: base64url without padding (JOSE) and standard base64 (notes, proofs).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// Encodes bytes as base64url without padding (RFC 7515 §2).
///
/// ```
/// assert_eq!(agentsigna_verify::b64::url_encode(b"\xff\xfe"), "__4");
/// ```
pub fn url_encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; `None` when the input is not canonical base64url.
///
/// ```
/// assert_eq!(agentsigna_verify::b64::url_decode("__4"), Some(vec![0xff, 0xfe]));
/// assert_eq!(agentsigna_verify::b64::url_decode("__4="), None);
/// // Trailing bits that are not zero would decode to the same bytes as "__4": refused.
/// assert_eq!(agentsigna_verify::b64::url_decode("__5"), None);
/// assert_eq!(agentsigna_verify::b64::url_decode("_w"), Some(vec![0xff]));
/// assert_eq!(agentsigna_verify::b64::url_decode("_x"), None);
/// ```
pub fn url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Encodes bytes as standard base64 with padding (RFC 4648 §4).
///
/// ```
/// assert_eq!(agentsigna_verify::b64::std_encode(b"\xff\xfe"), "//4=");
/// ```
pub fn std_encode(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard base64 with padding; `None` when invalid.
///
/// ```
/// assert_eq!(agentsigna_verify::b64::std_decode("//4="), Some(vec![0xff, 0xfe]));
/// ```
pub fn std_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}
