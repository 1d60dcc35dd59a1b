//! Single use under concurrency: exactly one of N simultaneous checks of one passport
//! succeeds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod passport_fixtures;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use agentsigna_verify::clock::ManualClock;
use agentsigna_verify::gate::{Gate, GateRequest, MemoryReplayCache, ReplayCache};
use passport_fixtures::*;

const THREADS: usize = 16;

fn race(gate: &Arc<Gate>, token: &str, proofs: Vec<Option<String>>) -> Vec<&'static str> {
    let barrier = Arc::new(Barrier::new(proofs.len()));
    let handles: Vec<_> = proofs
        .into_iter()
        .map(|proof| {
            let gate = Arc::clone(gate);
            let barrier = Arc::clone(&barrier);
            let token = token.to_owned();
            std::thread::spawn(move || {
                let clock = ManualClock::new(T0 * 1000);
                let req = GateRequest { passport: &token, proof: proof.as_deref(), method: METHOD, url: URL };
                barrier.wait();
                match gate.check(&req, &clock) {
                    Ok(_) => "valid",
                    Err(e) => e.code(),
                }
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn exactly_one_of_many_concurrent_checks_succeeds() {
    let gate = Arc::new(Gate::new(verifier()));
    for round in 0..20 {
        let token = sign(&claims(&format!("p-{round}")));
        let results = race(&gate, &token, vec![None; THREADS]);
        assert_eq!(results.iter().filter(|r| **r == "valid").count(), 1, "{results:?}");
        assert_eq!(results.iter().filter(|r| **r == "replayed").count(), THREADS - 1);
    }
}

#[test]
fn exactly_one_with_distinct_proofs() {
    let gate = Arc::new(Gate::new(verifier()));
    for round in 0..10 {
        let token = sign(&bound_claims(&format!("b-{round}")));
        let proofs = (0..THREADS).map(|i| Some(proof(&token, T0, &format!("n-{round}-{i}")))).collect();
        let results = race(&gate, &token, proofs);
        assert_eq!(results.iter().filter(|r| **r == "valid").count(), 1, "{results:?}");
        assert!(results.iter().all(|r| *r == "valid" || *r == "replayed"));
    }
}

#[test]
fn exactly_one_with_the_same_proof() {
    let gate = Arc::new(Gate::new(verifier()));
    let token = sign(&bound_claims("b-same"));
    let p = proof(&token, T0, "n-same");
    let results = race(&gate, &token, vec![Some(p); THREADS]);
    assert_eq!(results.iter().filter(|r| **r == "valid").count(), 1, "{results:?}");
}

#[test]
fn distinct_passports_all_pass_concurrently() {
    let gate = Arc::new(Gate::new(verifier()));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let gate = Arc::clone(&gate);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let token = sign(&claims(&format!("d-{i}")));
                let req = GateRequest { passport: &token, proof: None, method: METHOD, url: URL };
                barrier.wait();
                gate.check(&req, &ManualClock::new(T0 * 1000)).is_ok()
            })
        })
        .collect();
    assert!(handles.into_iter().all(|h| h.join().unwrap()));
}

/// Counts `consume` calls, to show refused requests never touch the cache.
struct Counting {
    inner: MemoryReplayCache,
    calls: AtomicUsize,
}

impl ReplayCache for Counting {
    fn consume(&self, key: &str, expires_at: i64, now_secs: i64) -> bool {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.consume(key, expires_at, now_secs)
    }
}

#[test]
fn refused_requests_never_reach_the_cache() {
    let cache = Arc::new(Counting { inner: MemoryReplayCache::new(100), calls: AtomicUsize::new(0) });
    let gate = Gate::new(verifier()).with_replay_cache(cache.clone());
    let clock = ManualClock::new(T0 * 1000);
    let bound = sign(&bound_claims("b-1"));
    let bad = [
        GateRequest { passport: "x.y", proof: None, method: METHOD, url: URL },
        GateRequest { passport: &bound, proof: None, method: METHOD, url: URL },
        GateRequest { passport: &bound, proof: Some("junk"), method: METHOD, url: URL },
    ];
    for req in &bad {
        assert!(gate.check(req, &clock).is_err());
    }
    assert_eq!(cache.calls.load(Ordering::SeqCst), 0);
    let p = proof(&bound, T0, "n-1");
    assert!(gate.check(&GateRequest { passport: &bound, proof: Some(&p), method: METHOD, url: URL }, &clock).is_ok());
    assert_eq!(cache.calls.load(Ordering::SeqCst), 2); // proof jti, then passport jti
}

#[test]
fn full_cache_fails_closed() {
    let gate = Gate::new(verifier()).with_replay_cache(Arc::new(MemoryReplayCache::new(1)));
    let clock = ManualClock::new(T0 * 1000);
    let t1 = sign(&claims("f-1"));
    let t2 = sign(&claims("f-2"));
    let r = |t: &str| gate.check(&GateRequest { passport: t, proof: None, method: METHOD, url: URL }, &clock);
    assert!(r(&t1).is_ok());
    assert_eq!(r(&t2).unwrap_err().code(), "replayed");
}
