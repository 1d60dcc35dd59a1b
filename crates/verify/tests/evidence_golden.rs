//! Golden vectors of the ledger formats in `testdata/ledger/`: a small deterministic
//! ledger (fixed key, fixed entries). Regenerate with `UPDATE_GOLDEN=1 cargo test -p
//! agentsigna-verify --test evidence_golden`; otherwise the committed files must match
//! byte for byte (bundle and evidence JSON: value for value) and verify on their own.
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

fn read(name: &str) -> Option<String> {
    let path = dir().join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(_) if std::env::var_os("UPDATE_GOLDEN").is_some() => None,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

#[test]
fn committed_files_verify_on_their_own() {
    let (Some(key), Some(entries), Some(checkpoint), Some(saved), Some(bundle), Some(evidence)) = (
        read("key.txt"),
        read("entries.jsonl"),
        read("checkpoint.txt"),
        read("checkpoint-10.txt"),
        read("bundle.json"),
        read("evidence-c-0001.json"),
    ) else {
        return;
    };
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
