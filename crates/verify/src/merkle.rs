//! RFC 6962 / RFC 9162 Merkle tree hashing, proofs and an append-only frontier.
//!
//! The tree is the one of RFC 9162 §2.1: leaves hash as `SHA-256(0x00 ‖ data)`, interior
//! nodes as `SHA-256(0x01 ‖ left ‖ right)`, the empty tree as `SHA-256("")`, and a tree
//! of `n` leaves splits at the largest power of two smaller than `n`.
//!
//! Stored nodes are addressed as `(level, index)`: the *perfect* subtree of `2^level`
//! leaves `[index << level, (index + 1) << level)`. Only perfect subtrees are ever stored
//! (they never change once complete); every other hash a proof needs (the right border of
//! a tree whose size is not a power of two) is recomputed from at most `log2(n)` stored
//! nodes. [`Frontier::push`] reports each perfect node as it completes, so a store that
//! persists them answers [`inclusion_proof`], [`consistency_proof`] and [`root_at`] in
//! `O(log n)` reads without rescanning the log.
//!
//! ```
//! use agentsigna_verify::merkle::*;
//! let mut frontier = Frontier::new();
//! let mut nodes = MemoryNodes::new();
//! let leaves: Vec<Hash> = (0u8..5).map(|i| leaf_hash(&[i])).collect();
//! for leaf in &leaves {
//!     nodes.record(&frontier.push(*leaf));
//! }
//! let root = frontier.root();
//! assert_eq!(root, root_from_leaves(&leaves));
//! let proof = inclusion_proof(&nodes, 3, 5).unwrap();
//! verify_inclusion(3, 5, &leaves[3], &proof, &root).unwrap();
//! ```

use sha2::{Digest as _, Sha256};

use crate::ledger::hex_lower;
use crate::Error;

/// A SHA-256 hash: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ data)`: the RFC 6962 leaf hash (for ledger entries, the entry digest).
///
/// ```
/// let h = agentsigna_verify::merkle::leaf_hash(b"");
/// assert_eq!(agentsigna_verify::ledger::hex_lower(&h)[..8], *"6e340b9c");
/// ```
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the RFC 6962 interior node hash.
///
/// ```
/// use agentsigna_verify::merkle::{leaf_hash, node_hash, root_from_leaves};
/// let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
/// assert_eq!(node_hash(&a, &b), root_from_leaves(&[a, b]));
/// ```
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// `SHA-256("")`: the root of the empty tree.
///
/// ```
/// let r = agentsigna_verify::merkle::empty_root();
/// assert_eq!(agentsigna_verify::b64::std_encode(r), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
/// ```
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The Merkle tree hash (RFC 6962 §2.1 `MTH`) over leaf hashes: the reference
/// implementation, recursive exactly as the RFC defines it.
///
/// ```
/// use agentsigna_verify::merkle::{empty_root, leaf_hash, root_from_leaves};
/// assert_eq!(root_from_leaves(&[]), empty_root());
/// let l = leaf_hash(b"x");
/// assert_eq!(root_from_leaves(&[l]), l);
/// ```
pub fn root_from_leaves(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&root_from_leaves(&leaves[..k]), &root_from_leaves(&leaves[k..]))
        }
    }
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

fn bad(reason: impl Into<String>) -> Error {
    Error::BadProof(reason.into())
}

/// Verifies an inclusion proof (audit path) of the leaf hash `leaf` at `index` in the
/// tree of `size` leaves with root `root` (RFC 9162 §2.1.3.2).
///
/// ```
/// use agentsigna_verify::merkle::{leaf_hash, node_hash, verify_inclusion};
/// let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
/// let root = node_hash(&a, &b);
/// assert!(verify_inclusion(1, 2, &b, &[a], &root).is_ok());
/// assert!(verify_inclusion(0, 2, &b, &[a], &root).is_err());
/// ```
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> Result<(), Error> {
    if index >= size {
        return Err(bad(format!("leaf index {index} is not below tree size {size}")));
    }
    let computed = root_from_inclusion(index, size, leaf, proof)?;
    if &computed != root {
        return Err(bad(format!(
            "inclusion proof of leaf {index} in tree of size {size} gives root {}, expected {}",
            hex_lower(&computed),
            hex_lower(root)
        )));
    }
    Ok(())
}

/// The root implied by an inclusion proof (RFC 9162 §2.1.3.2 steps 2–4).
fn root_from_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash]) -> Result<Hash, Error> {
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(bad(format!("inclusion proof too long ({} hashes) for leaf {index} of {size}", proof.len())));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            // Skip the levels where this node is promoted unchanged (right border).
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(bad(format!("inclusion proof too short ({} hashes) for leaf {index} of {size}", proof.len())));
    }
    Ok(r)
}

/// Verifies that the tree of `size1` leaves with root `root1` is a prefix of the tree of
/// `size2` leaves with root `root2` (RFC 9162 §2.1.4.2).
///
/// `size1 == 0` is refused (a proof from the empty tree proves nothing); `size1 == size2`
/// requires an empty proof and equal roots.
///
/// ```
/// use agentsigna_verify::merkle::{leaf_hash, node_hash, verify_consistency};
/// let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
/// assert!(verify_consistency(1, 2, &[b], &a, &node_hash(&a, &b)).is_ok());
/// assert!(verify_consistency(1, 2, &[a], &a, &node_hash(&a, &b)).is_err());
/// ```
pub fn verify_consistency(size1: u64, size2: u64, proof: &[Hash], root1: &Hash, root2: &Hash) -> Result<(), Error> {
    if size1 == 0 {
        return Err(bad("consistency proof from the empty tree (size 0) is meaningless"));
    }
    if size1 > size2 {
        return Err(bad(format!("consistency proof from size {size1} to the smaller size {size2}")));
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(bad(format!("consistency proof between equal sizes {size1} must be empty")));
        }
        if root1 != root2 {
            return Err(bad(format!(
                "trees of equal size {size1} have different roots {} and {}",
                hex_lower(root1),
                hex_lower(root2)
            )));
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(bad(format!("empty consistency proof from size {size1} to {size2}")));
    }
    // Step 2: when size1 is a power of two, its root is the first node of the path.
    let (seed, rest) = if size1.is_power_of_two() { (root1, proof) } else { (&proof[0], &proof[1..]) };
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if snode == 0 {
            return Err(bad(format!("consistency proof too long ({} hashes) from {size1} to {size2}", proof.len())));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(bad(format!("consistency proof too short ({} hashes) from {size1} to {size2}", proof.len())));
    }
    if &fr != root1 {
        return Err(bad(format!(
            "consistency proof gives root {} for size {size1}, expected {}",
            hex_lower(&fr),
            hex_lower(root1)
        )));
    }
    if &sr != root2 {
        return Err(bad(format!(
            "consistency proof gives root {} for size {size2}, expected {}",
            hex_lower(&sr),
            hex_lower(root2)
        )));
    }
    Ok(())
}

/// Storage of perfect subtree hashes: `node(level, index)` is the hash of leaves
/// `[index << level, (index + 1) << level)`; level 0 holds the leaf hashes.
///
/// Implementations return an error (preferably [`Error::BadProof`]) for a node they do
/// not hold, e.g. one beyond the stored tree.
pub trait NodeSource {
    /// The hash of the perfect subtree `(level, index)`.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Error>;
}

impl<T: NodeSource + ?Sized> NodeSource for &T {
    fn node(&self, level: u32, index: u64) -> Result<Hash, Error> {
        (**self).node(level, index)
    }
}

/// Append-only frontier ("compact range") of a growing tree: its size and the roots of
/// its perfect subtrees ("peaks"), largest (leftmost) first — `O(log n)` state.
///
/// ```
/// use agentsigna_verify::merkle::{leaf_hash, root_from_leaves, Frontier};
/// let leaves: Vec<_> = (0u8..7).map(|i| leaf_hash(&[i])).collect();
/// let mut f = Frontier::new();
/// for l in &leaves { f.push(*l); }
/// assert_eq!(f.size(), 7);
/// assert_eq!(f.peaks().len(), 3); // 4 + 2 + 1
/// assert_eq!(f.root(), root_from_leaves(&leaves));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Rebuilds a frontier from a stored size and its peaks (largest first); there must
    /// be exactly one peak per bit set in `size`.
    ///
    /// ```
    /// use agentsigna_verify::merkle::Frontier;
    /// assert!(Frontier::from_parts(3, vec![[0; 32], [1; 32]]).is_ok());
    /// assert!(Frontier::from_parts(3, vec![[0; 32]]).is_err());
    /// ```
    pub fn from_parts(size: u64, peaks: Vec<Hash>) -> Result<Frontier, Error> {
        if peaks.len() != size.count_ones() as usize {
            return Err(bad(format!(
                "a frontier of size {size} has {} peaks, found {}",
                size.count_ones(),
                peaks.len()
            )));
        }
        Ok(Frontier { size, peaks })
    }

    /// Reads the frontier of the first `size` leaves from stored nodes (`O(log n)` reads).
    pub fn from_source(src: &dyn NodeSource, size: u64) -> Result<Frontier, Error> {
        let mut peaks = Vec::with_capacity(size.count_ones() as usize);
        for_each_peak(0, size, |level, index| {
            peaks.push(src.node(level, index)?);
            Ok(())
        })?;
        Ok(Frontier { size, peaks })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Roots of the perfect subtrees, largest (leftmost) first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Appends a leaf hash; returns every perfect-subtree node completed by this append
    /// as `(level, index, hash)`, level 0 (the leaf itself) first. A store persists these
    /// so proofs never rescan the log.
    ///
    /// ```
    /// use agentsigna_verify::merkle::{Frontier, node_hash};
    /// let mut f = Frontier::new();
    /// f.push([1; 32]);
    /// let done = f.push([2; 32]);
    /// assert_eq!(done, vec![(0, 1, [2; 32]), (1, 0, node_hash(&[1; 32], &[2; 32]))]);
    /// ```
    pub fn push(&mut self, leaf: Hash) -> Vec<(u32, u64, Hash)> {
        let mut out = Vec::with_capacity(1 + self.size.trailing_ones() as usize);
        self.push_with(leaf, |level, index, hash| out.push((level, index, hash)));
        out
    }

    /// [`Frontier::push`] reporting completed nodes to a callback instead of a vector:
    /// no allocation per leaf.
    pub fn push_with(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, Hash)) {
        let mut hash = leaf;
        let mut level = 0u32;
        let mut index = self.size;
        completed(level, index, hash);
        // Each trailing 1 bit of the old size is a peak of the same level to merge with.
        while index & 1 == 1 {
            let Some(left) = self.peaks.pop() else { break };
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            completed(level, index, hash);
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// Appends a leaf hash without reporting completed nodes.
    pub fn append(&mut self, leaf: Hash) {
        self.push_with(leaf, |_, _, _| {});
    }

    /// The root of the tree (RFC 6962 `MTH`), [`empty_root`] when empty.
    pub fn root(&self) -> Hash {
        fold_peaks(self.peaks.iter().rev())
    }
}

/// Folds peaks given right to left into a root: the smallest peak is the right child of
/// the next larger one.
fn fold_peaks<'a>(mut peaks: impl Iterator<Item = &'a Hash>) -> Hash {
    let Some(first) = peaks.next() else { return empty_root() };
    peaks.fold(*first, |acc, left| node_hash(left, &acc))
}

/// Calls `f(level, index)` for each perfect subtree of the range `[start, end)`, left to
/// right. `start` must be a multiple of a power of two not smaller than `end - start`
/// (true for every subtree of the Merkle tree, and for `start == 0`).
fn for_each_peak(start: u64, end: u64, mut f: impl FnMut(u32, u64) -> Result<(), Error>) -> Result<(), Error> {
    let mut pos = start;
    let len = end - start;
    for level in (0..64u32).rev() {
        if (len >> level) & 1 == 1 {
            f(level, pos >> level)?;
            pos += 1u64 << level;
        }
    }
    Ok(())
}

/// `MTH(D[start:end])` for a subtree of the Merkle tree, from stored perfect nodes.
/// Walks the perfect subtrees right to left (smallest first) so that it folds as it
/// reads, without buffering them.
fn range_root(src: &dyn NodeSource, start: u64, end: u64) -> Result<Hash, Error> {
    let len = end - start;
    let mut pos = end;
    let mut acc: Option<Hash> = None;
    for level in 0..64u32 {
        if (len >> level) & 1 == 1 {
            pos -= 1u64 << level;
            let peak = src.node(level, pos >> level)?;
            acc = Some(match acc {
                None => peak,
                Some(right) => node_hash(&peak, &right),
            });
        }
    }
    Ok(acc.unwrap_or_else(empty_root))
}

/// The root of the first `size` leaves, from stored nodes (`O(log n)` reads).
///
/// ```
/// use agentsigna_verify::merkle::*;
/// let leaves: Vec<_> = (0u8..6).map(|i| leaf_hash(&[i])).collect();
/// let nodes = MemoryNodes::from_leaves(&leaves);
/// assert_eq!(root_at(&nodes, 5).unwrap(), root_from_leaves(&leaves[..5]));
/// assert!(root_at(&nodes, 7).is_err());
/// ```
pub fn root_at(src: &dyn NodeSource, size: u64) -> Result<Hash, Error> {
    range_root(src, 0, size)
}

/// The inclusion proof (audit path, RFC 9162 §2.1.3.1) of leaf `index` in the tree of
/// the first `size` leaves, leaf-side first; `O(log n)` node reads.
///
/// ```
/// use agentsigna_verify::merkle::*;
/// let leaves: Vec<_> = (0u8..6).map(|i| leaf_hash(&[i])).collect();
/// let nodes = MemoryNodes::from_leaves(&leaves);
/// let proof = inclusion_proof(&nodes, 4, 6).unwrap();
/// verify_inclusion(4, 6, &leaves[4], &proof, &root_from_leaves(&leaves)).unwrap();
/// assert!(inclusion_proof(&nodes, 6, 6).is_err());
/// ```
pub fn inclusion_proof(src: &dyn NodeSource, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
    if index >= size {
        return Err(bad(format!("leaf index {index} is not below tree size {size}")));
    }
    let mut proof = Vec::with_capacity((64 - (size - 1).leading_zeros()) as usize);
    let (mut idx, mut last) = (index, size - 1);
    let mut level = 0u32;
    while last > 0 {
        let sibling = idx ^ 1;
        if sibling < last {
            proof.push(src.node(level, sibling)?);
        } else if sibling == last {
            // The right border node: complete only when size is a multiple of its width.
            let start = sibling << level;
            let end = size.min(start.saturating_add(1u64 << level));
            proof.push(range_root(src, start, end)?);
        }
        // sibling > last: this node is the right border with no sibling; promoted as is.
        idx >>= 1;
        last >>= 1;
        level += 1;
    }
    Ok(proof)
}

/// The consistency proof (RFC 6962 §2.1.2 `PROOF`) that the tree of `size1` leaves is a
/// prefix of the tree of `size2` leaves; `0 < size1 <= size2`. `O(log n)` node reads.
///
/// ```
/// use agentsigna_verify::merkle::*;
/// let leaves: Vec<_> = (0u8..7).map(|i| leaf_hash(&[i])).collect();
/// let nodes = MemoryNodes::from_leaves(&leaves);
/// let proof = consistency_proof(&nodes, 3, 7).unwrap();
/// let (r1, r2) = (root_from_leaves(&leaves[..3]), root_from_leaves(&leaves));
/// verify_consistency(3, 7, &proof, &r1, &r2).unwrap();
/// ```
pub fn consistency_proof(src: &dyn NodeSource, size1: u64, size2: u64) -> Result<Vec<Hash>, Error> {
    if size1 == 0 {
        return Err(bad("consistency proof from the empty tree (size 0) is meaningless"));
    }
    if size1 > size2 {
        return Err(bad(format!("consistency proof from size {size1} to the smaller size {size2}")));
    }
    let mut proof = Vec::with_capacity(2 * (64 - (size2 - 1).leading_zeros()) as usize);
    subproof(src, size1, 0, size2, true, &mut proof)?;
    Ok(proof)
}

/// RFC 6962 `SUBPROOF(m, D[start:start+n], b)`, appending to `out` in RFC order.
fn subproof(src: &dyn NodeSource, m: u64, start: u64, n: u64, b: bool, out: &mut Vec<Hash>) -> Result<(), Error> {
    if m == n {
        if !b {
            out.push(range_root(src, start, start + n)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    let k_level = k.trailing_zeros();
    if m <= k {
        subproof(src, m, start, k, b, out)?;
        out.push(range_root(src, start + k, start + n)?);
    } else {
        subproof(src, m - k, start + k, n - k, false, out)?;
        out.push(src.node(k_level, start >> k_level)?);
    }
    Ok(())
}

/// In-memory [`NodeSource`]: one vector of hashes per level, fed by the output of
/// [`Frontier::push`]. For tests and small tools.
///
/// ```
/// use agentsigna_verify::merkle::{Frontier, MemoryNodes, NodeSource};
/// let mut f = Frontier::new();
/// let mut nodes = MemoryNodes::new();
/// for i in 0u8..4 { nodes.record(&f.push([i; 32])); }
/// assert_eq!(nodes.size(), 4);
/// assert_eq!(nodes.node(2, 0).unwrap(), f.root());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryNodes {
    levels: Vec<Vec<Hash>>,
}

impl MemoryNodes {
    /// An empty store.
    pub fn new() -> MemoryNodes {
        MemoryNodes::default()
    }

    /// A store holding every perfect node of the tree over `leaves`.
    pub fn from_leaves(leaves: &[Hash]) -> MemoryNodes {
        let mut nodes = MemoryNodes::new();
        let mut frontier = Frontier::new();
        for leaf in leaves {
            frontier.push_with(*leaf, |level, index, hash| nodes.insert(level, index, hash));
        }
        nodes
    }

    /// Stores nodes as returned by [`Frontier::push`].
    pub fn record(&mut self, nodes: &[(u32, u64, Hash)]) {
        for (level, index, hash) in nodes {
            self.insert(*level, *index, *hash);
        }
    }

    /// Stores one node. Nodes of a level arrive in index order (as `Frontier::push`
    /// produces them); a node at an already stored position overwrites it, and one
    /// beyond the next free position is ignored, since it cannot come from a frontier.
    pub fn insert(&mut self, level: u32, index: u64, hash: Hash) {
        let level = level as usize;
        while self.levels.len() <= level {
            self.levels.push(Vec::new());
        }
        let row = &mut self.levels[level];
        let Ok(i) = usize::try_from(index) else { return };
        if i < row.len() {
            row[i] = hash;
        } else if i == row.len() {
            row.push(hash);
        }
    }

    /// Number of leaves stored.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }
}

impl NodeSource for MemoryNodes {
    fn node(&self, level: u32, index: u64) -> Result<Hash, Error> {
        self.levels.get(level as usize).and_then(|row| row.get(usize::try_from(index).ok()?)).copied().ok_or_else(
            || bad(format!("node (level {level}, index {index}) is not stored: the tree has {} leaves", self.size())),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn split_points() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(1 << 40), 1 << 39);
    }

    #[test]
    fn rfc6962_known_root() {
        // The 8-leaf tree of the RFC 6962 reference tests (certificate-transparency).
        let data: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let l: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        assert_eq!(
            hex_lower(&root_from_leaves(&l)),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
    }

    #[test]
    fn frontier_nodes_match_reference() {
        let l = leaves(37);
        let nodes = MemoryNodes::from_leaves(&l);
        for level in 0..6u32 {
            let width = 1usize << level;
            for index in 0..(l.len() / width) {
                let expected = root_from_leaves(&l[index * width..(index + 1) * width]);
                assert_eq!(nodes.node(level, index as u64).unwrap(), expected);
            }
            assert!(nodes.node(level, (l.len() / width) as u64).is_err());
        }
    }

    #[test]
    fn from_source_rebuilds_frontier() {
        let l = leaves(45);
        let nodes = MemoryNodes::from_leaves(&l);
        let mut f = Frontier::new();
        for (i, leaf) in l.iter().enumerate() {
            assert_eq!(Frontier::from_source(&nodes, i as u64).unwrap(), f);
            f.append(*leaf);
        }
        let rebuilt = Frontier::from_parts(f.size(), f.peaks().to_vec()).unwrap();
        assert_eq!(rebuilt, f);
    }
}
