//! Shared by the evidence_* tests: a deterministic ledger and helpers to forge one.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashMap;

use agentsigna_verify::evidence::{Bundle, Evidence};
use agentsigna_verify::ledger::{hex_lower, DigestedEntry, Entry};
use agentsigna_verify::merkle::{root_from_leaves, Frontier, Hash, MemoryNodes};
use agentsigna_verify::note::{sign_checkpoint, Checkpoint, NoteSigner};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

/// The origin (and key name) of the test ledger.
pub const ORIGIN: &str = "agentsigna/test-ledger";

/// The ledger key: fixed seed bytes, test only.
pub fn signer() -> NoteSigner {
    NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[0x42; 32])).unwrap()
}

/// Another key under the same name: an attacker's, or a rotated one.
pub fn attacker() -> NoteSigner {
    NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[0x66; 32])).unwrap()
}

/// The deterministic events of the test ledger: (case, type, actor, data).
pub fn events() -> Vec<(Option<&'static str>, &'static str, &'static str, Value)> {
    vec![
        (
            None,
            "agent.registered",
            "admin",
            json!({"agent": "buyer-1", "name": "Procurement bot", "key": {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}),
        ),
        (None, "approver.registered", "admin", json!({"approver": "alice", "name": "Alice Martin"})),
        (
            None,
            "policy.activated",
            "admin",
            json!({"version": 1, "sha256": "9f2c0a6b1e0d6c3f4e5a7b8c9d0e1f203142536475869708192a3b4c5d6e7f80", "rules": 3}),
        ),
        (
            Some("c-0001"),
            "request.submitted",
            "agent:buyer-1",
            json!({"action": "payment.send", "params": {"amount": "1200.00", "currency": "EUR", "payee": "ACME Supplies"}, "counterparty": "acme"}),
        ),
        (
            Some("c-0001"),
            "decision.made",
            "server",
            json!({"verdict": "review", "reasons": ["amount above 1000.00 needs approval"], "policy": 1}),
        ),
        (
            Some("c-0002"),
            "request.submitted",
            "agent:buyer-1",
            json!({"action": "payment.send", "params": {"amount": "49.90", "currency": "EUR", "payee": "Café Zoë"}, "counterparty": "cafe"}),
        ),
        (
            Some("c-0001"),
            "review.opened",
            "server",
            json!({"approvers": ["alice"], "expires_at": "2026-03-02T09:00:06.000Z"}),
        ),
        (Some("c-0002"), "decision.made", "server", json!({"verdict": "allow", "reasons": [], "policy": 1})),
        (
            Some("c-0001"),
            "review.decided",
            "approver:alice",
            json!({"decision": "approve", "comment": "ok \u{2014} known supplier"}),
        ),
        (Some("c-0002"), "passport.issued", "server", json!({"jti": "p-2", "exp": 1772356000, "cnf": null})),
        (
            Some("c-0001"),
            "decision.made",
            "server",
            json!({"verdict": "allow", "reasons": ["approved by alice"], "policy": 1}),
        ),
        (None, "counterparty.updated", "admin", json!({"counterparty": "acme", "tags": ["supplier", "eu"]})),
        (
            Some("c-0003"),
            "request.submitted",
            "agent:buyer-1",
            json!({"action": "payment.send", "params": {"amount": "99999.00", "currency": "USD", "payee": "Unknown"}, "counterparty": "unknown"}),
        ),
        (Some("c-0002"), "execution.reported", "system:payments", json!({"status": "completed", "ref": "tx-778"})),
        (Some("c-0002"), "outcome.recorded", "system:payments", json!({"outcome": "completed"})),
        (
            Some("c-0002"),
            "trust.updated",
            "server",
            json!({"agent": {"alpha": "2.000000", "beta": "1.000000", "score": 67}}),
        ),
        (
            Some("c-0003"),
            "decision.made",
            "server",
            json!({"verdict": "deny", "reasons": ["amount above hard limit"], "policy": 1}),
        ),
    ]
}

/// Builds a valid ledger: indexes, seqs, prevs and digests right.
#[derive(Debug, Default)]
pub struct Ledger {
    pub entries: Vec<DigestedEntry>,
    heads: HashMap<Option<String>, (u64, String)>,
}

impl Ledger {
    pub fn append(&mut self, case: Option<&str>, kind: &str, actor: &str, data: Value) {
        let index = self.entries.len() as u64;
        let key = case.map(str::to_owned);
        let (seq, prev) = match self.heads.get(&key) {
            None => (0, None),
            Some((seq, digest)) => (seq + 1, Some(digest.clone())),
        };
        let entry = Entry {
            case: key.clone(),
            seq,
            prev,
            kind: kind.to_owned(),
            at: format!("2026-03-01T09:00:{:02}.{:03}Z", index, index * 7 % 1000),
            actor: actor.to_owned(),
            data,
        };
        let digest = entry.digest_hex().unwrap();
        self.heads.insert(key, (seq, digest.clone()));
        self.entries.push(DigestedEntry { index, entry, digest });
    }

    /// The test ledger (the first `n` events).
    pub fn standard(n: usize) -> Ledger {
        let mut l = Ledger::default();
        for (case, kind, actor, data) in events().into_iter().take(n) {
            l.append(case, kind, actor, data);
        }
        l
    }

    /// Rebuilds a ledger from possibly edited entries, renumbering (their `index`) and
    /// rechaining (`seq`, `prev`, `digest`) them correctly: what someone rewriting history without the signing key can do.
    pub fn rechain(entries: &[DigestedEntry]) -> Ledger {
        let mut l = Ledger::default();
        for e in entries {
            l.append(e.entry.case.as_deref(), &e.entry.kind, &e.entry.actor, e.entry.data.clone());
        }
        l
    }

    pub fn digests(&self) -> Vec<Hash> {
        digests(&self.entries)
    }

    pub fn checkpoint(&self) -> Checkpoint {
        checkpoint_of(&self.entries)
    }

    pub fn nodes(&self) -> MemoryNodes {
        MemoryNodes::from_leaves(&self.digests())
    }

    /// A bundle signed by `signer`.
    pub fn bundle(&self, signer: &NoteSigner) -> Bundle {
        let note = sign_checkpoint(&self.checkpoint(), signer).unwrap();
        Bundle::new(note, signer.verifier_key(), self.entries.clone())
    }

    /// The evidence of one case against this ledger's checkpoint.
    pub fn evidence(&self, case: &str, signer: &NoteSigner) -> Evidence {
        let cp = self.checkpoint();
        let note = sign_checkpoint(&cp, signer).unwrap();
        let entries = self.entries.iter().filter(|e| e.entry.case.as_deref() == Some(case)).cloned().collect();
        Evidence::build(case, &cp, note, signer.verifier_key(), entries, &self.nodes()).unwrap()
    }
}

pub fn digests(entries: &[DigestedEntry]) -> Vec<Hash> {
    entries.iter().map(|e| e.entry.digest().unwrap()).collect()
}

pub fn checkpoint_of(entries: &[DigestedEntry]) -> Checkpoint {
    let mut f = Frontier::new();
    for d in digests(entries) {
        f.append(d);
    }
    assert_eq!(f.root(), root_from_leaves(&digests(entries)));
    Checkpoint { origin: ORIGIN.to_owned(), size: entries.len() as u64, root: f.root(), extensions: vec![] }
}

/// Recomputes the digest field of one entry after an edit.
pub fn redigest(e: &mut DigestedEntry) {
    e.digest = hex_lower(&e.entry.digest().unwrap());
}
