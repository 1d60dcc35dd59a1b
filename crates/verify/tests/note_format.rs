//! Signed notes and checkpoints: round trips, Go's opening rules, tampering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentsigna_verify::b64::{std_decode, std_encode};
use agentsigna_verify::merkle::{empty_root, leaf_hash};
use agentsigna_verify::note::*;
use agentsigna_verify::Error;
use ed25519_dalek::SigningKey;

fn signer(name: &str, seed: u8) -> NoteSigner {
    NoteSigner::new(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
}

fn is_bad_note<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::BadNote(_)))
}

#[test]
fn sign_format() {
    let s = signer("example.com/log", 1);
    let note = s.sign("a\n\nb\n").unwrap();
    let (text, sig) = note.split_at(5);
    assert_eq!(text, "a\n\nb\n");
    assert!(sig.starts_with("\n\u{2014} example.com/log "));
    assert!(sig.ends_with('\n'));
    let b64 = sig.trim_end().rsplit(' ').next().unwrap();
    let raw = std_decode(b64).unwrap();
    assert_eq!(raw.len(), 68);
    assert_eq!(u32::from_be_bytes(raw[..4].try_into().unwrap()), s.key_id());
    // Texts with blank lines open to the right text (split at the last blank line).
    assert_eq!(open(&note, &[s.verifier()]).unwrap().text, "a\n\nb\n");
}

#[test]
fn sign_refuses_bad_text() {
    let s = signer("n", 1);
    for bad in ["", "no newline", "tab\there\n", "cr\r\n", "nul\0\n"] {
        assert!(matches!(s.sign(bad), Err(Error::Malformed(_))), "{bad:?}");
    }
    assert!(s.sign("\n").is_ok());
}

#[test]
fn open_refuses_malformed_notes() {
    let s = signer("n", 1);
    let v = [s.verifier()];
    let good = s.sign("hello\n").unwrap();
    let sig_line = good.split('\n').nth(2).unwrap().to_owned();
    let sig_b64 = sig_line.rsplit(' ').next().unwrap().to_owned();
    let cases = [
        "hello\n".to_owned(),                         // no signature block
        format!("hello\n{sig_line}\n"),               // no blank line
        format!("hello\n\n{sig_line}"),               // no final newline
        format!("hello\n\n{sig_line}\n\n"),           // blank line after signatures
        format!("hello\n\n- n {sig_b64}\n"),          // hyphen instead of em dash
        format!("hello\n\n\u{2014} n  {sig_b64}\n"),  // two spaces
        format!("hello\n\n\u{2014} n+x {sig_b64}\n"), // '+' in name
        "hello\n\n\u{2014} n AAAAAA==\n".to_owned(),  // signature shorter than 5 bytes
        "hello\n\n\u{2014} n not-base64\n".to_owned(),
        format!("hel\tlo\n\n{sig_line}\n"), // control character
        format!("hello\r\n\n{sig_line}\n"),
        format!("hello\n\n{sig_line}\r\n"),
        "hello\n\n".to_owned(),
    ];
    for note in cases {
        assert!(is_bad_note(open(&note, &v)), "{note:?}");
    }
    assert!(open(&good, &v).is_ok());
}

#[test]
fn open_rules() {
    let a = signer("a", 1);
    let b = signer("b", 2);
    let note_a = a.sign("text\n").unwrap();
    let sig_b = b.sign("text\n").unwrap();
    let sig_b_line = sig_b.lines().last().unwrap();
    let both = format!("{note_a}{sig_b_line}\n");
    // Unknown signer ignored.
    let opened = open(&both, &[a.verifier()]).unwrap();
    assert_eq!((opened.verified_by.len(), opened.unverified), (1, 1));
    // Both known.
    let opened = open(&both, &[a.verifier(), b.verifier()]).unwrap();
    assert_eq!(opened.verified_by, vec!["a", "b"]);
    // Only unknown signatures.
    assert!(is_bad_note(open(&note_a, &[b.verifier()])));
    assert!(is_bad_note(open(&note_a, &[])));
    // Same name, different key: unknown, hence no known signature.
    let a2 = signer("a", 3);
    assert!(is_bad_note(open(&note_a, &[a2.verifier()])));
    // Repeated identical signature lines count once.
    let repeated = format!("{note_a}{}\n", note_a.lines().last().unwrap());
    let opened = open(&repeated, &[a.verifier()]).unwrap();
    assert_eq!(opened.verified_by, vec!["a"]);
    // A known key with a bad signature fails even when another known key verifies.
    let forged_b = format!("{note_a}\u{2014} b {}\n", forge_sig(&b, &sig_b));
    assert!(is_bad_note(open(&forged_b, &[a.verifier(), b.verifier()])));
    // Too many signatures.
    let mut many = note_a.clone();
    for i in 0..100 {
        let other = signer(&format!("w{i}"), 9);
        many.push_str(other.sign("text\n").unwrap().lines().last().unwrap());
        many.push('\n');
    }
    assert!(is_bad_note(open(&many, &[a.verifier()])));
}

/// The signature line of `sig_note` (by `s`) with one signature bit flipped.
fn forge_sig(s: &NoteSigner, sig_note: &str) -> String {
    let b64 = sig_note.trim_end().rsplit(' ').next().unwrap();
    let mut raw = std_decode(b64).unwrap();
    assert_eq!(u32::from_be_bytes(raw[..4].try_into().unwrap()), s.key_id());
    raw[10] ^= 0x40;
    std_encode(raw)
}

#[test]
fn tampered_text_or_signature_is_refused() {
    let s = signer("n", 1);
    let note = s.sign("size 10\n").unwrap();
    let v = [s.verifier()];
    let edited = note.replacen("10", "11", 1);
    assert!(is_bad_note(open(&edited, &v)));
    let flipped = format!("size 10\n\n\u{2014} n {}\n", forge_sig(&s, &note));
    assert!(is_bad_note(open(&flipped, &v)));
    // Adding a line to the text.
    let extended = note.replacen("size 10\n", "size 10\nmore\n", 1);
    assert!(is_bad_note(open(&extended, &v)));
}

#[test]
fn key_parsing_refuses() {
    let s = signer("n", 1);
    let vkey = s.verifier_key();
    let skey = s.signer_key();
    let bad_vkeys = [
        String::new(),
        "n".to_owned(),
        vkey.replacen("n+", "m+", 1),             // name changed: key id mismatch
        vkey.replacen('+', "+0", 1),              // 9 hex digits
        format!("{}AA", &vkey[..vkey.len() - 1]), // bad base64
        format!("n+{:08x}+{}", s.key_id(), std_encode([2u8; 33])), // wrong algorithm
        format!("n+{:08x}+{}", s.key_id(), std_encode([1u8; 32])), // short key
        format!("+{:08x}+AA==", s.key_id()),
    ];
    for k in bad_vkeys {
        assert!(matches!(NoteVerifier::parse(&k), Err(Error::Malformed(_))), "{k:?}");
    }
    assert!(NoteVerifier::parse(&format!("{vkey}\n")).is_ok());
    for k in [skey.replacen("PRIVATE", "PUBLIC", 1), skey.replacen("+n+", "+m+", 1), vkey.clone()] {
        assert!(matches!(NoteSigner::from_signer_key(&k), Err(Error::Malformed(_))), "{k:?}");
    }
}

#[test]
fn checkpoint_round_trip_and_origin_binding() {
    let s = signer("agentsigna/test", 5);
    let cp = Checkpoint {
        origin: "agentsigna/test".into(),
        size: 12345,
        root: leaf_hash(b"root"),
        extensions: vec!["ext line".into()],
    };
    let note = sign_checkpoint(&cp, &s).unwrap();
    assert!(note.starts_with("agentsigna/test\n12345\n"));
    assert_eq!(verify_checkpoint(&note, &s.verifier()).unwrap(), cp);
    // Origin must be the signer's name.
    let other = Checkpoint { origin: "other".into(), ..cp.clone() };
    assert!(matches!(sign_checkpoint(&other, &s), Err(Error::Malformed(_))));
    let o = signer("other", 5);
    let note_other = sign_checkpoint(&other, &o).unwrap();
    // A verifier named differently from the origin (same key bytes) refuses it.
    let renamed = NoteVerifier::from_key("agentsigna/test", *o.verifier().verifying_key()).unwrap();
    assert!(is_bad_note(verify_checkpoint(&note_other, &renamed)));
    // A note signed by the right key whose text is not a checkpoint.
    let junk = s.sign("agentsigna/test\nnot a number\nroot\n").unwrap();
    assert!(is_bad_note(verify_checkpoint(&junk, &s.verifier())));
    // A checkpoint whose origin differs from its (correctly named) signer.
    let mismatched = s.sign(&other.to_text()).unwrap();
    assert!(is_bad_note(verify_checkpoint(&mismatched, &s.verifier())));
    // Newlines smuggled into fields are refused when signing.
    let smuggled = Checkpoint { extensions: vec!["a\nb".into()], ..cp.clone() };
    assert!(sign_checkpoint(&smuggled, &s).is_err());
    let empty_ext = Checkpoint { extensions: vec![String::new()], ..cp.clone() };
    assert!(sign_checkpoint(&empty_ext, &s).is_err());
    // Witness cosignatures (unknown keys) are ignored.
    let w = signer("witness.example", 6);
    let cosigned = format!("{note}{}\n", w.sign(&cp.to_text()).unwrap().lines().last().unwrap());
    assert_eq!(verify_checkpoint(&cosigned, &s.verifier()).unwrap(), cp);
}

#[test]
fn empty_tree_checkpoint() {
    let s = signer("o", 5);
    let cp = Checkpoint { origin: "o".into(), size: 0, root: empty_root(), extensions: vec![] };
    let note = sign_checkpoint(&cp, &s).unwrap();
    assert_eq!(note.lines().nth(2).unwrap(), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    assert_eq!(verify_checkpoint(&note, &s.verifier()).unwrap(), cp);
    assert_eq!(read_saved_checkpoint(&note, &s.verifier()).unwrap(), cp);
    assert!(read_saved_checkpoint(&note.replacen("o\n0", "o\n1", 1), &s.verifier()).is_err());
}
