//! The trees' storage. [`Forest`] picks a layout by shape: small forests are stored flat
//! ([`flat`](super::flat)); larger ones, described here, as complete binary trees in
//! cache-line blocks, with masses that switch windows in O(1).
//!
//! **Layout.** A branch is 16 bytes (its split and three 16-bit counters) and a leaf 6,
//! when the window and the feature count allow it (otherwise 24 and 12 bytes, and the blocks
//! below are padded to 128 and 64 bytes). Levels are
//! paired: a branch and its two children share one 64-byte block, so a walk from the root to
//! a leaf touches one cache line per two levels. The last branch level and the leaves form
//! 32-byte bottom blocks (a branch and its two leaves), two to a cache line; when the number
//! of levels above them is odd, the root sits alone in a block of its own. Blocks of one tier
//! are stored left to right. For 25 trees of height 15 a walk touches 8 cache lines instead
//! of 16, and the forest takes 22 MB instead of 30: the misses of the deep levels are what
//! bound a forest that does not fit in cache.
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

use super::flat::{self, FlatTrees};
use crate::cache_hint::prefetch_at;

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

/// A node's masses, valid relative to the window they were last written in.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Masses<C> {
    latest: C,
    reference: C,
    window: C,
}

impl<C: Count> Masses<C> {
    /// `(l_mass, r_mass)` as River would hold them in window `now`.
    #[inline]
    fn at(&self, now: u32) -> (u32, u32) {
        let window = self.window.get();
        if window == now {
            (self.latest.get(), self.reference.get())
        } else if window + 1 == now {
            (0, self.latest.get())
        } else {
            (0, 0)
        }
    }

    /// Brings the masses to window `now`, counts one visit in the latest mass, and returns
    /// the reference mass. Free of branches: deep nodes are touched about once per window,
    /// so a branch on the window would mispredict often.
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

    /// [`visit`](Self::visit) for a node that was most likely visited already in window
    /// `now`: a predictable branch and an increment instead of the branch-free update.
    #[inline(always)]
    fn visit_current(&mut self, now: u32) -> u32 {
        if self.window.get() == now {
            self.latest = C::new(self.latest.get() + 1);
            self.reference.get()
        } else {
            self.visit(now)
        }
    }

    #[inline]
    fn set(&mut self, (latest, reference): (u32, u32), now: u32) {
        self.latest = C::new(latest);
        self.reference = C::new(reference);
        self.window = C::new(now);
    }
}

/// A branch: its split and its masses.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Node<C> {
    threshold: f64,
    feature: C,
    mass: Masses<C>,
}

/// A branch and its two children, on one cache line (one slot spare); in a single-level
/// tier only the first slot is used.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Block<C>([Node<C>; 4]);

/// A branch of the last branch level and its two leaves: half a cache line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
struct Bottom<C> {
    branch: Node<C>,
    leaves: [Masses<C>; 2],
}

/// How many levels a tier of blocks covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Span {
    /// One level (the root, when the levels above the bottom tier are odd in number).
    One,
    /// Two levels.
    Two,
}

/// One tier of blocks above the bottom tier: its first depth, span and offset in the tree's
/// blocks (its blocks follow left to right, one per node at `depth`).
#[derive(Clone, Copy, Debug)]
struct Tier {
    depth: u32,
    span: Span,
    offset: usize,
    /// Whether its nodes are near enough the root to be visited in every window, so that
    /// [`Masses::visit_current`] rarely mispredicts.
    busy: bool,
}

/// Tiers starting above this depth are [`Tier::busy`]: a node at depth `d` receives about
/// `window_size / 2^d` events per window, and the mispredictions of a branch on the window
/// (about `2^d / window_size` per event) cost less than the branch-free update saves.
const BUSY_BELOW_DEPTH: u32 = 6;

/// How a step updates masses and score; which is fastest depends on where the nodes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// A forest in cache: everything branch-free (mispredictions are the main cost there).
    InCache,
    /// A [`Tier::busy`] tier of a large forest: [`Masses::visit_current`].
    Busy,
    /// A deep tier of a large forest: branch-free updates, and no scoring once the walk has
    /// stopped counting (it nearly always has, this deep).
    Deep,
}

/// Where a node lives in a tree's storage.
#[derive(Clone, Copy, Debug)]
enum Place {
    Block(usize, usize),
    BottomBranch(usize),
    Leaf(usize, usize),
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

impl Walk {
    /// A walk that has reached leaf `leaf` with scoring terms summing to `mass_score`.
    pub(super) fn finished(mass_score: u64, leaf: u32) -> Self {
        Walk {
            mass_score,
            counting: 0,
            leaf,
        }
    }
}

/// How an event presents its features to a walk.
pub(super) trait Row {
    /// The value of column `feature`, or `None` if the event lacks it.
    fn value(&self, feature: usize) -> Option<f64>;

    /// Every column's value, when the event has them all.
    fn dense(&self) -> Option<&[f64]> {
        None
    }
}

/// A dense row: every feature present.
pub(super) struct Dense<'a>(pub(super) &'a [f64]);

impl Row for Dense<'_> {
    #[inline(always)]
    fn value(&self, feature: usize) -> Option<f64> {
        Some(self.0[feature])
    }

    #[inline(always)]
    fn dense(&self) -> Option<&[f64]> {
        Some(self.0)
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

    /// A named event with every feature walks as a dense one (the flat layout keeps
    /// counting at the leaves).
    fn dense(&self) -> Option<&[f64]> {
        self.present.iter().all(|&p| p).then_some(self.values)
    }
}

/// Forests with more node storage than this are walked tier by tier (see `walk_all`).
const INTERLEAVE_ABOVE_BYTES: usize = 1 << 20;

/// One tree's storage, borrowed for a walk.
struct TreeMut<'a, C> {
    blocks: &'a mut [Block<C>],
    bottoms: &'a mut [Bottom<C>],
}

/// The trees, with counters of type `C`.
#[derive(Clone, Debug)]
struct Trees<C> {
    height: u32,
    n_trees: u32,
    /// The tiers above the bottom tier, root first.
    tiers: Vec<Tier>,
    blocks_per_tree: usize,
    blocks: Vec<Block<C>>,
    /// `2^(height - 1)` per tree.
    bottoms: Vec<Bottom<C>>,
    /// Number of window boundaries passed (since the last rebase).
    window: u32,
}

impl<C: Count> Trees<C> {
    fn new(height: u32, n_trees: u32) -> Self {
        let mut tiers = Vec::new();
        let mut offset = 0;
        let mut depth = 0;
        let bottom_depth = height - 1;
        if bottom_depth % 2 == 1 {
            tiers.push(Tier {
                depth,
                span: Span::One,
                offset,
                busy: true,
            });
            offset += 1;
            depth = 1;
        }
        while depth < bottom_depth {
            tiers.push(Tier {
                depth,
                span: Span::Two,
                offset,
                busy: depth < BUSY_BELOW_DEPTH,
            });
            offset += 1usize << depth;
            depth += 2;
        }
        Trees {
            height,
            n_trees,
            tiers,
            blocks_per_tree: offset,
            blocks: vec![Block::default(); offset * n_trees as usize],
            bottoms: vec![Bottom::default(); (1usize << bottom_depth) * n_trees as usize],
            window: 0,
        }
    }

    fn bottoms_per_tree(&self) -> usize {
        1usize << (self.height - 1)
    }

    /// Where a node lives, within its tree's blocks or bottoms.
    fn place(&self, at: NodeAt) -> Place {
        let pos = at.pos as usize;
        if at.depth == self.height {
            return Place::Leaf(pos >> 1, pos & 1);
        }
        if at.depth + 1 == self.height {
            return Place::BottomBranch(pos);
        }
        let tier = self
            .tiers
            .iter()
            .rev()
            .find(|t| t.depth <= at.depth)
            .copied()
            .unwrap_or(Tier {
                depth: 0,
                span: Span::One,
                offset: 0,
                busy: true,
            });
        if at.depth == tier.depth {
            Place::Block(tier.offset + pos, 0)
        } else {
            Place::Block(tier.offset + (pos >> 1), 1 + (pos & 1))
        }
    }

    fn tree(&mut self, tree: usize) -> TreeMut<'_, C> {
        let (b, m) = (self.blocks_per_tree, self.bottoms_per_tree());
        TreeMut {
            blocks: &mut self.blocks[tree * b..(tree + 1) * b],
            bottoms: &mut self.bottoms[tree * m..(tree + 1) * m],
        }
    }

    fn masses_in<'a>(
        &self,
        blocks: &'a [Block<C>],
        bottoms: &'a [Bottom<C>],
        at: NodeAt,
    ) -> &'a Masses<C> {
        match self.place(at) {
            Place::Block(block, slot) => &blocks[block].0[slot].mass,
            Place::BottomBranch(i) => &bottoms[i].branch.mass,
            Place::Leaf(i, side) => &bottoms[i].leaves[side],
        }
    }

    fn masses_of(&self, tree: usize, at: NodeAt) -> &Masses<C> {
        let (b, m) = (self.blocks_per_tree, self.bottoms_per_tree());
        self.masses_in(
            &self.blocks[tree * b..(tree + 1) * b],
            &self.bottoms[tree * m..(tree + 1) * m],
            at,
        )
    }

    fn masses_mut(&mut self, tree: usize, at: NodeAt) -> &mut Masses<C> {
        let place = self.place(at);
        let t = self.tree(tree);
        match place {
            Place::Block(block, slot) => &mut t.blocks[block].0[slot].mass,
            Place::BottomBranch(i) => &mut t.bottoms[i].branch.mass,
            Place::Leaf(i, side) => &mut t.bottoms[i].leaves[side],
        }
    }

    /// The branch at `at` (`at.depth < height`).
    fn branch(&self, tree: usize, at: NodeAt) -> &Node<C> {
        match self.place(at) {
            Place::Block(block, slot) => &self.blocks[tree * self.blocks_per_tree + block].0[slot],
            Place::BottomBranch(i) | Place::Leaf(i, _) => {
                &self.bottoms[tree * self.bottoms_per_tree() + i].branch
            }
        }
    }

    fn branch_mut(&mut self, tree: usize, at: NodeAt) -> &mut Node<C> {
        let place = self.place(at);
        let t = self.tree(tree);
        match place {
            Place::Block(block, slot) => &mut t.blocks[block].0[slot],
            Place::BottomBranch(i) | Place::Leaf(i, _) => &mut t.bottoms[i].branch,
        }
    }

    /// Whether the walk of `row` goes right at the branch `node`, at `at`: `x >= threshold`
    /// (ties go right, as in River; inputs are checked finite, so `>=` is `!(<)`), or for an
    /// event lacking the feature, River's rule: towards the child with more latest-window
    /// mass, left on ties.
    #[inline(always)]
    fn goes_right<R: Row>(
        &self,
        tree: &TreeMut<'_, C>,
        node: &Node<C>,
        at: NodeAt,
        row: &R,
    ) -> bool {
        match row.value(node.feature.get() as usize) {
            Some(x) => x >= node.threshold,
            None => self.heavier_child_is_right(tree, at),
        }
    }

    #[cold]
    fn heavier_child_is_right(&self, tree: &TreeMut<'_, C>, at: NodeAt) -> bool {
        let latest = |child: NodeAt| {
            self.masses_in(tree.blocks, tree.bottoms, child)
                .at(self.window)
                .0
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

    /// Advances `walk` (of one tree, standing at the root of its block in `tier`) through
    /// that block.
    ///
    /// Both children in a two-level block are decided together with their parent, before it
    /// is known which one the walk takes: the three decisions then overlap instead of
    /// waiting for each other, which shortens the chain of dependent loads down the tree.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn tier_step<R: Row>(
        &self,
        tree: &mut TreeMut<'_, C>,
        tier: Tier,
        mode: Mode,
        walk: &mut Walk,
        row: &R,
        limit: u32,
    ) {
        let now = self.window;
        let (depth, pos) = (tier.depth, walk.leaf);
        let block = tier.offset + pos as usize;
        let at = NodeAt { depth, pos };
        let right = self.goes_right(tree, &tree.blocks[block].0[0], at, row);
        if tier.span == Span::One {
            let reference = tree.blocks[block].0[0].mass.visit_current(now);
            Self::score(walk, reference, depth, limit);
            walk.leaf = 2 * pos + u32::from(right);
            return;
        }
        let nodes = &tree.blocks[block].0;
        let left_child_right = self.goes_right(tree, &nodes[1], at.child(false), row);
        let right_child_right = self.goes_right(tree, &nodes[2], at.child(true), row);
        let [parent, left_child, right_child, _] = &mut tree.blocks[block].0;
        let child = if right { right_child } else { left_child };
        let (parent_reference, child_reference) = if mode == Mode::Busy {
            (
                parent.mass.visit_current(now),
                child.mass.visit_current(now),
            )
        } else {
            (parent.mass.visit(now), child.mass.visit(now))
        };
        // Deep in the tree the walk has nearly always stopped counting, and a node's
        // reference mass never exceeds its parent's, so once it stops it never restarts.
        if mode != Mode::Deep || walk.counting != 0 {
            Self::score(walk, parent_reference, depth, limit);
            Self::score(walk, child_reference, depth + 1, limit);
        }
        let child_right = if right {
            right_child_right
        } else {
            left_child_right
        };
        walk.leaf = 4 * pos + 2 * u32::from(right) + u32::from(child_right);
    }

    /// The last step of a walk: the branch above the leaves, then the leaf.
    #[inline(always)]
    fn bottom_step<R: Row>(
        &self,
        tree: &mut TreeMut<'_, C>,
        mode: Mode,
        walk: &mut Walk,
        row: &R,
        limit: u32,
    ) {
        let now = self.window;
        let depth = self.height - 1;
        let pos = walk.leaf;
        let at = NodeAt { depth, pos };
        let right = self.goes_right(tree, &tree.bottoms[pos as usize].branch, at, row);
        let bottom = &mut tree.bottoms[pos as usize];
        let reference = bottom.branch.mass.visit(now);
        let leaf_reference = bottom.leaves[usize::from(right)].visit(now);
        if mode != Mode::Deep || walk.counting != 0 {
            Self::score(walk, reference, depth, limit);
            Self::score(walk, leaf_reference, self.height, limit);
        }
        walk.leaf = 2 * pos + u32::from(right);
    }

    /// Where a walk goes on after `tier` (`None`: to the bottom tier), for prefetching.
    #[inline(always)]
    fn prefetch_next(&self, tree: &TreeMut<'_, C>, next: Option<&Tier>, walk: &Walk) {
        match next {
            Some(tier) => prefetch_at(tree.blocks, tier.offset + walk.leaf as usize),
            None => prefetch_at(tree.bottoms, walk.leaf as usize),
        }
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(self.blocks.as_slice())
            + std::mem::size_of_val(self.bottoms.as_slice())
    }

    fn walk_all<R: Row>(&mut self, row: &R, limit: u32, walks: &mut [Walk]) -> u64 {
        let interleave = self.memory_bytes() > INTERLEAVE_ABOVE_BYTES;
        self.walk(row, limit, walks, interleave)
    }

    fn walk<R: Row>(&mut self, row: &R, limit: u32, walks: &mut [Walk], interleave: bool) -> u64 {
        let mut blocks = std::mem::take(&mut self.blocks);
        let mut bottoms = std::mem::take(&mut self.bottoms);
        let total = if !interleave {
            self.walk_in_pairs(&mut blocks, &mut bottoms, row, limit, walks)
        } else {
            let mut trees: Vec<TreeMut<'_, C>> = blocks
                .chunks_exact_mut(self.blocks_per_tree.max(1))
                .chain(std::iter::repeat_with(|| &mut [][..]))
                .zip(bottoms.chunks_exact_mut(self.bottoms_per_tree()))
                .map(|(blocks, bottoms)| TreeMut { blocks, bottoms })
                .collect();
            self.walk_interleaved(&mut trees, row, limit, walks)
        };
        self.blocks = blocks;
        self.bottoms = bottoms;
        total
    }

    /// The walks of a forest that fits in cache: two trees at a time, step by step. The walk
    /// down one tree is a chain of dependent loads; two independent chains side by side keep
    /// the CPU busy while each waits, and the walks' state stays in registers.
    fn walk_in_pairs<R: Row>(
        &self,
        blocks: &mut [Block<C>],
        bottoms: &mut [Bottom<C>],
        row: &R,
        limit: u32,
        walks: &mut [Walk],
    ) -> u64 {
        let (b, m) = (self.blocks_per_tree, self.bottoms_per_tree());
        let start = Walk {
            counting: u64::MAX,
            ..Walk::default()
        };
        let mut total = 0;
        let mut first = 0;
        while first < walks.len() {
            let (blocks_a, rest_blocks) = blocks[first * b..].split_at_mut(b);
            let (bottoms_a, rest_bottoms) = bottoms[first * m..].split_at_mut(m);
            let mut a = TreeMut {
                blocks: blocks_a,
                bottoms: bottoms_a,
            };
            let mut walk_a = start;
            if first + 1 < walks.len() {
                let mut b = TreeMut {
                    blocks: &mut rest_blocks[..b],
                    bottoms: &mut rest_bottoms[..m],
                };
                let mut walk_b = start;
                for &tier in &self.tiers {
                    self.tier_step(&mut a, tier, Mode::InCache, &mut walk_a, row, limit);
                    self.tier_step(&mut b, tier, Mode::InCache, &mut walk_b, row, limit);
                }
                self.bottom_step(&mut a, Mode::InCache, &mut walk_a, row, limit);
                self.bottom_step(&mut b, Mode::InCache, &mut walk_b, row, limit);
                total += walk_b.mass_score;
                walks[first + 1] = walk_b;
            } else {
                for &tier in &self.tiers {
                    self.tier_step(&mut a, tier, Mode::InCache, &mut walk_a, row, limit);
                }
                self.bottom_step(&mut a, Mode::InCache, &mut walk_a, row, limit);
            }
            total += walk_a.mass_score;
            walks[first] = walk_a;
            first += 2;
        }
        total
    }

    /// All trees' walks, tier by tier: every tree takes its step in one tier before any goes
    /// deeper, and each step prefetches the tree's next block, so the cache misses of the
    /// deep levels (one per tree) overlap instead of queueing.
    fn walk_interleaved<R: Row>(
        &self,
        trees: &mut [TreeMut<'_, C>],
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
        for (k, &tier) in self.tiers.iter().enumerate() {
            let next = self.tiers.get(k + 1);
            for (tree, walk) in trees.iter_mut().zip(walks.iter_mut()) {
                let mode = if tier.busy { Mode::Busy } else { Mode::Deep };
                self.tier_step(tree, tier, mode, walk, row, limit);
                // Ask for the next block now; it is needed only after every other tree's step.
                self.prefetch_next(tree, next, walk);
            }
        }
        for (tree, walk) in trees.iter_mut().zip(walks.iter_mut()) {
            self.bottom_step(tree, Mode::Deep, walk, row, limit);
        }
        walks.iter().map(|w| w.mass_score).sum()
    }

    fn unlearn_path(&mut self, tree: usize, leaf: u32) {
        let now = self.window;
        for depth in 0..=self.height {
            let pos = leaf >> (self.height - depth);
            let mass = self.masses_mut(tree, NodeAt { depth, pos });
            let (latest, reference) = mass.at(now);
            mass.set((latest.saturating_sub(1), reference), now);
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
        let renumber = |m: &mut Masses<C>| {
            let masses = m.at(now);
            m.set(masses, 1);
        };
        for block in &mut self.blocks {
            block.0.iter_mut().for_each(|n| renumber(&mut n.mass));
        }
        for bottom in &mut self.bottoms {
            renumber(&mut bottom.branch.mass);
            bottom.leaves.iter_mut().for_each(renumber);
        }
        self.window = 1;
    }

    fn to_record(&self) -> ForestRecord {
        let now = self.window;
        ForestRecord::collect(
            (self.height, self.n_trees, now),
            |tree, at| self.masses_of(tree, at).at(now),
            |tree, at| {
                let node = self.branch(tree, at);
                (node.feature.get(), node.threshold)
            },
        )
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
                    let mass = if depth < record.height {
                        let b = &record.branches[tree * branch_count + index];
                        let node = trees.branch_mut(tree, at);
                        node.threshold = b.threshold;
                        node.feature = C::new(b.feature);
                        b.mass
                    } else {
                        record.leaves[tree * (branch_count + 1) + pos as usize]
                    };
                    trees.masses_mut(tree, at).set(mass.at(record.window), now);
                }
            }
        }
        trees
    }
}

/// The trees, in the layout that walks fastest for their shape.
#[derive(Clone, Debug)]
pub(super) enum Forest {
    /// Breadth-first arrays, pivoted by a shift of every node's masses (small forests against
    /// their window).
    Flat(FlatTrees),
    /// Lazy pivots, 16-bit counters: windows up to 65,535 events, up to 65,536 features.
    Narrow(Trees16),
    /// Lazy pivots, 32-bit counters.
    Wide(Trees32),
}

/// Trees with 16-bit counters.
#[derive(Clone, Debug)]
pub(super) struct Trees16(Trees<u16>);
/// Trees with 32-bit counters.
#[derive(Clone, Debug)]
pub(super) struct Trees32(Trees<u32>);

/// `$lazy` for either lazy layout (`$trees` bound to its `Trees`), `$flat` for the flat one.
macro_rules! each {
    ($forest:expr, $trees:ident => $lazy:expr, $flat_trees:ident => $flat:expr) => {
        match $forest {
            Forest::Flat($flat_trees) => $flat,
            Forest::Narrow(Trees16($trees)) => $lazy,
            Forest::Wide(Trees32($trees)) => $lazy,
        }
    };
}

impl Forest {
    /// Empty trees (splits at 0 on feature 0) sized for `window_size` and `n_features`.
    pub(super) fn new(height: u32, n_trees: u32, window_size: u32, n_features: usize) -> Self {
        if flat::fits(height, n_trees, window_size) {
            Forest::Flat(FlatTrees::new(height, n_trees))
        } else if Self::fits_narrow(window_size, n_features) {
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
        if flat::fits(record.height, record.n_trees, window_size) {
            Forest::Flat(FlatTrees::from_record(record))
        } else if Self::fits_narrow(window_size, n_features) {
            Forest::Narrow(Trees16(Trees::from_record(record)))
        } else {
            Forest::Wide(Trees32(Trees::from_record(record)))
        }
    }

    /// The serialized form.
    pub(super) fn to_record(&self) -> ForestRecord {
        each!(self, t => t.to_record(), f => f.to_record())
    }

    pub(super) fn height(&self) -> u32 {
        each!(self, t => t.height, f => f.height())
    }

    /// Bytes of node storage.
    pub(super) fn memory_bytes(&self) -> usize {
        each!(self, t => t.memory_bytes(), f => f.memory_bytes())
    }

    /// `(l_mass, r_mass)` of a node as River would hold them now.
    pub(super) fn masses(&self, tree: usize, at: NodeAt) -> (u32, u32) {
        each!(self, t => t.masses_of(tree, at).at(t.window), f => f.masses(tree, at))
    }

    /// `r_mass` of a node as River would hold it now: the isolation test's input, without
    /// the latest mass that the flat layout sums from a branch's leaves on demand.
    pub(super) fn reference_mass(&self, tree: usize, at: NodeAt) -> u32 {
        each!(self, t => t.masses_of(tree, at).at(t.window).1, f => f.reference_mass(tree, at))
    }

    /// `(feature column, threshold)` of the branch at `at` (`at.depth < height`).
    pub(super) fn split(&self, tree: usize, at: NodeAt) -> (u32, f64) {
        each!(self, t => {
            let node = t.branch(tree, at);
            (node.feature.get(), node.threshold)
        }, f => f.split(tree, at))
    }

    /// Sets the split of the branch at `at`.
    pub(super) fn set_split(&mut self, tree: usize, at: NodeAt, feature: u32, threshold: f64) {
        each!(self, t => {
            let node = t.branch_mut(tree, at);
            node.feature = Count::new(feature);
            node.threshold = threshold;
        }, f => f.set_split(tree, at, feature, threshold))
    }

    /// Walks every tree for `row`, incrementing the latest mass of every visited node.
    /// Returns the summed `r_mass * 2^depth` of River's scoring rule for size limit
    /// `size_limit`, and leaves each tree's walk in `walks`.
    #[inline]
    pub(super) fn walk_all<R: Row>(&mut self, row: &R, size_limit: f64, walks: &mut [Walk]) -> u64 {
        // For an integer mass r and a real limit L, r < L exactly when r < ceil(L).
        let limit = size_limit.ceil().min(f64::from(u32::MAX)) as u32;
        each!(self, t => t.walk_all(row, limit, walks), f => f.walk_all(row, limit, walks))
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
            f64::from(self.reference_mass(tree, at)) < size_limit
        })
    }

    /// Removes one learned visit along the path ending at leaf `leaf` (undoing a walk's
    /// learning).
    pub(super) fn unlearn_path(&mut self, tree: usize, leaf: u32) {
        each!(self, t => t.unlearn_path(tree, leaf), f => f.unlearn_path(tree, leaf))
    }

    /// River's window pivot (`r_mass = l_mass; l_mass = 0` for every node).
    pub(super) fn next_window(&mut self) {
        each!(self, t => t.next_window(), f => f.next_window())
    }
}

/// Equal when they hold the same splits and the same masses as River would see them, however
/// they are stored and their windows numbered.
impl PartialEq for Forest {
    fn eq(&self, other: &Self) -> bool {
        fn unnumbered(forest: &Forest) -> ForestRecord {
            let mut record = forest.to_record();
            record.window = 0;
            record.branches.iter_mut().for_each(|b| b.mass.window = 0);
            record.leaves.iter_mut().for_each(|m| m.window = 0);
            record
        }
        unnumbered(self) == unnumbered(other)
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
    /// The serialized form of trees of shape `(height, n_trees)` in window `window`, read
    /// node by node: `masses` gives a node's `(l_mass, r_mass)`, `split` a branch's
    /// `(feature, threshold)`.
    pub(super) fn collect(
        (height, n_trees, window): (u32, u32, u32),
        masses: impl Fn(usize, NodeAt) -> (u32, u32),
        split: impl Fn(usize, NodeAt) -> (u32, f64),
    ) -> Self {
        let per_tree = 1usize << height;
        let mut branches = Vec::with_capacity(n_trees as usize * (per_tree - 1));
        let mut leaves = Vec::with_capacity(n_trees as usize * per_tree);
        for tree in 0..n_trees as usize {
            for depth in 0..=height {
                for pos in 0..1u32 << depth {
                    let at = NodeAt { depth, pos };
                    let (latest, reference) = masses(tree, at);
                    let mass = MassRecord {
                        latest,
                        reference,
                        window,
                    };
                    if depth < height {
                        let (feature, threshold) = split(tree, at);
                        branches.push(BranchRecord {
                            threshold,
                            feature,
                            mass,
                        });
                    } else {
                        leaves.push(mass);
                    }
                }
            }
        }
        ForestRecord {
            height,
            n_trees,
            branches,
            leaves,
            window,
        }
    }

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

    /// An odd number, so that walks in pairs also meet a tree of their own.
    const TREES: usize = 5;

    fn forest(height: u32) -> Forest {
        grow(
            &mut chacha(9),
            TREES as u32,
            height,
            &[0, 1, 2],
            &[(0.0, 1.0); 3],
            50,
        )
    }

    /// The same trees in the lazy layout with 16-bit counters.
    fn narrow(f: &Forest) -> Forest {
        Forest::Narrow(Trees16(Trees::from_record(&f.to_record())))
    }

    /// The same trees in every layout: flat, lazy narrow, lazy wide.
    fn every_layout(f: &Forest) -> [Forest; 3] {
        let record = f.to_record();
        [
            Forest::Flat(FlatTrees::from_record(&record)),
            Forest::Narrow(Trees16(Trees::from_record(&record))),
            Forest::Wide(Trees32(Trees::from_record(&record))),
        ]
    }

    /// Every node's masses; each node's reference mass read alone is checked against them.
    fn all_masses(f: &Forest) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for tree in 0..TREES {
            for depth in 0..=f.height() {
                for pos in 0..1u32 << depth {
                    let at = NodeAt { depth, pos };
                    let masses = f.masses(tree, at);
                    assert_eq!(f.reference_mass(tree, at), masses.1, "{tree} {depth} {pos}");
                    out.push(masses);
                }
            }
        }
        out
    }

    /// Three windows of `per_window + w` events each (`w` the window's index), event `i` of
    /// a window being `row(i)`; ends on a pivot.
    fn learn_windows(f: &mut Forest, per_window: u32, row: impl Fn(u32) -> [f64; 3]) {
        let mut walks = [Walk::default(); TREES];
        for window in 0..3 {
            for i in 0..per_window + window {
                walk(f, &Dense(&row(i)), &mut walks);
            }
            f.next_window();
        }
    }

    /// Three values in [0, 1), each present with probability 0.8.
    fn random_event(rng: &mut impl Rng) -> (Vec<f64>, Vec<bool>) {
        let values = (0..3).map(|_| rng.random::<f64>()).collect();
        let present = (0..3).map(|_| rng.random::<f64>() > 0.2).collect();
        (values, present)
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
            let (mut a, mut b) = (narrow(&forest(height)), narrow(&forest(height)));
            let mut walks_a = [Walk::default(); TREES];
            let mut walks_b = [Walk::default(); TREES];
            for event in 0..2000 {
                let (values, present) = random_event(&mut rng);
                let row = Sparse {
                    values: &values,
                    present: &present,
                };
                let total_a = walk(&mut a, &row, &mut walks_a);
                let Forest::Narrow(Trees16(t)) = &mut b else {
                    panic!("a window of 50 fits 16-bit counters")
                };
                let total_b = t.walk(&row, 5, &mut walks_b, true);
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

    /// The flat layout and the lazy ones, with narrow and wide counters, give identical walks
    /// and masses, for dense rows (which the flat layout counts at the leaves) and rows
    /// missing features, across pivots and unlearned walks.
    #[test]
    fn every_layout_agrees() {
        for height in [1, 4, 7] {
            let mut layouts = every_layout(&forest(height));
            assert!(matches!(layouts[0], Forest::Flat(_)));
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
            let mut walks = [[Walk::default(); TREES]; 3];
            for event in 0..1500 {
                let (values, present) = random_event(&mut rng);
                let row = Sparse {
                    values: &values,
                    present: &present,
                };
                let unlearn = event % 7 == 3;
                // Windows of 50: dense events only for 35 (the flat layout then counts
                // visits at the leaves alone), then every other event lacks features (after
                // the first of those, it counts whole paths).
                let dense = event % 50 < 35 || event % 2 == 0;
                let totals: Vec<u64> = layouts
                    .iter_mut()
                    .zip(&mut walks)
                    .map(|(f, w)| {
                        let total = if dense {
                            walk(f, &Dense(&values), w)
                        } else {
                            walk(f, &row, w)
                        };
                        if unlearn {
                            for (tree, walk) in w.iter().enumerate() {
                                f.unlearn_path(tree, walk.leaf);
                            }
                        }
                        total
                    })
                    .collect();
                assert_eq!(totals[0], totals[1], "height {height}, event {event}");
                assert_eq!(totals[1], totals[2], "height {height}, event {event}");
                for ((flat, narrow), wide) in walks[0].iter().zip(&walks[1]).zip(&walks[2]) {
                    assert_eq!(
                        (flat.leaf, flat.mass_score),
                        (narrow.leaf, narrow.mass_score)
                    );
                    assert_eq!(
                        (narrow.leaf, narrow.mass_score),
                        (wide.leaf, wide.mass_score)
                    );
                }
                if event % 10 == 5 {
                    assert_eq!(all_masses(&layouts[0]), all_masses(&layouts[1]));
                }
                if event % 50 == 49 {
                    layouts.iter_mut().for_each(Forest::next_window);
                }
            }
            assert_eq!(all_masses(&layouts[0]), all_masses(&layouts[1]));
            assert_eq!(all_masses(&layouts[1]), all_masses(&layouts[2]));
            assert_eq!(layouts[0], layouts[1]);
            assert_eq!(layouts[1], layouts[2]);
        }
    }

    /// The shapes stored flat: small against the window, 16-bit counters.
    #[test]
    fn small_forests_against_their_window_are_flat() {
        assert!(flat::fits(8, 10, 250));
        assert!(!flat::fits(15, 25, 250), "1.6 M nodes every 250 events");
        assert!(!flat::fits(8, 10, 10), "6,144 nodes every 10 events");
        assert!(!flat::fits(8, 10, 70_000), "masses past 16 bits");
        assert!(matches!(Forest::new(8, 10, 250, 8), Forest::Flat(_)));
        assert!(matches!(Forest::new(15, 25, 250, 8), Forest::Narrow(_)));
    }

    #[test]
    fn unlearning_a_walk_restores_the_masses() {
        for mut f in every_layout(&forest(6)) {
            let mut walks = [Walk::default(); TREES];
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
    }

    #[test]
    fn rebasing_window_numbers_changes_no_mass() {
        let mut f = narrow(&forest(5));
        learn_windows(&mut f, 10, |_| [0.2, 0.4, 0.8]);
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
        let mut f = narrow(&forest(3));
        let mut walks = [Walk::default(); TREES];
        walk(&mut f, &Dense(&[0.1, 0.1, 0.1]), &mut walks);
        for _ in 0..(1u32 << 16) + 3 {
            f.next_window();
        }
        assert!(all_masses(&f).iter().all(|&m| m == (0, 0)));
    }

    #[test]
    fn records_round_trip() {
        for mut f in every_layout(&forest(4)) {
            let mut walks = [Walk::default(); TREES];
            for i in 0..120 {
                let x = f64::from(i % 7) / 7.0;
                walk(&mut f, &Dense(&[x, 1.0 - x, 0.5]), &mut walks);
                if i % 50 == 49 {
                    f.next_window();
                }
            }
            let record = f.to_record();
            // Window sizes that pick the lazy narrow, flat and wide layouts.
            for window_size in [1, 50, 100_000] {
                let back = Forest::from_record(&record, window_size, 3);
                assert_eq!(back, f);
                assert_eq!(all_masses(&back), all_masses(&f));
            }
        }
    }

    /// Equality looks at the masses River would see, not at how windows are numbered.
    #[test]
    fn equality_ignores_window_numbering() {
        let mut f = narrow(&forest(4));
        learn_windows(&mut f, 20, |i| {
            let x = f64::from(i % 5) / 5.0;
            [x, 0.5, 1.0 - x]
        });
        let before = f.clone();
        let Forest::Narrow(Trees16(t)) = &mut f else {
            panic!("a window of 50 fits 16-bit counters")
        };
        t.rebase();
        assert_eq!(f, before);
    }

    #[test]
    fn breadth_first_indices_map_to_positions() {
        assert_eq!(NodeAt::from_breadth_first(0), NodeAt { depth: 0, pos: 0 });
        assert_eq!(NodeAt::from_breadth_first(2), NodeAt { depth: 1, pos: 1 });
        assert_eq!(NodeAt::from_breadth_first(3), NodeAt { depth: 2, pos: 0 });
        assert_eq!(NodeAt::from_breadth_first(14), NodeAt { depth: 3, pos: 7 });
    }

    /// Every node of a tree has its own place, and blocks have the sizes the layout assumes.
    #[test]
    fn places_are_distinct_and_blocks_sized() {
        for height in 1..=9 {
            let t: Trees<u16> = Trees::new(height, 1);
            let mut seen = std::collections::HashSet::new();
            for depth in 0..=height {
                for pos in 0..1u32 << depth {
                    let place = t.place(NodeAt { depth, pos });
                    let key = match place {
                        Place::Block(block, slot) => {
                            assert!(block < t.blocks_per_tree, "height {height}");
                            (0, block, slot)
                        }
                        Place::BottomBranch(i) => (1, i, 0),
                        Place::Leaf(i, side) => (1, i, 1 + side),
                    };
                    if key.0 == 1 {
                        assert!(key.1 < t.bottoms_per_tree(), "height {height}");
                    }
                    assert!(seen.insert(key), "height {height}: {place:?} twice");
                }
            }
        }
        assert_eq!(std::mem::size_of::<Node<u16>>(), 16);
        assert_eq!(std::mem::size_of::<Block<u16>>(), 64);
        assert_eq!(std::mem::size_of::<Bottom<u16>>(), 32);
    }
}
