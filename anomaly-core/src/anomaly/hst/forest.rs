//! The trees' storage: complete binary trees in cache-line blocks, with masses that switch
//! windows in O(1).
//!
//! **Layout.** Every node, branch or leaf, is 16 bytes (a split and three 16-bit counters)
//! when the window and the feature count allow it (24 bytes otherwise). Levels are paired:
//! a node at an even depth and its two children share one 64-byte block, so a walk from the
//! root to a leaf touches one cache line per two levels. The blocks of a tree are stored
//! breadth-first over this 4-ary tree of blocks; when the number of levels is odd, the leaf
//! level is packed four siblings to a block. For 25 trees of height 15 this halves the cache
//! misses of a walk compared with one node per visit, which is what bounds a forest that
//! does not fit in cache.
//!
//! **Windows.** River keeps two counters per node, `l_mass` (latest window) and `r_mass`
//! (reference window), and at every window boundary copies `l` into `r` and zeroes `l` for
//! *every* node of every tree. Here each node also records the window its `latest` counter
//! belongs to; a window boundary only increments the forest's window number, and a node's
//! counters are brought up to date the next time it is touched. The values read are exactly
//! River's.
//!
//! **Scoring.** A node's reference mass never exceeds its parent's (every event counted by
//! a child was counted by its parent in the same window), so River's rule "add `r_mass *
//! 2^depth` down the path, up to and including the first node below the size limit" is the
//! same as "add a node's term when its parent is at or above the limit", which needs no
//! state beyond the previous node.
//!
//! The serialized form ([`ForestRecord`]) is layout-independent: breadth-first branches and
//! leaves with 32-bit counters, as in snapshot format 1.

use serde::{Deserialize, Serialize};

/// A counter type for masses and window stamps.
pub(super) trait Count: Copy + Default + Eq + std::fmt::Debug {
    /// Window numbers are rebased before they reach this, so that stale stamps never alias.
    const REBASE_AT: u32;
    /// `value` as a counter (callers keep it within `MAX`).
    fn new(value: u32) -> Self;
    /// The counter's value.
    fn get(self) -> u32;
}

impl Count for u16 {
    const REBASE_AT: u32 = 1 << 15;
    #[inline(always)]
    fn new(value: u32) -> Self {
        value as u16
    }
    #[inline(always)]
    fn get(self) -> u32 {
        u32::from(self)
    }
}

impl Count for u32 {
    const REBASE_AT: u32 = 1 << 31;
    #[inline(always)]
    fn new(value: u32) -> Self {
        value
    }
    #[inline(always)]
    fn get(self) -> u32 {
        self
    }
}

/// One node: a split (unused in leaves) and its masses, valid relative to the window they
/// were last written in.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Node<C> {
    threshold: f64,
    feature: C,
    latest: C,
    reference: C,
    window: C,
}

impl<C: Count> Node<C> {
    /// `(l_mass, r_mass)` as River would hold them in window `now`.
    #[inline]
    fn masses(&self, now: u32) -> (u32, u32) {
        let window = self.window.get();
        if window == now {
            (self.latest.get(), self.reference.get())
        } else if window + 1 == now {
            (0, self.latest.get())
        } else {
            (0, 0)
        }
    }

    /// Brings the node to window `now`, counts one visit in its latest mass, and returns its
    /// reference mass. Free of branches: deep nodes are touched about once per window, so a
    /// branch on the window would mispredict often.
    #[inline(always)]
    fn visit(&mut self, now: u32) -> u32 {
        let window = self.window.get();
        let same = 0u32.wrapping_sub(u32::from(window == now));
        let previous = 0u32.wrapping_sub(u32::from(window + 1 == now));
        let latest = self.latest.get();
        let reference = (self.reference.get() & same) | (latest & previous);
        self.latest = C::new((latest & same) + 1);
        self.reference = C::new(reference);
        self.window = C::new(now);
        reference
    }

    #[inline]
    fn set_masses(&mut self, (latest, reference): (u32, u32), now: u32) {
        self.latest = C::new(latest);
        self.reference = C::new(reference);
        self.window = C::new(now);
    }
}

/// Four nodes on one cache line: a node at an even depth and its children (one slot
/// spare), or four sibling leaves.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Block<C>([Node<C>; 4]);

/// Blocks above block level `level` (`(4^level - 1) / 3`).
#[inline(always)]
fn blocks_above(level: u32) -> usize {
    ((1usize << (2 * level)) - 1) / 3
}

/// A node addressed by position: `depth` levels below the root, `pos`-th from the left
/// (`pos < 2^depth`); depth `height` is the leaf level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NodeAt {
    pub(super) depth: u32,
    pub(super) pos: u32,
}

impl NodeAt {
    /// A node from its breadth-first index (root 0, children of `i` at `2i+1`, `2i+2`).
    pub(super) fn from_breadth_first(index: usize) -> Self {
        let depth = usize::BITS - 1 - (index + 1).leading_zeros();
        NodeAt {
            depth,
            pos: (index + 1 - (1 << depth)) as u32,
        }
    }

    fn child(self, right: bool) -> Self {
        NodeAt {
            depth: self.depth + 1,
            pos: 2 * self.pos + u32::from(right),
        }
    }
}

/// Where one tree's walk stands: the running score and the node reached.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Walk {
    /// `sum of r_mass * 2^depth` over the scored part of the path.
    pub(super) mass_score: u64,
    /// All ones while the next node's term counts (its parent was at or above the limit).
    counting: u64,
    /// Position from the left, within its level, of the node the walk has reached: the
    /// leaf's position once it is done.
    pub(super) leaf: u32,
}

/// How an event presents its features to a walk.
pub(super) trait Row {
    /// The value of column `feature`, or `None` if the event lacks it.
    fn value(&self, feature: usize) -> Option<f64>;
}

/// A dense row: every feature present.
pub(super) struct Dense<'a>(pub(super) &'a [f64]);

impl Row for Dense<'_> {
    #[inline(always)]
    fn value(&self, feature: usize) -> Option<f64> {
        Some(self.0[feature])
    }
}

/// A row with a presence flag per column.
pub(super) struct Sparse<'a> {
    pub(super) values: &'a [f64],
    pub(super) present: &'a [bool],
}

impl Row for Sparse<'_> {
    #[inline]
    fn value(&self, feature: usize) -> Option<f64> {
        if self.present[feature] {
            Some(self.values[feature])
        } else {
            None
        }
    }
}

/// Hints the CPU to start loading `slice[index]` into cache.
#[inline(always)]
fn prefetch<T>(slice: &[T], index: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(item) = slice.get(index) {
        #[allow(unsafe_code)]
        // SAFETY: a prefetch is only a cache hint and never faults; the pointer comes from a
        // live reference anyway. SSE is part of the x86_64 baseline.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slice, index);
}

/// Forests with more node storage than this are walked level by level (see `walk_all`).
const INTERLEAVE_ABOVE_BYTES: usize = 1 << 20;

/// The trees, with counters of type `C`.
#[derive(Clone, Debug)]
struct Trees<C> {
    height: u32,
    n_trees: u32,
    blocks_per_tree: usize,
    blocks: Vec<Block<C>>,
    /// Number of window boundaries passed (since the last rebase).
    window: u32,
}

impl<C: Count> Trees<C> {
    fn new(height: u32, n_trees: u32) -> Self {
        let blocks_per_tree = if height % 2 == 1 {
            blocks_above(height.div_ceil(2))
        } else {
            // Full blocks down to depth height - 1, then the leaves four to a block.
            blocks_above(height / 2) + (1usize << height) / 4
        };
        Trees {
            height,
            n_trees,
            blocks_per_tree,
            blocks: vec![Block::default(); blocks_per_tree * n_trees as usize],
            window: 0,
        }
    }

    /// Block (from the tree's first) and slot of a node.
    #[inline]
    fn slot(&self, at: NodeAt) -> (usize, usize) {
        let above = blocks_above(at.depth / 2);
        let pos = at.pos as usize;
        if at.depth % 2 == 1 {
            (above + (pos >> 1), 1 + (pos & 1))
        } else if at.depth == self.height {
            (above + (pos >> 2), pos & 3)
        } else {
            (above + pos, 0)
        }
    }

    fn node(&self, tree: usize, at: NodeAt) -> &Node<C> {
        let (block, slot) = self.slot(at);
        &self.blocks[tree * self.blocks_per_tree + block].0[slot]
    }

    fn node_mut(&mut self, tree: usize, at: NodeAt) -> &mut Node<C> {
        let (block, slot) = self.slot(at);
        &mut self.blocks[tree * self.blocks_per_tree + block].0[slot]
    }

    /// The real nodes of a tree, breadth-first.
    fn breadth_first(&self, tree: usize) -> impl Iterator<Item = &Node<C>> + '_ {
        (0..=self.height).flat_map(move |depth| {
            (0..1u32 << depth).map(move |pos| self.node(tree, NodeAt { depth, pos }))
        })
    }

    /// Whether the walk of `row` goes right at the branch `node`, at `at`: `x >= threshold`
    /// (ties go right, as in River; inputs are checked finite, so `>=` is `!(<)`), or for an
    /// event lacking the feature, River's rule: towards the child with more latest-window
    /// mass, left on ties.
    #[inline(always)]
    fn goes_right<R: Row>(&self, blocks: &[Block<C>], node: &Node<C>, at: NodeAt, row: &R) -> bool {
        match row.value(node.feature.get() as usize) {
            Some(x) => x >= node.threshold,
            None => self.heavier_child_is_right(blocks, at),
        }
    }

    #[cold]
    fn heavier_child_is_right(&self, blocks: &[Block<C>], at: NodeAt) -> bool {
        let latest = |child: NodeAt| {
            let (block, slot) = self.slot(child);
            blocks[block].0[slot].masses(self.window).0
        };
        latest(at.child(false)) < latest(at.child(true))
    }

    /// Adds a visited node's term to the walk's score: River adds `r_mass * 2^depth` down the
    /// path up to the first node below the size limit.
    #[inline(always)]
    fn score(walk: &mut Walk, reference: u32, depth: u32, limit: u32) {
        walk.mass_score += (u64::from(reference) << depth) & walk.counting;
        walk.counting = 0u64.wrapping_sub(u64::from(reference >= limit));
    }

    /// Advances `walk` (of one tree, standing at the root of a block on block level `level`,
    /// which has `above` blocks above it) through that block: two levels, or one if it ends
    /// on a leaf. Returns whether the walk reached its leaf.
    ///
    /// Both children in the block are decided together with their parent, before it is
    /// known which one the walk takes: the three decisions then overlap instead of waiting
    /// for each other, which shortens the chain of dependent loads down the tree.
    #[inline(always)]
    fn block_step<R: Row>(
        &self,
        blocks: &mut [Block<C>],
        level: u32,
        above: usize,
        walk: &mut Walk,
        row: &R,
        limit: u32,
    ) -> bool {
        let now = self.window;
        let depth = 2 * level;
        let pos = walk.leaf;
        if depth == self.height {
            let leaf = &mut blocks[above + (pos as usize >> 2)].0[pos as usize & 3];
            let reference = leaf.visit(now);
            Self::score(walk, reference, depth, limit);
            return true;
        }
        let block = above + pos as usize;
        let at = NodeAt { depth, pos };
        let right = self.goes_right(blocks, &blocks[block].0[0], at, row);
        let last = depth + 1 == self.height;
        // Only branches have decisions to make; below the last branch are the leaves.
        let (left_child_right, right_child_right) = if last {
            (false, false)
        } else {
            let nodes = &blocks[block].0;
            (
                self.goes_right(blocks, &nodes[1], at.child(false), row),
                self.goes_right(blocks, &nodes[2], at.child(true), row),
            )
        };
        let nodes = &mut blocks[block].0;
        let reference = nodes[0].visit(now);
        Self::score(walk, reference, depth, limit);
        let reference = nodes[1 + usize::from(right)].visit(now);
        Self::score(walk, reference, depth + 1, limit);
        let child_right = if right {
            right_child_right
        } else {
            left_child_right
        };
        walk.leaf = 2 * pos + u32::from(right);
        if last {
            return true;
        }
        walk.leaf = 2 * walk.leaf + u32::from(child_right);
        false
    }

    /// Block (from the tree's first) where a walk goes on at block level `level`, which has
    /// `above` blocks above it.
    #[inline(always)]
    fn next_block(&self, level: u32, above: usize, walk: &Walk) -> usize {
        let pos = walk.leaf as usize;
        if 2 * level == self.height {
            above + (pos >> 2)
        } else {
            above + pos
        }
    }

    fn walk_all<R: Row>(&mut self, row: &R, limit: u32, walks: &mut [Walk]) -> u64 {
        let mut blocks = std::mem::take(&mut self.blocks);
        let total = if std::mem::size_of_val(blocks.as_slice()) <= INTERLEAVE_ABOVE_BYTES {
            // A forest that fits in cache is fastest one tree at a time (the walk's state
            // stays in registers).
            let mut total = 0;
            for (tree, tree_blocks) in blocks.chunks_exact_mut(self.blocks_per_tree).enumerate() {
                // A local walk, so that its state stays in registers.
                let mut walk = Walk {
                    counting: u64::MAX,
                    ..Walk::default()
                };
                let (mut level, mut above) = (0, 0);
                while !self.block_step(tree_blocks, level, above, &mut walk, row, limit) {
                    level += 1;
                    above = 4 * above + 1;
                }
                total += walk.mass_score;
                walks[tree] = walk;
            }
            total
        } else {
            self.walk_interleaved(&mut blocks, row, limit, walks)
        };
        self.blocks = blocks;
        total
    }

    /// All trees' walks, block level by block level: every tree takes its step in one block
    /// level before any goes deeper, and each step prefetches the tree's next block, so the
    /// cache misses of the deep levels (one per tree) overlap instead of queueing.
    fn walk_interleaved<R: Row>(
        &self,
        blocks: &mut [Block<C>],
        row: &R,
        limit: u32,
        walks: &mut [Walk],
    ) -> u64 {
        for walk in walks.iter_mut() {
            *walk = Walk {
                counting: u64::MAX,
                ..Walk::default()
            };
        }
        let per_tree = self.blocks_per_tree;
        let (mut level, mut above) = (0, 0);
        loop {
            let mut done = false;
            let below = 4 * above + 1;
            for (tree, walk) in walks.iter_mut().enumerate() {
                let tree_blocks = &mut blocks[tree * per_tree..(tree + 1) * per_tree];
                done = self.block_step(tree_blocks, level, above, walk, row, limit);
                if !done {
                    // Ask for the next block now; it is needed only after every other tree's
                    // step.
                    prefetch(tree_blocks, self.next_block(level + 1, below, walk));
                }
            }
            if done {
                break;
            }
            level += 1;
            above = below;
        }
        walks.iter().map(|w| w.mass_score).sum()
    }

    fn unlearn_path(&mut self, tree: usize, leaf: u32) {
        let now = self.window;
        for depth in 0..=self.height {
            let pos = leaf >> (self.height - depth);
            let node = self.node_mut(tree, NodeAt { depth, pos });
            let (latest, reference) = node.masses(now);
            node.set_masses((latest.saturating_sub(1), reference), now);
        }
    }

    fn next_window(&mut self) {
        self.window += 1;
        if self.window >= C::REBASE_AT {
            self.rebase();
        }
    }

    /// Brings every node up to date and restarts window numbering (O(nodes), once every
    /// `REBASE_AT` windows).
    fn rebase(&mut self) {
        let now = self.window;
        for block in &mut self.blocks {
            for node in &mut block.0 {
                let masses = node.masses(now);
                node.set_masses(masses, 1);
            }
        }
        self.window = 1;
    }

    fn to_record(&self) -> ForestRecord {
        let now = self.window;
        let mass = |n: &Node<C>| {
            let (latest, reference) = n.masses(now);
            MassRecord {
                latest,
                reference,
                window: now,
            }
        };
        let mut branches = Vec::new();
        let mut leaves = Vec::new();
        for tree in 0..self.n_trees as usize {
            let branch_count = (1usize << self.height) - 1;
            for (i, node) in self.breadth_first(tree).enumerate() {
                if i < branch_count {
                    branches.push(BranchRecord {
                        threshold: node.threshold,
                        feature: node.feature.get(),
                        mass: mass(node),
                    });
                } else {
                    leaves.push(mass(node));
                }
            }
        }
        ForestRecord {
            height: self.height,
            n_trees: self.n_trees,
            branches,
            leaves,
            window: now,
        }
    }

    fn from_record(record: &ForestRecord) -> Self {
        let mut trees = Trees::new(record.height, record.n_trees);
        let now = record.window.min(C::REBASE_AT - 1);
        trees.window = now;
        let branch_count = (1usize << record.height) - 1;
        for tree in 0..record.n_trees as usize {
            for depth in 0..=record.height {
                for pos in 0..1u32 << depth {
                    let at = NodeAt { depth, pos };
                    let index = (1usize << depth) - 1 + pos as usize;
                    let node = trees.node_mut(tree, at);
                    let mass = if depth < record.height {
                        let b = &record.branches[tree * branch_count + index];
                        node.threshold = b.threshold;
                        node.feature = C::new(b.feature);
                        b.mass
                    } else {
                        record.leaves[tree * (branch_count + 1) + pos as usize]
                    };
                    node.set_masses(mass.at(record.window), now);
                }
            }
        }
        trees
    }
}

/// The trees with the narrowest counters the model allows.
#[derive(Clone, Debug)]
pub(super) enum Forest {
    /// 16-bit counters: windows up to 65,535 events, up to 65,536 features.
    Narrow(Trees16),
    /// 32-bit counters.
    Wide(Trees32),
}

/// Trees with 16-bit counters.
#[derive(Clone, Debug)]
pub(super) struct Trees16(Trees<u16>);
/// Trees with 32-bit counters.
#[derive(Clone, Debug)]
pub(super) struct Trees32(Trees<u32>);

macro_rules! each {
    ($forest:expr, $trees:ident => $body:expr) => {
        match $forest {
            Forest::Narrow(Trees16($trees)) => $body,
            Forest::Wide(Trees32($trees)) => $body,
        }
    };
}

impl Forest {
    /// Empty trees (splits at 0 on feature 0) sized for `window_size` and `n_features`.
    pub(super) fn new(height: u32, n_trees: u32, window_size: u32, n_features: usize) -> Self {
        if Self::fits_narrow(window_size, n_features) {
            Forest::Narrow(Trees16(Trees::new(height, n_trees)))
        } else {
            Forest::Wide(Trees32(Trees::new(height, n_trees)))
        }
    }

    fn fits_narrow(window_size: u32, n_features: usize) -> bool {
        window_size <= u16::MAX as u32 && n_features <= u16::MAX as usize + 1
    }

    /// Trees from their serialized form (checked by the caller with [`ForestRecord`]'s
    /// accessors first).
    pub(super) fn from_record(record: &ForestRecord, window_size: u32, n_features: usize) -> Self {
        if Self::fits_narrow(window_size, n_features) {
            Forest::Narrow(Trees16(Trees::from_record(record)))
        } else {
            Forest::Wide(Trees32(Trees::from_record(record)))
        }
    }

    /// The serialized form.
    pub(super) fn to_record(&self) -> ForestRecord {
        each!(self, t => t.to_record())
    }

    pub(super) fn height(&self) -> u32 {
        each!(self, t => t.height)
    }

    /// Bytes of node storage.
    pub(super) fn memory_bytes(&self) -> usize {
        each!(self, t => std::mem::size_of_val(t.blocks.as_slice()))
    }

    /// `(l_mass, r_mass)` of a node as River would hold them now.
    pub(super) fn masses(&self, tree: usize, at: NodeAt) -> (u32, u32) {
        each!(self, t => t.node(tree, at).masses(t.window))
    }

    /// `(feature column, threshold)` of the branch at `at` (`at.depth < height`).
    pub(super) fn split(&self, tree: usize, at: NodeAt) -> (u32, f64) {
        each!(self, t => {
            let node = t.node(tree, at);
            (node.feature.get(), node.threshold)
        })
    }

    /// Sets the split of the branch at `at`.
    pub(super) fn set_split(&mut self, tree: usize, at: NodeAt, feature: u32, threshold: f64) {
        each!(self, t => {
            let node = t.node_mut(tree, at);
            node.feature = Count::new(feature);
            node.threshold = threshold;
        })
    }

    /// Walks every tree for `row`, incrementing the latest mass of every visited node. Returns the summed `r_mass * 2^depth` of River's scoring rule for size
    /// limit `size_limit`, and leaves each tree's walk in `walks`.
    #[inline]
    pub(super) fn walk_all<R: Row>(&mut self, row: &R, size_limit: f64, walks: &mut [Walk]) -> u64 {
        // For an integer mass r and a real limit L, r < L exactly when r < ceil(L).
        let limit = size_limit.ceil().min(f64::from(u32::MAX)) as u32;
        each!(self, t => t.walk_all(row, limit, walks))
    }

    /// Depth of the branch where the walk to `leaf` was isolated (the first below the size
    /// limit), if one was.
    pub(super) fn stop_depth(&self, tree: usize, leaf: u32, size_limit: f64) -> Option<u32> {
        let height = self.height();
        (0..height).find(|&depth| {
            let at = NodeAt {
                depth,
                pos: leaf >> (height - depth),
            };
            f64::from(self.masses(tree, at).1) < size_limit
        })
    }

    /// Removes one learned visit along the path ending at leaf `leaf` (undoing a walk's
    /// learning).
    pub(super) fn unlearn_path(&mut self, tree: usize, leaf: u32) {
        each!(self, t => t.unlearn_path(tree, leaf))
    }

    /// River's window pivot (`r_mass = l_mass; l_mass = 0` for every node), in O(1).
    pub(super) fn next_window(&mut self) {
        each!(self, t => t.next_window())
    }
}

/// Equal when they hold the same splits and the same masses as River would see them, however
/// they are stored.
impl PartialEq for Forest {
    fn eq(&self, other: &Self) -> bool {
        self.to_record() == other.to_record()
    }
}

/// A node's masses in serialized form: `(l_mass, r_mass)` valid in window `window`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MassRecord {
    latest: u32,
    reference: u32,
    window: u32,
}

impl MassRecord {
    /// `(l_mass, r_mass)` as River would hold them in window `now`.
    pub(super) fn at(self, now: u32) -> (u32, u32) {
        if self.window == now {
            (self.latest, self.reference)
        } else if self.window.wrapping_add(1) == now {
            (0, self.latest)
        } else {
            (0, 0)
        }
    }
}

/// A branch in serialized form.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct BranchRecord {
    pub(super) threshold: f64,
    /// Column index of the split feature.
    pub(super) feature: u32,
    pub(super) mass: MassRecord,
}

/// The trees in serialized form: per tree, its `2^height - 1` branches breadth-first, then
/// all trees' `2^height` leaves left to right.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct ForestRecord {
    pub(super) height: u32,
    pub(super) n_trees: u32,
    pub(super) branches: Vec<BranchRecord>,
    pub(super) leaves: Vec<MassRecord>,
    /// Number of window boundaries passed.
    pub(super) window: u32,
}

impl ForestRecord {
    pub(super) fn branches_per_tree(&self) -> usize {
        (1usize << self.height) - 1
    }

    pub(super) fn leaves_per_tree(&self) -> usize {
        1usize << self.height
    }

    /// `(l_mass, r_mass)` of a node (`at.depth <= height`).
    pub(super) fn masses(&self, tree: usize, at: NodeAt) -> (u32, u32) {
        let mass = if at.depth == self.height {
            self.leaves[tree * self.leaves_per_tree() + at.pos as usize]
        } else {
            let index = (1usize << at.depth) - 1 + at.pos as usize;
            self.branches[tree * self.branches_per_tree() + index].mass
        };
        mass.at(self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::hst::build::{chacha, grow};
    use rand::{Rng, SeedableRng};

    fn forest(height: u32) -> Forest {
        grow(&mut chacha(9), 4, height, &[0, 1, 2], &[(0.0, 1.0); 3], 50)
    }

    fn all_masses(f: &Forest) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for tree in 0..4 {
            for depth in 0..=f.height() {
                for pos in 0..1u32 << depth {
                    out.push(f.masses(tree, NodeAt { depth, pos }));
                }
            }
        }
        out
    }

    fn walk(f: &mut Forest, row: &impl Row, walks: &mut [Walk]) -> u64 {
        f.walk_all(row, 5.0, walks)
    }

    /// The interleaved and the one-tree-at-a-time walks must agree exactly, with and without
    /// missing features, across window pivots, for odd and even heights.
    #[test]
    fn interleaved_and_sequential_walks_agree() {
        for height in [1, 2, 5, 6] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            let (mut a, mut b) = (forest(height), forest(height));
            let mut walks_a = [Walk::default(); 4];
            let mut walks_b = [Walk::default(); 4];
            for event in 0..2000 {
                let values: Vec<f64> = (0..3).map(|_| rng.random::<f64>()).collect();
                let present: Vec<bool> = (0..3).map(|_| rng.random::<f64>() > 0.2).collect();
                let row = Sparse {
                    values: &values,
                    present: &present,
                };
                let total_a = walk(&mut a, &row, &mut walks_a);
                let Forest::Narrow(Trees16(t)) = &mut b else {
                    panic!("a window of 50 fits 16-bit counters")
                };
                let mut blocks = std::mem::take(&mut t.blocks);
                let total_b = t.walk_interleaved(&mut blocks, &row, 5, &mut walks_b);
                t.blocks = blocks;
                assert_eq!(total_a, total_b, "height {height}, event {event}");
                for (x, y) in walks_a.iter().zip(&walks_b) {
                    assert_eq!((x.leaf, x.mass_score), (y.leaf, y.mass_score));
                }
                if event % 50 == 49 {
                    a.next_window();
                    b.next_window();
                }
            }
            assert_eq!(all_masses(&a), all_masses(&b));
        }
    }

    /// Narrow and wide counters give identical walks and masses.
    #[test]
    fn narrow_and_wide_counters_agree() {
        let narrow = forest(5);
        let Forest::Narrow(Trees16(t)) = &narrow else {
            panic!("a window of 50 fits 16-bit counters")
        };
        let mut wide = Forest::Wide(Trees32(Trees::from_record(&t.to_record())));
        let mut narrow = narrow;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (mut wa, mut wb) = ([Walk::default(); 4], [Walk::default(); 4]);
        for event in 0..1000 {
            let values: Vec<f64> = (0..3).map(|_| rng.random::<f64>()).collect();
            let row = Dense(&values);
            assert_eq!(
                walk(&mut narrow, &row, &mut wa),
                walk(&mut wide, &row, &mut wb)
            );
            if event % 50 == 49 {
                narrow.next_window();
                wide.next_window();
            }
        }
        assert_eq!(narrow, wide);
    }

    #[test]
    fn unlearning_a_walk_restores_the_masses() {
        let mut f = forest(6);
        let mut walks = [Walk::default(); 4];
        for _ in 0..30 {
            walk(&mut f, &Dense(&[0.3, 0.6, 0.9]), &mut walks);
        }
        f.next_window();
        let before = all_masses(&f);
        walk(&mut f, &Dense(&[0.9, 0.1, 0.4]), &mut walks);
        for (tree, w) in walks.iter().enumerate() {
            f.unlearn_path(tree, w.leaf);
        }
        assert_eq!(all_masses(&f), before);
    }

    #[test]
    fn rebasing_window_numbers_changes_no_mass() {
        let mut f = forest(5);
        let mut walks = [Walk::default(); 4];
        for window in 0..3 {
            for _ in 0..10 + window {
                walk(&mut f, &Dense(&[0.2, 0.4, 0.8]), &mut walks);
            }
            f.next_window();
        }
        let before = all_masses(&f);
        let Forest::Narrow(Trees16(t)) = &mut f else {
            panic!("a window of 50 fits 16-bit counters")
        };
        t.rebase();
        assert_eq!(t.window, 1);
        assert_eq!(all_masses(&f), before);
    }

    /// Stamps of nodes untouched for many windows must not alias after the 16-bit window
    /// numbers are rebased.
    #[test]
    fn many_windows_never_alias_stale_stamps() {
        let mut f = forest(3);
        let mut walks = [Walk::default(); 4];
        walk(&mut f, &Dense(&[0.1, 0.1, 0.1]), &mut walks);
        for _ in 0..(1u32 << 16) + 3 {
            f.next_window();
        }
        assert!(all_masses(&f).iter().all(|&m| m == (0, 0)));
    }

    #[test]
    fn records_round_trip() {
        let mut f = forest(4);
        let mut walks = [Walk::default(); 4];
        for i in 0..120 {
            let x = f64::from(i % 7) / 7.0;
            walk(&mut f, &Dense(&[x, 1.0 - x, 0.5]), &mut walks);
            if i % 50 == 49 {
                f.next_window();
            }
        }
        let record = f.to_record();
        let back = Forest::from_record(&record, 50, 3);
        assert_eq!(back, f);
        assert_eq!(all_masses(&back), all_masses(&f));
    }

    #[test]
    fn breadth_first_indices_map_to_positions() {
        assert_eq!(NodeAt::from_breadth_first(0), NodeAt { depth: 0, pos: 0 });
        assert_eq!(NodeAt::from_breadth_first(2), NodeAt { depth: 1, pos: 1 });
        assert_eq!(NodeAt::from_breadth_first(3), NodeAt { depth: 2, pos: 0 });
        assert_eq!(NodeAt::from_breadth_first(14), NodeAt { depth: 3, pos: 7 });
    }

    /// Every node of a tree has its own slot, and blocks are cache-line aligned.
    #[test]
    fn slots_are_distinct_and_blocks_aligned() {
        for height in 1..=9 {
            let t: Trees<u16> = Trees::new(height, 1);
            let mut seen = std::collections::HashSet::new();
            for depth in 0..=height {
                for pos in 0..1u32 << depth {
                    let (block, slot) = t.slot(NodeAt { depth, pos });
                    assert!(block < t.blocks_per_tree, "height {height}");
                    assert!(seen.insert((block, slot)), "height {height}");
                }
            }
            assert_eq!(std::mem::size_of::<Node<u16>>(), 16);
            assert_eq!(std::mem::align_of::<Block<u16>>(), 64);
        }
    }
}
