//! A minimal compact JWS (RFC 7515) on Ed25519, shared by passports and holder proofs.
//!
//! Deliberately small: one algorithm (`EdDSA`, RFC 8037), compact serialization only,
//! no `crit` extensions, strict (canonical, unpadded) base64url, and header objects
//! with duplicate member names refused (RFC 7515 §5.2 allows either refusing or taking
//! the last; refusing removes a class of parser-differential attacks).

use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::signer::Ed25519Signer;
use crate::{b64, Error};

/// Largest token accepted, in bytes; anything larger is [`Error::Malformed`] before any
/// decoding, so a hostile client cannot make the verifier parse megabytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The only JOSE `alg` this crate signs or accepts.
pub const ALG_EDDSA: &str = "EdDSA";

/// Signs `payload` under `header` and returns `base64url(header).base64url(payload).base64url(sig)`.
///
/// The header is serialised as given (callers put `alg: EdDSA` in it).
///
/// ```
/// use agentsigna_verify::jws;
/// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
/// let token = jws::sign_compact(&serde_json::json!({"alg": "EdDSA"}), b"{}", &key);
/// let parsed = jws::parse(&token).unwrap();
/// assert!(parsed.verify_signature(&key.verifying_key()).is_ok());
/// ```
pub fn sign_compact(header: &Value, payload: &[u8], key: &(impl Ed25519Signer + ?Sized)) -> String {
    sign_compact_json(&sorted_json(header), payload, key)
}

/// Serializes a JSON value with object members sorted by key, whatever serde_json
/// features (`preserve_order`) other crates switch on, so the bytes are reproducible.
///
/// ```
/// let v = serde_json::json!({"b": 1, "a": {"d": 2, "c": 3}});
/// assert_eq!(agentsigna_verify::jws::sorted_json(&v), r#"{"a":{"c":3,"d":2},"b":1}"#);
/// ```
pub fn sorted_json(value: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(members.into_iter().map(|(k, v)| (k.clone(), sort(v))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(value).to_string()
}

/// Like [`sign_compact`], with the header given as JSON text, so its bytes (member order)
/// are exactly the caller's, whatever serde_json features are enabled.
///
/// ```
/// use agentsigna_verify::jws;
/// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
/// let token = jws::sign_compact_json(r#"{"alg":"EdDSA"}"#, b"{}", &key);
/// assert!(token.starts_with("eyJhbGciOiJFZERTQSJ9.e30."));
/// ```
pub fn sign_compact_json(header_json: &str, payload: &[u8], key: &(impl Ed25519Signer + ?Sized)) -> String {
    let mut token = b64::url_encode(header_json.as_bytes());
    token.push('.');
    token.push_str(&b64::url_encode(payload));
    let signature = key.sign_message(token.as_bytes());
    token.push('.');
    token.push_str(&b64::url_encode(signature.to_bytes()));
    token
}

/// A compact JWS split and decoded, but not yet verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<'a> {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The header as it appears in the token (base64url).
    pub header_b64: &'a str,
    /// The payload as it appears in the token (base64url).
    pub payload_b64: &'a str,
    /// `header_b64 '.' payload_b64`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// The decoded signature (64 bytes for a well-formed EdDSA token; any other length
    /// fails [`Parsed::verify_signature`]).
    pub signature: Vec<u8>,
}

/// Splits a compact JWS into its three base64url parts and parses the header.
///
/// [`Error::Malformed`] when the token exceeds [`MAX_TOKEN_BYTES`], has other than three
/// parts, a part is not canonical base64url, or the header is not a JSON object with
/// unique member names. The signature length is checked later, so that `alg: none`
/// tokens (empty signature) are reported as such by [`Parsed::check_alg`].
///
/// ```
/// use agentsigna_verify::jws;
/// assert_eq!(jws::parse("a.b").unwrap_err().code(), "malformed");
/// ```
pub fn parse(token: &str) -> Result<Parsed<'_>, Error> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::Malformed(format!("token is {} bytes, more than {MAX_TOKEN_BYTES}", token.len())));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed("a compact JWS has three parts".to_owned()));
    };
    let header_bytes =
        b64::url_decode(header_b64).ok_or_else(|| Error::Malformed("header is not base64url".to_owned()))?;
    let payload =
        b64::url_decode(payload_b64).ok_or_else(|| Error::Malformed("payload is not base64url".to_owned()))?;
    let signature =
        b64::url_decode(signature_b64).ok_or_else(|| Error::Malformed("signature is not base64url".to_owned()))?;
    let header = parse_header(&header_bytes)?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    Ok(Parsed { header, header_b64, payload_b64, signing_input, payload, signature })
}

impl Parsed<'_> {
    /// A header member as a string; `None` when absent or not a string.
    ///
    /// ```
    /// use agentsigna_verify::jws;
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    /// let token = jws::sign_compact(&serde_json::json!({"alg": "EdDSA", "kid": "k1"}), b"{}", &key);
    /// assert_eq!(jws::parse(&token).unwrap().header_str("kid"), Some("k1"));
    /// ```
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// [`Error::WrongType`] unless the `typ` header is exactly `expected`.
    ///
    /// ```
    /// use agentsigna_verify::jws;
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    /// let token = jws::sign_compact(&serde_json::json!({"alg": "EdDSA", "typ": "JWT"}), b"{}", &key);
    /// assert_eq!(jws::parse(&token).unwrap().check_typ("passport+jwt").unwrap_err().code(), "wrong_type");
    /// ```
    pub fn check_typ(&self, expected: &str) -> Result<(), Error> {
        match self.header.get("typ") {
            Some(Value::String(typ)) if typ == expected => Ok(()),
            other => Err(Error::WrongType {
                expected: expected.to_owned(),
                found: match other {
                    None => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                },
            }),
        }
    }

    /// [`Error::AlgNotAllowed`] unless the `alg` header is `EdDSA` (so `none`, `HS256`,
    /// `RS256`, a missing or non-string `alg` are all refused).
    ///
    /// ```
    /// use agentsigna_verify::jws;
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    /// let token = jws::sign_compact(&serde_json::json!({"alg": "none"}), b"{}", &key);
    /// assert_eq!(jws::parse(&token).unwrap().check_alg().unwrap_err().code(), "alg_not_allowed");
    /// ```
    pub fn check_alg(&self) -> Result<(), Error> {
        match self.header.get("alg") {
            Some(Value::String(alg)) if alg == ALG_EDDSA => Ok(()),
            Some(Value::String(alg)) => Err(Error::AlgNotAllowed(alg.clone())),
            Some(other) => Err(Error::AlgNotAllowed(other.to_string())),
            None => Err(Error::AlgNotAllowed("(missing)".to_owned())),
        }
    }

    /// [`Error::Malformed`] when the header has a `crit` member: this implementation
    /// understands no JWS extension, and RFC 7515 §4.1.11 requires refusing the token.
    ///
    /// ```
    /// use agentsigna_verify::jws;
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    /// let token = jws::sign_compact(&serde_json::json!({"alg": "EdDSA", "crit": ["b64"], "b64": false}), b"{}", &key);
    /// assert_eq!(jws::parse(&token).unwrap().check_crit().unwrap_err().code(), "malformed");
    /// ```
    pub fn check_crit(&self) -> Result<(), Error> {
        match self.header.get("crit") {
            None => Ok(()),
            Some(crit) => Err(Error::Malformed(format!("unsupported critical header {crit}"))),
        }
    }

    /// Verifies the Ed25519 signature over [`Parsed::signing_input`] with
    /// `verify_strict` (refuses non-canonical signatures and small-order keys);
    /// [`Error::BadSignature`] otherwise.
    ///
    /// ```
    /// use agentsigna_verify::jws;
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    /// let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    /// let token = jws::sign_compact(&serde_json::json!({"alg": "EdDSA"}), b"{}", &key);
    /// let parsed = jws::parse(&token).unwrap();
    /// assert_eq!(parsed.verify_signature(&other.verifying_key()).unwrap_err().code(), "bad_signature");
    /// ```
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), Error> {
        let bytes: &[u8; 64] = self.signature.as_slice().try_into().map_err(|_| Error::BadSignature)?;
        let signature = Signature::from_bytes(bytes);
        key.verify_strict(self.signing_input.as_bytes(), &signature).map_err(|_| Error::BadSignature)
    }
}

/// Parses a JSON object, refusing duplicate member names.
fn parse_header(bytes: &[u8]) -> Result<Map<String, Value>, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let header = de.deserialize_map(UniqueObject).map_err(|e| Error::Malformed(format!("header: {e}")))?;
    de.end().map_err(|e| Error::Malformed(format!("header: {e}")))?;
    Ok(header)
}

struct UniqueObject;

impl<'de> Visitor<'de> for UniqueObject {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with unique member names")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if map.insert(key.clone(), value).is_some() {
                return Err(serde::de::Error::custom(format!("duplicate member {key:?}")));
            }
        }
        Ok(map)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    fn hand_token(header: &str, payload: &str, sig: &str) -> String {
        format!("{}.{}.{}", b64::url_encode(header), b64::url_encode(payload), sig)
    }

    #[test]
    fn round_trip() {
        let token = sign_compact(&json!({"alg": "EdDSA", "typ": "x"}), b"hello", &key());
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.payload, b"hello");
        assert_eq!(parsed.signature.len(), 64);
        assert_eq!(parsed.header_str("typ"), Some("x"));
        assert_eq!(parsed.signing_input, &token[..token.rfind('.').unwrap()]);
        assert_eq!(parsed.header_b64, token.split('.').next().unwrap());
        parsed.check_alg().unwrap();
        parsed.check_typ("x").unwrap();
        parsed.check_crit().unwrap();
        parsed.verify_signature(&key().verifying_key()).unwrap();
    }

    #[test]
    fn malformed_shapes() {
        let good = sign_compact(&json!({"alg": "EdDSA"}), b"{}", &key());
        let sig = good.rsplit('.').next().unwrap().to_owned();
        let cases = vec![
            String::new(),
            "a".to_owned(),
            "a.b".to_owned(),
            format!("{good}.x"),
            format!("{good}."),
            hand_token(r#"{"alg":"EdDSA"}"#, "{}", "!!!"),
            format!("***.{}.{sig}", b64::url_encode("{}")),
            format!("{}.*.{sig}", b64::url_encode(r#"{"alg":"EdDSA"}"#)),
            // Padding is not canonical base64url.
            format!("{}=.{}.{sig}", b64::url_encode(r#"{"alg":"EdDSA"}"#), b64::url_encode("{}")),
            hand_token("not json", "{}", &sig),
            hand_token("[]", "{}", &sig),
            hand_token(r#""alg""#, "{}", &sig),
            hand_token(r#"{"alg":"EdDSA"} x"#, "{}", &sig),
            hand_token(r#"{"alg":"EdDSA","alg":"none"}"#, "{}", &sig),
            hand_token("", "{}", &sig),
        ];
        for token in cases {
            assert_eq!(parse(&token).unwrap_err().code(), "malformed", "{token}");
        }
    }

    #[test]
    fn size_limit() {
        let payload = vec![b'a'; MAX_TOKEN_BYTES];
        let token = sign_compact(&json!({"alg": "EdDSA"}), &payload, &key());
        assert!(token.len() > MAX_TOKEN_BYTES);
        assert_eq!(parse(&token).unwrap_err().code(), "malformed");
        let small = sign_compact(&json!({"alg": "EdDSA"}), &payload[..MAX_TOKEN_BYTES / 2], &key());
        assert!(parse(&small).is_ok());
    }

    #[test]
    fn alg_checks() {
        for (header, ok) in [
            (json!({"alg": "EdDSA"}), true),
            (json!({"alg": "none"}), false),
            (json!({"alg": "HS256"}), false),
            (json!({"alg": "RS256"}), false),
            (json!({"alg": "eddsa"}), false),
            (json!({"alg": 1}), false),
            (json!({}), false),
        ] {
            let token = sign_compact(&header, b"{}", &key());
            let result = parse(&token).unwrap().check_alg();
            assert_eq!(result.is_ok(), ok, "{header}");
            if !ok {
                assert_eq!(result.unwrap_err().code(), "alg_not_allowed");
            }
        }
    }

    #[test]
    fn typ_checks() {
        for (header, found) in [
            (json!({"typ": "JWT"}), "JWT"),
            (json!({"typ": "PASSPORT+JWT"}), "PASSPORT+JWT"),
            (json!({"typ": "application/passport+jwt"}), "application/passport+jwt"),
            (json!({}), ""),
            (json!({"typ": 5}), "5"),
        ] {
            let token = sign_compact(&header, b"{}", &key());
            let err = parse(&token).unwrap().check_typ("passport+jwt").unwrap_err();
            assert_eq!(err, Error::WrongType { expected: "passport+jwt".into(), found: found.into() });
        }
    }

    #[test]
    fn signature_checks() {
        let token = sign_compact(&json!({"alg": "EdDSA"}), b"{}", &key());
        let vk = key().verifying_key();
        // Empty, short and long signatures.
        let prefix = &token[..token.rfind('.').unwrap() + 1];
        for sig in [String::new(), b64::url_encode([0u8; 32]), b64::url_encode([0u8; 65])] {
            let t = format!("{prefix}{sig}");
            assert_eq!(parse(&t).unwrap().verify_signature(&vk).unwrap_err(), Error::BadSignature);
        }
        // Flipped signature bit.
        let mut parsed = parse(&token).unwrap();
        parsed.signature[0] ^= 1;
        assert_eq!(parsed.verify_signature(&vk).unwrap_err(), Error::BadSignature);
    }

    #[test]
    fn non_canonical_s_is_refused() {
        // Adding the group order L to s yields a signature that plain `verify` might
        // accept on some implementations; `verify_strict` must refuse it.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let token = sign_compact(&json!({"alg": "EdDSA"}), b"{}", &key());
        let mut parsed = parse(&token).unwrap();
        let mut carry = 0u16;
        for (byte, l) in parsed.signature[32..].iter_mut().zip(L) {
            let sum = u16::from(*byte) + u16::from(l) + carry;
            *byte = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        assert_eq!(parsed.verify_signature(&key().verifying_key()).unwrap_err(), Error::BadSignature);
    }

    #[test]
    fn crit_refused() {
        let token = sign_compact(&json!({"alg": "EdDSA", "crit": []}), b"{}", &key());
        assert_eq!(parse(&token).unwrap().check_crit().unwrap_err().code(), "malformed");
    }
}
