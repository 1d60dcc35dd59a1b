//! Ed25519 JSON Web Keys (RFC 7517 / RFC 8037), JWK sets and RFC 7638 thumbprints.
//!
//! Only `kty: OKP`, `crv: Ed25519` keys are usable for verification; a JWK set may hold
//! other keys, which [`Jwks::from_json`] skips as RFC 7517 §5 asks.

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{b64, Error};

/// One public key in JWK form.
///
/// ```
/// use agentsigna_verify::jwk::Jwk;
/// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
/// let jwk = Jwk::from_verifying_key(&key.verifying_key());
/// assert_eq!(jwk.kid.as_deref(), Some(jwk.thumbprint().as_str()));
/// assert_eq!(jwk.verifying_key().unwrap(), key.verifying_key());
/// ```
///
/// Parsing refuses a JWK carrying the private key member `d`: a public key registered or
/// published with its private half is compromised, and saying so beats ignoring it.
///
/// ```
/// use agentsigna_verify::jwk::Jwk;
/// let leaky = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#;
/// assert!(serde_json::from_str::<Jwk>(leaky).unwrap_err().to_string().contains("private"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "JwkMembers")]
pub struct Jwk {
    /// Key type; `OKP` for Ed25519.
    pub kty: String,
    /// Curve; `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding (32 bytes for Ed25519).
    pub x: String,
    /// Key id; AgentSigna uses the RFC 7638 thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended algorithm; `EdDSA` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use; `sig` when present.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// The members of a JWK as parsed, before the private-key check.
#[derive(Deserialize)]
struct JwkMembers {
    kty: String,
    crv: String,
    x: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(rename = "use", default)]
    use_: Option<String>,
    #[serde(default)]
    d: Option<serde::de::IgnoredAny>,
}

impl TryFrom<JwkMembers> for Jwk {
    type Error = String;

    fn try_from(m: JwkMembers) -> Result<Jwk, String> {
        if m.d.is_some() {
            return Err("the JWK carries the private key member `d`: give the public key only".to_owned());
        }
        Ok(Jwk { kty: m.kty, crv: m.crv, x: m.x, kid: m.kid, alg: m.alg, use_: m.use_ })
    }
}

impl Jwk {
    /// The JWK of an Ed25519 public key, with `kid` = its thumbprint, `alg: EdDSA` and
    /// `use: sig`.
    ///
    /// ```
    /// use agentsigna_verify::jwk::Jwk;
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    /// let jwk = Jwk::from_verifying_key(&key);
    /// assert_eq!((jwk.kty.as_str(), jwk.crv.as_str()), ("OKP", "Ed25519"));
    /// ```
    pub fn from_verifying_key(key: &VerifyingKey) -> Jwk {
        let mut jwk = Jwk::public_only(key);
        jwk.kid = Some(jwk.thumbprint());
        jwk.alg = Some("EdDSA".to_owned());
        jwk.use_ = Some("sig".to_owned());
        jwk
    }

    /// The bare JWK of an Ed25519 public key: only `kty`, `crv` and `x` (the form
    /// embedded in holder proofs).
    ///
    /// ```
    /// use agentsigna_verify::jwk::Jwk;
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    /// assert_eq!(Jwk::public_only(&key).kid, None);
    /// ```
    pub fn public_only(key: &VerifyingKey) -> Jwk {
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: b64::url_encode(key.as_bytes()),
            kid: None,
            alg: None,
            use_: None,
        }
    }

    /// The RFC 7638 thumbprint: base64url(SHA-256 of `{"crv":…,"kty":…,"x":…}`), the
    /// required members of an OKP key in lexicographic order, without whitespace.
    ///
    /// ```
    /// use agentsigna_verify::jwk::Jwk;
    /// // RFC 8037 appendix A.3.
    /// let jwk = Jwk { kty: "OKP".into(), crv: "Ed25519".into(),
    ///     x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
    ///     kid: None, alg: None, use_: None };
    /// assert_eq!(jwk.thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    /// ```
    pub fn thumbprint(&self) -> String {
        // Serialising each member as a JSON string escapes them exactly as RFC 7638 asks.
        let mut text = String::with_capacity(96);
        text.push_str("{\"crv\":");
        push_json_string(&mut text, &self.crv);
        text.push_str(",\"kty\":");
        push_json_string(&mut text, &self.kty);
        text.push_str(",\"x\":");
        push_json_string(&mut text, &self.x);
        text.push('}');
        b64::url_encode(Sha256::digest(text.as_bytes()))
    }

    /// The key id this key answers to: its `kid`, or its thumbprint when it has none.
    ///
    /// ```
    /// use agentsigna_verify::jwk::Jwk;
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    /// let bare = Jwk::public_only(&key);
    /// assert_eq!(bare.effective_kid(), bare.thumbprint());
    /// ```
    pub fn effective_kid(&self) -> String {
        match &self.kid {
            Some(kid) => kid.clone(),
            None => self.thumbprint(),
        }
    }

    /// The Ed25519 verifying key. Fails ([`Error::Malformed`]) unless `kty` is `OKP`,
    /// `crv` is `Ed25519`, `x` is 32 bytes of base64url encoding a curve point that is
    /// not of small order (the identity and the other seven points of order 2, 4 or 8,
    /// for which signatures can be forged), and any `alg` / `use` present allow
    /// signature verification with EdDSA.
    ///
    /// ```
    /// use agentsigna_verify::jwk::Jwk;
    /// let mut jwk = Jwk::public_only(&ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key());
    /// assert!(jwk.verifying_key().is_ok());
    /// jwk.crv = "X25519".into();
    /// assert_eq!(jwk.verifying_key().unwrap_err().code(), "malformed");
    /// ```
    pub fn verifying_key(&self) -> Result<VerifyingKey, Error> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(Error::Malformed(format!("jwk: unsupported key type {}/{}", self.kty, self.crv)));
        }
        // A key declared for another algorithm or for encryption must not verify passports.
        if let Some(alg) = &self.alg {
            if alg != "EdDSA" && alg != "Ed25519" {
                return Err(Error::Malformed(format!("jwk: alg {alg} is not EdDSA")));
            }
        }
        if let Some(use_) = &self.use_ {
            if use_ != "sig" {
                return Err(Error::Malformed(format!("jwk: use {use_} is not sig")));
            }
        }
        let bytes = b64::url_decode(&self.x).ok_or_else(|| Error::Malformed("jwk: x is not base64url".to_owned()))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| Error::Malformed("jwk: x is not 32 bytes".to_owned()))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| Error::Malformed("jwk: x is not an Ed25519 point".to_owned()))?;
        if key.is_weak() {
            return Err(Error::Malformed("jwk: x is a point of small order (a weak key)".to_owned()));
        }
        Ok(key)
    }
}

fn push_json_string(out: &mut String, value: &str) {
    // `Value::String`'s Display is infallible and produces a correctly escaped literal.
    out.push_str(&serde_json::Value::String(value.to_owned()).to_string());
}

/// A JWK set, `{"keys": [...]}`.
///
/// ```
/// use agentsigna_verify::jwk::{Jwk, Jwks};
/// let jwk = Jwk::from_verifying_key(&ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key());
/// let jwks = Jwks { keys: vec![jwk.clone()] };
/// let text = serde_json::to_string(&jwks).unwrap();
/// assert_eq!(Jwks::from_json(&text).unwrap().find(&jwk.thumbprint()), Some(&jwk));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWK set. Members that are not OKP keys with `crv` and `x` (RSA, EC, …),
    /// and keys carrying a private member, are skipped rather than refused, so a shared
    /// JWK set still works; a document
    /// that is not `{"keys": [...]}` is [`Error::Malformed`].
    ///
    /// ```
    /// use agentsigna_verify::jwk::Jwks;
    /// let jwks = Jwks::from_json(r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#).unwrap();
    /// assert!(jwks.keys.is_empty());
    /// assert_eq!(Jwks::from_json("[]").unwrap_err().code(), "malformed");
    /// ```
    pub fn from_json(text: &str) -> Result<Jwks, Error> {
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<serde_json::Value>,
        }
        let raw: Raw = serde_json::from_str(text).map_err(|e| Error::Malformed(format!("jwks: {e}")))?;
        let keys = raw
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter(|jwk| jwk.kty == "OKP")
            .collect();
        Ok(Jwks { keys })
    }

    /// The first key whose `kid` (or, for a key without `kid`, thumbprint) is `kid`.
    ///
    /// ```
    /// use agentsigna_verify::jwk::{Jwk, Jwks};
    /// let bare = Jwk::public_only(&ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key());
    /// let jwks = Jwks { keys: vec![bare.clone()] };
    /// assert_eq!(jwks.find(&bare.thumbprint()), Some(&bare));
    /// assert_eq!(jwks.find("nope"), None);
    /// ```
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|jwk| match &jwk.kid {
            Some(own) => own == kid,
            None => jwk.thumbprint() == kid,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key(n: u8) -> VerifyingKey {
        ed25519_dalek::SigningKey::from_bytes(&[n; 32]).verifying_key()
    }

    #[test]
    fn rfc8037_thumbprint() {
        let jwk: Jwk =
            serde_json::from_str(r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#)
                .unwrap();
        assert_eq!(jwk.thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn thumbprint_ignores_optional_members() {
        let full = Jwk::from_verifying_key(&key(1));
        let bare = Jwk::public_only(&key(1));
        assert_eq!(full.thumbprint(), bare.thumbprint());
        assert_ne!(full.thumbprint(), Jwk::public_only(&key(2)).thumbprint());
    }

    #[test]
    fn serde_round_trip_uses_use_member() {
        let jwk = Jwk::from_verifying_key(&key(1));
        let text = serde_json::to_string(&jwk).unwrap();
        assert!(text.contains("\"use\":\"sig\""), "{text}");
        assert_eq!(serde_json::from_str::<Jwk>(&text).unwrap(), jwk);
        let bare = serde_json::to_string(&Jwk::public_only(&key(1))).unwrap();
        assert!(!bare.contains("kid") && !bare.contains("use") && !bare.contains("alg"));
    }

    #[test]
    fn verifying_key_rejects_bad_keys() {
        let good = Jwk::public_only(&key(1));
        type Mutation = Box<dyn Fn(&mut Jwk)>;
        let cases: Vec<Mutation> = vec![
            Box::new(|j| j.kty = "EC".into()),
            Box::new(|j| j.crv = "Ed448".into()),
            Box::new(|j| j.x = "!!!".into()),
            Box::new(|j| j.x = b64::url_encode([1u8; 31])),
            Box::new(|j| j.alg = Some("RS256".into())),
            Box::new(|j| j.use_ = Some("enc".into())),
        ];
        for mutate in cases {
            let mut jwk = good.clone();
            mutate(&mut jwk);
            assert_eq!(jwk.verifying_key().unwrap_err().code(), "malformed", "{jwk:?}");
        }
        let mut alg = good.clone();
        alg.alg = Some("Ed25519".into());
        assert!(alg.verifying_key().is_ok());
    }

    #[test]
    fn verifying_key_rejects_non_point() {
        // y = 2 is not on the curve; found by trying small y values.
        let mut found = false;
        for y in 2u8..50 {
            let mut bytes = [0u8; 32];
            bytes[0] = y;
            if VerifyingKey::from_bytes(&bytes).is_err() {
                let jwk = Jwk { x: b64::url_encode(bytes), ..Jwk::public_only(&key(1)) };
                assert_eq!(jwk.verifying_key().unwrap_err().code(), "malformed");
                found = true;
                break;
            }
        }
        assert!(found);
    }

    /// The eight Ed25519 points of small order (orders 1, 2, 4, 8), canonical encodings,
    /// and a non-canonical encoding of the identity (y = p + 1).
    const SMALL_ORDER: [&str; 9] = [
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn small_order_keys_are_refused() {
        for point in SMALL_ORDER {
            let jwk = Jwk { x: b64::url_encode(unhex(point)), ..Jwk::public_only(&key(1)) };
            let err = jwk.verifying_key().unwrap_err();
            assert_eq!(err.code(), "malformed", "{point}");
            // Either refused as not decodable or, decoded, as weak.
            if ed25519_dalek::VerifyingKey::from_bytes(&unhex(point).try_into().unwrap()).is_ok() {
                assert!(err.to_string().contains("small order"), "{point}: {err}");
            }
        }
        assert!(Jwk::public_only(&key(1)).verifying_key().is_ok());
    }

    #[test]
    fn a_private_member_is_refused() {
        let public = serde_json::to_value(Jwk::public_only(&key(1))).unwrap();
        let mut leaky = public.clone();
        leaky["d"] = serde_json::json!(b64::url_encode([1u8; 32]));
        let err = serde_json::from_value::<Jwk>(leaky.clone()).unwrap_err();
        assert!(err.to_string().contains("private key member `d`"), "{err}");
        assert!(serde_json::from_value::<Jwk>(public.clone()).is_ok());
        // A JWK set skips it.
        let set = serde_json::json!({"keys": [leaky, public]}).to_string();
        assert_eq!(Jwks::from_json(&set).unwrap().keys.len(), 1);
    }

    #[test]
    fn jwks_find_and_skip() {
        let a = Jwk::from_verifying_key(&key(1));
        let b = Jwk::public_only(&key(2));
        let text = format!(
            r#"{{"keys":[{{"kty":"RSA","n":"x","e":"AQAB","kid":"rsa"}},{},{},{{"kty":"OKP","crv":"X25519"}}]}}"#,
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        let jwks = Jwks::from_json(&text).unwrap();
        assert_eq!(jwks.keys.len(), 2);
        assert_eq!(jwks.find(a.kid.as_deref().unwrap()), Some(&a));
        assert_eq!(jwks.find(&b.thumbprint()), Some(&b));
        assert_eq!(jwks.find("rsa"), None);
        assert_eq!(b.effective_kid(), b.thumbprint());
        assert_eq!(a.effective_kid(), a.thumbprint());
    }

    #[test]
    fn jwks_malformed() {
        for text in ["", "{}", "[]", r#"{"keys":{}}"#, "not json"] {
            assert_eq!(Jwks::from_json(text).unwrap_err().code(), "malformed", "{text}");
        }
    }
}
