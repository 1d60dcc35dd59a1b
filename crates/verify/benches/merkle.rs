//! Merkle frontier appends, proof generation from stored nodes at 10 thousand and
//! 1 million leaves, and streaming ledger verification throughput (entries/s).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;

use agentsigna_verify::evidence::LedgerVerifier;
use agentsigna_verify::ledger::{hex_lower, DigestedEntry, Entry};
use agentsigna_verify::merkle::{consistency_proof, inclusion_proof, leaf_hash, Frontier, Hash, MemoryNodes};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::json;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn frontier_push(c: &mut Criterion) {
    let l = leaves(1 << 16);
    let mut g = c.benchmark_group("frontier");
    g.throughput(Throughput::Elements(l.len() as u64));
    g.bench_function("push 65536 leaves (with completed nodes)", |b| {
        b.iter(|| {
            let mut f = Frontier::new();
            let mut n = 0usize;
            for leaf in &l {
                n += f.push(*leaf).len();
            }
            black_box((f.root(), n))
        })
    });
    g.bench_function("append 65536 leaves", |b| {
        b.iter(|| {
            let mut f = Frontier::new();
            for leaf in &l {
                f.append(*leaf);
            }
            black_box(f.root())
        })
    });
    g.finish();
}

fn proofs(c: &mut Criterion) {
    let mut g = c.benchmark_group("proofs");
    for size in [10_000u64, 1_000_000] {
        let nodes = MemoryNodes::from_leaves(&leaves(size));
        let mut i = 0u64;
        g.bench_function(format!("inclusion_proof at {size} leaves"), |b| {
            b.iter(|| {
                i = (i + 7919) % size;
                black_box(inclusion_proof(&nodes, i, size).unwrap())
            })
        });
        let mut j = 0u64;
        g.bench_function(format!("consistency_proof at {size} leaves"), |b| {
            b.iter(|| {
                j = (j + 7919) % (size - 1);
                black_box(consistency_proof(&nodes, j + 1, size).unwrap())
            })
        });
    }
    g.finish();
}

/// A realistic ledger: org events and cases of about six entries each.
fn ledger(n: u64) -> Vec<DigestedEntry> {
    let mut heads: HashMap<Option<String>, (u64, String)> = HashMap::new();
    (0..n)
        .map(|index| {
            let case = if index % 50 == 0 { None } else { Some(format!("c-{:08}", index / 6)) };
            let (seq, prev) = match heads.get(&case) {
                None => (0, None),
                Some((s, d)) => (s + 1, Some(d.clone())),
            };
            let entry = Entry {
                case: case.clone(),
                seq,
                prev,
                kind: "request.submitted".into(),
                at: "2026-03-01T09:00:00.123Z".into(),
                actor: "agent:buyer-1".into(),
                data: json!({"action": "payment.send", "params": {"amount": "1200.00", "currency": "EUR", "payee": "ACME Supplies"}, "counterparty": "acme"}),
            };
            let digest = hex_lower(&entry.digest().unwrap());
            heads.insert(case, (seq, digest.clone()));
            DigestedEntry { index, entry, digest }
        })
        .collect()
}

fn ledger_verify(c: &mut Criterion) {
    let entries = ledger(20_000);
    let mut g = c.benchmark_group("ledger_verify");
    g.throughput(Throughput::Elements(entries.len() as u64));
    g.sample_size(20);
    g.bench_function("Entry::digest 20000 entries", |b| {
        b.iter(|| {
            for e in &entries {
                black_box(e.entry.digest().unwrap());
            }
        })
    });
    g.bench_function("digest_entry 20000 entries", |b| {
        let mut scratch = Vec::new();
        b.iter(|| {
            for e in &entries {
                black_box(agentsigna_verify::evidence::digest_entry(&e.entry, &mut scratch).unwrap());
            }
        })
    });
    g.bench_function("ChainVerifier 20000 entries", |b| {
        b.iter(|| {
            let mut v = agentsigna_verify::ledger::ChainVerifier::new(0);
            for e in &entries {
                black_box(v.push(e.index, &e.entry, Some(&e.digest)).unwrap());
            }
        })
    });
    g.bench_function("LedgerVerifier 20000 entries", |b| {
        b.iter_batched(
            LedgerVerifier::new,
            |mut v| {
                for e in &entries {
                    v.push_digested(e).unwrap();
                }
                black_box(v.root())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, frontier_push, proofs, ledger_verify);
criterion_main!(benches);
