//! Entry `data` and passport claims compressed against the ledger's own vocabulary, the
//! same way on every backend.
//!
//! A value is compressed with zstd against a dictionary of the event data's and the
//! passport claims' key names and constant values (no value of any deployment's: no
//! agent, counterparty or amount), so a few hundred bytes of JSON lose most of their keys
//! and keep their values:
//!
//! - [`DICTIONARY_1`] is that content alone (a raw-content dictionary);
//! - [`DICTIONARY_2`], written since, is the same content with zstd's entropy tables,
//!   computed from the values of a synthetic `agentsigna bench` run
//!   (`tools/make_dictionary_2.py`). Without them zstd builds a Huffman table and three
//!   FSE tables for every frame, most of the CPU of a value of a few hundred bytes; with
//!   them it starts from ready tables: ≈ 2.8× less CPU per value and ≈ 16 % fewer bytes.
//!
//! The frame is stored without zstd's 4-byte magic number, behind a tag byte naming the
//! dictionary:
//!
//! - entry `data`: `0x02 ‖ frame` ([`pack_data`]; `0x01 ‖ frame` against dictionary 1 is
//!   still read); a value that starts with neither is the canonical text itself (rows
//!   written before compression, and any text compression would not shorten). Canonical
//!   JSON never starts with `0x01` or `0x02`.
//! - a passport token: see `layout::token_bytes` (its header and payload are one frame,
//!   the signature stays as it is).
//!
//! **Each dictionary is part of the storage format:** rows written with it can only be
//! read with it, byte for byte. A better dictionary gets a new tag, never an edit of an
//! existing one (a test pins their SHA-256).
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

/// The dictionary of tag [`PACKED_2`]: [`DICTIONARY_1`]'s content with entropy tables.
/// Never edit it (see the module docs).
pub const DICTIONARY_2: &[u8] = include_bytes!("dictionary-2.zstd");

/// Tag of a value compressed against [`DICTIONARY_1`] (read, no longer written).
pub const PACKED_1: u8 = 0x01;

/// Tag of a value compressed against [`DICTIONARY_2`].
pub const PACKED_2: u8 = 0x02;

/// Which dictionary a stored frame was compressed against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dictionary {
    One,
    Two,
}

/// zstd's level: 3 compresses these values within 4 % of level 19 at a fraction of its cost.
const LEVEL: i32 = 3;

/// The most a stored value may expand to (a corrupt frame cannot make a reader allocate
/// more). The HTTP body limit keeps real values far below it.
const MAX_UNPACKED: usize = 16 << 20;

/// zstd's frame magic number, left out of every stored frame.
const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

static ENCODER: LazyLock<EncoderDictionary<'static>> = LazyLock::new(|| EncoderDictionary::copy(DICTIONARY_2, LEVEL));
static DECODER_1: LazyLock<DecoderDictionary<'static>> = LazyLock::new(|| DecoderDictionary::copy(DICTIONARY_1));
static DECODER_2: LazyLock<DecoderDictionary<'static>> = LazyLock::new(|| DecoderDictionary::copy(DICTIONARY_2));

thread_local! {
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR_1: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR_2: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// `bytes` as a frame against [`DICTIONARY_2`] without its magic number, appended to
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

/// The bytes a frame against `dictionary` holds (`frame`: what [`compress_into`] appended,
/// or its dictionary-1 predecessor wrote).
pub(crate) fn decompress(dictionary: Dictionary, frame: &[u8]) -> StoreResult<Vec<u8>> {
    let corrupt = |e: std::io::Error| StoreError::corrupt(format!("a stored compressed value does not expand: {e}"));
    let mut whole = Vec::with_capacity(MAGIC.len() + frame.len());
    whole.extend_from_slice(&MAGIC);
    whole.extend_from_slice(frame);
    let (slot, prepared) = match dictionary {
        Dictionary::One => (&DECOMPRESSOR_1, &*DECODER_1),
        Dictionary::Two => (&DECOMPRESSOR_2, &*DECODER_2),
    };
    slot.with(|d| {
        let mut slot = d.borrow_mut();
        let decompressor = match &mut *slot {
            Some(decompressor) => decompressor,
            None => slot.insert(Decompressor::with_prepared_dictionary(prepared).map_err(corrupt)?),
        };
        decompressor.decompress(&whole, MAX_UNPACKED).map_err(corrupt)
    })
}

/// An entry's canonical `data` text as stored: compressed when that is shorter.
pub fn pack_data(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 2);
    out.push(PACKED_2);
    if compress_into(&mut out, text.as_bytes()) && out.len() < text.len() {
        out
    } else {
        text.as_bytes().to_vec()
    }
}

/// The canonical text [`pack_data`] stored (or a row's text from before compression).
pub fn unpack_data(stored: &[u8]) -> StoreResult<Cow<'_, str>> {
    let not_text = || StoreError::corrupt("stored entry data is not UTF-8");
    let dictionary = match stored.first() {
        Some(&PACKED_1) => Dictionary::One,
        Some(&PACKED_2) => Dictionary::Two,
        _ => return std::str::from_utf8(stored).map(Cow::Borrowed).map_err(|_| not_text()),
    };
    String::from_utf8(decompress(dictionary, &stored[1..])?).map(Cow::Owned).map_err(|_| not_text())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_dictionaries_never_change() {
        // Rows on disk were compressed against these exact bytes: a new dictionary is a
        // new tag, never an edit of one of these.
        use sha2::Digest;
        let digest = |d: &[u8]| agentsigna_verify::ledger::hex_lower(&sha2::Sha256::digest(d));
        assert_eq!(digest(DICTIONARY_1), "a2f6c11fb96dcdcc3c51cf71ab58eb4b40d909fea2fe0b6320f77c95a2a3be25");
        assert_eq!(digest(DICTIONARY_2), "c476f4b8cd9d5a67d33ec8a85456af0fa0d5d468da8981e5a190cfe28dac7e9f");
        // Dictionary 2 is dictionary 1's content behind zstd's entropy tables.
        assert!(DICTIONARY_2.starts_with(&[0x37, 0xA4, 0x30, 0xEC]), "a zstd dictionary");
        assert!(DICTIONARY_2.ends_with(DICTIONARY_1));
    }

    /// `decision.made` as the release before dictionary 2 stored it (tag 1).
    const WRITTEN_WITH_1: &str = "01602601350500b2c7181890451dd87ff9271cb81859c95db3f726cd8639a8ebee180284751c3cacc4ee00571c5b8c258d2d665660c496c06955f8f955c58489eca9b7da08b9a71a691f296c47e828f7e0622ace4456c4b291d42ba4f94e896fc1c1cc320666f0c82b4d2f25091400fa4fa000554e9053be5c4f54e01471b910a1e09e7041186b31d0850804f04b3cd63f425a57c062ec1120dd1103f60231a8bcae51001a456304dab1e36c05";

    #[test]
    fn event_data_shrinks_and_comes_back() {
        let text = r#"{"approvals_required":0,"inputs":{"action":"purchase_order.create","agent":{"id":"procurement-bot","owner":"alice@example.com","suspended":false,"trust":50},"amount_minor":48000,"counterparty":{"id":"acme","risk":"low","trust":50},"currency":"USD"},"policy":{"digest":"sha256:fef7ba94fa133af31912936d16dc1f6e97b83dd66c89083da13171889e2d5fc2","version":1},"reasons":[{"reason":"Agents may create purchase orders up to 250,000.00 USD","rule":"po-allowed","verdict":"authorize"}],"roles_required":[],"shadow":null,"ttl_secs":null,"verdict":"authorized"}"#;
        let stored = pack_data(text);
        assert_eq!(stored[0], PACKED_2);
        assert!(stored.len() * 2 < text.len(), "{} bytes for {}", stored.len(), text.len());
        assert_eq!(unpack_data(&stored).unwrap(), text);
        // The row the release before wrote for the same text still reads, and the tables
        // of dictionary 2 make the new one shorter.
        let old = hex::decode(WRITTEN_WITH_1).unwrap();
        assert_eq!(unpack_data(&old).unwrap(), text);
        assert!(stored.len() < old.len(), "{} bytes against dictionary 2, {} against 1", stored.len(), old.len());
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
        for tag in [PACKED_1, PACKED_2] {
            assert!(unpack_data(&[tag]).is_err());
            assert!(unpack_data(&[tag, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        }
        // A frame read against the other dictionary does not come back as the text.
        let mut other = pack_data(r#"{"approvals_required":0,"verdict":"authorized","roles_required":[]}"#);
        other[0] = PACKED_1;
        assert!(unpack_data(&other).map(|t| !t.contains("verdict")).unwrap_or(true));
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
        fn arbitrary_frames_never_panic(two in any::<bool>(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut stored = vec![if two { PACKED_2 } else { PACKED_1 }];
            stored.extend(bytes);
            let _ = unpack_data(&stored);
        }
    }
}
