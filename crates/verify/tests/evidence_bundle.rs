//! Ledger bundles: a valid bundle verifies, every kind of tampering is caught.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod evidence_common;

use agentsigna_verify::evidence::{verify_bundle, Bundle, LedgerVerifier, BUNDLE_FORMAT};
use agentsigna_verify::merkle::empty_root;
use agentsigna_verify::note::{sign_checkpoint, Checkpoint};
use agentsigna_verify::Error;
use evidence_common::*;
use serde_json::json;

fn bad_entry_at(r: Result<impl std::fmt::Debug, Error>, expected: u64) {
    match r {
        Err(Error::BadEntry { index, reason }) => assert_eq!(index, expected, "{reason}"),
        other => panic!("expected bad entry at {expected}, got {other:?}"),
    }
}

fn bad_proof(r: Result<impl std::fmt::Debug, Error>, needle: &str) -> String {
    match r {
        Err(Error::BadProof(reason)) => {
            assert!(reason.contains(needle), "{reason:?} does not mention {needle:?}");
            reason
        }
        other => panic!("expected bad proof ({needle}), got {other:?}"),
    }
}

#[test]
fn valid_bundle_verifies() {
    let l = Ledger::standard(usize::MAX);
    let key = signer().verifier();
    let report = verify_bundle(&l.bundle(&signer()), &key, None).unwrap();
    assert_eq!(report.entries, 17);
    assert_eq!(report.cases, 3);
    assert_eq!(report.checkpoint, l.checkpoint());
    // Every earlier tree is a valid saved checkpoint, and so is the current one.
    for n in 0..=17 {
        let saved = Ledger::standard(n).checkpoint();
        verify_bundle(&l.bundle(&signer()), &key, Some(&saved)).unwrap();
    }
}

#[test]
fn empty_ledger_bundle() {
    let l = Ledger::default();
    let report = verify_bundle(&l.bundle(&signer()), &signer().verifier(), None).unwrap();
    assert_eq!((report.entries, report.cases, report.checkpoint.root), (0, 0, empty_root()));
}

#[test]
fn json_round_trip_and_strict_fields() {
    let b = Ledger::standard(6).bundle(&signer());
    let text = serde_json::to_string_pretty(&b).unwrap();
    let back: Bundle = serde_json::from_str(&text).unwrap();
    assert_eq!(back, b);
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["format"], BUNDLE_FORMAT);
    assert_eq!(v["entries"][3]["type"], "request.submitted");
    assert!(v["entries"][3]["digest"].is_string());
    v["entries"][0]["extra"] = json!(1);
    assert!(serde_json::from_value::<Bundle>(v.clone()).is_err());
    v["entries"][0].as_object_mut().unwrap().remove("extra");
    v["extra"] = json!(1);
    assert!(serde_json::from_value::<Bundle>(v).is_err());
}

#[test]
fn edited_payload() {
    let l = Ledger::standard(usize::MAX);
    let key = signer().verifier();
    let mut b = l.bundle(&signer());
    b.entries[5].entry.data["params"]["amount"] = json!("4990.00");
    bad_entry_at(verify_bundle(&b, &key, None), 5);
    // Digest recomputed too: the next entry of the case no longer chains to it.
    redigest(&mut b.entries[5]);
    bad_entry_at(verify_bundle(&b, &key, None), 7);
    // Last entry of its case, digest recomputed: only the Merkle root shows it.
    let mut b = l.bundle(&signer());
    b.entries[16].entry.data["verdict"] = json!("allow");
    redigest(&mut b.entries[16]);
    bad_proof(verify_bundle(&b, &key, None), "Merkle root");
    // Stored digest edited alone.
    let mut b = l.bundle(&signer());
    b.entries[2].digest = "00".repeat(32);
    bad_entry_at(verify_bundle(&b, &key, None), 2);
    // Other fields: actor, time, type.
    for edit in 0..3 {
        let mut b = l.bundle(&signer());
        let e = &mut b.entries[8].entry;
        match edit {
            0 => e.actor = "approver:mallory".into(),
            1 => e.at = "2026-03-01T09:00:09.000Z".into(),
            _ => e.kind = "review.expired".into(),
        }
        bad_entry_at(verify_bundle(&b, &key, None), 8);
    }
}

#[test]
fn deleted_entry() {
    let l = Ledger::standard(usize::MAX);
    let key = signer().verifier();
    for i in [0usize, 6, 16] {
        let mut b = l.bundle(&signer());
        b.entries.remove(i);
        let r = verify_bundle(&b, &key, None);
        if i == 16 {
            bad_proof(r, "checkpoint covers 17 entries");
        } else {
            bad_entry_at(r, i as u64);
        }
    }
}

#[test]
fn inserted_forged_entry() {
    let l = Ledger::standard(usize::MAX);
    let key = signer().verifier();
    // A copy of entry 4 pretending to be entry 5 (its digest is unchanged: `index` is not
    // hashed): seq 1 of c-0001 a second time breaks the chain.
    let mut b = l.bundle(&signer());
    let mut forged = b.entries[4].clone();
    forged.index = 5;
    b.entries.insert(5, forged);
    bad_entry_at(verify_bundle(&b, &key, None), 5);
    // The same, renumbering every later entry (only `index` changes, so no digest does).
    let mut b = l.bundle(&signer());
    let forged = b.entries[4].clone();
    b.entries.insert(5, forged);
    for (i, e) in b.entries.iter_mut().enumerate() {
        e.index = i as u64;
    }
    bad_entry_at(verify_bundle(&b, &key, None), 5);
    // A well-formed new case entry inserted and everything after renumbered and
    // rechained (no key needed for that): the signed root catches it.
    let mut entries = l.entries.clone();
    let mut extra = entries[12].clone();
    extra.entry.case = Some("c-9999".into());
    entries.insert(10, extra);
    let forged = Ledger::rechain(&entries);
    let mut b = forged.bundle(&signer());
    b.checkpoint = l.bundle(&signer()).checkpoint;
    bad_proof(verify_bundle(&b, &key, None), "checkpoint covers 17 entries but the ledger has 18");
    // Appended at the end with the old checkpoint.
    let mut b = l.bundle(&signer());
    b.entries.push(forged.entries[17].clone());
    bad_entry_at(verify_bundle(&b, &key, None), 17);
}

#[test]
fn reordered_entries() {
    let l = Ledger::standard(usize::MAX);
    let key = signer().verifier();
    let mut b = l.bundle(&signer());
    b.entries.swap(4, 6);
    bad_entry_at(verify_bundle(&b, &key, None), 4);
    // Swapped and renumbered (indexes fixed; `index` is not hashed, so the stored digests
    // still match): two entries of one case, so its chain breaks.
    let mut b = l.bundle(&signer());
    b.entries.swap(4, 6);
    b.entries[4].index = 4;
    b.entries[6].index = 6;
    bad_entry_at(verify_bundle(&b, &key, None), 4);
    // Two entries of different cases swapped and renumbered: every digest and every chain
    // still holds, only the order committed to by the signed root is wrong.
    let mut b = l.bundle(&signer());
    b.entries.swap(12, 13);
    b.entries[12].index = 12;
    b.entries[13].index = 13;
    assert_ne!(b.entries[12].entry.case, b.entries[13].entry.case);
    bad_proof(verify_bundle(&b, &key, None), "Merkle root");
    // Two entries of different cases swapped and fully rechained: the root catches it.
    let mut entries = l.entries.clone();
    entries.swap(13, 12);
    let forged = Ledger::rechain(&entries);
    let mut b = forged.bundle(&signer());
    b.checkpoint = l.bundle(&signer()).checkpoint;
    bad_proof(verify_bundle(&b, &key, None), "Merkle root");
}

#[test]
fn truncated_tail() {
    let l = Ledger::standard(usize::MAX);
    let key = signer().verifier();
    let saved = l.checkpoint();
    // Tail dropped, old checkpoint kept.
    let mut b = l.bundle(&signer());
    b.entries.truncate(12);
    bad_proof(verify_bundle(&b, &key, None), "checkpoint covers 17 entries but the ledger has 12");
    // Tail dropped and the checkpoint re-signed with the real key: only a saved checkpoint
    // catches it.
    let shorter = Ledger::standard(12);
    let b = shorter.bundle(&signer());
    verify_bundle(&b, &key, None).unwrap();
    let reason = bad_proof(verify_bundle(&b, &key, Some(&saved)), "saved checkpoint");
    assert!(reason.contains("truncated"), "{reason}");
}

#[test]
fn dropped_case() {
    let l = Ledger::standard(usize::MAX);
    let key = signer().verifier();
    let without: Vec<_> = l.entries.iter().filter(|e| e.entry.case.as_deref() != Some("c-0001")).cloned().collect();
    // Simply removed: the first gap is at index 3.
    let mut b = l.bundle(&signer());
    b.entries = without.clone();
    bad_entry_at(verify_bundle(&b, &key, None), 3);
    // Removed, renumbered and rechained: the checkpoint catches it.
    let forged = Ledger::rechain(&without);
    let mut b = forged.bundle(&signer());
    b.checkpoint = l.bundle(&signer()).checkpoint;
    bad_proof(verify_bundle(&b, &key, None), "checkpoint covers 17 entries");
    // And re-signed: a checkpoint saved after the case began catches it.
    let b = forged.bundle(&signer());
    assert_eq!(verify_bundle(&b, &key, None).unwrap().cases, 2);
    let saved = Ledger::standard(5).checkpoint();
    bad_proof(verify_bundle(&b, &key, Some(&saved)), "saved checkpoint (size 5");
}

#[test]
fn rewritten_history_resigned() {
    let l = Ledger::standard(usize::MAX);
    let key = signer().verifier();
    let saved = Ledger::standard(10).checkpoint();
    // The amount of case c-0001 changed, the whole ledger rechained and re-signed with the
    // ledger key (a compromised server): consistent in itself, but not with the saved tree.
    let mut entries = l.entries.clone();
    entries[3].entry.data["params"]["amount"] = json!("12000.00");
    let forged = Ledger::rechain(&entries);
    let b = forged.bundle(&signer());
    verify_bundle(&b, &key, None).unwrap();
    let reason = bad_proof(verify_bundle(&b, &key, Some(&saved)), "saved checkpoint (size 10");
    assert!(reason.contains("rewritten"), "{reason}");
    // A change after the saved tree is not history rewriting: it is not caught by it.
    let mut entries = l.entries.clone();
    entries[16].entry.data["verdict"] = json!("allow");
    let b = Ledger::rechain(&entries).bundle(&signer());
    verify_bundle(&b, &key, Some(&saved)).unwrap();
}

#[test]
fn saved_checkpoint_of_another_log() {
    let l = Ledger::standard(usize::MAX);
    let mut saved = Ledger::standard(4).checkpoint();
    saved.origin = "agentsigna/other".into();
    bad_proof(verify_bundle(&l.bundle(&signer()), &signer().verifier(), Some(&saved)), "agentsigna/other");
}

#[test]
fn checkpoint_signature_and_format() {
    let l = Ledger::standard(usize::MAX);
    let key = signer().verifier();
    // Signed by another key under the same name, with that key named in the bundle.
    let b = l.bundle(&attacker());
    assert_eq!(b.key, attacker().verifier_key());
    assert!(matches!(verify_bundle(&b, &key, None), Err(Error::BadNote(_))));
    // Checkpoint text edited.
    let mut b = l.bundle(&signer());
    b.checkpoint = b.checkpoint.replacen("\n17\n", "\n16\n", 1);
    assert!(matches!(verify_bundle(&b, &key, None), Err(Error::BadNote(_))));
    // Wrong format: another document, or another version of the bundle format.
    let mut b = l.bundle(&signer());
    b.format = "agentsigna-case-evidence/v2".into();
    assert!(matches!(verify_bundle(&b, &key, None), Err(Error::Malformed(_))));
    for version in ["agentsigna-ledger-bundle/v1", "agentsigna-ledger-bundle/v3"] {
        b.format = version.into();
        let err = verify_bundle(&b, &key, None).unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err:?}");
        assert!(err.to_string().contains("unsupported format version"), "{err}");
    }
    // A checkpoint of another origin signed by a key of that name.
    let other = agentsigna_verify::note::NoteSigner::new(
        "agentsigna/other",
        ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]),
    )
    .unwrap();
    let cp = Checkpoint { origin: "agentsigna/other".into(), ..l.checkpoint() };
    let mut b = l.bundle(&signer());
    b.checkpoint = sign_checkpoint(&cp, &other).unwrap();
    assert!(matches!(verify_bundle(&b, &key, None), Err(Error::BadNote(_))));
}

#[test]
fn streaming_verifier() {
    let l = Ledger::standard(usize::MAX);
    let mut v = LedgerVerifier::new();
    v.expect_prefix(&Ledger::standard(0).checkpoint(), "empty tree").unwrap();
    v.expect_prefix(&Ledger::standard(9).checkpoint(), "witness A").unwrap();
    v.expect_prefix(&Ledger::standard(3).checkpoint(), "witness B").unwrap();
    for (i, e) in l.entries.iter().enumerate() {
        let d = v.push_digested(e).unwrap();
        assert_eq!(agentsigna_verify::ledger::hex_lower(&d), e.digest);
        assert_eq!(v.size(), i as u64 + 1);
        if i == 4 {
            // Too late for a tree already passed.
            assert!(v.expect_prefix(&Ledger::standard(2).checkpoint(), "late").is_err());
        }
    }
    assert_eq!(v.root(), l.checkpoint().root);
    assert_eq!(v.cases(), 3);
    let note = sign_checkpoint(&l.checkpoint(), &signer()).unwrap();
    let report = v.finish_note(&note, &signer().verifier()).unwrap();
    assert_eq!(report.entries, 17);

    // A wrong prefix root is reported as soon as the prefix is reached.
    let mut v = LedgerVerifier::new();
    let mut wrong = Ledger::standard(6).checkpoint();
    wrong.root[0] ^= 1;
    v.expect_prefix(&wrong, "witness C").unwrap();
    for e in &l.entries[..5] {
        v.push_digested(e).unwrap();
    }
    bad_proof(v.push_digested(&l.entries[5]), "witness C (size 6");
    // A wrong empty-tree prefix fails immediately.
    let mut v = LedgerVerifier::new();
    let mut empty = Ledger::standard(0).checkpoint();
    empty.root = [0; 32];
    bad_proof(v.expect_prefix(&empty, "empty"), "empty");
}
