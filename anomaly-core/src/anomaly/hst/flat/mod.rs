//! Forests small enough for the cache, stored breadth-first in flat arrays, with River's
//! window pivot done as River does it, on every node at once.
//!
//! The lazy layout of [`forest`](super::forest) pivots in O(1) and pays for it on every
//! visit: a window stamp per node, and a branch-free update that reads and writes all three
//! counters. When the forest is small against its window, touching every node at the pivot
//! costs less: for 10 trees of height 8 and a window of 250, a pivot goes over 12 trees of
//! 511 nodes (storage is padded to a multiple of four trees), about 25 nodes per event.
//! [`fits`] draws the line.
//!
//! Within a window the reference masses do not change, so neither does the score of the
//! path to a leaf; and every learned walk ends at a leaf, so a branch's latest mass is the
//! sum of its leaves'. A walk of a dense event therefore only finds its leaves: it reads
//! each path's score from a table filled once per window and counts the visit at the leaf
//! alone, a handful of instructions per level. The branches' latest masses are summed from
//! the leaves when something needs them: the pivot, a reader, or an event that lacks a
//! feature (River sends it towards the child with more latest mass); after such an event,
//! walks count every node of their path until the window ends.

use super::forest::{ForestRecord, NodeAt, Row, Walk};

/// Trees per group: storage holds whole groups, and walks go one to three groups side by
/// side.
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
pub(super) fn fits(height: u32, n_trees: u32, window_size: u32) -> bool {
    // A path's score (at most 65,535 * (2^(height + 1) - 1)) fits the `u32` of
    // `leaf_scores`.
    if window_size > u32::from(u16::MAX) || height > 15 {
        return false;
    }
    let slots = stored_trees(n_trees) << height;
    let bytes = slots.saturating_mul(BYTES_PER_SLOT);
    bytes <= MAX_BYTES && 2 * slots <= PIVOT_NODES_PER_EVENT * window_size as usize
}

/// Storage per leaf slot: a split, two nodes' masses and a leaf score.
const BYTES_PER_SLOT: usize =
    std::mem::size_of::<Split>() + 2 * std::mem::size_of::<Masses>() + std::mem::size_of::<u32>();

/// A branch's split: events with `row[feature] >= threshold` go right.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Split {
    threshold: f64,
    feature: u32,
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
        // The latest mass stays within the window size, below 2^16: no carry into the
        // reference.
        self.0 += 1;
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

/// The trees, in flat arrays. Within a tree, nodes are numbered breadth-first: the root
/// 0, the children of `i` at `2i + 1` and `2i + 2`, the leaves from `2^height - 1`.
#[derive(Clone, Debug)]
pub(super) struct FlatTrees {
    height: u32,
    n_trees: u32,
    /// The branches' splits, by groups of [`LANES`] trees: per group, `2^height` rows (the
    /// last unused), one per node number, each the group's trees' splits side by side (see
    /// [`split_row`](Self::split_row)).
    splits: Vec<[Split; LANES]>,
    /// Per tree, `2^(height + 1)` slots: every node's masses by node number, the last slot
    /// unused.
    masses: Vec<Masses>,
    /// Whether walks count visits in the branches' latest masses too. When false, those
    /// are stale and a branch's latest mass is the sum of its leaves'.
    branches_counted: bool,
    /// Per tree, per leaf, River's scoring terms down the path to it (`r_mass * 2^depth`
    /// to the first node below the limit, that node included), for the limit
    /// `leaf_scores_limit`; `None` once the reference masses have changed.
    leaf_scores: Vec<u32>,
    leaf_scores_limit: Option<u32>,
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
            splits: vec![[Split::default(); LANES]; slots / LANES],
            masses: vec![Masses::default(); 2 * slots],
            // No mass anywhere: the branches' (all 0) are the leaves' sums.
            branches_counted: false,
            leaf_scores: vec![0; slots],
            leaf_scores_limit: None,
            window: 0,
        }
    }

    /// Index in `masses` of tree `tree`'s node `node`.
    fn mass_slot(&self, tree: usize, node: usize) -> usize {
        (tree << (self.height + 1)) + node
    }

    /// Row in `splits` of tree `tree`'s branch `node`, and the tree's lane in it. A group's
    /// trees side by side step from a node to its child the same way, whatever their lane
    /// (see [`descend`]), and share the cache lines of their top levels.
    fn split_row(&self, tree: usize, node: usize) -> (usize, usize) {
        (((tree / LANES) << self.height) + node, tree % LANES)
    }

    fn node_number(at: NodeAt) -> usize {
        (1usize << at.depth) - 1 + at.pos as usize
    }

    fn masses_mut(&mut self, tree: usize, at: NodeAt) -> &mut Masses {
        let slot = self.mass_slot(tree, Self::node_number(at));
        &mut self.masses[slot]
    }

    pub(super) fn height(&self) -> u32 {
        self.height
    }

    pub(super) fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(self.splits.as_slice())
            + std::mem::size_of_val(self.masses.as_slice())
            + std::mem::size_of_val(self.leaf_scores.as_slice())
    }

    /// `(l_mass, r_mass)` of a node.
    pub(super) fn masses(&self, tree: usize, at: NodeAt) -> (u32, u32) {
        let masses = self.masses[self.mass_slot(tree, Self::node_number(at))];
        if self.branches_counted || at.depth == self.height {
            return (masses.latest(), masses.reference());
        }
        // The leaves below `at`, left to right.
        let below = self.height - at.depth;
        let first_leaf = (1usize << self.height) - 1 + ((at.pos as usize) << below);
        let first = self.mass_slot(tree, first_leaf);
        let latest = self.masses[first..first + (1 << below)]
            .iter()
            .map(|m| m.latest())
            .sum();
        (latest, masses.reference())
    }

    /// `r_mass` of a node: exact in every node's slot, since each pivot counts the branches
    /// before it turns latest masses into reference masses.
    pub(super) fn reference_mass(&self, tree: usize, at: NodeAt) -> u32 {
        self.masses[self.mass_slot(tree, Self::node_number(at))].reference()
    }

    /// `(feature column, threshold)` of the branch at `at`.
    pub(super) fn split(&self, tree: usize, at: NodeAt) -> (u32, f64) {
        let (row, lane) = self.split_row(tree, Self::node_number(at));
        let split = self.splits[row][lane];
        (split.feature, split.threshold)
    }

    pub(super) fn set_split(&mut self, tree: usize, at: NodeAt, feature: u32, threshold: f64) {
        let (row, lane) = self.split_row(tree, Self::node_number(at));
        self.splits[row][lane] = Split { threshold, feature };
    }

    /// Every tree's walk for `row`, counting a visit at its leaf (and, once the branches are
    /// counted, in every node on its path); returns the
    /// summed scoring terms (River's `r_mass * 2^depth` down each path, up to and including
    /// the first node below `limit`).
    pub(super) fn walk_all<R: Row>(&mut self, row: &R, limit: u32, walks: &mut [Walk]) -> u64 {
        if !self.branches_counted {
            if let Some(x) = row.dense() {
                return self.walk_to_leaves(x, limit, walks);
            }
            // River's rule for a missing feature reads the children's latest masses. They
            // are counted from here to the window's end: at most one sum per window.
            self.count_branches();
        }
        self.walk_paths(row, limit, walks)
    }

    /// [`walk_all`](Self::walk_all) of a dense row while only the leaves count visits: finds
    /// each tree's leaf, counts the visit there and reads the path's score from the table.
    fn walk_to_leaves(&mut self, x: &[f64], limit: u32, walks: &mut [Walk]) -> u64 {
        if self.leaf_scores_limit != Some(limit) {
            self.score_leaves(limit);
        }
        // Filled in place: returned from a constructor, the 256-byte row was copied again.
        let mut row = SmallRow([0.0; SMALL_ROW]);
        if row.fill(x) {
            self.descend_all(&row, walks)
        } else {
            self.descend_all(&x, walks)
        }
    }

    /// The leaf walks of [`walk_to_leaves`](Self::walk_to_leaves).
    fn descend_all(&mut self, x: &impl Columns, walks: &mut [Walk]) -> u64 {
        let height = self.height;
        let slots = 1usize << height;
        let n_trees = (self.n_trees as usize).min(walks.len());
        let mut total = 0;
        let mut first_tree = 0;
        while first_tree < n_trees {
            // Up to twelve trees side by side: each walk is a chain of dependent loads, and
            // independent chains interleaved overlap their waits (measured: twelve at once
            // x1.15 faster than eight, eight x1.14 faster than four).
            let splits = &self.splits[(first_tree / LANES) << height..];
            let (side_by_side, leaves) = if n_trees - first_tree > 2 * LANES {
                (3 * LANES, descend::<3>(splits, height, x))
            } else if n_trees - first_tree > LANES {
                let [a, b] = descend::<2>(splits, height, x);
                (2 * LANES, [a, b, [0; LANES]])
            } else {
                let [a] = descend::<1>(splits, height, x);
                (LANES, [a, [0; LANES], [0; LANES]])
            };
            let walked = n_trees.min(first_tree + side_by_side) - first_tree;
            for (lane, &leaf) in leaves.as_flattened().iter().enumerate().take(walked) {
                let tree = first_tree + lane;
                let slot = self.mass_slot(tree, slots - 1 + leaf);
                self.masses[slot].visit();
                let score = u64::from(self.leaf_scores[(tree << height) + leaf]);
                walks[tree] = Walk::finished(score, leaf as u32);
                total += score;
            }
            first_tree += side_by_side;
        }
        total
    }

    /// [`walk_all`](Self::walk_all) counting every node of each path.
    fn walk_paths<R: Row>(&mut self, row: &R, limit: u32, walks: &mut [Walk]) -> u64 {
        let slots = 1usize << self.height;
        let height = self.height;
        let mut total = 0;
        let mut trees = self
            .masses
            .chunks_exact_mut(2 * slots)
            .zip(walks.iter_mut())
            .enumerate();
        let splits = &self.splits;
        let walker = |tree: usize, masses| {
            let group = &splits[(tree / LANES) * slots..][..slots];
            Walker::new(group, tree % LANES, masses)
        };
        // Two trees side by side: their loads overlap.
        while let Some((tree_a, (masses_a, walk_a))) = trees.next() {
            match trees.next() {
                Some((tree_b, (masses_b, walk_b))) => {
                    let mut a = walker(tree_a, masses_a);
                    let mut b = walker(tree_b, masses_b);
                    for depth in 0..height {
                        a.step(depth, row, limit);
                        b.step(depth, row, limit);
                    }
                    *walk_a = a.finish(height);
                    *walk_b = b.finish(height);
                    total += walk_a.mass_score + walk_b.mass_score;
                }
                None => {
                    let mut a = walker(tree_a, masses_a);
                    for depth in 0..height {
                        a.step(depth, row, limit);
                    }
                    *walk_a = a.finish(height);
                    total += walk_a.mass_score;
                }
            }
        }
        total
    }

    /// Sets every branch's latest mass to the sum of its leaves' and has walks count them
    /// from now on.
    fn count_branches(&mut self) {
        if self.branches_counted {
            return;
        }
        let slots = 1usize << self.height;
        for masses in self
            .masses
            .chunks_exact_mut(2 * slots)
            .take(self.n_trees as usize)
        {
            // Level by level from the leaves up; a level's nodes are contiguous, and so are
            // the two children of each.
            for depth in (0..self.height).rev() {
                let first = (1usize << depth) - 1;
                let (above, below) = masses.split_at_mut(2 * first + 1);
                for (parent, children) in above[first..].iter_mut().zip(below.chunks_exact(2)) {
                    let sum = children[0].latest() + children[1].latest();
                    *parent = Masses::new(sum, parent.reference());
                }
            }
        }
        self.branches_counted = true;
    }

    /// Fills [`leaf_scores`](Self::leaf_scores) for `limit`.
    fn score_leaves(&mut self, limit: u32) {
        let slots = 1usize << self.height;
        for (masses, leaf_scores) in self
            .masses
            .chunks_exact(2 * slots)
            .zip(self.leaf_scores.chunks_exact_mut(slots))
            .take(self.n_trees as usize)
        {
            let tree = TreeScores {
                masses,
                height: self.height,
                limit,
            };
            tree.score_below(leaf_scores, 0, 0, 0);
        }
        self.leaf_scores_limit = Some(limit);
    }

    /// Removes one learned visit along the path to leaf `leaf`.
    pub(super) fn unlearn_path(&mut self, tree: usize, leaf: u32) {
        // While branches are not counted, the leaf's count is the only one the walk made.
        let first = if self.branches_counted {
            0
        } else {
            self.height
        };
        for depth in first..=self.height {
            let at = NodeAt {
                depth,
                pos: leaf >> (self.height - depth),
            };
            self.masses_mut(tree, at).unvisit();
        }
    }

    /// River's pivot: `r_mass = l_mass; l_mass = 0` for every node.
    pub(super) fn next_window(&mut self) {
        self.count_branches();
        self.masses.iter_mut().for_each(Masses::pivot);
        // Every latest mass is 0 now: the sum of the leaves' below it.
        self.branches_counted = false;
        self.leaf_scores_limit = None;
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
        // The record's branch masses are taken as they are, not as their leaves' sums.
        trees.branches_counted = true;
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

/// A dense event's values, as a walk reads them. Splits only name the model's features,
/// which `check_dense` matched to the event's columns (and loading a snapshot checks).
trait Columns {
    fn value(&self, feature: u32) -> f64;
}

impl Columns for &[f64] {
    #[inline(always)]
    fn value(&self, feature: u32) -> f64 {
        self[feature as usize]
    }
}

/// Columns a [`SmallRow`] holds.
const SMALL_ROW: usize = 32;

/// An event of at most [`SMALL_ROW`] columns, copied into a fixed array: reading it needs
/// no bounds check (the index is masked), one fewer compare and branch per visit.
struct SmallRow([f64; SMALL_ROW]);

impl SmallRow {
    /// Copies `x` to the front of the row; false if it does not fit.
    #[inline(always)]
    fn fill(&mut self, x: &[f64]) -> bool {
        match self.0.get_mut(..x.len()) {
            Some(front) => {
                front.copy_from_slice(x);
                true
            }
            None => false,
        }
    }
}

impl Columns for SmallRow {
    #[inline(always)]
    fn value(&self, feature: u32) -> f64 {
        self.0[feature as usize % SMALL_ROW]
    }
}

/// The leaves (numbered from the left) that `x` reaches in the `G` groups of trees whose
/// splits start `splits`.
#[inline(always)]
fn descend<const G: usize>(
    splits: &[[Split; LANES]],
    height: u32,
    x: &impl Columns,
) -> [[usize; LANES]; G] {
    let rows = 1usize << height;
    let last_row = rows - 1;
    // Each group's rows exactly: with the node masked by `last_row` below, the compiler sees
    // every index in bounds and checks none (the mask changes nothing: a walk loads rows of
    // branches only, whose numbers are below `last_row`).
    let groups: [&[[Split; LANES]]; G] = std::array::from_fn(|g| &splits[g * rows..][..=last_row]);
    // The same node arithmetic in every lane: the lane is a constant offset in the row.
    let mut node = [[0usize; LANES]; G];
    for _ in 0..height {
        for (rows, node) in groups.iter().zip(&mut node) {
            for (lane, node) in node.iter_mut().enumerate() {
                let split = &rows[*node & last_row][lane];
                let right = usize::from(x.value(split.feature) >= split.threshold);
                *node = 2 * *node + 1 + right;
            }
        }
    }
    // In place: `map` compiles to out-of-line calls here.
    for node in node.as_flattened_mut() {
        *node -= last_row;
    }
    node
}

/// One tree's masses, for scoring the paths to its leaves.
struct TreeScores<'a> {
    masses: &'a [Masses],
    height: u32,
    limit: u32,
}

impl TreeScores<'_> {
    /// Scores the paths through `node` (at `depth`), whose terms above it sum to `above`:
    /// a walk adds the node's term and goes on while the node is at or above the limit;
    /// below a node under the limit, every leaf's path has that node's score. Only nodes
    /// a walk still counts are visited: in a trained tree, the top few levels.
    fn score_below(&self, leaf_scores: &mut [u32], node: usize, depth: u32, above: u32) {
        let reference = self.masses[node].reference();
        // At most 65,535 * (2^(height + 1) - 1) in all (`fits` keeps height <= 15).
        let score = above + (reference << depth);
        let below = self.height - depth;
        if below > 0 && reference >= self.limit {
            self.score_below(leaf_scores, 2 * node + 1, depth + 1, score);
            self.score_below(leaf_scores, 2 * node + 2, depth + 1, score);
        } else {
            let position = node + 1 - (1 << depth);
            leaf_scores[position << below..(position + 1) << below].fill(score);
        }
    }
}

/// One tree's walk in progress, counting every node it visits.
struct Walker<'a> {
    /// The splits of the tree's group, and the tree's lane in it.
    splits: &'a [[Split; LANES]],
    lane: usize,
    masses: &'a mut [Masses],
    /// Number of the node reached.
    node: usize,
    score: u64,
    /// All ones while the next node's term counts: its parent was at or above the limit.
    counting: u64,
}

impl<'a> Walker<'a> {
    #[inline(always)]
    fn new(splits: &'a [[Split; LANES]], lane: usize, masses: &'a mut [Masses]) -> Self {
        Walker {
            splits,
            lane,
            masses,
            node: 0,
            score: 0,
            counting: u64::MAX,
        }
    }

    /// Visits the branch reached (at `depth`) and goes on to the child `row` takes.
    #[inline(always)]
    fn step<R: Row>(&mut self, depth: u32, row: &R, limit: u32) {
        let reference = self.masses[self.node].visit();
        self.score += (u64::from(reference) << depth) & self.counting;
        self.counting = 0u64.wrapping_sub(u64::from(reference >= limit));
        let split = &self.splits[self.node][self.lane];
        let right = match row.value(split.feature as usize) {
            Some(x) => x >= split.threshold,
            None => heavier_child_is_right(self.masses, self.node),
        };
        self.node = 2 * self.node + 1 + usize::from(right);
    }

    /// Visits the leaf reached.
    #[inline(always)]
    fn finish(self, height: u32) -> Walk {
        let reference = self.masses[self.node].visit();
        let score = self.score + ((u64::from(reference) << height) & self.counting);
        Walk::finished(score, (self.node + 1 - (1usize << height)) as u32)
    }
}

/// River's rule for an event lacking the split's feature: towards the child with more
/// latest-window mass, left on ties. `masses` are the tree's, `node` the branch's number.
#[cold]
fn heavier_child_is_right(masses: &[Masses], node: usize) -> bool {
    masses[2 * node + 1].latest() < masses[2 * node + 2].latest()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::hst::forest::Dense;
    use rand::{Rng, SeedableRng};

    /// Trees with random splits on `n_features` features.
    fn random_trees(height: u32, n_trees: u32, n_features: u32, rng: &mut impl Rng) -> FlatTrees {
        let mut trees = FlatTrees::new(height, n_trees);
        for tree in 0..n_trees as usize {
            for depth in 0..height {
                for pos in 0..1u32 << depth {
                    let feature = rng.random_range(0..n_features);
                    trees.set_split(tree, NodeAt { depth, pos }, feature, rng.random());
                }
            }
        }
        trees
    }

    /// Every node's masses; each node's reference mass read alone is checked against them.
    fn all_masses(trees: &FlatTrees) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for tree in 0..trees.n_trees as usize {
            for depth in 0..=trees.height {
                for pos in 0..1u32 << depth {
                    let at = NodeAt { depth, pos };
                    let masses = trees.masses(tree, at);
                    assert_eq!(trees.reference_mass(tree, at), masses.1, "{tree} {at:?}");
                    out.push(masses);
                }
            }
        }
        out
    }

    /// Walks that count only the leaves (the branches' masses summed from them when read)
    /// give the leaves, scores and masses of walks that count every node, for tree counts
    /// that do and do not fill the side-by-side groups, rows that fit the fixed-size copy
    /// and rows that do not, a size limit that changes every event and one that does not
    /// (so that only the pivot invalidates the path scores), across pivots, unlearned walks
    /// and records taken mid-window.
    #[test]
    fn leaf_counting_and_path_counting_walks_agree() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let shapes = [(1, 1, 3), (3, 5, 3), (8, 10, 3), (6, 13, 40), (5, 4, 33)];
        for ((height, n_trees, n_features), fixed_limit) in shapes
            .into_iter()
            .flat_map(|shape| [(shape, None), (shape, Some(3))])
        {
            let mut leaves_only = random_trees(height, n_trees, n_features, &mut rng);
            let mut paths = leaves_only.clone();
            let mut leaf_walks = vec![Walk::default(); n_trees as usize];
            let mut path_walks = leaf_walks.clone();
            for event in 0..600 {
                paths.count_branches();
                let x: Vec<f64> = (0..n_features).map(|_| rng.random()).collect();
                let limit = fixed_limit.unwrap_or(2 + event % 5);
                let expected = paths.walk_all(&Dense(&x), limit, &mut path_walks);
                let got = leaves_only.walk_all(&Dense(&x), limit, &mut leaf_walks);
                assert!(!leaves_only.branches_counted);
                assert_eq!(
                    got, expected,
                    "height {height}, {n_trees} trees, event {event}"
                );
                for (p, l) in path_walks.iter().zip(&leaf_walks) {
                    assert_eq!((p.leaf, p.mass_score), (l.leaf, l.mass_score));
                }
                if event % 9 == 4 {
                    for tree in 0..n_trees as usize {
                        paths.unlearn_path(tree, path_walks[tree].leaf);
                        leaves_only.unlearn_path(tree, leaf_walks[tree].leaf);
                    }
                }
                if event % 13 == 0 {
                    assert_eq!(all_masses(&paths), all_masses(&leaves_only));
                }
                if event % 50 == 20 {
                    assert_eq!(paths.to_record(), leaves_only.to_record());
                }
                if event % 50 == 49 {
                    paths.next_window();
                    leaves_only.next_window();
                }
            }
            assert_eq!(paths.to_record(), leaves_only.to_record());
        }
    }

    /// An event lacking a feature has the branches counted for the rest of the window, and
    /// the pivot goes back to counting leaves.
    #[test]
    fn a_missing_feature_counts_branches_until_the_pivot() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        let mut trees = random_trees(4, 3, 3, &mut rng);
        let mut walks = vec![Walk::default(); 3];
        trees.walk_all(&Dense(&[0.2, 0.5, 0.7]), 1, &mut walks);
        assert!(!trees.branches_counted);
        // Named features, all present: a dense row.
        let complete = crate::anomaly::hst::forest::Sparse {
            values: &[0.2, 0.5, 0.7],
            present: &[true, true, true],
        };
        trees.walk_all(&complete, 1, &mut walks);
        assert!(!trees.branches_counted);
        assert_eq!(trees.masses(0, NodeAt { depth: 0, pos: 0 }), (2, 0));
        let sparse = crate::anomaly::hst::forest::Sparse {
            values: &[0.2, 0.0, 0.7],
            present: &[true, false, true],
        };
        trees.walk_all(&sparse, 1, &mut walks);
        assert!(trees.branches_counted);
        trees.walk_all(&Dense(&[0.2, 0.5, 0.7]), 1, &mut walks);
        assert!(trees.branches_counted);
        assert_eq!(trees.masses(0, NodeAt { depth: 0, pos: 0 }), (4, 0));
        trees.next_window();
        assert!(!trees.branches_counted);
        assert_eq!(trees.masses(0, NodeAt { depth: 0, pos: 0 }), (0, 4));
    }
}
