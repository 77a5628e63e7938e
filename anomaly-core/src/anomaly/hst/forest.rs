//! The trees' storage: complete binary trees in flat arrays, with masses that switch windows
//! in O(1).
//!
//! Branches are stored breadth-first (the hot top levels share cache lines and pages; pre-order
//! and blocked layouts measured slower here), leaves separately, left to right.
//!
//! River keeps two counters per node, `l_mass` (latest window) and `r_mass` (reference window),
//! and at every window boundary copies `l` into `r` and zeroes `l` for *every* node of every
//! tree. Here each node also records the window its `latest` counter belongs to; a window
//! boundary only increments the forest's window number, and a node's counters are brought up
//! to date the next time it is touched. The values read are exactly River's.

use serde::{Deserialize, Serialize};

/// A node's masses, valid relative to the window they were last written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Mass {
    latest: u32,
    reference: u32,
    window: u32,
}

impl Mass {
    /// `(l_mass, r_mass)` as River would hold them in window `now`.
    #[inline]
    pub(super) fn at(self, now: u32) -> (u32, u32) {
        if self.window == now {
            (self.latest, self.reference)
        } else if self.window.wrapping_add(1) == now {
            (0, self.latest)
        } else {
            (0, 0)
        }
    }

    /// The node's masses renumbered to window `now`, without branches (deep nodes are
    /// touched about once per window, so a branch here would mispredict often).
    #[inline(always)]
    fn current(self, now: u32) -> Mass {
        // All-ones/all-zeros masks instead of conditionals keep this free of branches, which
        // would mispredict often: deep nodes are touched about once per window.
        let same = 0u32.wrapping_sub(u32::from(self.window == now));
        let previous = 0u32.wrapping_sub(u32::from(self.window.wrapping_add(1) == now));
        Mass {
            latest: self.latest & same,
            reference: (self.reference & same) | (self.latest & previous),
            window: now,
        }
    }

    #[inline]
    fn refresh(&mut self, now: u32) {
        if self.window != now {
            let (latest, reference) = self.at(now);
            *self = Mass {
                latest,
                reference,
                window: now,
            };
        }
    }

    #[inline]
    fn increment(&mut self, now: u32) {
        self.refresh(now);
        self.latest += 1;
    }

    #[inline]
    fn decrement(&mut self, now: u32) {
        self.refresh(now);
        self.latest = self.latest.saturating_sub(1);
    }
}

/// A branch: the split and its masses, together so one cache line serves a visit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Branch {
    pub(super) threshold: f64,
    /// Column index of the split feature.
    pub(super) feature: u32,
    pub(super) mass: Mass,
}

/// Where an event's walk down one tree went, and what it scored.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Walk {
    /// `sum of r_mass * 2^depth` over the scored part of the path.
    pub(super) mass_score: u64,
    /// Position from the left, within its level, of the node the walk has reached: the
    /// leaf's position once it is done.
    pub(super) leaf: u32,
    /// Depth of the branch where scoring stopped ([`NOT_STOPPED`] if it reached the leaf).
    stop_depth: u32,
    /// Whether the walk is still adding masses to the score.
    scoring: bool,
}

/// [`Walk::stop_depth`] of a walk that scored down to its leaf.
const NOT_STOPPED: u32 = u32::MAX;

impl Walk {
    /// Depth of the branch where the event was isolated (scoring stopped there), if it was.
    pub(super) fn stop_depth(&self) -> Option<u32> {
        (self.stop_depth != NOT_STOPPED).then_some(self.stop_depth)
    }
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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Forest {
    pub(super) height: u32,
    pub(super) n_trees: u32,
    /// `n_trees * (2^height - 1)` branches, each tree in pre-order.
    pub(super) branches: Vec<Branch>,
    /// `n_trees * 2^height` leaves, each tree left to right.
    pub(super) leaves: Vec<Mass>,
    /// Number of window boundaries passed.
    pub(super) window: u32,
}

/// Equal when they hold the same splits and the same masses as River would see them, however
/// the window numbers are stamped.
impl PartialEq for Forest {
    fn eq(&self, other: &Self) -> bool {
        fn effective(f: &Forest) -> impl Iterator<Item = (u64, u32, (u32, u32))> + '_ {
            let now = f.window;
            f.branches
                .iter()
                .map(move |b| (b.threshold.to_bits(), b.feature, b.mass.at(now)))
                .chain(f.leaves.iter().map(move |m| (0, 0, m.at(now))))
        }
        self.height == other.height
            && self.n_trees == other.n_trees
            && self.branches.len() == other.branches.len()
            && self.leaves.len() == other.leaves.len()
            && effective(self).eq(effective(other))
    }
}

/// Forests with more branch storage than this are walked level by level (see `walk_all`).
const INTERLEAVE_ABOVE_BYTES: usize = 1 << 20;

/// Window numbers are rebased long before `u32` could wrap, so stale stamps never alias.
const REBASE_AT: u32 = 1 << 31;

/// Where the branches of one depth live: `offset(pos)` for the `pos`-th branch from the left.
#[derive(Clone, Copy)]
struct Level {
    /// Offset of the depth's first branch: `2^depth - 1` breadth-first.
    base: usize,
}

impl Level {
    #[inline(always)]
    fn new(depth: u32) -> Self {
        Level {
            base: (1usize << depth) - 1,
        }
    }

    #[inline(always)]
    fn offset(self, pos: u32) -> usize {
        self.base + pos as usize
    }
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

impl Forest {
    pub(super) fn branches_per_tree(&self) -> usize {
        (1usize << self.height) - 1
    }

    pub(super) fn leaves_per_tree(&self) -> usize {
        1usize << self.height
    }

    /// Offset, within its tree, of the branch at `at` (`at.depth < height`).
    #[inline]
    pub(super) fn offset(&self, at: NodeAt) -> usize {
        Level::new(at.depth).offset(at.pos)
    }

    fn mass_at(&self, tree: usize, at: NodeAt) -> Mass {
        if at.depth == self.height {
            self.leaves[tree * self.leaves_per_tree() + at.pos as usize]
        } else {
            self.branches[tree * self.branches_per_tree() + self.offset(at)].mass
        }
    }

    /// `(l_mass, r_mass)` of a node as River would hold them now.
    pub(super) fn masses(&self, tree: usize, at: NodeAt) -> (u32, u32) {
        self.mass_at(tree, at).at(self.window)
    }

    /// The branch at `at` of `tree`.
    pub(super) fn branch(&self, tree: usize, at: NodeAt) -> &Branch {
        &self.branches[tree * self.branches_per_tree() + self.offset(at)]
    }

    /// Mutable access to the branch at `at` of `tree`.
    pub(super) fn branch_mut(&mut self, tree: usize, at: NodeAt) -> &mut Branch {
        let index = tree * self.branches_per_tree() + self.offset(at);
        &mut self.branches[index]
    }

    /// Walks every tree for `row`, scoring the paths (when `score`) with River's rule and,
    /// when `learn`, incrementing the latest mass of every visited node. Returns the summed
    /// `r_mass * 2^depth` and leaves each tree's walk in `walks`.
    #[inline]
    pub(super) fn walk_all<R: Row>(
        &mut self,
        row: &R,
        score: bool,
        size_limit: f64,
        learn: bool,
        walks: &mut [Walk],
    ) -> u64 {
        // A forest that fits in cache is fastest one tree at a time (the walk's state stays in
        // registers); a larger one is memory-bound, and is better walked level by level.
        if std::mem::size_of_val(self.branches.as_slice()) <= INTERLEAVE_ABOVE_BYTES {
            let mut total = 0;
            for (tree, walk) in walks.iter_mut().enumerate() {
                *walk = self.walk_tree(tree, row, score, size_limit, learn);
                total += walk.mass_score;
            }
            total
        } else {
            self.walk_interleaved(row, score, size_limit, learn, walks)
        }
    }

    /// One tree's walk, root to leaf.
    #[inline]
    fn walk_tree<R: Row>(
        &mut self,
        tree: usize,
        row: &R,
        score: bool,
        size_limit: f64,
        learn: bool,
    ) -> Walk {
        let now = self.window;
        let per_tree = self.branches_per_tree();
        let limit = size_limit.ceil().min(f64::from(u32::MAX)) as u32;
        let branches = &mut self.branches[tree * per_tree..(tree + 1) * per_tree];
        let mut scoring = score;
        let mut mass_score = 0u64;
        let mut stop_depth = NOT_STOPPED;
        let mut pos = 0u32;
        for depth in 0..self.height {
            let index = Level::new(depth).offset(pos);
            let Some(slot) = branches.get_mut(index) else {
                break;
            };
            let branch = *slot;
            let mass = branch.mass.current(now);
            // Without branches: where scoring stops depends on the data.
            mass_score +=
                (u64::from(mass.reference) << depth) & 0u64.wrapping_sub(u64::from(scoring));
            let stop = scoring & (mass.reference < limit);
            stop_depth = if stop { depth } else { stop_depth };
            scoring &= !stop;
            if learn {
                slot.mass = Mass {
                    latest: mass.latest + 1,
                    ..mass
                };
            }
            let go_right = match row.value(branch.feature as usize) {
                // Ties go right, as in River (inputs are checked finite, so `>=` is `!(<)`).
                Some(x) => x >= branch.threshold,
                None => {
                    let here = NodeAt { depth, pos };
                    let (left, right) = (here.child(false), here.child(true));
                    let (left, right) = if depth + 1 == self.height {
                        let base = tree * (per_tree + 1);
                        (
                            self.leaves[base + left.pos as usize],
                            self.leaves[base + right.pos as usize],
                        )
                    } else {
                        let level = Level::new(depth + 1);
                        (
                            branches[level.offset(left.pos)].mass,
                            branches[level.offset(right.pos)].mass,
                        )
                    };
                    left.at(now).0 < right.at(now).0
                }
            };
            pos = 2 * pos + u32::from(go_right);
        }
        let leaf = &mut self.leaves[tree * (per_tree + 1) + pos as usize];
        if scoring {
            mass_score += u64::from(leaf.at(now).1) << self.height;
        }
        if learn {
            leaf.increment(now);
        }
        Walk {
            mass_score,
            leaf: pos,
            stop_depth,
            scoring,
        }
    }

    /// All trees' walks, level by level: every tree takes its step at one depth before any
    /// goes deeper, and each step prefetches the tree's next node, so the cache misses of the
    /// deep levels (one per tree) overlap instead of queueing.
    #[inline]
    fn walk_interleaved<R: Row>(
        &mut self,
        row: &R,
        score: bool,
        size_limit: f64,
        learn: bool,
        walks: &mut [Walk],
    ) -> u64 {
        let now = self.window;
        let per_tree = self.branches_per_tree();
        let leaves_per_tree = self.leaves_per_tree();
        // For an integer mass r and a real limit L, r < L exactly when r < ceil(L).
        let limit = size_limit.ceil().min(f64::from(u32::MAX)) as u32;
        for walk in walks.iter_mut() {
            *walk = Walk {
                scoring: score,
                stop_depth: NOT_STOPPED,
                ..Walk::default()
            };
        }
        for depth in 0..self.height {
            let level = Level::new(depth);
            let next_level = Level::new(depth + 1);
            let last_level = depth + 1 == self.height;
            for (tree, walk) in walks.iter_mut().enumerate() {
                let index = tree * per_tree + level.offset(walk.leaf);
                let branch = self.branches[index];
                let mass = branch.mass.current(now);
                // Scoring, without branches: add r_mass * 2^depth while the walk scores,
                // and stop at the first node below the size limit.
                let scoring = walk.scoring;
                walk.mass_score +=
                    (u64::from(mass.reference) << depth) & 0u64.wrapping_sub(u64::from(scoring));
                let stop = scoring & (mass.reference < limit);
                walk.stop_depth = if stop { depth } else { walk.stop_depth };
                walk.scoring = scoring & !stop;
                if learn {
                    self.branches[index].mass = Mass {
                        latest: mass.latest + 1,
                        ..mass
                    };
                }
                let go_right = match row.value(branch.feature as usize) {
                    // Ties go right, as in River (inputs are checked finite, so `>=` is `!(<)`).
                    Some(x) => x >= branch.threshold,
                    // River sends an event lacking the feature towards the child with more
                    // latest-window mass, left on ties.
                    None => {
                        let here = NodeAt {
                            depth,
                            pos: walk.leaf,
                        };
                        let left = self.mass_at(tree, here.child(false)).at(now).0;
                        let right = self.mass_at(tree, here.child(true)).at(now).0;
                        left < right
                    }
                };
                walk.leaf = 2 * walk.leaf + u32::from(go_right);
                // Ask for the next node now; it is needed only after every other tree's step.
                if last_level {
                    prefetch(&self.leaves, tree * leaves_per_tree + walk.leaf as usize);
                } else {
                    prefetch(
                        &self.branches,
                        tree * per_tree + next_level.offset(walk.leaf),
                    );
                }
            }
        }
        let mut total = 0u64;
        for (tree, walk) in walks.iter_mut().enumerate() {
            let leaf = &mut self.leaves[tree * leaves_per_tree + walk.leaf as usize];
            if walk.scoring {
                walk.mass_score += u64::from(leaf.at(now).1) << self.height;
            }
            if learn {
                leaf.increment(now);
            }
            total += walk.mass_score;
        }
        total
    }

    /// Removes one learned visit along the path ending at leaf `leaf` (undoing a walk's
    /// learning).
    pub(super) fn unlearn_path(&mut self, tree: usize, leaf: u32) {
        let now = self.window;
        let per_tree = self.branches_per_tree();
        let leaves_per_tree = self.leaves_per_tree();
        self.leaves[tree * leaves_per_tree + leaf as usize].decrement(now);
        for depth in 0..self.height {
            let ancestor = leaf >> (self.height - depth);
            let offset = Level::new(depth).offset(ancestor);
            self.branches[tree * per_tree + offset].mass.decrement(now);
        }
    }

    /// River's window pivot (`r_mass = l_mass; l_mass = 0` for every node), in O(1).
    pub(super) fn next_window(&mut self) {
        self.window += 1;
        if self.window >= REBASE_AT {
            self.rebase();
        }
    }

    /// Brings every node up to date and restarts window numbering (O(nodes), once every
    /// 2^31 windows).
    pub(super) fn rebase(&mut self) {
        let now = self.window;
        let renumber = |m: &mut Mass| {
            let (latest, reference) = m.at(now);
            *m = Mass {
                latest,
                reference,
                window: 1,
            };
        };
        self.branches.iter_mut().for_each(|b| renumber(&mut b.mass));
        self.leaves.iter_mut().for_each(renumber);
        self.window = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::hst::build::{chacha, grow};
    use rand::{Rng, SeedableRng};

    fn forest() -> Forest {
        grow(&mut chacha(9), 4, 6, &[0, 1, 2], &[(0.0, 1.0); 3])
    }

    fn all_masses(f: &Forest) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for tree in 0..f.n_trees as usize {
            for depth in 0..=f.height {
                for pos in 0..1u32 << depth {
                    out.push(f.masses(tree, NodeAt { depth, pos }));
                }
            }
        }
        out
    }

    /// Both traversal orders must give identical walks and masses, with and without missing
    /// features, across window pivots.
    #[test]
    fn interleaved_and_sequential_walks_agree() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (mut a, mut b) = (forest(), forest());
        let mut walks_a = [Walk::default(); 4];
        let mut walks_b = [Walk::default(); 4];
        for event in 0..2000 {
            let values: Vec<f64> = (0..3).map(|_| rng.random::<f64>()).collect();
            let present: Vec<bool> = (0..3).map(|_| rng.random::<f64>() > 0.2).collect();
            let row = Sparse {
                values: &values,
                present: &present,
            };
            let score = event >= 50;
            let mut total_a = 0;
            for (tree, walk) in walks_a.iter_mut().enumerate() {
                *walk = a.walk_tree(tree, &row, score, 5.0, true);
                total_a += walk.mass_score;
            }
            let total_b = b.walk_interleaved(&row, score, 5.0, true, &mut walks_b);
            assert_eq!(total_a, total_b, "event {event}");
            for (x, y) in walks_a.iter().zip(&walks_b) {
                assert_eq!(
                    (x.leaf, x.stop_depth, x.mass_score),
                    (y.leaf, y.stop_depth, y.mass_score)
                );
            }
            if event % 50 == 49 {
                a.next_window();
                b.next_window();
            }
        }
        assert_eq!(all_masses(&a), all_masses(&b));
    }

    #[test]
    fn unlearning_a_walk_restores_the_masses() {
        let mut f = forest();
        let row = Dense(&[0.3, 0.6, 0.9]);
        for _ in 0..30 {
            for tree in 0..4 {
                f.walk_tree(tree, &row, false, 5.0, true);
            }
        }
        f.next_window();
        let before = all_masses(&f);
        let other = Dense(&[0.9, 0.1, 0.4]);
        for tree in 0..4 {
            let walk = f.walk_tree(tree, &other, true, 5.0, true);
            f.unlearn_path(tree, walk.leaf);
        }
        assert_eq!(all_masses(&f), before);
    }

    #[test]
    fn rebasing_window_numbers_changes_no_mass() {
        let mut f = forest();
        let row = Dense(&[0.2, 0.4, 0.8]);
        for window in 0..3 {
            for _ in 0..10 + window {
                for tree in 0..4 {
                    f.walk_tree(tree, &row, false, 5.0, true);
                }
            }
            f.next_window();
        }
        let before = all_masses(&f);
        f.rebase();
        assert_eq!(f.window, 1);
        assert_eq!(all_masses(&f), before);
    }

    #[test]
    fn breadth_first_indices_map_to_positions() {
        assert_eq!(NodeAt::from_breadth_first(0), NodeAt { depth: 0, pos: 0 });
        assert_eq!(NodeAt::from_breadth_first(2), NodeAt { depth: 1, pos: 1 });
        assert_eq!(NodeAt::from_breadth_first(3), NodeAt { depth: 2, pos: 0 });
        assert_eq!(NodeAt::from_breadth_first(14), NodeAt { depth: 3, pos: 7 });
    }
}
