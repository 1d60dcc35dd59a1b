//! The canonical encoder used by `LedgerVerifier` against `Entry::digest`,
//! and `LedgerVerifier` against `ChainVerifier` on tampered ledgers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod evidence_common;

use agentsigna_verify::evidence::{digest_entry, LedgerVerifier};
use agentsigna_verify::ledger::{ChainVerifier, DigestedEntry, Entry};
use evidence_common::*;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,4}",
        Just("a".to_owned()),
        Just("a!".to_owned()),
        Just("a ".to_owned()),
        Just("a\"".to_owned()),
        Just("a\\".to_owned()),
        Just("a\u{1}".to_owned()),
        Just("é".to_owned()),
        "[ -~]{0,3}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,8}", "\\PC{0,6}", Just("\u{0}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}\"\\/\u{2028}".to_owned())]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop_oneof![Just(1.5f64), Just(-0.0), Just(1e300)].prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn entry() -> impl Strategy<Value = Entry> {
    (prop::option::of(text()), any::<u64>(), prop::option::of(text()), text(), text(), text(), value())
        .prop_map(|(case, seq, prev, kind, at, actor, data)| Entry { case, seq, prev, kind, at, actor, data })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn fast_digest_equals_entry_digest(e in entry()) {
        let mut scratch = Vec::new();
        let fast = digest_entry(&e, &mut scratch);
        let reference = e.digest();
        prop_assert_eq!(fast.is_ok(), reference.is_ok());
        if let (Ok(a), Ok(b)) = (fast, reference) {
            prop_assert_eq!(a, b);
        }
    }
}

#[test]
fn keys_sort_in_rfc8785_order_and_unsafe_integers_are_refused() {
    let mut e = Entry {
        case: None,
        seq: 0,
        prev: None,
        kind: "t".into(),
        at: "x".into(),
        actor: "y".into(),
        data: json!({"a": 1, "a!": 2, "a ": 3, "b": {"~": 1, "A": 2, "": 3}}),
    };
    let mut scratch = Vec::new();
    assert_eq!(digest_entry(&e, &mut scratch).unwrap(), e.digest().unwrap());
    // RFC 8785 §3.2.3: members sorted by the UTF-16 code units of their raw names.
    assert_eq!(
        String::from_utf8(scratch).unwrap(),
        r#"{"actor":"y","at":"x","case":null,"data":{"a":1,"a ":3,"a!":2,"b":{"":3,"A":2,"~":1}},"prev":null,"seq":0,"type":"t"}"#
    );
    e.data = json!({"big": u64::MAX});
    assert!(digest_entry(&e, &mut Vec::new()).is_err());
    e.data = json!({"neg": i64::MIN});
    assert!(e.digest().is_err());
}

/// Runs both verifiers over a ledger; both must agree on the outcome and bad index.
fn agree(entries: &[DigestedEntry]) -> Option<u64> {
    let mut chain = ChainVerifier::new(0);
    let mut streaming = LedgerVerifier::new();
    for e in entries {
        let a = chain.push(e.index, &e.entry, Some(&e.digest));
        let b = streaming.push_digested(e);
        assert_eq!(a.as_ref().err(), b.as_ref().err(), "at {}", e.index);
        if let Err(agentsigna_verify::Error::BadEntry { index, .. }) = b {
            return Some(index);
        }
        assert_eq!(a.unwrap(), b.unwrap());
    }
    None
}

#[test]
fn ledger_verifier_agrees_with_chain_verifier() {
    let l = Ledger::standard(usize::MAX);
    assert_eq!(agree(&l.entries), None);
    let n = l.entries.len();
    for i in 0..n {
        let mut edited = l.entries.clone();
        edited[i].entry.data["x"] = json!(1);
        assert_eq!(agree(&edited), Some(i as u64));
        redigest(&mut edited[i]);
        agree(&edited);
        let mut removed = l.entries.clone();
        removed.remove(i);
        agree(&removed);
        for j in i + 1..n {
            let mut swapped = l.entries.clone();
            swapped.swap(i, j);
            assert_eq!(agree(&swapped), Some(i as u64));
            // Swapped and renumbered: `index` is not hashed, so every digest still holds.
            // The chains catch it when both entries are in one chain; two neighbours of
            // different chains keep every chain's order, so only the Merkle root can.
            let mut renumbered = swapped;
            renumbered[i].index = i as u64;
            renumbered[j].index = j as u64;
            let found = agree(&renumbered);
            if l.entries[i].entry.case == l.entries[j].entry.case {
                assert_eq!(found, Some(i as u64), "{i} <-> {j}");
            } else if j == i + 1 {
                assert_eq!(found, None, "{i} <-> {j}");
            }
        }
        let mut bad_prev = l.entries.clone();
        bad_prev[i].entry.prev = Some("ab".repeat(32));
        redigest(&mut bad_prev[i]);
        assert_eq!(agree(&bad_prev), Some(i as u64));
        let mut bad_digest = l.entries.clone();
        bad_digest[i].digest = bad_digest[i].digest.to_uppercase();
        assert_eq!(agree(&bad_digest), Some(i as u64));
    }
}
