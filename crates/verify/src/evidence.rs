//! Offline ledger formats: the full ledger bundle, per-case evidence, and the streaming
//! [`LedgerVerifier`] behind both (and behind `agentsigna ledger verify --data-dir`).
//!
//! # Ledger bundle — `agentsigna-ledger-bundle/v2`
//!
//! Written by `agentsigna ledger export`, checked by `agentsigna ledger verify --bundle`.
//! One JSON object (UTF-8), no other members allowed:
//!
//! ```json
//! {
//!   "format": "agentsigna-ledger-bundle/v2",
//!   "checkpoint": "agentsigna/…\n3\n<base64 root>\n\n— agentsigna/… <base64 sig>\n",
//!   "key": "agentsigna/…+1a2b3c4d+AS…",
//!   "entries": [
//!     {"index": 0, "case": null, "seq": 0, "prev": null, "type": "agent.registered",
//!      "at": "2026-01-01T00:00:00.000Z", "actor": "admin", "data": {…},
//!      "digest": "<64 lowercase hex>"},
//!     …
//!   ]
//! }
//! ```
//!
//! - `checkpoint`: the signed checkpoint note (C2SP `tlog-checkpoint`, see
//!   [`crate::note`]) covering exactly the entries of the bundle.
//! - `key`: the ledger's note verifier key. **Informational only**: the verifier is given
//!   the trusted key separately (`--key`), never takes it from the bundle.
//! - `entries`: every ledger entry from index 0, in index order, each exactly as hashed
//!   (see [`crate::ledger`]) plus its `index` and `digest` beside it, and no other member:
//!   a member outside the hashed object would be shown to readers without being covered
//!   by the digest or the tree, so parsing refuses it (as it refuses unknown top-level
//!   members). `index` is not hashed; the Merkle tree commits to the order.
//!
//! Format versions: v2 (this one) hashes `{case, seq, prev, type, at, actor, data}`; v1
//! hashed `index` too. A document of another version is refused with a plain
//! "unsupported format version" error.
//!
//! [`verify_bundle`] accepts it only when: the checkpoint signature verifies with the
//! trusted key and its origin is the key name; indexes run 0, 1, 2, … without gap; each
//! digest recomputes (`SHA-256(0x00 ‖ JCS(entry))`); every chain (each case, and the
//! organization chain of `case: null` entries) has `seq` 0, 1, … and `prev` equal to the
//! previous entry's digest; the checkpoint size equals the number of entries and its
//! root equals the RFC 6962 root over all digests; and, given a checkpoint saved earlier,
//! that its tree is a prefix of the bundle's tree (same origin, size not larger, root of
//! the first `size` digests equal), which catches truncation and rewritten history even
//! when the checkpoint was re-signed.
//!
//! # Case evidence — `agentsigna-case-evidence/v2`
//!
//! Served by `GET /v1/cases/{id}/evidence` and `agentsigna ledger evidence CASE`, checked
//! by `agentsigna ledger verify --evidence FILE --key VKEY`. One JSON object:
//!
//! ```json
//! {
//!   "format": "agentsigna-case-evidence/v2",
//!   "case": "case-id",
//!   "checkpoint": "<signed checkpoint note>",
//!   "key": "<note verifier key, informational>",
//!   "entries": [
//!     {"index": 7, "case": "case-id", "seq": 0, "prev": null, "type": "request.submitted",
//!      "at": "…", "actor": "agent:…", "data": {…}, "digest": "<hex>",
//!      "inclusion": ["<base64 hash>", …]},
//!     …
//!   ]
//! }
//! ```
//!
//! `entries` are all entries of the case up to the checkpoint, in order, each with exactly
//! the entry's members, `index`, `digest` and `inclusion` (unknown members are refused); `inclusion` is
//! the RFC 9162 inclusion proof (audit path, leaf side first, standard base64 of 32-byte
//! hashes) of `digest` at `index` in the tree of the checkpoint. [`verify_evidence`]
//! checks the checkpoint signature, then per entry: the digest recomputes, `case` is the
//! evidence's case, `seq` runs 0, 1, … in order, `prev` is the previous entry's digest
//! (null at seq 0), and the inclusion proof verifies against the checkpoint size and root.
//! Evidence proves that these entries are in the signed log, in this order and unaltered;
//! it cannot prove that no later entry of the case exists beyond the checkpoint.

use serde::{Deserialize, Serialize};

use crate::b64::{std_decode, std_encode};
use std::collections::HashMap;

use crate::ledger::{digest_canonical, hex_lower, DigestedEntry, Entry};
use crate::merkle::{empty_root, inclusion_proof, verify_inclusion, Frontier, Hash, NodeSource};
use crate::note::{verify_checkpoint, Checkpoint, NoteVerifier};
use crate::Error;

/// The `format` of a ledger bundle.
pub const BUNDLE_FORMAT: &str = "agentsigna-ledger-bundle/v2";

/// The `format` of a case evidence document.
pub const EVIDENCE_FORMAT: &str = "agentsigna-case-evidence/v2";

/// An offline copy of the whole ledger: all entries, a signed checkpoint covering them
/// and the ledger's note verifier key (see the module docs for the format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The signed checkpoint note covering exactly `entries`.
    pub checkpoint: String,
    /// The ledger's note verifier key; informational, not trusted by verification.
    pub key: String,
    /// Every entry from index 0, in order, with its index and digest.
    #[serde(deserialize_with = "strict_entries")]
    pub entries: Vec<DigestedEntry>,
}

/// The wire form of an entry with its digest, refusing unknown members: serde ignores
/// `deny_unknown_fields` of a flattened struct, and a member outside the hashed object
/// would be shown to a reader without being covered by the digest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictEntry {
    index: u64,
    case: Option<String>,
    seq: u64,
    prev: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    at: String,
    actor: String,
    data: serde_json::Value,
    digest: String,
}

impl From<StrictEntry> for DigestedEntry {
    fn from(e: StrictEntry) -> DigestedEntry {
        let StrictEntry { index, case, seq, prev, kind, at, actor, data, digest } = e;
        DigestedEntry { index, entry: Entry { case, seq, prev, kind, at, actor, data }, digest }
    }
}

fn strict_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<DigestedEntry>, D::Error> {
    let entries = Vec::<StrictEntry>::deserialize(d)?;
    Ok(entries.into_iter().map(DigestedEntry::from).collect())
}

/// Parses one entry with its digest from JSON (e.g. a line of a JSON Lines export or a
/// `/v1/ledger/entries` item), refusing members other than the entry's, `index` and `digest`.
///
/// ```
/// use agentsigna_verify::evidence::parse_digested_entry;
/// let line = r#"{"index":0,"case":null,"seq":0,"prev":null,"type":"agent.registered","at":"2026-01-01T00:00:00.000Z","actor":"admin","data":{},"digest":"00"}"#;
/// assert_eq!(parse_digested_entry(line).unwrap().index, 0);
/// assert!(parse_digested_entry(&line.replace("\"data\"", "\"note\":1,\"data\"")).is_err());
/// ```
pub fn parse_digested_entry(json: &str) -> Result<DigestedEntry, Error> {
    serde_json::from_str::<StrictEntry>(json)
        .map(DigestedEntry::from)
        .map_err(|e| Error::Malformed(format!("ledger entry: {e}")))
}

impl Bundle {
    /// A bundle of the given parts with `format` set.
    pub fn new(checkpoint: String, key: String, entries: Vec<DigestedEntry>) -> Bundle {
        Bundle { format: BUNDLE_FORMAT.to_owned(), checkpoint, key, entries }
    }
}

/// What [`verify_bundle`] (or [`LedgerVerifier`]) checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    /// Number of entries verified.
    pub entries: u64,
    /// Number of distinct cases (non-null `case`) among them.
    pub cases: u64,
    /// The verified checkpoint, covering all entries.
    pub checkpoint: Checkpoint,
}

/// Verifies a ledger bundle against the trusted key, and optionally against a checkpoint
/// saved earlier (which must describe a prefix of the bundle's tree).
///
/// Errors: [`Error::Malformed`] for a wrong `format`, [`Error::BadNote`] when the
/// checkpoint does not verify, [`Error::BadEntry`] naming the first bad entry,
/// [`Error::BadProof`] when sizes or roots disagree with the checkpoint or the saved one.
pub fn verify_bundle(
    bundle: &Bundle,
    key: &NoteVerifier,
    saved_checkpoint: Option<&Checkpoint>,
) -> Result<BundleReport, Error> {
    check_format("bundle", &bundle.format, BUNDLE_FORMAT)?;
    let checkpoint = verify_checkpoint(&bundle.checkpoint, key)?;
    let mut verifier = LedgerVerifier::new();
    if let Some(saved) = saved_checkpoint {
        if saved.origin != checkpoint.origin {
            return Err(Error::BadProof(format!(
                "the saved checkpoint is of log {:?}, not {:?}",
                saved.origin, checkpoint.origin
            )));
        }
        verifier.expect_prefix(saved, "saved checkpoint")?;
    }
    for e in &bundle.entries {
        verifier.push_digested(e)?;
    }
    verifier.finish(&checkpoint)
}

/// Streaming verification of a whole ledger, entry by entry in index order from 0:
/// digests, chains and the Merkle root (a [`Frontier`]), in `O(number of chains +
/// log n)` memory. Finally compared with a checkpoint.
///
/// It applies exactly the checks of [`ChainVerifier`](crate::ledger::ChainVerifier),
/// with the same error reasons, but hashes with [`digest_entry`] into a reused buffer:
/// no allocation per entry beyond a new chain's key.
///
/// ```
/// use agentsigna_verify::evidence::LedgerVerifier;
/// use agentsigna_verify::ledger::Entry;
/// use agentsigna_verify::note::Checkpoint;
/// let e = Entry {
///     case: Some("c1".into()), seq: 0, prev: None, kind: "request.submitted".into(),
///     at: "2026-01-01T00:00:00.000Z".into(), actor: "agent:a".into(), data: serde_json::json!({}),
/// };
/// let mut v = LedgerVerifier::new();
/// let digest = v.push(0, &e, None).unwrap();
/// let cp = Checkpoint { origin: "o".into(), size: 1, root: digest, extensions: vec![] };
/// let report = v.finish(&cp).unwrap();
/// assert_eq!((report.entries, report.cases), (1, 1));
/// ```
#[derive(Debug, Default)]
pub struct LedgerVerifier {
    /// Head of each chain (`None`: the organization chain): its last seq and digest.
    heads: HashMap<Option<String>, (u64, Hash)>,
    frontier: Frontier,
    cases: u64,
    /// Reused canonical JSON buffer.
    scratch: Vec<u8>,
    /// Earlier trees the ledger must extend, sorted by size, with their labels.
    prefixes: Vec<(Checkpoint, String)>,
    /// Index in `prefixes` of the next one to check.
    next_prefix: usize,
}

impl LedgerVerifier {
    /// A verifier expecting entry 0 first.
    pub fn new() -> LedgerVerifier {
        LedgerVerifier::default()
    }

    /// Requires the ledger to contain the tree of `cp` as a prefix: when the ledger
    /// reaches `cp.size` entries their root must be `cp.root`, and [`finish`] fails if it
    /// never reaches it (truncation). `label` names it in errors (e.g. "saved
    /// checkpoint"). Call before pushing entries beyond `cp.size`.
    ///
    /// [`finish`]: LedgerVerifier::finish
    pub fn expect_prefix(&mut self, cp: &Checkpoint, label: &str) -> Result<(), Error> {
        if cp.size < self.frontier.size() {
            return Err(Error::Malformed(format!(
                "{label} (size {}) registered after {} entries were verified",
                cp.size,
                self.frontier.size()
            )));
        }
        let pos = self.prefixes[self.next_prefix..].partition_point(|(p, _)| p.size <= cp.size) + self.next_prefix;
        self.prefixes.insert(pos, (cp.clone(), label.to_owned()));
        self.check_prefixes()
    }

    /// Checks the next entry, found at `index` (`stored_digest`: the digest stored beside
    /// it, if any) and adds it to the tree; returns its digest. The first failure is an
    /// [`Error::BadEntry`] naming the entry (or a [`Error::BadProof`] when an expected
    /// prefix is reached with another root).
    pub fn push(&mut self, index: u64, entry: &Entry, stored_digest: Option<&str>) -> Result<Hash, Error> {
        let expected_index = self.frontier.size();
        if index != expected_index {
            return Err(Error::BadEntry {
                index: expected_index,
                reason: format!("expected index {expected_index}, found {index}"),
            });
        }
        let bad = |reason: String| Error::BadEntry { index, reason };
        let digest = digest_entry(entry, &mut self.scratch).map_err(|e| bad(e.to_string()))?;
        if let Some(stored) = stored_digest {
            if !hex_equals(stored, &digest) {
                return Err(bad(format!("digest mismatch: stored {stored}, recomputed {}", hex_lower(&digest))));
            }
        }
        let chain = || match &entry.case {
            Some(c) => format!("case {c}"),
            None => "organization chain".to_owned(),
        };
        match self.heads.get_mut(&entry.case) {
            None => {
                if entry.seq != 0 || entry.prev.is_some() {
                    return Err(bad(format!(
                        "{} starts at seq {} (prev {:?}); expected seq 0 without prev",
                        chain(),
                        entry.seq,
                        entry.prev
                    )));
                }
                self.heads.insert(entry.case.clone(), (0, digest));
                if entry.case.is_some() {
                    self.cases += 1;
                }
            }
            Some(head) => {
                if entry.seq != head.0 + 1 {
                    return Err(bad(format!("{}: expected seq {}, found {}", chain(), head.0 + 1, entry.seq)));
                }
                if !entry.prev.as_deref().is_some_and(|p| hex_equals(p, &head.1)) {
                    return Err(bad(format!(
                        "{}: prev {:?} does not match the previous entry's digest {}",
                        chain(),
                        entry.prev,
                        hex_lower(&head.1)
                    )));
                }
                *head = (entry.seq, digest);
            }
        }
        self.frontier.append(digest);
        self.check_prefixes()?;
        Ok(digest)
    }

    /// [`LedgerVerifier::push`] for an entry with its stored digest.
    pub fn push_digested(&mut self, entry: &DigestedEntry) -> Result<Hash, Error> {
        self.push(entry.index, &entry.entry, Some(&entry.digest))
    }

    /// Number of entries verified so far.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Number of distinct cases seen so far.
    pub fn cases(&self) -> u64 {
        self.cases
    }

    /// The Merkle root of the entries verified so far.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The frontier of the tree of the entries verified so far.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    fn check_prefixes(&mut self) -> Result<(), Error> {
        let size = self.frontier.size();
        while let Some((cp, label)) = self.prefixes.get(self.next_prefix) {
            if cp.size != size {
                break;
            }
            let root = if size == 0 { empty_root() } else { self.frontier.root() };
            if root != cp.root {
                return Err(Error::BadProof(format!(
                    "the ledger does not extend the {label} (size {}, root {}): the root of its first {} entries is {}; history was rewritten",
                    cp.size,
                    std_encode(cp.root),
                    cp.size,
                    std_encode(root)
                )));
            }
            self.next_prefix += 1;
        }
        Ok(())
    }

    /// Ends verification against a checkpoint already verified (e.g. by
    /// [`verify_checkpoint`]): its size must be the number of entries and its root their
    /// root; every expected prefix must have been reached and must share its origin.
    pub fn finish(self, checkpoint: &Checkpoint) -> Result<BundleReport, Error> {
        let size = self.frontier.size();
        if let Some((cp, label)) = self.prefixes.get(self.next_prefix) {
            return Err(Error::BadProof(format!(
                "the ledger has {size} entries but the {label} covers {}: the ledger was truncated",
                cp.size
            )));
        }
        if let Some((cp, label)) = self.prefixes.iter().find(|(cp, _)| cp.origin != checkpoint.origin) {
            return Err(Error::BadProof(format!("the {label} is of log {:?}, not {:?}", cp.origin, checkpoint.origin)));
        }
        if checkpoint.size != size {
            return Err(Error::BadProof(format!(
                "the checkpoint covers {} entries but the ledger has {size}",
                checkpoint.size
            )));
        }
        let root = self.frontier.root();
        if root != checkpoint.root {
            return Err(Error::BadProof(format!(
                "the Merkle root of the {size} entries is {}, the checkpoint says {}",
                std_encode(root),
                std_encode(checkpoint.root)
            )));
        }
        Ok(BundleReport { entries: size, cases: self.cases, checkpoint: checkpoint.clone() })
    }

    /// [`LedgerVerifier::finish`] with a signed checkpoint note verified by `key`.
    pub fn finish_note(self, checkpoint_note: &str, key: &NoteVerifier) -> Result<BundleReport, Error> {
        let cp = verify_checkpoint(checkpoint_note, key)?;
        self.finish(&cp)
    }
}

/// One case's entries with inclusion proofs against one checkpoint (see the module docs
/// for the format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Always [`EVIDENCE_FORMAT`].
    pub format: String,
    /// The case id.
    pub case: String,
    /// The signed checkpoint note the proofs refer to.
    pub checkpoint: String,
    /// The ledger's note verifier key; informational, not trusted by verification.
    pub key: String,
    /// The case's entries in order, each with its inclusion proof.
    pub entries: Vec<EvidenceEntry>,
}

/// An entry of [`Evidence`]: the entry, its digest and its inclusion proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StrictEvidenceEntry")]
pub struct EvidenceEntry {
    /// The entry as hashed, with its index and digest.
    #[serde(flatten)]
    pub entry: DigestedEntry,
    /// Inclusion proof of the digest at the entry's index: standard base64 hashes,
    /// leaf side first.
    pub inclusion: Vec<String>,
}

/// Wire form of [`EvidenceEntry`] refusing unknown members (see [`StrictEntry`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictEvidenceEntry {
    index: u64,
    case: Option<String>,
    seq: u64,
    prev: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    at: String,
    actor: String,
    data: serde_json::Value,
    digest: String,
    inclusion: Vec<String>,
}

impl From<StrictEvidenceEntry> for EvidenceEntry {
    fn from(e: StrictEvidenceEntry) -> EvidenceEntry {
        let StrictEvidenceEntry { index, case, seq, prev, kind, at, actor, data, digest, inclusion } = e;
        EvidenceEntry {
            entry: DigestedEntry { index, entry: Entry { case, seq, prev, kind, at, actor, data }, digest },
            inclusion,
        }
    }
}

impl EvidenceEntry {
    /// An evidence entry with its proof encoded.
    pub fn new(entry: DigestedEntry, proof: &[Hash]) -> EvidenceEntry {
        EvidenceEntry { entry, inclusion: encode_hashes(proof) }
    }
}

impl Evidence {
    /// Builds the evidence of `case` from its entries (in order) against the tree of
    /// `checkpoint` (its size and signed note), reading proofs from `nodes`.
    pub fn build(
        case: &str,
        checkpoint: &Checkpoint,
        checkpoint_note: String,
        key: String,
        entries: Vec<DigestedEntry>,
        nodes: &dyn NodeSource,
    ) -> Result<Evidence, Error> {
        let entries = entries
            .into_iter()
            .map(|e| {
                let proof = inclusion_proof(nodes, e.index, checkpoint.size)?;
                Ok(EvidenceEntry::new(e, &proof))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Evidence {
            format: EVIDENCE_FORMAT.to_owned(),
            case: case.to_owned(),
            checkpoint: checkpoint_note,
            key,
            entries,
        })
    }
}

/// Standard base64 of each hash.
pub fn encode_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(std_encode).collect()
}

/// Decodes standard base64 hashes of exactly 32 bytes.
///
/// ```
/// use agentsigna_verify::evidence::{decode_hashes, encode_hashes};
/// assert_eq!(decode_hashes(&encode_hashes(&[[3; 32]])).unwrap(), vec![[3; 32]]);
/// assert!(decode_hashes(&["AAAA".to_owned()]).is_err());
/// ```
pub fn decode_hashes(texts: &[String]) -> Result<Vec<Hash>, Error> {
    texts
        .iter()
        .map(|t| {
            std_decode(t)
                .and_then(|raw| Hash::try_from(raw).ok())
                .ok_or_else(|| Error::Malformed(format!("{t:?} is not a base64 32-byte hash")))
        })
        .collect()
}

/// Verifies case evidence against the trusted key; returns the checkpoint it is proven
/// against.
///
/// Errors: [`Error::Malformed`] for a wrong `format`, no entries or an undecodable proof,
/// [`Error::BadNote`] when the checkpoint does not verify, [`Error::BadEntry`] for the
/// first entry whose digest, case, seq or prev is wrong, [`Error::BadProof`] for the first
/// inclusion proof that does not verify.
pub fn verify_evidence(ev: &Evidence, key: &NoteVerifier) -> Result<Checkpoint, Error> {
    check_format("evidence", &ev.format, EVIDENCE_FORMAT)?;
    let cp = verify_checkpoint(&ev.checkpoint, key)?;
    if ev.entries.is_empty() {
        return Err(Error::Malformed(format!("evidence of case {:?} holds no entries", ev.case)));
    }
    let mut prev: Option<(u64, Hash)> = None;
    for (seq, item) in (0u64..).zip(&ev.entries) {
        let entry = &item.entry.entry;
        let index = item.entry.index;
        let bad = |reason: String| Error::BadEntry { index, reason };
        let digest = entry.digest().map_err(|e| bad(e.to_string()))?;
        let digest_hex = hex_lower(&digest);
        if item.entry.digest != digest_hex {
            return Err(bad(format!("digest mismatch: stored {}, recomputed {digest_hex}", item.entry.digest)));
        }
        if entry.case.as_deref() != Some(ev.case.as_str()) {
            return Err(bad(format!("entry of case {:?} in the evidence of case {:?}", entry.case, ev.case)));
        }
        if entry.seq != seq {
            return Err(bad(format!("case {}: expected seq {seq}, found {}", ev.case, entry.seq)));
        }
        match prev {
            None if entry.prev.is_some() => {
                return Err(bad(format!("case {}: seq 0 must have no prev, found {:?}", ev.case, entry.prev)));
            }
            Some((prev_index, prev_digest)) => {
                if index <= prev_index {
                    return Err(bad(format!("case {}: index {index} does not follow index {prev_index}", ev.case)));
                }
                let expected = hex_lower(&prev_digest);
                if entry.prev.as_deref() != Some(expected.as_str()) {
                    return Err(bad(format!(
                        "case {}: prev {:?} does not match the previous entry's digest {expected}",
                        ev.case, entry.prev
                    )));
                }
            }
            None => {}
        }
        let proof = decode_hashes(&item.inclusion)?;
        verify_inclusion(index, cp.size, &digest, &proof, &cp.root).map_err(|e| {
            let reason = match e {
                Error::BadProof(r) => r,
                other => other.to_string(),
            };
            Error::BadProof(format!("entry {index} (case {}, seq {seq}): {reason}", ev.case))
        })?;
        prev = Some((index, digest));
    }
    Ok(cp)
}

/// Refuses a document whose `format` is not `expected`; another version of the same format
/// gets a plain "unsupported format version" error.
fn check_format(what: &str, format: &str, expected: &str) -> Result<(), Error> {
    if format == expected {
        return Ok(());
    }
    let family = expected.split('/').next().unwrap_or(expected);
    match format.strip_prefix(family).and_then(|rest| rest.strip_prefix('/')) {
        Some(version) => Err(Error::Malformed(format!(
            "unsupported format version {version} of {family} (this verifier reads {expected}); \
             re-export the {what} with a current agentsigna"
        ))),
        None => Err(Error::Malformed(format!("{what} format {format:?}, expected {expected:?}"))),
    }
}

/// Whether `text` is the lowercase hex of `digest`, without allocating.
fn hex_equals(text: &str, digest: &Hash) -> bool {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let t = text.as_bytes();
    t.len() == 64
        && digest
            .iter()
            .enumerate()
            .all(|(i, b)| t[2 * i] == HEX[usize::from(b >> 4)] && t[2 * i + 1] == HEX[usize::from(b & 15)])
}

/// [`Entry::digest`], faster: the canonical JSON is written directly into `scratch`
/// (reused between calls) instead of through an intermediate `serde_json::Value` and
/// per-object buffers. The bytes are those of [`Entry::canonical_json`]; any input off
/// the fast path (floating-point numbers, keys that are not printable ASCII without `"`
/// and `\`) is handed to [`Entry::digest`] itself, which hashes or refuses it.
///
/// ```
/// use agentsigna_verify::evidence::digest_entry;
/// use agentsigna_verify::ledger::Entry;
/// let e = Entry {
///     case: None, seq: 0, prev: None, kind: "policy.activated".into(),
///     at: "2026-01-01T00:00:00.000Z".into(), actor: "admin".into(),
///     data: serde_json::json!({"b": [1, -2, "x\n"], "a": {"z": null, "y": true}}),
/// };
/// let mut scratch = Vec::new();
/// assert_eq!(digest_entry(&e, &mut scratch).unwrap(), e.digest().unwrap());
/// ```
pub fn digest_entry(entry: &Entry, scratch: &mut Vec<u8>) -> Result<Hash, Error> {
    scratch.clear();
    crate::ledger::write_canonical_entry(entry, scratch)?;
    Ok(digest_canonical(scratch))
}
