//! Merkle tree: frontier against the reference root, proofs generated from stored nodes
//! against the verifiers, out-of-range parameters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agentsigna_verify::merkle::*;
use agentsigna_verify::Error;
use proptest::prelude::*;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(format!("leaf {i}").as_bytes())).collect()
}

fn store(l: &[Hash]) -> (Frontier, MemoryNodes) {
    let mut f = Frontier::new();
    let mut nodes = MemoryNodes::new();
    for leaf in l {
        nodes.record(&f.push(*leaf));
    }
    (f, nodes)
}

#[test]
fn frontier_matches_reference_for_sizes_0_to_70() {
    let l = leaves(70);
    let mut f = Frontier::new();
    assert_eq!(f.root(), empty_root());
    for n in 1..=70usize {
        let completed = f.push(l[n - 1]);
        assert_eq!(f.size(), n as u64);
        assert_eq!(f.root(), root_from_leaves(&l[..n]), "size {n}");
        assert_eq!(f.peaks().len(), (n as u64).count_ones() as usize);
        // The leaf itself, then one node per level merged.
        assert_eq!(completed[0], (0, n as u64 - 1, l[n - 1]));
        assert_eq!(completed.len(), 1 + (n as u64 - 1).trailing_ones() as usize);
        for (level, index, hash) in completed {
            let width = 1usize << level;
            let start = index as usize * width;
            assert_eq!(hash, root_from_leaves(&l[start..start + width]));
        }
    }
}

#[test]
fn root_at_every_prefix() {
    let l = leaves(70);
    let (_, nodes) = store(&l);
    for n in 0..=70u64 {
        assert_eq!(root_at(&nodes, n).unwrap(), root_from_leaves(&l[..n as usize]), "size {n}");
    }
    assert!(matches!(root_at(&nodes, 71), Err(Error::BadProof(_))));
}

#[test]
fn inclusion_proofs_for_all_indexes_up_to_40() {
    let l = leaves(40);
    let (_, nodes) = store(&l);
    for size in 1..=40u64 {
        let root = root_from_leaves(&l[..size as usize]);
        for index in 0..size {
            let proof = inclusion_proof(&nodes, index, size).unwrap();
            verify_inclusion(index, size, &l[index as usize], &proof, &root)
                .unwrap_or_else(|e| panic!("index {index} size {size}: {e}"));
            // Wrong leaf, wrong index, truncated or extended proof all fail. (A wrong size may
            // share the path shape, e.g. leaf 0 of 3 and of 4 leaves, so it is not tested.)
            let other = l[((index + 1) % size) as usize];
            if size > 1 {
                assert!(verify_inclusion(index, size, &other, &proof, &root).is_err());
                assert!(verify_inclusion((index + 1) % size, size, &l[index as usize], &proof, &root).is_err());
            }
            if let Some((_, shorter)) = proof.split_last() {
                assert!(verify_inclusion(index, size, &l[index as usize], shorter, &root).is_err());
            }
            let mut longer = proof.clone();
            longer.push(root);
            assert!(verify_inclusion(index, size, &l[index as usize], &longer, &root).is_err());
        }
    }
}

#[test]
fn consistency_proofs_for_all_pairs_up_to_40() {
    let l = leaves(40);
    let (_, nodes) = store(&l);
    let roots: Vec<Hash> = (0..=40).map(|n| root_from_leaves(&l[..n])).collect();
    for size2 in 1..=40u64 {
        for size1 in 1..=size2 {
            let proof = consistency_proof(&nodes, size1, size2).unwrap();
            let (r1, r2) = (roots[size1 as usize], roots[size2 as usize]);
            verify_consistency(size1, size2, &proof, &r1, &r2).unwrap_or_else(|e| panic!("{size1} -> {size2}: {e}"));
            if size1 == size2 {
                assert!(proof.is_empty());
                continue;
            }
            assert!(verify_consistency(size1, size2, &proof, &r2, &r2).is_err());
            assert!(verify_consistency(size1, size2, &proof, &r1, &r1).is_err());
            if size2 < 40 {
                assert!(verify_consistency(size1, size2 + 1, &proof, &r1, &roots[size2 as usize + 1]).is_err());
            }
            let mut tampered = proof.clone();
            tampered[0][0] ^= 1;
            assert!(verify_consistency(size1, size2, &tampered, &r1, &r2).is_err());
        }
    }
}

#[test]
fn single_leaf_and_equal_sizes() {
    let l = leaves(1);
    let (_, nodes) = store(&l);
    assert!(inclusion_proof(&nodes, 0, 1).unwrap().is_empty());
    verify_inclusion(0, 1, &l[0], &[], &l[0]).unwrap();
    verify_consistency(1, 1, &[], &l[0], &l[0]).unwrap();
    assert!(verify_consistency(1, 1, &[l[0]], &l[0], &l[0]).is_err());
    assert!(verify_consistency(1, 1, &[], &l[0], &empty_root()).is_err());
}

#[test]
fn out_of_range_parameters_are_bad_proofs() {
    let l = leaves(10);
    let (_, nodes) = store(&l);
    let bad = |r: Result<Vec<Hash>, Error>| matches!(r, Err(Error::BadProof(_)));
    assert!(bad(inclusion_proof(&nodes, 10, 10)));
    assert!(bad(inclusion_proof(&nodes, 0, 0)));
    assert!(bad(inclusion_proof(&nodes, 3, 11))); // beyond the stored tree
    assert!(bad(consistency_proof(&nodes, 0, 5)));
    assert!(bad(consistency_proof(&nodes, 6, 5)));
    assert!(bad(consistency_proof(&nodes, 5, 11)));
    let root = root_from_leaves(&l);
    assert!(matches!(verify_inclusion(10, 10, &l[0], &[], &root), Err(Error::BadProof(_))));
    assert!(matches!(verify_inclusion(u64::MAX, 10, &l[0], &[], &root), Err(Error::BadProof(_))));
    assert!(matches!(verify_inclusion(0, 0, &l[0], &[], &root), Err(Error::BadProof(_))));
    assert!(matches!(verify_consistency(0, 0, &[], &root, &root), Err(Error::BadProof(_))));
    assert!(matches!(verify_consistency(0, 3, &[], &root, &root), Err(Error::BadProof(_))));
    assert!(matches!(verify_consistency(4, 3, &[], &root, &root), Err(Error::BadProof(_))));
    assert!(matches!(verify_consistency(3, 4, &[], &root, &root), Err(Error::BadProof(_))));
}

#[test]
fn frontier_from_parts_validates() {
    assert!(Frontier::from_parts(0, vec![]).unwrap().root() == empty_root());
    assert!(Frontier::from_parts(0, vec![[0; 32]]).is_err());
    assert!(Frontier::from_parts(u64::MAX, vec![[0; 32]; 64]).is_ok());
    // Continuing from stored parts gives the same tree as never stopping.
    let l = leaves(23);
    let (f, _) = store(&l[..13]);
    let mut resumed = Frontier::from_parts(f.size(), f.peaks().to_vec()).unwrap();
    for leaf in &l[13..] {
        resumed.push(*leaf);
    }
    assert_eq!(resumed.root(), root_from_leaves(&l));
}

#[test]
fn large_tree_proofs() {
    // Sizes around powers of two at a larger scale, spot-checked.
    let l = leaves(1100);
    let (f, nodes) = store(&l);
    for &size in &[1023u64, 1024, 1025, 1100] {
        let root = root_at(&nodes, size).unwrap();
        assert_eq!(root, root_from_leaves(&l[..size as usize]));
        for &index in &[0u64, 1, 511, 512, 1000, size - 1] {
            let proof = inclusion_proof(&nodes, index, size).unwrap();
            verify_inclusion(index, size, &l[index as usize], &proof, &root).unwrap();
        }
        for &size1 in &[1u64, 2, 3, 511, 512, 513, size] {
            let proof = consistency_proof(&nodes, size1, size).unwrap();
            verify_consistency(size1, size, &proof, &root_at(&nodes, size1).unwrap(), &root).unwrap();
        }
    }
    assert_eq!(f.root(), root_at(&nodes, 1100).unwrap());
}

/// Counts node reads, to check proofs stay logarithmic.
struct Counting<'a>(&'a MemoryNodes, std::cell::Cell<u64>);

impl NodeSource for Counting<'_> {
    fn node(&self, level: u32, index: u64) -> Result<Hash, Error> {
        self.1.set(self.1.get() + 1);
        self.0.node(level, index)
    }
}

#[test]
fn proofs_read_logarithmically_many_nodes() {
    let l = leaves(3000);
    let (_, nodes) = store(&l);
    let counting = Counting(&nodes, std::cell::Cell::new(0));
    for size in [1u64, 2, 1000, 2047, 2048, 2049, 2999, 3000] {
        for index in [0, size / 2, size - 1] {
            counting.1.set(0);
            inclusion_proof(&counting, index, size).unwrap();
            assert!(counting.1.get() <= 2 * 12, "inclusion {index}/{size}: {} reads", counting.1.get());
        }
        for size1 in [1, size / 3 + 1, size] {
            counting.1.set(0);
            consistency_proof(&counting, size1, size).unwrap();
            assert!(counting.1.get() <= 3 * 12, "consistency {size1}/{size}: {} reads", counting.1.get());
        }
    }
}

proptest! {
    #[test]
    fn frontier_root_equals_reference(n in 0u64..600) {
        let l = leaves(n);
        let (f, nodes) = store(&l);
        let reference = root_from_leaves(&l);
        prop_assert_eq!(f.root(), reference);
        prop_assert_eq!(root_at(&nodes, n).unwrap(), reference);
    }

    #[test]
    fn random_proofs_verify(size in 1u64..600, a in any::<u64>(), b in any::<u64>()) {
        let l = leaves(size);
        let (f, nodes) = store(&l);
        let index = a % size;
        let proof = inclusion_proof(&nodes, index, size).unwrap();
        prop_assert!(verify_inclusion(index, size, &l[index as usize], &proof, &f.root()).is_ok());
        let size1 = 1 + b % size;
        let proof = consistency_proof(&nodes, size1, size).unwrap();
        let root1 = root_from_leaves(&l[..size1 as usize]);
        prop_assert!(verify_consistency(size1, size, &proof, &root1, &f.root()).is_ok());
    }
}
