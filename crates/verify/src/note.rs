//! C2SP signed notes (`c2sp.org/signed-note`, Ed25519) and transparency log checkpoints
//! (`c2sp.org/tlog-checkpoint`), compatible with Go's `golang.org/x/mod/sumdb/note`.
//!
//! A signed note is a text ending in a newline, a blank line, and one or more signature
//! lines `— <key name> <base64(key id (4 bytes, big endian) ‖ Ed25519 signature)>`:
//!
//! ```text
//! agentsigna/example
//! 3
//! K3s1aBqX4cEhOJ4dmMAzN4e3eBN0jQm4tOUx4dDl6jE=
//!
//! — agentsigna/example AbCdEf…
//! ```
//!
//! Keys use Go's text forms: the verifier key `<name>+<key id, 8 hex>+<base64(0x01 ‖
//! public key)>` and the signer key `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ seed)>`,
//! where the key id is the first 4 bytes of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`.
//!
//! A checkpoint is a note whose text is the origin line, the tree size in decimal, the
//! base64 RFC 6962 root, and optional non-empty extension lines. AgentSigna signs its
//! checkpoints with a key named after the origin, and [`verify_checkpoint`] requires it.

use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::b64::{std_decode, std_encode};
use crate::merkle::Hash;
use crate::signer::Ed25519Signer;
use crate::Error;

/// The separator of signature lines: em dash U+2014 and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Signature type byte of Ed25519 keys (C2SP signed-note).
const ALG_ED25519: u8 = 0x01;
/// Go refuses notes with more signatures than this; so do we (the spec asks for ≥ 16).
const MAX_SIGNATURES: usize = 100;

/// Whether `name` may be a key name: non-empty, no `+`, no Unicode white space.
///
/// ```
/// use agentsigna_verify::note::is_valid_name;
/// assert!(is_valid_name("agentsigna/ledger"));
/// assert!(!is_valid_name("a+b") && !is_valid_name("a b") && !is_valid_name(""));
/// ```
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)[:4]` as a big-endian integer.
fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public.as_bytes());
    let sum = h.finalize();
    u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]])
}

fn malformed(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::Malformed(format!("{what}: {reason}"))
}

/// Parses `<8 hex>` of a key text.
fn parse_key_id(hex: &str) -> Option<u32> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// Decodes `base64(0x01 ‖ 32 bytes)`.
fn parse_key_bytes(b64: &str) -> Result<[u8; 32], String> {
    let raw = std_decode(b64).ok_or("key is not standard base64")?;
    match raw.split_first() {
        Some((&ALG_ED25519, key)) => key.try_into().map_err(|_| format!("Ed25519 key of {} bytes", key.len())),
        Some((alg, _)) => Err(format!("unsupported key algorithm {alg}")),
        None => Err("empty key".to_owned()),
    }
}

/// Checks a note text: non-empty, ends with a newline, no ASCII control character other
/// than newline (valid UTF-8 is guaranteed by `&str`).
fn check_text(text: &str) -> Result<(), String> {
    if !text.ends_with('\n') {
        return Err("text must end with a newline".to_owned());
    }
    if let Some(c) = text.chars().find(|&c| c < ' ' && c != '\n') {
        return Err(format!("text contains control character U+{:04X}", u32::from(c)));
    }
    Ok(())
}

/// A named Ed25519 note signing key.
///
/// ```
/// use agentsigna_verify::note::{NoteSigner, NoteVerifier, open};
/// let signer = NoteSigner::new("example.com/log", ed25519_dalek::SigningKey::from_bytes(&[7; 32])).unwrap();
/// let note = signer.sign("hello\n").unwrap();
/// let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
/// assert_eq!(open(&note, &[verifier]).unwrap().text, "hello\n");
/// ```
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: Arc<dyn Ed25519Signer>,
}

impl std::fmt::Debug for NoteSigner {
    // Never print the secret key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer named `name` (non-empty, no `+`, no white space).
    pub fn new(name: &str, key: SigningKey) -> Result<NoteSigner, Error> {
        NoteSigner::with_signer(name, Arc::new(key))
    }

    /// Like [`NoteSigner::new`], signing with `key`'s own implementation (see
    /// [`signer`](crate::signer)).
    pub fn with_signer(name: &str, key: Arc<dyn Ed25519Signer>) -> Result<NoteSigner, Error> {
        if !is_valid_name(name) {
            return Err(malformed("note key name", format!("{name:?} is empty or contains '+' or white space")));
        }
        Ok(NoteSigner { name: name.to_owned(), key_id: key_id(name, &key.signing_key().verifying_key()), key })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id: first 4 bytes (big endian) of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ pubkey)`.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.signing_key().verifying_key()
    }

    /// The verifier key text `<name>+<key id>+<base64(0x01 ‖ pubkey)>`.
    pub fn verifier_key(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.signing_key().verifying_key().as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, std_encode(raw))
    }

    /// The verifier for this signer.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), key_id: self.key_id, key: self.key.signing_key().verifying_key() }
    }

    /// The secret signer key text `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ seed)>`
    /// (Go's format). Keep it secret.
    pub fn signer_key(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(&self.key.signing_key().to_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.key_id, std_encode(raw))
    }

    /// Parses a signer key text; its key id must match the derived public key.
    ///
    /// ```
    /// use agentsigna_verify::note::NoteSigner;
    /// let s = NoteSigner::from_signer_key("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz").unwrap();
    /// assert_eq!(s.verifier_key(), "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
    /// ```
    pub fn from_signer_key(text: &str) -> Result<NoteSigner, Error> {
        const WHAT: &str = "note signer key";
        let text = text.trim_end_matches(['\n', '\r']);
        let mut parts = text.splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(hex), Some(b64)) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(WHAT, "expected PRIVATE+KEY+<name>+<key id>+<key>"));
        };
        let id = parse_key_id(hex).ok_or_else(|| malformed(WHAT, "key id is not 8 hex digits"))?;
        let seed = parse_key_bytes(b64).map_err(|e| malformed(WHAT, e))?;
        let signer = NoteSigner::new(name, SigningKey::from_bytes(&seed))?;
        if signer.key_id != id {
            return Err(malformed(WHAT, format!("key id {id:08x} does not match the key ({:08x})", signer.key_id)));
        }
        Ok(signer)
    }

    /// Signs a note text (non-empty, ending with a newline, no control characters other
    /// than newline): returns `text ‖ "\n" ‖ "— <name> <base64(key id ‖ signature)>\n"`.
    pub fn sign(&self, text: &str) -> Result<String, Error> {
        check_text(text).map_err(|e| malformed("note text", e))?;
        let sig = self.key.sign_message(text.as_bytes());
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        Ok(format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, std_encode(raw)))
    }
}

/// A named Ed25519 note verifier key.
///
/// ```
/// use agentsigna_verify::note::NoteVerifier;
/// let v = NoteVerifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap();
/// assert_eq!((v.name(), v.key_id()), ("PeterNeumann", 0xc74f20a3));
/// assert!(NoteVerifier::parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses a verifier key text `<name>+<key id>+<base64(0x01 ‖ pubkey)>` (surrounding
    /// white space, e.g. a trailing newline of a key file, is ignored).
    pub fn parse(vkey: &str) -> Result<NoteVerifier, Error> {
        const WHAT: &str = "note verifier key";
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed(WHAT, "expected <name>+<key id>+<key>"));
        };
        let id = parse_key_id(hex).ok_or_else(|| malformed(WHAT, "key id is not 8 hex digits"))?;
        let bytes = parse_key_bytes(b64).map_err(|e| malformed(WHAT, e))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| malformed(WHAT, "not an Ed25519 public key"))?;
        let verifier = NoteVerifier::from_key(name, key)?;
        if verifier.key_id != id {
            return Err(malformed(WHAT, format!("key id {id:08x} does not match the key ({:08x})", verifier.key_id)));
        }
        Ok(verifier)
    }

    /// A verifier named `name` for an Ed25519 public key.
    pub fn from_key(name: &str, key: VerifyingKey) -> Result<NoteVerifier, Error> {
        if !is_valid_name(name) {
            return Err(malformed("note key name", format!("{name:?} is empty or contains '+' or white space")));
        }
        Ok(NoteVerifier { name: name.to_owned(), key_id: key_id(name, &key), key })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The verifier key text, as parsed by [`NoteVerifier::parse`].
    pub fn to_key_string(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, std_encode(raw))
    }
}

/// A note whose signatures were checked by [`open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    /// The note text, including its final newline.
    pub text: String,
    /// Names of the known keys whose signatures verified, in note order.
    pub verified_by: Vec<String>,
    /// Number of (distinct) signatures by unknown keys, ignored.
    pub unverified: usize,
}

fn bad_note(reason: impl Into<String>) -> Error {
    Error::BadNote(reason.into())
}

/// Opens a signed note with Go's semantics: signatures by unknown keys (name and key id
/// not both matching a verifier) are ignored, a signature by a known key that fails is an
/// error, and at least one known key must have signed. Malformed notes are refused.
///
/// ```
/// use agentsigna_verify::note::{open, NoteSigner};
/// let a = NoteSigner::new("a", ed25519_dalek::SigningKey::from_bytes(&[1; 32])).unwrap();
/// let b = NoteSigner::new("b", ed25519_dalek::SigningKey::from_bytes(&[2; 32])).unwrap();
/// let note = a.sign("text\n").unwrap();
/// assert!(open(&note, &[a.verifier()]).is_ok());
/// assert!(open(&note, &[b.verifier()]).is_err());
/// ```
pub fn open(note: &str, verifiers: &[NoteVerifier]) -> Result<OpenedNote, Error> {
    if let Some(c) = note.chars().find(|&c| c < ' ' && c != '\n') {
        return Err(bad_note(format!("malformed note: control character U+{:04X}", u32::from(c))));
    }
    // The text ends at the last blank line; the signature block follows it.
    let split = note.rfind("\n\n").ok_or_else(|| bad_note("malformed note: no blank line before signatures"))?;
    let (text, sigs) = (&note[..=split], &note[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(bad_note("malformed note: signature block must end with a newline"));
    }
    let mut opened = OpenedNote { text: text.to_owned(), verified_by: Vec::new(), unverified: 0 };
    let mut seen_known: Vec<(&str, u32)> = Vec::new();
    let mut seen_unknown: Vec<&str> = Vec::new();
    for (n, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
        if n >= MAX_SIGNATURES {
            return Err(bad_note(format!("malformed note: more than {MAX_SIGNATURES} signatures")));
        }
        let body = line.strip_prefix(SIG_PREFIX).ok_or_else(|| {
            bad_note(format!("malformed note: signature line {line:?} does not start with an em dash"))
        })?;
        let (name, b64) = body.split_once(' ').unwrap_or((body, ""));
        let raw = std_decode(b64).unwrap_or_default();
        if !is_valid_name(name) || raw.len() < 5 {
            return Err(bad_note(format!("malformed note: bad signature line {line:?}")));
        }
        let id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let mut matching = verifiers.iter().filter(|v| v.name == name && v.key_id == id);
        let Some(verifier) = matching.next() else {
            if !seen_unknown.contains(&body) {
                seen_unknown.push(body);
                opened.unverified += 1;
            }
            continue;
        };
        if matching.any(|other| other.key != verifier.key) {
            return Err(bad_note(format!("ambiguous verifier keys for {name}+{id:08x}")));
        }
        // Repeated signatures by one key count once (Go ignores them).
        if seen_known.contains(&(name, id)) {
            continue;
        }
        seen_known.push((name, id));
        let sig = ed25519_dalek::Signature::from_slice(&raw[4..])
            .map_err(|_| bad_note(format!("invalid signature for key {name}+{id:08x}")))?;
        verifier
            .key
            .verify_strict(text.as_bytes(), &sig)
            .map_err(|_| bad_note(format!("invalid signature for key {name}+{id:08x}")))?;
        opened.verified_by.push(name.to_owned());
    }
    if opened.verified_by.is_empty() {
        let known: Vec<String> = verifiers.iter().map(|v| format!("{}+{:08x}", v.name, v.key_id)).collect();
        return Err(bad_note(format!("note has no signature by a known key ({})", known.join(", "))));
    }
    Ok(opened)
}

/// A transparency log checkpoint (C2SP `tlog-checkpoint`): the signed note text.
///
/// ```
/// use agentsigna_verify::note::Checkpoint;
/// let cp = Checkpoint { origin: "example.com/log".into(), size: 2, root: [0; 32], extensions: vec![] };
/// assert_eq!(cp.to_text(), "example.com/log\n2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n");
/// assert_eq!(Checkpoint::parse(&cp.to_text()).unwrap(), cp);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log identity (and the name of its signing key).
    pub origin: String,
    /// Number of leaves of the tree.
    pub size: u64,
    /// RFC 6962 root of the tree.
    pub root: Hash,
    /// Optional extension lines (non-empty, without newline); AgentSigna writes none.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n` followed by each extension line.
    pub fn to_text(&self) -> String {
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, std_encode(self.root));
        for ext in &self.extensions {
            text.push_str(ext);
            text.push('\n');
        }
        text
    }

    /// Parses a checkpoint note text (without signatures), strictly: non-empty origin,
    /// decimal size without leading zeros, canonical base64 of exactly 32 bytes, non-empty
    /// extension lines, final newline.
    pub fn parse(text: &str) -> Result<Checkpoint, Error> {
        let fail = |reason: &str| bad_note(format!("malformed checkpoint: {reason}"));
        check_text(text).map_err(|e| fail(&e))?;
        let mut lines = text[..text.len() - 1].split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(fail("empty origin line"));
        }
        let size_text = lines.next().ok_or_else(|| fail("missing tree size line"))?;
        let canonical = !size_text.is_empty()
            && size_text.bytes().all(|b| b.is_ascii_digit())
            && (size_text == "0" || !size_text.starts_with('0'));
        let size =
            size_text.parse::<u64>().ok().filter(|_| canonical).ok_or_else(|| {
                fail(&format!("tree size {size_text:?} is not a decimal number without leading zeros"))
            })?;
        let root_text = lines.next().ok_or_else(|| fail("missing root hash line"))?;
        let root: Hash = std_decode(root_text)
            .and_then(|raw| raw.try_into().ok())
            .ok_or_else(|| fail(&format!("root hash {root_text:?} is not base64 of 32 bytes")))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(fail("empty extension line"));
        }
        Ok(Checkpoint { origin: origin.to_owned(), size, root, extensions })
    }
}

/// Signs a checkpoint; the signer's name must equal the origin (so that
/// [`verify_checkpoint`] accepts it).
///
/// ```
/// use agentsigna_verify::note::*;
/// let signer = NoteSigner::new("example.com/log", ed25519_dalek::SigningKey::from_bytes(&[7; 32])).unwrap();
/// let cp = Checkpoint { origin: "example.com/log".into(), size: 0, root: agentsigna_verify::merkle::empty_root(), extensions: vec![] };
/// let note = sign_checkpoint(&cp, &signer).unwrap();
/// assert_eq!(verify_checkpoint(&note, &signer.verifier()).unwrap(), cp);
/// ```
pub fn sign_checkpoint(cp: &Checkpoint, signer: &NoteSigner) -> Result<String, Error> {
    if cp.origin != signer.name() {
        return Err(Error::Malformed(format!(
            "checkpoint origin {:?} differs from the signing key name {:?}",
            cp.origin,
            signer.name()
        )));
    }
    let text = cp.to_text();
    // Refuse what cannot be parsed back (newlines in origin or extensions, empty lines).
    if Checkpoint::parse(&text).as_ref() != Ok(cp) {
        return Err(Error::Malformed("checkpoint origin or extension lines are not single non-empty lines".into()));
    }
    signer.sign(&text)
}

/// Opens a signed checkpoint with one trusted key and parses it; the origin must equal
/// the key name. Signatures by other keys (witnesses) are ignored.
pub fn verify_checkpoint(note: &str, verifier: &NoteVerifier) -> Result<Checkpoint, Error> {
    let opened = open(note, std::slice::from_ref(verifier))?;
    let cp = Checkpoint::parse(&opened.text)?;
    if cp.origin != verifier.name {
        return Err(bad_note(format!("checkpoint origin {:?} is not the key name {:?}", cp.origin, verifier.name)));
    }
    Ok(cp)
}

/// Reads a checkpoint saved earlier (by an auditor or a witness): either a signed note,
/// which must verify with `verifier`, or a bare checkpoint text (no signature block) that
/// the caller trusts because it kept it.
///
/// ```
/// use agentsigna_verify::note::*;
/// let signer = NoteSigner::new("o", ed25519_dalek::SigningKey::from_bytes(&[7; 32])).unwrap();
/// let cp = Checkpoint { origin: "o".into(), size: 1, root: [9; 32], extensions: vec![] };
/// let v = signer.verifier();
/// assert_eq!(read_saved_checkpoint(&cp.to_text(), &v).unwrap(), cp);
/// assert_eq!(read_saved_checkpoint(&sign_checkpoint(&cp, &signer).unwrap(), &v).unwrap(), cp);
/// ```
pub fn read_saved_checkpoint(text: &str, verifier: &NoteVerifier) -> Result<Checkpoint, Error> {
    if text.contains("\n\n") {
        verify_checkpoint(text, verifier)
    } else {
        Checkpoint::parse(text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::new(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    #[test]
    fn names() {
        for bad in ["", "a+b", "a b", "a\u{a0}b", "a\u{2003}b", "a\tb", "a\nb"] {
            assert!(!is_valid_name(bad), "{bad:?}");
            assert!(NoteSigner::new(bad, SigningKey::from_bytes(&[1; 32])).is_err());
        }
        assert!(is_valid_name("agentsigna/ab12—é"));
    }

    #[test]
    fn key_text_round_trip() {
        let s = signer("example.com/log", 3);
        let again = NoteSigner::from_signer_key(&s.signer_key()).unwrap();
        assert_eq!(again.verifier_key(), s.verifier_key());
        let v = NoteVerifier::parse(&s.verifier_key()).unwrap();
        assert_eq!(v, s.verifier());
        assert_eq!(v.to_key_string(), s.verifier_key());
        assert!(format!("{s:?}").contains("example.com/log"));
        assert!(!format!("{s:?}").contains(&std_encode([3u8; 32])));
    }

    #[test]
    fn checkpoint_parse_refuses() {
        let root = std_encode([1u8; 32]);
        for bad in [
            format!("o\n1\n{root}"),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n1\n{}\n", std_encode([1u8; 31])),
            format!("o\n1\n{root}\n\n"),
            format!("o\n1\n{root}\next\n\n"),
            "o\n1\n".to_owned(),
            format!("o\n18446744073709551616\n{root}\n"),
            format!("o\r\n1\n{root}\n"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        let cp = Checkpoint::parse(&format!("o\n0\n{root}\next a\next b\n")).unwrap();
        assert_eq!(cp.extensions, vec!["ext a", "ext b"]);
    }
}
