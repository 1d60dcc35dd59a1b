//! Ledger entries, their digests, and verification of the per-case hash chains.
//!
//! An entry is `{case, seq, prev, type, at, actor, data}` (ledger format v2). Its digest is
//! `SHA-256(0x00 ‖ JCS(entry))` (RFC 8785 canonical JSON), which is also its RFC 6962
//! Merkle leaf hash. The entry's global position (`index`) is a property of the log, not
//! of the entry: it is served beside the entry, never hashed, so every digest, chain link
//! and passport can be computed before the entry is sequenced. Entries of one case form a hash chain through `prev`; entries with
//! `case: null` (organization events) form the organization chain the same way.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// One ledger entry, exactly as it is hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
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

/// An entry as served by the API and in bundles: its global position `index`, the hashed
/// object, and its `digest` (neither `index` nor `digest` is part of the hashed object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestedEntry {
    /// Global position in the log, 0, 1, 2, … with no gap.
    pub index: u64,
    /// The hashed entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// Lowercase hex digest of `entry` (not part of the hashed object).
    pub digest: String,
}

impl Entry {
    /// The RFC 8785 canonical JSON text of this entry: the exact bytes that are hashed.
    ///
    /// Fails when `data` holds a floating-point number, an integer beyond ±(2^53 − 1)
    /// (which other JCS implementations cannot represent exactly) or a non-ASCII object
    /// key: entries never carry those, so every RFC 8785 implementation agrees on them.
    pub fn canonical_json(&self) -> Result<String, Error> {
        let mut out = Vec::with_capacity(256);
        write_canonical_entry(self, &mut out)?;
        String::from_utf8(out).map_err(|e| Error::Malformed(e.to_string()))
    }

    /// `SHA-256(0x00 ‖ JCS(entry))`: the entry digest and RFC 6962 leaf hash.
    ///
    /// ```
    /// use agentsigna_verify::ledger::Entry;
    /// let entry = Entry {
    ///     case: None, seq: 0, prev: None, kind: "action.declared".into(),
    ///     at: "2026-01-01T00:00:00.000Z".into(), actor: "admin".into(),
    ///     data: serde_json::json!({"action": "payment.send"}),
    /// };
    /// assert_eq!(entry.digest_hex().unwrap().len(), 64);
    /// ```
    pub fn digest(&self) -> Result<[u8; 32], Error> {
        let mut out = Vec::with_capacity(256);
        write_canonical_entry(self, &mut out)?;
        Ok(digest_canonical(&out))
    }

    /// [`Entry::digest`] as lowercase hex.
    pub fn digest_hex(&self) -> Result<String, Error> {
        Ok(hex_lower(&self.digest()?))
    }
}

/// Largest integer magnitude an entry may hold: 2^53 − 1, exact in IEEE 754 doubles,
/// which RFC 8785 number serialization is defined on.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Writes the RFC 8785 canonical JSON of an entry into `out` (appending). This is the
/// project's one canonicalizer: members sorted by key (for ASCII keys, byte order equals
/// the UTF-16 code-unit order RFC 8785 prescribes), strings escaped as ECMAScript's
/// `JSON.stringify` does, integers in plain decimal. Returns where `data`'s canonical form
/// lies in `out`, for a writer that keeps it beside the entry's digest.
pub fn write_canonical_entry(e: &Entry, out: &mut Vec<u8>) -> Result<std::ops::Range<usize>, Error> {
    out.extend_from_slice(b"{\"actor\":");
    write_str(&e.actor, out);
    out.extend_from_slice(b",\"at\":");
    write_str(&e.at, out);
    out.extend_from_slice(b",\"case\":");
    write_opt_str(e.case.as_deref(), out);
    out.extend_from_slice(b",\"data\":");
    let start = out.len();
    write_value(&e.data, Keys::Ascii, out).map_err(|r| Error::Malformed(r.detail))?;
    let data = start..out.len();
    out.extend_from_slice(b",\"prev\":");
    write_opt_str(e.prev.as_deref(), out);
    out.extend_from_slice(b",\"seq\":");
    write_int(e.seq, false, out).map_err(|r| Error::Malformed(r.detail))?;
    out.extend_from_slice(b",\"type\":");
    write_str(&e.kind, out);
    out.push(b'}');
    Ok(data)
}

/// The RFC 8785 canonical JSON text of a value, with the same limits as entries (no
/// floating-point numbers, integers within ±(2^53 − 1), ASCII object keys): e.g. to hash
/// a request independently of its members' order.
pub fn canonical_value(v: &serde_json::Value) -> Result<String, Error> {
    let mut out = Vec::with_capacity(256);
    write_value(v, Keys::Ascii, &mut out).map_err(|r| Error::Malformed(r.detail))?;
    String::from_utf8(out).map_err(|e| Error::Malformed(e.to_string()))
}

/// Why a value has no canonical form: what is wrong (`reason`) and where (`pointer`, an
/// RFC 6901 JSON pointer to the offending member, `/` for the value itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCanonical {
    pub pointer: String,
    pub reason: &'static str,
}

/// The RFC 8785 canonical JSON text of any JSON value under the same number limits as
/// entries (no floating-point numbers, integers within ±(2^53 − 1)), with object keys of
/// any script, ordered by their UTF-16 code units: e.g. an MCP tool call's arguments.
pub fn canonical_json(v: &serde_json::Value) -> Result<String, NotCanonical> {
    let mut out = Vec::with_capacity(256);
    write_value(v, Keys::Any, &mut out).map_err(|r| {
        let pointer = if r.path.is_empty() {
            "/".to_owned()
        } else {
            r.path.iter().rev().map(|seg| format!("/{}", seg.replace('~', "~0").replace('/', "~1"))).collect()
        };
        NotCanonical { pointer, reason: r.reason }
    })?;
    String::from_utf8(out).map_err(|_| NotCanonical { pointer: "/".to_owned(), reason: "not UTF-8" })
}

/// Which object keys a canonical value may have.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// ASCII only (entries, requests): byte order is UTF-16 order.
    Ascii,
    /// Any, sorted by UTF-16 code units.
    Any,
}

/// A value refused by the canonicalizer. The path to the offending member is collected
/// while the error unwinds (innermost segment first), so success pays nothing for it.
struct Refused {
    reason: &'static str,
    detail: String,
    path: Vec<String>,
}

impl Refused {
    fn new(reason: &'static str, detail: String) -> Refused {
        Refused { reason, detail, path: Vec::new() }
    }

    fn at(mut self, segment: impl Into<String>) -> Refused {
        self.path.push(segment.into());
        self
    }
}

fn write_opt_str(s: Option<&str>, out: &mut Vec<u8>) {
    match s {
        Some(s) => write_str(s, out),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string as RFC 8785 (ECMAScript) writes it: `"`, `\\` and control characters
/// escaped, `\\b \\t \\n \\f \\r` short forms, other controls `\\u00xx`; everything else literal.
fn write_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_int(n: u64, negative: bool, out: &mut Vec<u8>) -> Result<(), Refused> {
    if n > MAX_SAFE_INTEGER {
        return Err(Refused::new(
            "an integer beyond ±(2^53 - 1)",
            format!("integer {}{n} is beyond 2^53 - 1", if negative { "-" } else { "" }),
        ));
    }
    if negative && n != 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    Ok(())
}

fn write_value(v: &serde_json::Value, keys: Keys, out: &mut Vec<u8>) -> Result<(), Refused> {
    use serde_json::Value;
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_int(u, false, out)?;
            } else if let Some(i) = n.as_i64() {
                write_int(i.unsigned_abs(), true, out)?;
            } else {
                return Err(Refused::new("a floating-point number", format!("floating-point number {n} in entry")));
            }
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, keys, out).map_err(|r| r.at(i.to_string()))?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            match keys {
                Keys::Ascii => {
                    if let Some(k) = map.keys().find(|k| !k.is_ascii()) {
                        return Err(
                            Refused::new("a non-ASCII key", format!("non-ASCII key {k:?} in entry")).at(k.as_str())
                        );
                    }
                    // serde_json's map is already sorted by bytes; sorting again is cheap and
                    // keeps the result right under `preserve_order`.
                    members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                }
                Keys::Any => members.sort_unstable_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16())),
            }
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write_value(v, keys, out).map_err(|r| r.at(k.as_str()))?;
            }
            out.push(b'}');
        }
    }
    Ok(())
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

/// Checks a ledger read in index order: contiguous indexes from the first entry given,
/// each digest recomputed (and compared with the stored one when given), and each chain
/// (`seq` contiguous from 0, `prev` = digest of the previous entry of the same case).
///
/// ```
/// use agentsigna_verify::ledger::{ChainVerifier, Entry};
/// let mut v = ChainVerifier::new(0);
/// let e = Entry {
///     case: Some("c1".into()), seq: 0, prev: None, kind: "request.submitted".into(),
///     at: "2026-01-01T00:00:00.000Z".into(), actor: "agent:a".into(), data: serde_json::json!({}),
/// };
/// let d = v.push(0, &e, None).unwrap();
/// let e2 = Entry { seq: 1, prev: Some(agentsigna_verify::ledger::hex_lower(&d)), ..e };
/// assert!(v.push(1, &e2, None).is_ok());
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

    /// Checks the next entry, found at `index`; returns its digest. `stored_digest` is the
    /// digest stored or served beside the entry, if any.
    pub fn push(&mut self, index: u64, entry: &Entry, stored_digest: Option<&str>) -> Result<[u8; 32], Error> {
        let bad = |reason: String| Error::BadEntry { index, reason };
        if index != self.next_index {
            return Err(Error::BadEntry {
                index: self.next_index,
                reason: format!("expected index {}, found {index}", self.next_index),
            });
        }
        let digest = entry.digest().map_err(|e| bad(e.to_string()))?;
        if let Some(stored) = stored_digest {
            if stored != hex_lower(&digest) {
                return Err(bad(format!("digest mismatch: stored {stored}, recomputed {}", hex_lower(&digest))));
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

    #[test]
    fn write_canonical_entry_says_where_the_data_is() {
        let e = super::Entry {
            case: Some("case_1".to_owned()),
            seq: 1,
            prev: Some("ab".repeat(32)),
            kind: "request.submitted".to_owned(),
            at: "2026-12-07T10:00:00.000Z".to_owned(),
            actor: "agent:bot".to_owned(),
            data: serde_json::json!({"z": 1, "a": {"y": "é", "b": [true, null]}}),
        };
        let mut out = b"prefix".to_vec();
        let span = super::write_canonical_entry(&e, &mut out).unwrap();
        assert_eq!(&out[span], super::canonical_value(&e.data).unwrap().as_bytes());
        assert_eq!(super::digest_canonical(&out[6..]), e.digest().unwrap());
    }

    #[test]
    fn canonical_json_sorts_members_and_drops_whitespace() {
        let v = serde_json::json!({"b": [1, true, null], "a": {"y": "x\n\u{1}", "x": -3}, "\u{e9}": "é"});
        assert_eq!(
            super::canonical_json(&v).unwrap(),
            "{\"a\":{\"x\":-3,\"y\":\"x\\n\\u0001\"},\"b\":[1,true,null],\"é\":\"é\"}"
        );
    }

    #[test]
    fn canonical_json_sorts_keys_by_utf16_code_units() {
        // U+1F600 (surrogates D83D DE00) sorts before U+FFFD in UTF-16, after it in UTF-8.
        let v = serde_json::json!({"\u{fffd}": 1, "\u{1f600}": 2});
        assert_eq!(super::canonical_json(&v).unwrap(), "{\"\u{1f600}\":2,\"\u{fffd}\":1}");
    }

    #[test]
    fn canonical_json_refuses_floats_and_big_integers_with_their_pointer() {
        let v = serde_json::json!({"lines": [{"qty": 2}, {"price": 1.5}]});
        let e = super::canonical_json(&v).unwrap_err();
        assert_eq!(e.pointer, "/lines/1/price");
        assert_eq!(e.reason, "a floating-point number");
        let e = super::canonical_json(&serde_json::json!({"n": 9_007_199_254_740_993u64})).unwrap_err();
        assert_eq!((e.pointer.as_str(), e.reason), ("/n", "an integer beyond ±(2^53 - 1)"));
        assert_eq!(super::canonical_json(&serde_json::json!({"a~/b": 0.5})).unwrap_err().pointer, "/a~0~1b");
        assert_eq!(super::canonical_json(&serde_json::json!(0.5)).unwrap_err().pointer, "/");
    }

    #[test]
    fn canonical_value_keeps_the_ledger_limits() {
        let v = serde_json::json!({"b": 1, "a": [-2, "x"]});
        assert_eq!(super::canonical_value(&v).unwrap(), super::canonical_json(&v).unwrap());
        assert!(super::canonical_value(&serde_json::json!({"é": 1})).is_err());
        assert!(super::canonical_value(&serde_json::json!({"a": 1.5})).is_err());
    }
    use super::*;
    use serde_json::json;

    fn entry(case: Option<&str>, seq: u64, prev: Option<String>) -> Entry {
        Entry {
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
        let e = entry(Some("c"), 0, None);
        assert_eq!(
            e.canonical_json().unwrap(),
            r#"{"actor":"agent:buyer-1","at":"2026-11-29T10:00:00.000Z","case":"c","data":{"a":"x","b":1},"prev":null,"seq":0,"type":"request.submitted"}"#
        );
    }

    #[test]
    fn keys_sort_by_code_units_not_by_quoted_bytes() {
        let mut e = entry(None, 0, None);
        e.data = json!({"a b": 3, "a!": 2, "a": 1, "q\"": 4});
        let text = e.canonical_json().unwrap();
        assert!(text.contains(r#""data":{"a":1,"a b":3,"a!":2,"q\"":4}"#), "{text}");
    }

    #[test]
    fn unsafe_integers_are_refused() {
        let mut e = entry(None, 0, None);
        e.data = json!({"n": 9_007_199_254_740_991u64, "m": -9_007_199_254_740_991i64});
        assert!(e.digest().is_ok());
        e.data = json!({"n": 9_007_199_254_740_992u64});
        assert!(e.digest().is_err());
    }

    #[test]
    fn floats_and_non_ascii_keys_are_refused() {
        let mut e = entry(None, 0, None);
        e.data = json!({"v": 1.5});
        assert!(e.digest().is_err());
        e.data = json!({"é": 1});
        assert!(e.digest().is_err());
    }

    #[test]
    fn chain_detects_edits_gaps_and_reorders() {
        let e0 = entry(Some("c"), 0, None);
        let d0 = e0.digest().unwrap();
        let e1 = entry(Some("c"), 1, Some(hex_lower(&d0)));
        let mut v = ChainVerifier::new(0);
        v.push(0, &e0, None).unwrap();
        v.push(1, &e1, None).unwrap();

        // Gap.
        let mut v = ChainVerifier::new(0);
        v.push(0, &e0, None).unwrap();
        assert!(matches!(v.push(2, &e1, None), Err(Error::BadEntry { index: 1, .. })));

        // Broken prev.
        let mut v = ChainVerifier::new(0);
        v.push(0, &e0, None).unwrap();
        let mut forged = e1.clone();
        forged.prev = Some("00".repeat(32));
        assert!(v.push(1, &forged, None).is_err());

        // Reordered within a chain: seq 1 before seq 0.
        let mut v = ChainVerifier::new(0);
        assert!(v.push(0, &e1, None).is_err());

        // Stored digest mismatch (payload edited after hashing).
        let mut v = ChainVerifier::new(0);
        assert!(v.push(0, &e0, Some(&"11".repeat(32))).is_err());
    }

    #[test]
    fn hex_round_trip() {
        let d = [0xabu8; 32];
        assert_eq!(parse_digest_hex(&hex_lower(&d)), Some(d));
        assert_eq!(parse_digest_hex("AB"), None);
    }
}
