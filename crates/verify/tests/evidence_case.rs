//! Case evidence: valid evidence verifies, tampering is caught.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod evidence_common;

use agentsigna_verify::evidence::{verify_evidence, Evidence, EVIDENCE_FORMAT};
use agentsigna_verify::Error;
use evidence_common::*;
use serde_json::json;

fn bad_entry_at(r: Result<impl std::fmt::Debug, Error>, expected: u64) {
    match r {
        Err(Error::BadEntry { index, reason }) => assert_eq!(index, expected, "{reason}"),
        other => panic!("expected bad entry at {expected}, got {other:?}"),
    }
}

fn bad_proof(r: Result<impl std::fmt::Debug, Error>) {
    assert!(matches!(r, Err(Error::BadProof(_))), "{r:?}");
}

#[test]
fn evidence_of_every_case_verifies_at_every_size() {
    let key = signer().verifier();
    for n in 1..=17 {
        let l = Ledger::standard(n);
        for case in ["c-0001", "c-0002", "c-0003"] {
            let ev = l.evidence(case, &signer());
            if ev.entries.is_empty() {
                assert!(matches!(verify_evidence(&ev, &key), Err(Error::Malformed(_))));
                continue;
            }
            let cp = verify_evidence(&ev, &key).unwrap_or_else(|e| panic!("{case} at {n}: {e}"));
            assert_eq!(cp, l.checkpoint());
        }
    }
}

#[test]
fn json_shape() {
    let ev = Ledger::standard(usize::MAX).evidence("c-0002", &signer());
    let v = serde_json::to_value(&ev).unwrap();
    assert_eq!(v["format"], EVIDENCE_FORMAT);
    assert_eq!(v["case"], "c-0002");
    let first = &v["entries"][0];
    assert_eq!(first["index"], 5);
    assert_eq!(first["seq"], 0);
    assert_eq!(first["type"], "request.submitted");
    assert_eq!(first["inclusion"].as_array().unwrap().len(), 5);
    assert_eq!(first["digest"].as_str().unwrap().len(), 64);
    let back: Evidence = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(back, ev);
    let mut extra = v.clone();
    extra["entries"][1]["note"] = json!("unhashed");
    assert!(serde_json::from_value::<Evidence>(extra).is_err());
    let mut extra = v;
    extra["witness"] = json!("x");
    assert!(serde_json::from_value::<Evidence>(extra).is_err());
}

#[test]
fn tampered_evidence() {
    let l = Ledger::standard(usize::MAX);
    let key = signer().verifier();
    let good = l.evidence("c-0001", &signer());
    let idx: Vec<u64> = good.entries.iter().map(|e| e.entry.index).collect();
    assert_eq!(idx, vec![3, 4, 6, 8, 10]);

    // Payload edited.
    let mut ev = good.clone();
    ev.entries[0].entry.entry.data["params"]["amount"] = json!("12.00");
    bad_entry_at(verify_evidence(&ev, &key), 3);
    // Payload edited and digest recomputed: its inclusion proof fails (checked before
    // the next entry's prev, which breaks too).
    redigest(&mut ev.entries[0].entry);
    bad_proof(verify_evidence(&ev, &key));
    // Last entry edited with digest recomputed: its inclusion proof fails.
    let mut ev = good.clone();
    ev.entries[4].entry.entry.data["verdict"] = json!("deny");
    redigest(&mut ev.entries[4].entry);
    bad_proof(verify_evidence(&ev, &key));
    // An entry deleted from the middle, or the first one.
    let mut ev = good.clone();
    ev.entries.remove(2);
    bad_entry_at(verify_evidence(&ev, &key), 8);
    let mut ev = good.clone();
    ev.entries.remove(0);
    bad_entry_at(verify_evidence(&ev, &key), 4);
    // Two entries swapped.
    let mut ev = good.clone();
    ev.entries.swap(1, 2);
    bad_entry_at(verify_evidence(&ev, &key), 6);
    // An entry of another case inserted.
    let mut ev = good.clone();
    let other = l.evidence("c-0002", &signer());
    ev.entries.insert(1, other.entries[0].clone());
    bad_entry_at(verify_evidence(&ev, &key), 5);
    // The case id changed on the evidence.
    let mut ev = good.clone();
    ev.case = "c-0002".into();
    bad_entry_at(verify_evidence(&ev, &key), 3);
    // Index moved (entry claims another position): `index` is not hashed, so the digest
    // still matches, but the inclusion proof fails.
    let mut ev = good.clone();
    ev.entries[4].entry.index = 11;
    assert_eq!(ev.entries[4].entry.digest, good.entries[4].entry.digest);
    bad_proof(verify_evidence(&ev, &key));
    // Moved before the previous entry of the case: refused as out of order.
    let mut ev = good.clone();
    ev.entries[2].entry.index = 4;
    bad_entry_at(verify_evidence(&ev, &key), 4);
    // Proof hashes tampered, dropped, or not 32 bytes.
    let mut ev = good.clone();
    ev.entries[2].inclusion[1] = agentsigna_verify::b64::std_encode([7u8; 32]);
    bad_proof(verify_evidence(&ev, &key));
    let mut ev = good.clone();
    ev.entries[2].inclusion.pop();
    bad_proof(verify_evidence(&ev, &key));
    let mut ev = good.clone();
    ev.entries[2].inclusion[0] = "AAAA".into();
    assert!(matches!(verify_evidence(&ev, &key), Err(Error::Malformed(_))));
    // Checkpoint by another key, or edited.
    let mut ev = good.clone();
    ev.checkpoint = l.evidence("c-0001", &attacker()).checkpoint;
    assert!(matches!(verify_evidence(&ev, &key), Err(Error::BadNote(_))));
    let mut ev = good.clone();
    ev.checkpoint = ev.checkpoint.replacen("\n17\n", "\n18\n", 1);
    assert!(matches!(verify_evidence(&ev, &key), Err(Error::BadNote(_))));
    // Proofs against an older checkpoint than the one given.
    let mut ev = good.clone();
    ev.checkpoint = Ledger::standard(11).evidence("c-0001", &signer()).checkpoint;
    bad_proof(verify_evidence(&ev, &key));
    // Wrong format: another document, or another version of the evidence format.
    let mut ev = good;
    ev.format = "agentsigna-ledger-bundle/v2".into();
    assert!(matches!(verify_evidence(&ev, &key), Err(Error::Malformed(_))));
    for version in ["agentsigna-case-evidence/v0", "agentsigna-case-evidence/v1"] {
        ev.format = version.into();
        let err = verify_evidence(&ev, &key).unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err:?}");
        assert!(err.to_string().contains("unsupported format version"), "{err}");
    }
}

#[test]
fn forged_case_with_attacker_key_is_refused() {
    // A whole forged ledger, consistent and signed, but by another key.
    let mut entries = Ledger::standard(usize::MAX).entries;
    entries[3].entry.data["params"]["payee"] = json!("Mallory Ltd");
    let forged = Ledger::rechain(&entries);
    let ev = forged.evidence("c-0001", &attacker());
    assert!(verify_evidence(&ev, &attacker().verifier()).is_ok());
    assert!(matches!(verify_evidence(&ev, &signer().verifier()), Err(Error::BadNote(_))));
}
