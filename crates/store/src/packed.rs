//! Entry `data` and passport claims compressed against the ledger's own vocabulary, the
//! same way on every backend.
//!
//! A value is compressed with zstd against [`DICTIONARY_1`], a raw-content dictionary of
//! the event data's and the passport claims' key names and constant values (no value of
//! any deployment's: no agent, counterparty or amount), so a few hundred bytes of JSON
//! lose most of their keys and keep their values. The frame is stored without zstd's
//! 4-byte magic number, behind a tag byte:
//!
//! - entry `data`: `0x01 ‖ frame` ([`pack_data`]); a value that does not start with `0x01`
//!   is the canonical text itself (rows written before this format, and any text
//!   compression would not shorten). Canonical JSON never starts with `0x01`.
//! - a passport token: see `layout::token_bytes` (its header and payload are one frame,
//!   the signature stays as it is).
//!
//! **The dictionary is part of the storage format:** rows written with it can only be read
//! with it, byte for byte. A better dictionary gets a new tag, never an edit of this one
//! (a test pins its SHA-256).
//!
//! Compression runs where a write set enters the store, on the caller's task, never in a
//! serial step.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::LazyLock;

use agentsigna_core::store::{StoreError, StoreResult};
use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// The raw-content dictionary of tag [`PACKED_1`]. Never edit it (see the module docs).
pub const DICTIONARY_1: &[u8] = include_bytes!("dictionary-1.txt");

/// Tag of a value compressed against [`DICTIONARY_1`].
pub const PACKED_1: u8 = 0x01;

/// zstd's level: 3 compresses these values within 4 % of level 19 at a fraction of its cost.
const LEVEL: i32 = 3;

/// The most a stored value may expand to (a corrupt frame cannot make a reader allocate
/// more). The HTTP body limit keeps real values far below it.
const MAX_UNPACKED: usize = 16 << 20;

/// zstd's frame magic number, left out of every stored frame.
const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

static ENCODER: LazyLock<EncoderDictionary<'static>> = LazyLock::new(|| EncoderDictionary::copy(DICTIONARY_1, LEVEL));
static DECODER: LazyLock<DecoderDictionary<'static>> = LazyLock::new(|| DecoderDictionary::copy(DICTIONARY_1));

thread_local! {
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// `bytes` as a frame against [`DICTIONARY_1`] without its magic number, appended to
/// `out`; `false` (and `out` as it was) when zstd refuses, which it does not on memory it
/// could allocate.
pub(crate) fn compress_into(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    let frame = COMPRESSOR.with(|c| {
        let mut slot = c.borrow_mut();
        let compressor = match &mut *slot {
            Some(compressor) => compressor,
            None => {
                let mut fresh = Compressor::with_prepared_dictionary(&ENCODER).ok()?;
                // The tag says which dictionary; its id would only repeat it.
                fresh.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false)).ok()?;
                slot.insert(fresh)
            }
        };
        compressor.compress(bytes).ok()
    });
    match frame.as_deref().and_then(|f| f.strip_prefix(&MAGIC[..])) {
        Some(body) => {
            out.extend_from_slice(body);
            true
        }
        None => false,
    }
}

/// The bytes [`compress_into`] appended (`frame`: what it appended).
pub(crate) fn decompress(frame: &[u8]) -> StoreResult<Vec<u8>> {
    let corrupt = |e: std::io::Error| StoreError::corrupt(format!("a stored compressed value does not expand: {e}"));
    let mut whole = Vec::with_capacity(MAGIC.len() + frame.len());
    whole.extend_from_slice(&MAGIC);
    whole.extend_from_slice(frame);
    DECOMPRESSOR.with(|d| {
        let mut slot = d.borrow_mut();
        let decompressor = match &mut *slot {
            Some(decompressor) => decompressor,
            None => slot.insert(Decompressor::with_prepared_dictionary(&DECODER).map_err(corrupt)?),
        };
        decompressor.decompress(&whole, MAX_UNPACKED).map_err(corrupt)
    })
}

/// An entry's canonical `data` text as stored: compressed when that is shorter.
pub fn pack_data(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 2);
    out.push(PACKED_1);
    if compress_into(&mut out, text.as_bytes()) && out.len() < text.len() {
        out
    } else {
        text.as_bytes().to_vec()
    }
}

/// The canonical text [`pack_data`] stored (or a row's text from before compression).
pub fn unpack_data(stored: &[u8]) -> StoreResult<Cow<'_, str>> {
    let not_text = || StoreError::corrupt("stored entry data is not UTF-8");
    match stored.split_first() {
        Some((&PACKED_1, frame)) => String::from_utf8(decompress(frame)?).map(Cow::Owned).map_err(|_| not_text()),
        _ => std::str::from_utf8(stored).map(Cow::Borrowed).map_err(|_| not_text()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_dictionary_never_changes() {
        // Rows on disk were compressed against these exact bytes: a new dictionary is a
        // new tag, never an edit of this one.
        use sha2::Digest;
        let digest = agentsigna_verify::ledger::hex_lower(&sha2::Sha256::digest(DICTIONARY_1));
        assert_eq!(digest, "a2f6c11fb96dcdcc3c51cf71ab58eb4b40d909fea2fe0b6320f77c95a2a3be25");
    }

    #[test]
    fn event_data_shrinks_and_comes_back() {
        let text = r#"{"approvals_required":0,"inputs":{"action":"purchase_order.create","agent":{"id":"procurement-bot","owner":"alice@example.com","suspended":false,"trust":50},"amount_minor":48000,"counterparty":{"id":"acme","risk":"low","trust":50},"currency":"USD"},"policy":{"digest":"sha256:fef7ba94fa133af31912936d16dc1f6e97b83dd66c89083da13171889e2d5fc2","version":1},"reasons":[{"reason":"Agents may create purchase orders up to 250,000.00 USD","rule":"po-allowed","verdict":"authorize"}],"roles_required":[],"shadow":null,"ttl_secs":null,"verdict":"authorized"}"#;
        let stored = pack_data(text);
        assert_eq!(stored[0], PACKED_1);
        assert!(stored.len() * 2 < text.len(), "{} bytes for {}", stored.len(), text.len());
        assert_eq!(unpack_data(&stored).unwrap(), text);
    }

    #[test]
    fn text_that_would_not_shrink_is_kept_as_it_is() {
        for text in ["{}", "7", r#"{"a":1}"#] {
            let stored = pack_data(text);
            assert_eq!(stored, text.as_bytes());
            assert_eq!(unpack_data(&stored).unwrap(), text);
        }
    }

    #[test]
    fn a_damaged_frame_is_an_error_not_a_panic() {
        let mut stored = pack_data(
            r#"{"action":"purchase_order.create","agent":"procurement-bot","amount":{"currency":"USD","value":"480.00"}}"#,
        );
        stored.truncate(stored.len() - 3);
        assert!(unpack_data(&stored).is_err());
        assert!(unpack_data(&[PACKED_1]).is_err());
        assert!(unpack_data(&[PACKED_1, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(unpack_data(&[0xC3, 0x28]).is_err(), "not UTF-8");
    }

    proptest! {
        #[test]
        fn any_text_comes_back_byte_for_byte(s in "\\PC{0,600}") {
            let text = serde_json::json!({ "description": s, "action": "purchase_order.create" }).to_string();
            let stored = pack_data(&text);
            prop_assert_eq!(unpack_data(&stored).unwrap(), text.as_str());
        }

        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut stored = vec![PACKED_1];
            stored.extend(bytes);
            let _ = unpack_data(&stored);
        }
    }
}
