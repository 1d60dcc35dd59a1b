//! Golden vectors of the ledger formats (v2) in `testdata/ledger/`: a small deterministic
//! ledger (fixed key, fixed entries). Regenerate with `UPDATE_GOLDEN=1 cargo test -p
//! agentsigna-verify --test evidence_golden`; otherwise the committed files must match
//! byte for byte (bundle and evidence JSON: value for value) and verify on their own.
//! `testdata/ledger/v1/` keeps the last v1 bundle and evidence (never regenerated): they
//! must be refused as an unsupported format version.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod evidence_common;

use std::path::PathBuf;

use agentsigna_verify::evidence::{
    parse_digested_entry, verify_bundle, verify_evidence, Bundle, Evidence, LedgerVerifier,
};
use agentsigna_verify::note::{read_saved_checkpoint, sign_checkpoint, verify_checkpoint, NoteVerifier};
use evidence_common::*;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/ledger")
}

/// The golden files, as (name, content).
fn generate() -> Vec<(&'static str, String)> {
    let l = Ledger::standard(usize::MAX);
    let s = signer();
    // JCS lines: deterministic whatever serde_json features the workspace enables.
    let entries: String =
        l.entries.iter().map(|e| serde_json::to_string(&serde_json::to_value(e).unwrap()).unwrap() + "\n").collect();
    let checkpoint = sign_checkpoint(&l.checkpoint(), &s).unwrap();
    let saved = sign_checkpoint(&Ledger::standard(10).checkpoint(), &s).unwrap();
    let bundle = serde_json::to_string_pretty(&l.bundle(&s)).unwrap() + "\n";
    let evidence = serde_json::to_string_pretty(&l.evidence("c-0001", &s)).unwrap() + "\n";
    vec![
        ("key.txt", s.verifier_key() + "\n"),
        ("entries.jsonl", entries),
        ("checkpoint.txt", checkpoint),
        ("checkpoint-10.txt", saved),
        ("bundle.json", bundle),
        ("evidence-c-0001.json", evidence),
    ]
}

#[test]
fn golden_files_match() {
    let files = generate();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        for (name, content) in &files {
            std::fs::write(dir().join(name), content).unwrap();
        }
        println!("golden files written to {}", dir().display());
        return;
    }
    for (name, content) in &files {
        let path = dir().join(name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create)", path.display()));
        if name.ends_with(".json") || name.ends_with(".jsonl") {
            // Compared as JSON values: member order depends on serde_json's
            // `preserve_order`, which other crates of the workspace may switch on.
            let parse = |t: &str| -> Vec<serde_json::Value> {
                t.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
            };
            let (a, b) = if name.ends_with(".jsonl") {
                (parse(&committed), parse(content))
            } else {
                (vec![serde_json::from_str(&committed).unwrap()], vec![serde_json::from_str(content).unwrap()])
            };
            assert_eq!(a, b, "{name} differs from the generated one");
        } else {
            assert_eq!(&committed, content, "{name} differs from the generated one");
        }
    }
}

fn read(name: &str) -> String {
    let path = dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn committed_files_verify_on_their_own() {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        // `golden_files_match` is rewriting them concurrently; run again without it.
        return;
    }
    let (key, entries, checkpoint, saved, bundle, evidence) = (
        read("key.txt"),
        read("entries.jsonl"),
        read("checkpoint.txt"),
        read("checkpoint-10.txt"),
        read("bundle.json"),
        read("evidence-c-0001.json"),
    );
    let key = NoteVerifier::parse(&key).unwrap();
    assert_eq!(key.name(), ORIGIN);
    let saved = read_saved_checkpoint(&saved, &key).unwrap();
    assert_eq!(saved.size, 10);

    let mut v = LedgerVerifier::new();
    v.expect_prefix(&saved, "saved checkpoint").unwrap();
    for line in entries.lines() {
        v.push_digested(&parse_digested_entry(line).unwrap()).unwrap();
    }
    let cp = verify_checkpoint(&checkpoint, &key).unwrap();
    let report = v.finish(&cp).unwrap();
    assert_eq!((report.entries, report.cases), (17, 3));

    let bundle: Bundle = serde_json::from_str(&bundle).unwrap();
    assert_eq!(verify_bundle(&bundle, &key, Some(&saved)).unwrap().checkpoint, cp);
    let evidence: Evidence = serde_json::from_str(&evidence).unwrap();
    assert_eq!(verify_evidence(&evidence, &key).unwrap(), cp);
}

/// The v1 golden files (`testdata/ledger/v1/`, kept as they were committed before the v2
/// format): `index` was hashed then, so every stored digest differs from a v2 recomputation
/// and a verifier would otherwise report a confusing digest mismatch. It must say plainly
/// that the version is not supported.
#[test]
fn v1_documents_are_refused_as_unsupported_versions() {
    let key = NoteVerifier::parse(&read("key.txt")).unwrap();
    let v1 = |name: &str| read(&format!("v1/{name}"));

    let bundle: Bundle = serde_json::from_str(&v1("bundle.json")).unwrap();
    assert_eq!(bundle.format, "agentsigna-ledger-bundle/v1");
    // A genuine document otherwise: its checkpoint verifies with the ledger key.
    verify_checkpoint(&bundle.checkpoint, &key).unwrap();
    let stale = bundle.entries.iter().filter(|e| e.entry.digest_hex().unwrap() != e.digest).count();
    assert_eq!(stale, bundle.entries.len(), "v1 digests covered `index`");
    let err = verify_bundle(&bundle, &key, None).unwrap_err();
    assert!(matches!(err, agentsigna_verify::Error::Malformed(_)), "{err:?}");
    assert!(err.to_string().contains("unsupported format version"), "{err}");
    // Even relabelled as v2, those entries do not verify.
    let relabelled = Bundle { format: agentsigna_verify::evidence::BUNDLE_FORMAT.into(), ..bundle };
    assert!(verify_bundle(&relabelled, &key, None).is_err());

    let evidence: Evidence = serde_json::from_str(&v1("evidence-c-0001.json")).unwrap();
    assert_eq!(evidence.format, "agentsigna-case-evidence/v1");
    verify_checkpoint(&evidence.checkpoint, &key).unwrap();
    let err = verify_evidence(&evidence, &key).unwrap_err();
    assert!(matches!(err, agentsigna_verify::Error::Malformed(_)), "{err:?}");
    assert!(err.to_string().contains("unsupported format version"), "{err}");
    let relabelled = Evidence { format: agentsigna_verify::evidence::EVIDENCE_FORMAT.into(), ..evidence };
    assert!(verify_evidence(&relabelled, &key).is_err());
}
