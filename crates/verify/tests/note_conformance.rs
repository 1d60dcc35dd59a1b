//! C2SP signed-note conformance with Go's `golang.org/x/mod/sumdb/note` example, read in
//! place from `<workspace>/../shared/vectors/signed-note.json` (required under CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod shared_vectors;

use agentsigna_verify::note::{open, NoteSigner, NoteVerifier};
use agentsigna_verify::Error;
use serde_json::Value;

fn load() -> Option<Value> {
    let path = shared_vectors::path("signed-note.json")?;
    Some(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

#[test]
fn keys_and_exact_signed_bytes() {
    let Some(v) = load() else { return };
    let signer = NoteSigner::from_signer_key(s(&v["signer_key"])).unwrap();
    assert_eq!(signer.signer_key(), s(&v["signer_key"]));
    assert_eq!(signer.verifier_key(), s(&v["verifier_key"]));
    let verifier = NoteVerifier::parse(s(&v["verifier_key"])).unwrap();
    assert_eq!(verifier.name(), signer.name());
    assert_eq!(verifier.key_id(), signer.key_id());
    assert_eq!(format!("{:08x}", verifier.key_id()), "c74f20a3");
    assert_eq!(verifier.to_key_string(), s(&v["verifier_key"]));
    // Ed25519 is deterministic: byte-identical output to Go's note.Sign.
    assert_eq!(signer.sign(s(&v["text"])).unwrap(), s(&v["signed_note"]));
    let opened = open(s(&v["signed_note"]), &[verifier]).unwrap();
    assert_eq!(opened.text, s(&v["text"]));
    assert_eq!(opened.verified_by, vec!["PeterNeumann".to_owned()]);
    assert_eq!(opened.unverified, 0);
    NoteVerifier::parse(s(&v["second_verifier_key"])).unwrap();
}

#[test]
fn verification_cases() {
    let Some(v) = load() else { return };
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for c in cases {
        let want = s(&c["want"]);
        let verifiers: Vec<NoteVerifier> =
            c["verifier_keys"].as_array().unwrap().iter().map(|k| NoteVerifier::parse(s(k)).unwrap()).collect();
        let result = open(s(&c["note"]), &verifiers);
        match want {
            "verified by PeterNeumann" => {
                let n = result.unwrap();
                assert_eq!((n.verified_by, n.unverified), (vec!["PeterNeumann".to_owned()], 0));
            }
            "verified by PeterNeumann; EnochRoot signature ignored as unknown" => {
                let n = result.unwrap();
                assert_eq!((n.verified_by, n.unverified), (vec!["PeterNeumann".to_owned()], 1));
            }
            "verified by both" => {
                let n = result.unwrap();
                assert_eq!(n.verified_by, vec!["PeterNeumann".to_owned(), "EnochRoot".to_owned()]);
                assert_eq!(n.unverified, 0);
            }
            w if w.starts_with("error:") => {
                let err = result.unwrap_err();
                assert!(matches!(err, Error::BadNote(_)), "{want}: {err:?}");
                if w.contains("bad signature") {
                    assert!(err.to_string().contains("invalid signature"), "{err}");
                } else {
                    assert!(err.to_string().contains("no signature by a known key"), "{err}");
                }
            }
            other => panic!("unknown expectation {other:?}"),
        }
    }
}
