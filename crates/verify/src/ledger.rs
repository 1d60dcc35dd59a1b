//! Ledger entries, their digests, and verification of the per-case hash chains.
//!
//! An entry is `{index, case, seq, prev, type, at, actor, data}`. Its digest is
//! `SHA-256(0x00 ‖ JCS(entry))` (RFC 8785 canonical JSON), which is also its RFC 6962
//! Merkle leaf hash. Entries of one case form a hash chain through `prev`; entries with
//! `case: null` (organization events) form the organization chain the same way.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// One ledger entry, exactly as it is hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Global position, 0, 1, 2, … with no gap.
    pub index: u64,
    /// The case id, `None` for organization events.
    pub case: Option<String>,
    /// Position within the case (or within the organization chain).
    pub seq: u64,
    /// Lowercase hex digest of the previous entry of the same chain; `None` at `seq` 0.
    pub prev: Option<String>,
    /// The event type, e.g. `request.submitted`.
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339 UTC timestamp with milliseconds.
    pub at: String,
    /// `agent:<id>`, `approver:<id>`, `system:<id>`, `admin` or `server`.
    pub actor: String,
    /// The event's content.
    pub data: serde_json::Value,
}

/// An entry as served by the API and in bundles: the hashed object plus its `digest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestedEntry {
    /// The hashed entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// Lowercase hex digest of `entry` (not part of the hashed object).
    pub digest: String,
}

impl Entry {
    /// The RFC 8785 canonical JSON text of this entry: the exact bytes that are hashed.
    ///
    /// Fails when `data` holds a floating-point number or a non-ASCII object key, which
    /// entries never carry.
    pub fn canonical_json(&self) -> Result<String, Error> {
        let value = serde_json::to_value(self).map_err(|e| Error::Malformed(e.to_string()))?;
        check_value(&value)?;
        serde_jcs::to_string(&value).map_err(|e| Error::Malformed(e.to_string()))
    }

    /// `SHA-256(0x00 ‖ JCS(entry))`: the entry digest and RFC 6962 leaf hash.
    ///
    /// ```
    /// use agentsigna_verify::ledger::Entry;
    /// let entry = Entry {
    ///     index: 0, case: None, seq: 0, prev: None, kind: "action.declared".into(),
    ///     at: "2026-01-01T00:00:00.000Z".into(), actor: "admin".into(),
    ///     data: serde_json::json!({"action": "payment.send"}),
    /// };
    /// assert_eq!(entry.digest_hex().unwrap().len(), 64);
    /// ```
    pub fn digest(&self) -> Result<[u8; 32], Error> {
        Ok(digest_canonical(self.canonical_json()?.as_bytes()))
    }

    /// [`Entry::digest`] as lowercase hex.
    pub fn digest_hex(&self) -> Result<String, Error> {
        Ok(hex_lower(&self.digest()?))
    }
}

/// `SHA-256(0x00 ‖ canonical)` for an entry already in canonical form.
pub fn digest_canonical(canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(canonical);
    h.finalize().into()
}

/// Lowercase hex of bytes.
pub fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

/// Parses 64 lowercase hex characters into a 32-byte digest.
pub fn parse_digest_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// Entries hold no floating-point numbers and only ASCII object keys, so that every
/// implementation of RFC 8785 agrees on their bytes.
fn check_value(value: &serde_json::Value) -> Result<(), Error> {
    match value {
        serde_json::Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
            Err(Error::Malformed(format!("floating-point number {n} in entry")))
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(check_value),
        serde_json::Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.is_ascii() {
                check_value(v)
            } else {
                Err(Error::Malformed(format!("non-ASCII key {k:?} in entry")))
            }
        }),
        _ => Ok(()),
    }
}

/// Checks a ledger read in index order: contiguous indexes from the first entry given,
/// each digest recomputed (and compared with the stored one when given), and each chain
/// (`seq` contiguous from 0, `prev` = digest of the previous entry of the same case).
///
/// ```
/// use agentsigna_verify::ledger::{ChainVerifier, Entry};
/// let mut v = ChainVerifier::new(0);
/// let e = Entry {
///     index: 0, case: Some("c1".into()), seq: 0, prev: None, kind: "request.submitted".into(),
///     at: "2026-01-01T00:00:00.000Z".into(), actor: "agent:a".into(), data: serde_json::json!({}),
/// };
/// let d = v.push(&e, None).unwrap();
/// let e2 = Entry { index: 1, seq: 1, prev: Some(agentsigna_verify::ledger::hex_lower(&d)), ..e };
/// assert!(v.push(&e2, None).is_ok());
/// ```
#[derive(Debug, Default)]
pub struct ChainVerifier {
    next_index: u64,
    heads: HashMap<Option<String>, (u64, [u8; 32])>,
}

impl ChainVerifier {
    /// A verifier expecting the first entry at `first_index` with every chain starting
    /// at `seq` 0 (i.e. verification of the whole ledger starts at 0).
    pub fn new(first_index: u64) -> Self {
        ChainVerifier { next_index: first_index, heads: HashMap::new() }
    }

    /// Number of entries checked so far plus the first index.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Checks the next entry; returns its digest. `stored_digest` is the digest stored or
    /// served beside the entry, if any.
    pub fn push(&mut self, entry: &Entry, stored_digest: Option<&str>) -> Result<[u8; 32], Error> {
        let bad = |reason: String| Error::BadEntry { index: entry.index, reason };
        if entry.index != self.next_index {
            return Err(Error::BadEntry {
                index: self.next_index,
                reason: format!("expected index {}, found {}", self.next_index, entry.index),
            });
        }
        let digest = entry.digest().map_err(|e| bad(e.to_string()))?;
        if let Some(stored) = stored_digest {
            if stored != hex_lower(&digest) {
                return Err(bad(format!(
                    "digest mismatch: stored {stored}, recomputed {}",
                    hex_lower(&digest)
                )));
            }
        }
        let chain = match &entry.case {
            Some(c) => format!("case {c}"),
            None => "organization chain".to_owned(),
        };
        match self.heads.get(&entry.case) {
            None => {
                if entry.seq != 0 || entry.prev.is_some() {
                    return Err(bad(format!(
                        "{chain} starts at seq {} (prev {:?}); expected seq 0 without prev",
                        entry.seq, entry.prev
                    )));
                }
            }
            Some((seq, head)) => {
                if entry.seq != seq + 1 {
                    return Err(bad(format!("{chain}: expected seq {}, found {}", seq + 1, entry.seq)));
                }
                let expected = hex_lower(head);
                if entry.prev.as_deref() != Some(expected.as_str()) {
                    return Err(bad(format!(
                        "{chain}: prev {:?} does not match the previous entry's digest {expected}",
                        entry.prev
                    )));
                }
            }
        }
        self.heads.insert(entry.case.clone(), (entry.seq, digest));
        self.next_index += 1;
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(index: u64, case: Option<&str>, seq: u64, prev: Option<String>) -> Entry {
        Entry {
            index,
            case: case.map(str::to_owned),
            seq,
            prev,
            kind: "request.submitted".into(),
            at: "2026-11-29T10:00:00.000Z".into(),
            actor: "agent:buyer-1".into(),
            data: json!({"b": 1, "a": "x"}),
        }
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let e = entry(0, Some("c"), 0, None);
        assert_eq!(
            e.canonical_json().unwrap(),
            r#"{"actor":"agent:buyer-1","at":"2026-11-29T10:00:00.000Z","case":"c","data":{"a":"x","b":1},"index":0,"prev":null,"seq":0,"type":"request.submitted"}"#
        );
    }

    #[test]
    fn floats_and_non_ascii_keys_are_refused() {
        let mut e = entry(0, None, 0, None);
        e.data = json!({"v": 1.5});
        assert!(e.digest().is_err());
        e.data = json!({"é": 1});
        assert!(e.digest().is_err());
    }

    #[test]
    fn chain_detects_edits_gaps_and_reorders() {
        let e0 = entry(0, Some("c"), 0, None);
        let d0 = e0.digest().unwrap();
        let e1 = entry(1, Some("c"), 1, Some(hex_lower(&d0)));
        let mut v = ChainVerifier::new(0);
        v.push(&e0, None).unwrap();
        v.push(&e1, None).unwrap();

        // Gap.
        let mut v = ChainVerifier::new(0);
        v.push(&e0, None).unwrap();
        let mut skipped = e1.clone();
        skipped.index = 2;
        assert!(matches!(v.push(&skipped, None), Err(Error::BadEntry { index: 1, .. })));

        // Broken prev.
        let mut v = ChainVerifier::new(0);
        v.push(&e0, None).unwrap();
        let mut forged = e1.clone();
        forged.prev = Some("00".repeat(32));
        assert!(v.push(&forged, None).is_err());

        // Stored digest mismatch (payload edited after hashing).
        let mut v = ChainVerifier::new(0);
        assert!(v.push(&e0, Some(&"11".repeat(32))).is_err());
    }

    #[test]
    fn hex_round_trip() {
        let d = [0xabu8; 32];
        assert_eq!(parse_digest_hex(&hex_lower(&d)), Some(d));
        assert_eq!(parse_digest_hex("AB"), None);
    }
}
