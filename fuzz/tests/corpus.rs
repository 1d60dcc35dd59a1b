//! The fuzz targets on stable Rust: every committed corpus and regression input, and
//! deterministic mutations of them (byte flips, insertions, deletions, splices), must be
//! handled without a panic. A crash found by `cargo fuzz` is copied to
//! `regressions/<target>/<name>` and so becomes a test here, named in the failure.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_file() {
                if let Ok(bytes) = std::fs::read(&p) {
                    found.push((p, bytes));
                }
            }
        }
    }
    found.sort();
    found
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % (n.max(1) as u64)) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\\u0000",
    b"\\ud800",
    b"\n",
    b"\r\n",
    b".",
    b"=",
    b"-",
    b"0",
    b"1e999",
    b"-0",
    b"null",
    b"true",
    b"\xff",
    b"\xe2\x80\xae",
    b"@id(\"",
    b"when {",
    b"permit(",
    b"forbid(",
];

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = rng.below(16).min(v.len() - i);
                v.drain(i..i + n);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(i..i, piece.iter().copied());
            }
            3 if !other.is_empty() => {
                let i = rng.below(v.len() + 1);
                let j = rng.below(other.len());
                let n = rng.below(64).min(other.len() - j);
                v.splice(i..i, other[j..j + n].iter().copied());
            }
            4 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.truncate(i);
            }
            _ => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
        }
    }
    v
}

fn run_target(name: &str, f: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = inputs(&root.join("corpus").join(name));
    assert!(!seeds.is_empty(), "no corpus for {name}");
    for (path, bytes) in inputs(&root.join("regressions").join(name)).iter().chain(&seeds) {
        let r = std::panic::catch_unwind(|| f(bytes));
        assert!(r.is_ok(), "{name}: {} crashes", path.display());
    }
    let rounds: usize = std::env::var("FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    for round in 0..rounds {
        let seed = &seeds[rng.below(seeds.len())].1;
        let other = &seeds[rng.below(seeds.len())].1;
        let input = mutate(&mut rng, seed, other);
        let r = std::panic::catch_unwind(|| f(&input));
        if r.is_err() {
            let out = std::env::temp_dir().join(format!("agentsigna-fuzz-{name}-{round}"));
            let _ = std::fs::write(&out, &input);
            panic!("{name}: mutation {round} crashes; input written to {}", out.display());
        }
    }
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in agentsigna_fuzz::TARGETS {
        assert!(root.join("fuzz_targets").join(format!("{name}.rs")).is_file(), "{name}");
        assert!(root.join("corpus").join(name).is_dir(), "{name}");
    }
}

#[test]
fn request_json() {
    run_target("request_json", agentsigna_fuzz::request_json);
}

#[test]
fn passport() {
    run_target("passport", agentsigna_fuzz::passport);
}

#[test]
fn holder_proof() {
    run_target("holder_proof", agentsigna_fuzz::holder_proof);
}

#[test]
fn checkpoint() {
    run_target("checkpoint", agentsigna_fuzz::checkpoint);
}

#[test]
fn bundle() {
    run_target("bundle", agentsigna_fuzz::bundle);
}

#[test]
fn evidence() {
    run_target("evidence", agentsigna_fuzz::evidence);
}

#[test]
fn policy() {
    run_target("policy", agentsigna_fuzz::policy);
}
