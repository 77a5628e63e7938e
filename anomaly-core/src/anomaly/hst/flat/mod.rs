//! Forests small enough for the cache, stored breadth-first in flat arrays, with River's
//! window pivot done as River does it, on every node at once.
//!
//! The lazy layout of [`forest`](super::forest) pivots in O(1) and pays for it on every
//! visit: a window stamp per node, and a branch-free update that reads and writes all three
//! counters. When the forest is small against its window, touching every node at the pivot
//! costs less: for 10 trees of height 8 and a window of 250, a pivot shifts 6,144 counters
//! (storage padded to 12 trees of 512 slots), about 25 per event, while each of an event's
//! 90 visits becomes one load and one increment. [`fits`] draws the line.
//!
//! Per tree, `2^height` branch slots breadth-first (the root at 0, the children of `i` at
//! `2i + 1` and `2i + 2`, the last slot unused), each with its split and masses in 16 bytes,
//! and `2^height` leaves.

#[cfg(target_arch = "x86_64")]
mod avx2;

use super::forest::{ForestRecord, NodeAt, Row, Walk};

/// Trees per vector in the SIMD walk; storage holds a multiple of this many trees (the
/// extra ones are walked and never read).
const LANES: usize = 4;

/// Trees stored for `n_trees`.
fn stored_trees(n_trees: u32) -> usize {
    (n_trees as usize).div_ceil(LANES) * LANES
}

/// Nodes a pivot may touch per learned event (amortized over the window).
const PIVOT_NODES_PER_EVENT: usize = 32;

/// Node storage above which a forest is not "in cache" (the lazy layout's tiers and
/// prefetching pay off there).
const MAX_BYTES: usize = 1 << 20;

/// Whether a forest of this shape is stored flat: masses fit 16 bits, the storage fits in
/// cache, and a pivot touches at most [`PIVOT_NODES_PER_EVENT`] nodes per event of the
/// window.
pub(super) fn fits(height: u32, n_trees: u32, window_size: u32, n_features: usize) -> bool {
    // Features and slots are indexed with 32-bit signed lanes in the SIMD walk.
    if window_size > u32::from(u16::MAX) || n_features > i32::MAX as usize || height > 24 {
        return false;
    }
    let slots = stored_trees(n_trees) << height;
    let bytes = slots.saturating_mul(std::mem::size_of::<Branch>() + std::mem::size_of::<Masses>());
    bytes <= MAX_BYTES && 2 * slots <= PIVOT_NODES_PER_EVENT * window_size as usize
}

/// A branch: its split (events with `row[feature] >= threshold` go right) and its masses,
/// in one 16-byte slot so that a visit touches one place.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Branch {
    threshold: f64,
    feature: u32,
    masses: Masses,
}

/// A node's `l_mass` in the low 16 bits and its `r_mass` in the high 16. Both are at most
/// the window size (65,535 at most here), so counting a visit never carries into the
/// reference, and River's pivot (`r_mass = l_mass; l_mass = 0`) is a shift.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(transparent)]
struct Masses(u32);

impl Masses {
    fn new(latest: u32, reference: u32) -> Self {
        Masses((latest & 0xffff) | (reference << 16))
    }

    #[inline(always)]
    fn latest(self) -> u32 {
        self.0 & 0xffff
    }

    #[inline(always)]
    fn reference(self) -> u32 {
        self.0 >> 16
    }

    /// Counts a visit in the latest mass; returns the reference mass.
    #[inline(always)]
    fn visit(&mut self) -> u32 {
        let reference = self.reference();
        // Wrapping: the padded trees' counters are never unlearned (nor read).
        self.0 = self.0.wrapping_add(1);
        reference
    }

    fn unvisit(&mut self) {
        if self.latest() > 0 {
            self.0 -= 1;
        }
    }

    #[inline(always)]
    fn pivot(&mut self) {
        self.0 <<= 16;
    }
}

/// The trees, in flat arrays.
#[derive(Clone, Debug)]
pub(super) struct FlatTrees {
    height: u32,
    n_trees: u32,
    /// Per tree, `2^height` slots: its branches breadth-first, the last slot unused.
    branches: Vec<Branch>,
    /// Per tree, its `2^height` leaves left to right.
    leaves: Vec<Masses>,
    /// Number of window boundaries passed, for the serialized form.
    window: u32,
}

impl FlatTrees {
    /// Trees with every split at 0 on feature 0 and no mass.
    pub(super) fn new(height: u32, n_trees: u32) -> Self {
        let slots = stored_trees(n_trees) << height;
        FlatTrees {
            height,
            n_trees,
            branches: vec![Branch::default(); slots],
            leaves: vec![Masses::default(); slots],
            window: 0,
        }
    }

    fn branch_slot(&self, tree: usize, at: NodeAt) -> usize {
        (tree << self.height) + (1usize << at.depth) - 1 + at.pos as usize
    }

    fn masses_of(&self, tree: usize, at: NodeAt) -> Masses {
        if at.depth == self.height {
            self.leaves[(tree << self.height) + at.pos as usize]
        } else {
            self.branches[self.branch_slot(tree, at)].masses
        }
    }

    fn masses_mut(&mut self, tree: usize, at: NodeAt) -> &mut Masses {
        if at.depth == self.height {
            &mut self.leaves[(tree << self.height) + at.pos as usize]
        } else {
            let slot = self.branch_slot(tree, at);
            &mut self.branches[slot].masses
        }
    }

    pub(super) fn height(&self) -> u32 {
        self.height
    }

    pub(super) fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(self.branches.as_slice())
            + std::mem::size_of_val(self.leaves.as_slice())
    }

    /// `(l_mass, r_mass)` of a node.
    pub(super) fn masses(&self, tree: usize, at: NodeAt) -> (u32, u32) {
        let masses = self.masses_of(tree, at);
        (masses.latest(), masses.reference())
    }

    /// `(feature column, threshold)` of the branch at `at`.
    pub(super) fn split(&self, tree: usize, at: NodeAt) -> (u32, f64) {
        let branch = &self.branches[self.branch_slot(tree, at)];
        (branch.feature, branch.threshold)
    }

    pub(super) fn set_split(&mut self, tree: usize, at: NodeAt, feature: u32, threshold: f64) {
        let slot = self.branch_slot(tree, at);
        self.branches[slot].feature = feature;
        self.branches[slot].threshold = threshold;
    }

    /// Every tree's walk for `row`, counting a visit in every node on its path; returns the
    /// summed scoring terms (River's `r_mass * 2^depth` down each path, up to and including
    /// the first node below `limit`).
    pub(super) fn walk_all<R: Row>(&mut self, row: &R, limit: u32, walks: &mut [Walk]) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if let Some(x) = row
            .dense()
            .filter(|x| !x.is_empty() && !self.branches.is_empty())
        {
            if avx2::available() {
                #[allow(unsafe_code)]
                // SAFETY: the CPU has AVX2; neither `x` nor the forest is empty.
                return unsafe { avx2::walk_all(self, x, limit, walks) };
            }
        }
        self.walk_all_scalar(row, limit, walks)
    }

    /// [`walk_all`](Self::walk_all) without SIMD.
    pub(super) fn walk_all_scalar<R: Row>(
        &mut self,
        row: &R,
        limit: u32,
        walks: &mut [Walk],
    ) -> u64 {
        let slots = 1usize << self.height;
        let height = self.height;
        let mut total = 0;
        let mut trees = self
            .branches
            .chunks_exact_mut(slots)
            .zip(self.leaves.chunks_exact_mut(slots))
            .zip(walks.iter_mut());
        // Two trees side by side: a walk is a chain of dependent loads, and two independent
        // chains interleaved keep the CPU busy while each waits.
        while let Some(((branches_a, leaves_a), walk_a)) = trees.next() {
            match trees.next() {
                Some(((branches_b, leaves_b), walk_b)) => {
                    let mut a = Walker::new(branches_a, leaves_a);
                    let mut b = Walker::new(branches_b, leaves_b);
                    for depth in 0..height {
                        a.step(depth, height, row, limit);
                        b.step(depth, height, row, limit);
                    }
                    *walk_a = a.finish(height);
                    *walk_b = b.finish(height);
                    total += walk_a.mass_score + walk_b.mass_score;
                }
                None => {
                    let mut a = Walker::new(branches_a, leaves_a);
                    for depth in 0..height {
                        a.step(depth, height, row, limit);
                    }
                    *walk_a = a.finish(height);
                    total += walk_a.mass_score;
                }
            }
        }
        total
    }

    /// Removes one learned visit along the path to leaf `leaf`.
    pub(super) fn unlearn_path(&mut self, tree: usize, leaf: u32) {
        for depth in 0..=self.height {
            let at = NodeAt {
                depth,
                pos: leaf >> (self.height - depth),
            };
            self.masses_mut(tree, at).unvisit();
        }
    }

    /// River's pivot: `r_mass = l_mass; l_mass = 0` for every node.
    pub(super) fn next_window(&mut self) {
        self.branches.iter_mut().for_each(|b| b.masses.pivot());
        self.leaves.iter_mut().for_each(Masses::pivot);
        self.window = self.window.wrapping_add(1);
    }

    pub(super) fn to_record(&self) -> ForestRecord {
        ForestRecord::collect(
            (self.height, self.n_trees, self.window),
            |tree, at| self.masses(tree, at),
            |tree, at| self.split(tree, at),
        )
    }

    /// Trees from their serialized form, already checked (masses within the window size).
    pub(super) fn from_record(record: &ForestRecord) -> Self {
        let mut trees = FlatTrees::new(record.height, record.n_trees);
        trees.window = record.window;
        for tree in 0..record.n_trees as usize {
            for depth in 0..=record.height {
                for pos in 0..1u32 << depth {
                    let at = NodeAt { depth, pos };
                    if depth < record.height {
                        let index = (1usize << depth) - 1 + pos as usize;
                        let branch = &record.branches[tree * record.branches_per_tree() + index];
                        trees.set_split(tree, at, branch.feature, branch.threshold);
                    }
                    let (latest, reference) = record.masses(tree, at);
                    *trees.masses_mut(tree, at) = Masses::new(latest, reference);
                }
            }
        }
        trees
    }
}

/// One tree's walk in progress.
struct Walker<'a> {
    branches: &'a mut [Branch],
    leaves: &'a mut [Masses],
    /// Breadth-first index of the node reached.
    node: usize,
    score: u64,
    /// All ones while the next node's term counts: its parent was at or above the limit.
    counting: u64,
}

impl<'a> Walker<'a> {
    #[inline(always)]
    fn new(branches: &'a mut [Branch], leaves: &'a mut [Masses]) -> Self {
        Walker {
            branches,
            leaves,
            node: 0,
            score: 0,
            counting: u64::MAX,
        }
    }

    /// Visits the branch reached (at `depth`) and goes on to the child `row` takes.
    #[inline(always)]
    fn step<R: Row>(&mut self, depth: u32, height: u32, row: &R, limit: u32) {
        let branch = &mut self.branches[self.node];
        let reference = branch.masses.visit();
        self.score += (u64::from(reference) << depth) & self.counting;
        self.counting = 0u64.wrapping_sub(u64::from(reference >= limit));
        let right = match row.value(branch.feature as usize) {
            Some(x) => x >= branch.threshold,
            None => heavier_child_is_right(self.branches, self.leaves, height, depth, self.node),
        };
        self.node = 2 * self.node + 1 + usize::from(right);
    }

    /// Visits the leaf reached.
    #[inline(always)]
    fn finish(self, height: u32) -> Walk {
        let leaf = self.node + 1 - self.branches.len();
        let reference = self.leaves[leaf].visit();
        let score = self.score + ((u64::from(reference) << height) & self.counting);
        Walk::finished(score, leaf as u32)
    }
}

/// River's rule for an event lacking the split's feature: towards the child with more
/// latest-window mass, left on ties. `node` is the branch's breadth-first index, at `depth`.
#[cold]
fn heavier_child_is_right(
    branches: &[Branch],
    leaves: &[Masses],
    height: u32,
    depth: u32,
    node: usize,
) -> bool {
    let left = 2 * node + 1;
    let latest = |child: usize| {
        if depth + 1 == height {
            leaves[child + 1 - branches.len()].latest()
        } else {
            branches[child].masses.latest()
        }
    };
    latest(left) < latest(left + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::hst::forest::Dense;
    use rand::{Rng, SeedableRng};

    /// Trees with random splits on three features.
    fn random_trees(height: u32, n_trees: u32, rng: &mut impl Rng) -> FlatTrees {
        let mut trees = FlatTrees::new(height, n_trees);
        for tree in 0..n_trees as usize {
            for depth in 0..height {
                for pos in 0..1u32 << depth {
                    let feature = rng.random_range(0..3);
                    trees.set_split(tree, NodeAt { depth, pos }, feature, rng.random());
                }
            }
        }
        trees
    }

    /// The AVX2 walk gives the scalar walk's leaves, scores and masses exactly, for tree
    /// counts that do and do not fill its vectors, across pivots.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_and_scalar_walks_agree() {
        assert!(
            avx2::available(),
            "this test machine has no AVX2: the SIMD walk is untested here"
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for (height, n_trees) in [(1, 1), (3, 5), (8, 10), (6, 13)] {
            let mut scalar = random_trees(height, n_trees, &mut rng);
            let mut simd = scalar.clone();
            let mut scalar_walks = vec![Walk::default(); n_trees as usize];
            let mut simd_walks = scalar_walks.clone();
            for event in 0..600 {
                let x: Vec<f64> = (0..3).map(|_| rng.random()).collect();
                let expected = scalar.walk_all_scalar(&Dense(&x), 5, &mut scalar_walks);
                #[allow(unsafe_code)]
                // SAFETY: AVX2 is present (asserted above); row and forest are not empty.
                let got = unsafe { avx2::walk_all(&mut simd, &x, 5, &mut simd_walks) };
                assert_eq!(
                    got, expected,
                    "height {height}, {n_trees} trees, event {event}"
                );
                for (s, v) in scalar_walks.iter().zip(&simd_walks) {
                    assert_eq!((s.leaf, s.mass_score), (v.leaf, v.mass_score));
                }
                if event % 50 == 49 {
                    scalar.next_window();
                    simd.next_window();
                }
            }
            assert_eq!(scalar.to_record(), simd.to_record());
        }
    }
}
