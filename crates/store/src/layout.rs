//! What both backends store the same way, in as few bytes as is simple:
//!
//! - a ledger entry as its members ([`StoredEntry`]): `data` as its RFC 8785 text, `at` as
//!   milliseconds, `prev` and `digest` as 32 bytes, and its chain as the number of its
//!   case's row (0: the organization chain) instead of the case id;
//! - a passport token as its three base64url segments decoded, header and payload
//!   compressed ([`token_bytes`]), put back together byte for byte when read
//!   ([`token_text`]);
//! - the Merkle tree from level [`FIRST_STORED_LEVEL`] up: a node below it is computed
//!   from the at most 2^3 leaf digests under it ([`subtree`]) instead of being stored.

use std::borrow::Cow;

use agentsigna_core::store::{SealedEntry, StoreError, StoreResult, Write, WriteSet};
use agentsigna_verify::b64;
use agentsigna_verify::clock::rfc3339_ms;
use agentsigna_verify::ledger::{hex_lower, DigestedEntry, Entry};
use agentsigna_verify::merkle::{root_from_leaves, Hash};

use crate::packed::Dictionary;

/// The chain number of the organization chain (case rows are numbered from 1).
pub const ORGANIZATION_CHAIN: i64 = 0;

/// The lowest Merkle level whose nodes are stored. A node of levels 1–3 covers at most 8
/// leaves: reading their digests (adjacent rows) is as cheap as reading the node, and
/// not storing those levels saves 7 of every 8 stored nodes.
pub const FIRST_STORED_LEVEL: u32 = 4;

/// A stored ledger row, borrowed from the database's answer.
#[derive(Debug, Clone, Copy)]
pub struct StoredEntry<'a> {
    pub index: i64,
    /// The case id (`None`: the organization chain).
    pub case: Option<&'a str>,
    pub seq: i64,
    pub kind: &'a str,
    pub at_ms: i64,
    pub actor: &'a str,
    pub prev: Option<&'a [u8]>,
    /// The entry's `data` as stored ([`crate::packed::pack_data`]; [`Self::data_text`]
    /// gives its canonical text).
    pub data: &'a [u8],
    pub digest: &'a [u8],
}

impl StoredEntry<'_> {
    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::corrupt(format!("corrupt ledger entry {}: {what}", self.index))
    }

    /// The canonical text of the entry's `data`.
    pub fn data_text(&self) -> StoreResult<Cow<'_, str>> {
        crate::packed::unpack_data(self.data).map_err(|e| self.corrupt(&e.to_string()))
    }

    /// The entry as it was hashed.
    pub fn entry(&self) -> StoreResult<Entry> {
        let data = serde_json::from_str(&self.data_text()?).map_err(|e| self.corrupt(&format!("data: {e}")))?;
        let prev = match self.prev {
            None => None,
            Some(p) if p.len() == 32 => Some(hex_lower(p)),
            Some(_) => return Err(self.corrupt("prev is not 32 bytes")),
        };
        Ok(Entry {
            case: self.case.map(str::to_owned),
            seq: u64::try_from(self.seq).map_err(|_| self.corrupt("negative seq"))?,
            prev,
            kind: self.kind.to_owned(),
            at: rfc3339_ms(self.at_ms),
            actor: self.actor.to_owned(),
            data,
        })
    }

    /// The entry with its position and digest, as served.
    pub fn digested(&self) -> StoreResult<DigestedEntry> {
        if self.digest.len() != 32 {
            return Err(self.corrupt("digest is not 32 bytes"));
        }
        Ok(DigestedEntry {
            index: u64::try_from(self.index).map_err(|_| self.corrupt("negative index"))?,
            entry: self.entry()?,
            digest: hex_lower(self.digest),
        })
    }
}

/// A write set's values in their stored forms, made where it enters the store (on the
/// caller's task: compression is CPU work a serial step must not do).
#[derive(Debug, Default)]
pub struct Packed {
    /// Each entry's `data` ([`crate::packed::pack_data`]), in order.
    pub data: Vec<Vec<u8>>,
    /// One per write: `Some` ([`token_bytes`]) for a case row that issues its passport.
    pub tokens: Vec<Option<Vec<u8>>>,
}

impl Packed {
    pub fn of(ws: &WriteSet) -> Packed {
        Packed {
            data: ws.entries.iter().map(|e| crate::packed::pack_data(&e.data)).collect(),
            tokens: ws
                .writes
                .iter()
                .map(|w| match w {
                    Write::PutCase(row) => row.passport.as_deref().map(token_bytes),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// An entry stored as its canonical text (SQLite schemas 2 and 3, PostgreSQL 3 and 4), in its
/// members: checked against its row's columns, its `at` and `prev` in the ledger's forms.
/// (The digest returned is recomputed: the conversions keep the stored one, so that an
/// entry edited since it was hashed still fails `ledger verify` afterwards.)
pub fn unpack_text(index: i64, case: Option<&str>, seq: i64, text: &str) -> StoreResult<SealedEntry> {
    let unconvertible = |why: String| {
        StoreError::corrupt(format!(
            "ledger entry {index} cannot be converted ({why}); check the ledger with `agentsigna ledger verify` \
             of the release that wrote it"
        ))
    };
    let entry: Entry = serde_json::from_str(text).map_err(|e| unconvertible(e.to_string()))?;
    if entry.case.as_deref() != case || u64::try_from(seq).ok() != Some(entry.seq) {
        return Err(unconvertible("its columns disagree with its text".into()));
    }
    SealedEntry::seal(entry).map_err(|e| unconvertible(e.to_string()))
}

/// Tag of a token kept as its decoded segments: `1, len(header) u16, len(payload) u32,
/// header, payload, signature` (written before [`PACKED_SEGMENTS`]; still read).
const SEGMENTS: u8 = 1;
/// Tag of a token kept as its decoded segments with header and payload compressed
/// ([`crate::packed`]) against dictionary 1: `2, len(header) u16, len(signature) u16,
/// signature, frame(header ‖ payload)` (written before [`PACKED_SEGMENTS_2`]; still read).
const PACKED_SEGMENTS: u8 = 2;
/// The same against dictionary 2.
const PACKED_SEGMENTS_2: u8 = 3;
/// Tag of a token kept as it is (one that is not three canonical base64url segments).
const VERBATIM: u8 = 0;

/// A passport token as stored: a JWS compact serialization loses its base64url encoding
/// (a quarter of its size) and the key names of its claims (compressed against the
/// ledger's dictionary); anything else is kept as it is.
pub fn token_bytes(token: &str) -> Vec<u8> {
    let segments: Vec<&str> = token.split('.').collect();
    let decoded: Option<Vec<Vec<u8>>> = match segments.as_slice() {
        [_, _, _] => segments.iter().map(|s| b64::url_decode(s).filter(|d| b64::url_encode(d) == *s)).collect(),
        _ => None,
    };
    match decoded.as_deref() {
        Some([header, payload, signature]) => match (u16::try_from(header.len()), u32::try_from(payload.len())) {
            (Ok(h), Ok(p)) => u16::try_from(signature.len())
                .ok()
                .and_then(|s| packed_segments(h, s, header, payload, signature))
                .unwrap_or_else(|| plain_segments(h, p, header, payload, signature)),
            _ => verbatim(token),
        },
        _ => verbatim(token),
    }
}

/// The [`PACKED_SEGMENTS_2`] form; `None` when zstd refuses (it does not on memory it
/// could allocate).
fn packed_segments(h: u16, s: u16, header: &[u8], payload: &[u8], signature: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(5 + signature.len() + (header.len() + payload.len()) / 2);
    out.push(PACKED_SEGMENTS_2);
    out.extend_from_slice(&h.to_be_bytes());
    out.extend_from_slice(&s.to_be_bytes());
    out.extend_from_slice(signature);
    crate::packed::compress_into(&mut out, &[header, payload].concat()).then_some(out)
}

/// The [`SEGMENTS`] form: the decoded segments uncompressed.
fn plain_segments(h: u16, p: u32, header: &[u8], payload: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(7 + header.len() + payload.len() + signature.len());
    out.push(SEGMENTS);
    out.extend_from_slice(&h.to_be_bytes());
    out.extend_from_slice(&p.to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(payload);
    out.extend_from_slice(signature);
    out
}

fn verbatim(token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + token.len());
    out.push(VERBATIM);
    out.extend_from_slice(token.as_bytes());
    out
}

/// The token [`token_bytes`] stored.
pub fn token_text(stored: &[u8]) -> StoreResult<String> {
    let corrupt = || StoreError::corrupt("corrupt stored passport token");
    match stored.split_first() {
        Some((&VERBATIM, text)) => String::from_utf8(text.to_vec()).map_err(|_| corrupt()),
        Some((&SEGMENTS, rest)) if rest.len() >= 6 => {
            let h = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let p = usize::try_from(u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]])).map_err(|_| corrupt())?;
            let body = &rest[6..];
            if body.len() < h.saturating_add(p) {
                return Err(corrupt());
            }
            let (header, rest) = body.split_at(h);
            let (payload, signature) = rest.split_at(p);
            Ok(format!("{}.{}.{}", b64::url_encode(header), b64::url_encode(payload), b64::url_encode(signature)))
        }
        Some((&tag @ (PACKED_SEGMENTS | PACKED_SEGMENTS_2), rest)) if rest.len() >= 4 => {
            let h = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let s = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            let body = &rest[4..];
            if body.len() < s {
                return Err(corrupt());
            }
            let (signature, frame) = body.split_at(s);
            let dictionary = if tag == PACKED_SEGMENTS { Dictionary::One } else { Dictionary::Two };
            let joined = crate::packed::decompress(dictionary, frame)?;
            if joined.len() < h {
                return Err(corrupt());
            }
            let (header, payload) = joined.split_at(h);
            Ok(format!("{}.{}.{}", b64::url_encode(header), b64::url_encode(payload), b64::url_encode(signature)))
        }
        _ => Err(corrupt()),
    }
}

/// The hash of the perfect subtree over `leaves` (its 2^level digests, in order), for a
/// node below [`FIRST_STORED_LEVEL`].
pub fn subtree(level: u32, index: u64, leaves: &[Vec<u8>]) -> StoreResult<Hash> {
    let digests: Vec<Hash> = leaves
        .iter()
        .map(|d| <Hash>::try_from(d.as_slice()))
        .collect::<Result<_, _>>()
        .map_err(|_| StoreError::corrupt("a stored digest is not 32 bytes"))?;
    if u64::try_from(digests.len()).ok() != 1u64.checked_shl(level) {
        return Err(StoreError::corrupt(format!("no Merkle node at level {level}, index {index}")));
    }
    Ok(root_from_leaves(&digests))
}

/// The leaf range `[start, end)` under the node at `(level, index)`.
pub fn leaves_under(level: u32, index: u64) -> StoreResult<(i64, i64)> {
    let out_of_range = || StoreError::corrupt("Merkle node index out of range");
    let start = index.checked_shl(level).filter(|s| s >> level == index).ok_or_else(out_of_range)?;
    let end = start.checked_add(1u64 << level).ok_or_else(out_of_range)?;
    Ok((i64::try_from(start).map_err(|_| out_of_range())?, i64::try_from(end).map_err(|_| out_of_range())?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_jws_loses_its_base64_and_comes_back_byte_for_byte() {
        let token = format!(
            "{}.{}.{}",
            b64::url_encode(br#"{"alg":"EdDSA","kid":"k1","typ":"passport+jwt"}"#),
            b64::url_encode(br#"{"sub":"agent-7","aud":"erp","exp":1800000300}"#),
            b64::url_encode([7u8; 64])
        );
        let stored = token_bytes(&token);
        assert_eq!(stored[0], PACKED_SEGMENTS_2);
        assert!(stored.len() * 4 < token.len() * 3, "{} bytes for a {}-byte token", stored.len(), token.len());
        assert_eq!(token_text(&stored).unwrap(), token);
    }

    /// A passport as the release before dictionary 2 stored it (tag 2, dictionary 1).
    const TOKEN_WRITTEN_WITH_1: &str = "0200580040ca502ee6154edc2928638790866c1cc10bdc779c78db083816f5f6bfa64d8b49c46cfe80167b1f3d116c7d3aadeb2232cc8f4e56ebdb61a19ca6e164bdcaf601606802a50a002614412520abe801e03c5bd378f554330997677ab1908691f6ef2076902284a4342515381502101a1e3b00390033008d75e4672d79e3ae73eb5cacaca750504389fcf4d63529ab42b007c270291c16e75a503c20c87a2115301a2b102c1e46743c83c4350db88819d40ccd91bd4a7796954509bdfa7532c9b798654c80f595ac98c872209b7c2455d575c0fc8c6a7d303f4dc44f535a20ce63494412244923d120a974cea41ff65a60fbe07de04578db3437aeb7e9572849920d55f5ac8df64708f9b1b3a40e37c2e91ca50ea117df559ed431751e03970b0034996d8c2d4e59ebabf49d616bfc4fd2f8fe4959a16dad5965fe959931f8207e4bbdf7297cdc5e81581c7a23723a1800d0cbdeb2101ca8cc65b40997670470cb87b17865048ec5ea8495cbfe2a7f564b21995b204ce0a89c80833c9865d6f094c10063208ca69c83e6062ce5c249ca7b082917754b94233d47c96b";

    #[test]
    fn a_token_stored_against_dictionary_1_still_reads() {
        let old = hex::decode(TOKEN_WRITTEN_WITH_1).unwrap();
        let token = token_text(&old).unwrap();
        let segments: Vec<&str> = token.split('.').collect();
        assert_eq!(segments.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&b64::url_decode(segments[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "EdDSA");
        let claims: serde_json::Value = serde_json::from_slice(&b64::url_decode(segments[1]).unwrap()).unwrap();
        assert!(claims["case"]["id"].is_string(), "{claims}");
        // Written again today, the same token is shorter and reads back byte for byte.
        let new = token_bytes(&token);
        assert_eq!(new[0], PACKED_SEGMENTS_2);
        assert!(new.len() < old.len(), "{} bytes against dictionary 2, {} against 1", new.len(), old.len());
        assert_eq!(token_text(&new).unwrap(), token);
    }

    #[test]
    fn a_token_stored_before_compression_still_reads() {
        let (header, payload, signature) = (&br#"{"alg":"EdDSA"}"#[..], &br#"{"sub":"agent-7"}"#[..], [7u8; 64]);
        let mut stored = vec![SEGMENTS, 0, 15, 0, 0, 0, 17];
        stored.extend_from_slice(header);
        stored.extend_from_slice(payload);
        stored.extend_from_slice(&signature);
        let token = format!("{}.{}.{}", b64::url_encode(header), b64::url_encode(payload), b64::url_encode(signature));
        assert_eq!(token_text(&stored).unwrap(), token);
    }

    #[test]
    fn anything_else_is_kept_verbatim() {
        // Not three segments; a non-canonical base64url segment (its last character
        // carries bits that decoding drops); not base64url at all.
        for token in ["a.b", "eyJ.eyJ.eyJ", "a.b.c.d", "x y.z.w", "", "AB.CD.EF"] {
            assert_eq!(token_text(&token_bytes(token)).unwrap(), token, "{token:?}");
        }
        assert_eq!(token_bytes("eyJ.eyJ.eyJ")[0], VERBATIM);
    }

    #[test]
    fn corrupt_tokens_are_refused() {
        for stored in [
            &[][..],
            &[9, 1, 2][..],
            &[SEGMENTS, 0, 5, 0, 0, 0, 9, 1][..],
            &[VERBATIM, 0xff][..],
            &[PACKED_SEGMENTS, 0, 1][..],
            &[PACKED_SEGMENTS, 0, 1, 0, 64, 1, 2][..],
            &[PACKED_SEGMENTS, 0, 1, 0, 0, 0xFF, 0xFF][..],
            &[PACKED_SEGMENTS_2, 0, 1][..],
            &[PACKED_SEGMENTS_2, 0, 1, 0, 0, 0xFF, 0xFF][..],
        ] {
            assert!(token_text(stored).is_err(), "{stored:?}");
        }
    }

    proptest! {
        #[test]
        fn every_token_round_trips(token in "[A-Za-z0-9_.-]{0,80}") {
            prop_assert_eq!(token_text(&token_bytes(&token)).unwrap(), token);
        }

        #[test]
        fn every_jws_round_trips(h in prop::collection::vec(any::<u8>(), 0..40),
                                 p in prop::collection::vec(any::<u8>(), 0..300),
                                 s in prop::collection::vec(any::<u8>(), 0..70)) {
            let token = format!("{}.{}.{}", b64::url_encode(&h), b64::url_encode(&p), b64::url_encode(&s));
            prop_assert_eq!(token_text(&token_bytes(&token)).unwrap(), token);
        }
    }

    #[test]
    fn subtrees_below_the_stored_levels() {
        let leaves: Vec<Vec<u8>> = (0u8..8).map(|i| vec![i; 32]).collect();
        let hashes: Vec<Hash> = (0u8..8).map(|i| [i; 32]).collect();
        assert_eq!(subtree(3, 0, &leaves).unwrap(), root_from_leaves(&hashes));
        assert_eq!(subtree(1, 3, &leaves[6..]).unwrap(), root_from_leaves(&hashes[6..]));
        assert!(subtree(2, 1, &leaves[4..7]).is_err(), "a missing leaf");
        assert_eq!(leaves_under(2, 3).unwrap(), (12, 16));
        assert!(leaves_under(3, u64::MAX).is_err());
    }
}
