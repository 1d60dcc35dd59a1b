//! Growth benchmark: append and proof costs at 10 thousand, 100 thousand and 1 million
//! ledger entries, and bytes per entry on disk.
//!
//! `cargo bench -p agentsigna-store --bench growth` (set `GROWTH_MAX=100000` for a
//! quicker run). Prints one line per size: mean commit latency of a one-entry write
//! (with its fsync), mean inclusion and consistency proof generation, and file size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use agentsigna_core::store::{CaseRow, SealedEntry, Snapshot, Store, StoreError, StoreExt, Write, WriteSet};
use agentsigna_store::sqlite::{SqliteOptions, SqliteStore};
use agentsigna_verify::ledger::{hex_lower, Entry};
use agentsigna_verify::merkle;
use agentsigna_verify::note::NoteSigner;
use serde_json::json;

struct Nodes<'a>(std::cell::RefCell<&'a mut dyn Snapshot>);
impl merkle::NodeSource for Nodes<'_> {
    fn node(&self, level: u32, index: u64) -> Result<merkle::Hash, agentsigna_verify::Error> {
        self.0.borrow_mut().merkle_node(level, index).map_err(|e| agentsigna_verify::Error::BadProof(e.to_string()))
    }
}

/// Entry `i`: six per case, chained on the previous entry of its case.
fn entry(i: u64, prev: Option<[u8; 32]>) -> SealedEntry {
    let seq = i % 6;
    SealedEntry::seal(Entry {
        seq,
        prev: if seq == 0 { None } else { prev.map(|d| hex_lower(&d)) },
        case: Some(format!("case_{:012}", i / 6)),
        kind: "request.submitted".into(),
        at: agentsigna_verify::clock::rfc3339_ms(1_800_000_000_000 + i as i64),
        actor: "agent:procurement-bot".into(),
        data: json!({"action": "purchase_order.create", "counterparty": "acme",
                     "amount": {"value": "4800.00", "currency": "USD"}, "audience": "erp",
                     "description": "40 keyboards for onboarding", "context": {"cost_center": "IT-7"}}),
    })
    .unwrap()
}

/// Adds `e` to `ws`, with its case's row when it starts a chain.
fn push(ws: &mut WriteSet, e: SealedEntry) {
    if e.entry.seq == 0 {
        let id = e.entry.case.clone().unwrap_or_default();
        ws.writes.push(Write::PutCase(CaseRow {
            id,
            agent: "procurement-bot".into(),
            audience: "erp".into(),
            status: "authorized".into(),
            idempotency_key: None,
            review_id: None,
            review_status: None,
            review_pending: false,
            roles_missing: Vec::new(),
            deadline_ms: None,
            due_ms: None,
            created_at_ms: 1_800_000_000_000,
            counterparty: "acme".into(),
            action: "purchase_order.create".into(),
            body: "{}".into(),
            passport: None,
        }));
    }
    ws.entries.push(e);
}

fn main() {
    let max: u64 = std::env::var("GROWTH_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growth.db");
    let signer = NoteSigner::new("agentsigna/bench", ed25519_dalek::SigningKey::from_bytes(&[7; 32])).unwrap();
    let store = Arc::new(SqliteStore::open(&path, signer, SqliteOptions::default()).unwrap());
    println!(
        "{:>10} {:>16} {:>18} {:>20} {:>14}",
        "entries", "append commit", "inclusion proof", "consistency proof", "bytes/entry"
    );
    let mut size = 0u64;
    let mut last: Option<[u8; 32]> = None;
    for target in [10_000u64, 100_000, 1_000_000].into_iter().filter(|t| *t <= max) {
        // Fill in large transactions (not what is measured).
        while size < target {
            let n = (target - size).min(5_000);
            let start = size;
            let mut ws = WriteSet::default();
            for i in start..start + n {
                let e = entry(i, last);
                last = Some(e.digest);
                push(&mut ws, e);
            }
            rt.block_on(store.commit(ws)).unwrap();
            size += n;
        }
        // One-entry commits: what a request pays for its ledger write (incl. fsync).
        let rounds = 200u64;
        let t = Instant::now();
        for i in 0..rounds {
            let e = entry(size + i, last);
            last = Some(e.digest);
            let mut ws = WriteSet::default();
            push(&mut ws, e);
            rt.block_on(store.commit(ws)).unwrap();
        }
        let append = t.elapsed() / rounds as u32;
        size += rounds;
        let sz = size;
        let (incl, cons) = rt
            .block_on(store.read_with(move |tx| -> Result<_, StoreError> {
                let nodes = Nodes(std::cell::RefCell::new(tx));
                let t = Instant::now();
                for i in 0..1000u64 {
                    merkle::inclusion_proof(&nodes, (i * 7919) % sz, sz).unwrap();
                }
                let incl = t.elapsed() / 1000;
                let t = Instant::now();
                for i in 1..=1000u64 {
                    merkle::consistency_proof(&nodes, (i * 7919) % (sz - 1) + 1, sz).unwrap();
                }
                Ok((incl, t.elapsed() / 1000))
            }))
            .unwrap();
        let bytes: u64 = ["growth.db", "growth.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
            .map(|m| m.len())
            .sum();
        println!("{size:>10} {:>16?} {:>18?} {:>20?} {:>14}", append, incl, cons, bytes / size);
    }
}
