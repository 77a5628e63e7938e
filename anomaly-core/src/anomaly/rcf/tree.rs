//! One random cut tree over the points of a [`PointStore`], in flat arrays: internal nodes and
//! leaves each in their own slots, bounding boxes cached per internal node.

use serde::{Deserialize, Serialize};

use super::store::PointStore;
use crate::anomaly::Transient;

/// No node.
const NULL: u32 = u32::MAX;
/// Marks a node id as a leaf slot.
const LEAF: u32 = 1 << 31;

fn is_leaf(node: u32) -> bool {
    node != NULL && node & LEAF != 0
}

fn slot(node: u32) -> usize {
    (node & !LEAF) as usize
}

/// An internal node's children and cut.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Node {
    left: u32,
    right: u32,
    cut_dim: u32,
    cut_value: f32,
}

impl Node {
    const EMPTY: Node = Node {
        left: NULL,
        right: NULL,
        cut_dim: 0,
        cut_value: 0.0,
    };
}

/// Where the scoring walk starts from a leaf.
pub(super) struct LeafHit {
    depth: usize,
    leaf: u32,
    /// Copies of the query the leaf holds: 0 when it holds another point.
    copies: u32,
}

/// `1 / (depth + 1)` for the depths a walk up usually starts from: a division off the
/// scoring loop.
const RECIPROCALS: [f64; 64] = {
    let mut table = [0.0; 64];
    let mut depth = 0;
    while depth < 64 {
        table[depth] = 1.0 / (depth as f64 + 1.0);
        depth += 1;
    }
    table
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Tree {
    capacity: usize,
    dim: usize,
    root: u32,
    mass: u32,
    /// What a walk down reads, together: one cache line holds four nodes.
    nodes: Vec<Node>,
    node_mass: Vec<u32>,
    free_nodes: Vec<u32>,
    leaf_point: Vec<u32>,
    leaf_mass: Vec<u32>,
    free_leaves: Vec<u32>,
    /// SplitMix64 state: the cuts' random numbers.
    rng: u64,
    /// Bounding boxes of the internal nodes, each as its `dim` minima then its `dim` maxima
    /// (one cache line for 8 features); derived, so rebuilt on load.
    #[serde(skip)]
    boxes: Vec<f32>,
    #[serde(skip)]
    box_scratch: Transient<Vec<f32>>,
    #[serde(skip)]
    path_scratch: Transient<Vec<u32>>,
}

/// SplitMix64: small, fast and serializable as one number.
pub(super) fn next_u64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform double in [0, 1).
pub(super) fn next_f64(state: &mut u64) -> f64 {
    (next_u64(state) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The L1 distance from `q` to the box `[min, max]` (0 inside) and the box's range sum; the
/// range is recomputed rather than stored: the box is in cache already, and it saves memory.
/// Summed in `f32`, four lanes at a time (half the work of `f64`), and again in `f64` only
/// when that overflowed: differences of values near the `f32` limit do.
#[inline(always)]
fn outside_and_range(min: &[f32], max: &[f32], q: &[f32]) -> (f64, f64) {
    let (outside, range) = sums_f32(min, max, q);
    if (outside + range).is_finite() {
        (f64::from(outside), f64::from(range))
    } else {
        sums_f64(min, max, q)
    }
}

/// The two sums in `f32`, four lanes at a time. Written with SSE (the x86-64 baseline)
/// because the compiler's own vectorising pairs each lane's two differences instead.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(unsafe_code)]
fn sums_f32(min: &[f32], max: &[f32], q: &[f32]) -> (f32, f32) {
    // SAFETY: SSE is part of the x86-64 baseline, so these intrinsics are always available;
    // they read nothing but the values passed to them.
    unsafe {
        use std::arch::x86_64::{
            __m128, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_max_ps, _mm_movehl_ps, _mm_setr_ps,
            _mm_setzero_ps, _mm_shuffle_ps, _mm_sub_ps,
        };
        let four = |a: &[f32]| _mm_setr_ps(a[0], a[1], a[2], a[3]);
        let total = |v: __m128| {
            let halves = _mm_add_ps(v, _mm_movehl_ps(v, v));
            _mm_cvtss_f32(_mm_add_ss(halves, _mm_shuffle_ps::<1>(halves, halves)))
        };
        let (mins, maxs, qs) = (min.chunks_exact(4), max.chunks_exact(4), q.chunks_exact(4));
        let (min_tail, max_tail, q_tail) = (mins.remainder(), maxs.remainder(), qs.remainder());
        let zero = _mm_setzero_ps();
        let (mut outside, mut range) = (zero, zero);
        for ((lo, hi), v) in mins.zip(maxs).zip(qs) {
            let (lo, hi, v) = (four(lo), four(hi), four(v));
            let below = _mm_max_ps(_mm_sub_ps(lo, v), zero);
            let above = _mm_max_ps(_mm_sub_ps(v, hi), zero);
            outside = _mm_add_ps(outside, _mm_add_ps(below, above));
            range = _mm_add_ps(range, _mm_sub_ps(hi, lo));
        }
        let (mut total_outside, mut total_range) = (total(outside), total(range));
        for ((&lo, &hi), &v) in min_tail.iter().zip(max_tail).zip(q_tail) {
            total_outside += (lo - v).max(0.0) + (v - hi).max(0.0);
            total_range += hi - lo;
        }
        (total_outside, total_range)
    }
}

/// The two sums in `f32` in plain code, in the SSE version's order (four lanes, reduced as
/// `(0 + 2) + (1 + 3)`, then the tail), so that a seed grows the same forest on every target.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn sums_f32_portable(min: &[f32], max: &[f32], q: &[f32]) -> (f32, f32) {
    let (mins, maxs, qs) = (min.chunks_exact(4), max.chunks_exact(4), q.chunks_exact(4));
    let (min_tail, max_tail, q_tail) = (mins.remainder(), maxs.remainder(), qs.remainder());
    let (mut outside, mut range) = ([0.0f32; 4], [0.0f32; 4]);
    for ((lo, hi), v) in mins.zip(maxs).zip(qs) {
        for lane in 0..4 {
            outside[lane] += (lo[lane] - v[lane]).max(0.0) + (v[lane] - hi[lane]).max(0.0);
            range[lane] += hi[lane] - lo[lane];
        }
    }
    let total = |v: [f32; 4]| (v[0] + v[2]) + (v[1] + v[3]);
    let (mut total_outside, mut total_range) = (total(outside), total(range));
    for ((&lo, &hi), &v) in min_tail.iter().zip(max_tail).zip(q_tail) {
        total_outside += (lo - v).max(0.0) + (v - hi).max(0.0);
        total_range += hi - lo;
    }
    (total_outside, total_range)
}

/// The two sums in `f32`, elsewhere.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn sums_f32(min: &[f32], max: &[f32], q: &[f32]) -> (f32, f32) {
    sums_f32_portable(min, max, q)
}

/// [`sums_f32`] in `f64`, for boxes whose sums overflow `f32`.
#[cold]
fn sums_f64(min: &[f32], max: &[f32], q: &[f32]) -> (f64, f64) {
    let (mut outside, mut range) = (0.0, 0.0);
    for ((&lo, &hi), &v) in min.iter().zip(max).zip(q) {
        let (lo, hi, v) = (f64::from(lo), f64::from(hi), f64::from(v));
        outside += (lo - v).max(0.0) + (v - hi).max(0.0);
        range += hi - lo;
    }
    (outside, range)
}

/// A random cut of the box `[min, max]` grown to hold `p`, the dimension drawn in proportion
/// to its range and the value uniform in it; `Some` if it separates `p` from the box.
///
/// The cut is uniform over the grown box's ranges laid end to end, and it separates exactly
/// when it falls in a part `p` added (their lengths sum to `outside`). Laying those parts
/// first changes which draw gives which cut, not the cut's distribution, and lets a draw past
/// them stop without scanning the dimensions: most cuts on the way down do not separate.
#[inline]
fn separating_cut(min: &[f32], max: &[f32], p: &[f32], rng: &mut u64) -> Option<(usize, f32)> {
    let (outside, range_sum) = outside_and_range(min, max, p);
    if outside == 0.0 {
        return None;
    }
    let mut r = next_f64(rng) * (range_sum + outside);
    if r >= outside {
        return None;
    }
    let mut last = None;
    for i in 0..p.len() {
        // The part `p` added in this dimension: below the box or above it.
        let (lo, hi) = if p[i] < min[i] {
            (p[i], min[i])
        } else if p[i] > max[i] {
            (max[i], p[i])
        } else {
            continue;
        };
        last = Some((i, lo));
        let gap = f64::from(hi) - f64::from(lo);
        if r < gap {
            let cut = lo + r as f32;
            // Rounding may reach the box (or the point): cut at the part's low end instead.
            return Some((i, if cut < hi { cut.max(lo) } else { lo }));
        }
        r -= gap;
    }
    // Rounding left r past the last part: cut at its low end.
    last
}

impl Tree {
    pub(super) fn new(capacity: usize, dim: usize, seed: u64) -> Self {
        let internal = capacity.saturating_sub(1).max(1);
        Self {
            capacity,
            dim,
            root: NULL,
            mass: 0,
            nodes: vec![Node::EMPTY; internal],
            node_mass: vec![0; internal],
            free_nodes: (0..internal as u32).rev().collect(),
            leaf_point: vec![0; capacity],
            leaf_mass: vec![0; capacity],
            free_leaves: (0..capacity as u32).rev().collect(),
            rng: seed,
            boxes: vec![0.0; internal * 2 * dim],
            box_scratch: Transient(Vec::with_capacity(2 * dim)),
            path_scratch: Transient(Vec::new()),
        }
    }

    pub(super) fn mass(&self) -> u32 {
        self.mass
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(super) fn rng(&mut self) -> &mut u64 {
        &mut self.rng
    }

    fn mass_of(&self, node: u32) -> u32 {
        if is_leaf(node) {
            self.leaf_mass[slot(node)]
        } else {
            self.node_mass[node as usize]
        }
    }

    fn replace_child(&mut self, parent: u32, old: u32, new: u32) {
        if parent == NULL {
            self.root = new;
        } else if self.nodes[parent as usize].left == old {
            self.nodes[parent as usize].left = new;
        } else {
            self.nodes[parent as usize].right = new;
        }
    }

    /// The bounding box of `node`: its cached box, or a leaf's point.
    fn bounds<'a>(&'a self, node: u32, store: &'a PointStore) -> (&'a [f32], &'a [f32]) {
        if is_leaf(node) {
            let p = store.get(self.leaf_point[slot(node)]);
            (p, p)
        } else {
            self.node_box(node as usize)
        }
    }

    /// Sets `node`'s box to the union of its children's; says whether it changed.
    fn rebuild_box(&mut self, node: u32, store: &PointStore) -> bool {
        let d = self.dim;
        let n = node as usize;
        let mut scratch = std::mem::take(&mut self.box_scratch.0);
        scratch.resize(2 * d, 0.0);
        {
            let (lmin, lmax) = self.bounds(self.nodes[n].left, store);
            let (rmin, rmax) = self.bounds(self.nodes[n].right, store);
            let (min, max) = scratch.split_at_mut(d);
            // Comparisons rather than `f32::min`: no NaN can be here, and they vectorise.
            for (m, (&l, &r)) in min.iter_mut().zip(lmin.iter().zip(rmin)) {
                *m = if l < r { l } else { r };
            }
            for (m, (&l, &r)) in max.iter_mut().zip(lmax.iter().zip(rmax)) {
                *m = if l > r { l } else { r };
            }
        }
        let at = n * 2 * d;
        let mut changed = false;
        for (old, &new) in self.boxes[at..at + 2 * d].iter_mut().zip(&scratch) {
            changed |= *old != new;
            *old = new;
        }
        self.box_scratch.0 = scratch;
        changed
    }

    fn extend_box(&mut self, node: u32, p: &[f32]) {
        let d = self.dim;
        let at = node as usize * 2 * d;
        let (min, max) = self.boxes[at..at + 2 * d].split_at_mut(d);
        // Comparisons rather than `f32::min`, as in `rebuild_box`.
        for (m, &v) in min.iter_mut().zip(p) {
            *m = if v < *m { v } else { *m };
        }
        for (m, &v) in max.iter_mut().zip(p) {
            *m = if v > *m { v } else { *m };
        }
    }

    /// An internal node's box: its minima and maxima.
    fn node_box(&self, n: usize) -> (&[f32], &[f32]) {
        let d = self.dim;
        self.boxes[n * 2 * d..(n + 1) * 2 * d].split_at(d)
    }

    /// Inserts the point `index`; returns the point the tree now holds for it (an equal point
    /// already in the tree, or `index`).
    pub(super) fn insert(&mut self, index: u32, store: &PointStore) -> u32 {
        let p = store.get(index);
        if self.root == NULL {
            let leaf = self.new_leaf(index);
            self.root = leaf;
            self.mass = 1;
            return index;
        }
        self.mass += 1;
        let (mut node, mut parent) = (self.root, NULL);
        loop {
            if is_leaf(node) {
                let s = slot(node);
                let held = self.leaf_point[s];
                let q = store.get(held);
                if q == p {
                    self.leaf_mass[s] += 1;
                    return held;
                }
                let cut = separating_cut(q, q, p, &mut self.rng);
                // A point differing from a single other point is always separable; if rounding
                // says otherwise, split on the first differing dimension.
                let (dim, value) = cut.unwrap_or_else(|| {
                    let i = (0..p.len()).find(|&i| p[i] != q[i]).unwrap_or(0);
                    (i, p[i].min(q[i]))
                });
                self.split_above(node, parent, dim, value, index, store);
                return index;
            }
            let n = node as usize;
            let mut rng = self.rng;
            let (min, max) = self.node_box(n);
            let cut = separating_cut(min, max, p, &mut rng);
            self.rng = rng;
            if let Some((dim, value)) = cut {
                self.split_above(node, parent, dim, value, index, store);
                return index;
            }
            self.node_mass[n] += 1;
            self.extend_box(node, p);
            parent = node;
            node = if p[self.nodes[n].cut_dim as usize] <= self.nodes[n].cut_value {
                self.nodes[n].left
            } else {
                self.nodes[n].right
            };
        }
    }

    /// Returns a leaf slot to the free list, cleared, so that equal trees compare equal.
    fn free_leaf(&mut self, s: usize) {
        self.leaf_point[s] = 0;
        self.leaf_mass[s] = 0;
        self.free_leaves.push(s as u32);
    }

    /// Returns an internal node to the free list, cleared.
    fn free_node(&mut self, n: usize) {
        self.nodes[n].left = NULL;
        self.nodes[n].right = NULL;
        self.nodes[n].cut_dim = 0;
        self.nodes[n].cut_value = 0.0;
        self.node_mass[n] = 0;
        let d = self.dim;
        self.boxes[n * 2 * d..(n + 1) * 2 * d].fill(0.0);
        self.free_nodes.push(n as u32);
    }

    fn new_leaf(&mut self, index: u32) -> u32 {
        let s = self.free_leaves.pop().unwrap_or(0) as usize;
        self.leaf_point[s] = index;
        self.leaf_mass[s] = 1;
        LEAF | s as u32
    }

    /// Puts a new internal node cutting at `(dim, value)` between `node` and its parent, with
    /// the new leaf for `index` on the other side.
    fn split_above(
        &mut self,
        node: u32,
        parent: u32,
        dim: usize,
        value: f32,
        index: u32,
        store: &PointStore,
    ) {
        let x = self.free_nodes.pop().unwrap_or(0);
        let leaf = self.new_leaf(index);
        let p = store.get(index);
        let xi = x as usize;
        if p[dim] <= value {
            self.nodes[xi].left = leaf;
            self.nodes[xi].right = node;
        } else {
            self.nodes[xi].left = node;
            self.nodes[xi].right = leaf;
        }
        self.nodes[xi].cut_dim = dim as u32;
        self.nodes[xi].cut_value = value;
        self.node_mass[xi] = self.mass_of(node) + 1;
        self.replace_child(parent, node, x);
        self.rebuild_box(x, store);
    }

    /// Removes one copy of the point `index` (found by value).
    pub(super) fn delete(&mut self, index: u32, store: &PointStore) {
        let p = store.get(index);
        // The walk's internal nodes: where the leaf's parent and grandparent are, and whose
        // boxes may shrink.
        let mut path = std::mem::take(&mut self.path_scratch.0);
        path.clear();
        let mut node = self.root;
        while node != NULL && !is_leaf(node) {
            let n = node as usize;
            path.push(node);
            self.node_mass[n] = self.node_mass[n].saturating_sub(1);
            node = if p[self.nodes[n].cut_dim as usize] <= self.nodes[n].cut_value {
                self.nodes[n].left
            } else {
                self.nodes[n].right
            };
        }
        if node != NULL {
            self.remove_copy(node, &path, store);
        }
        self.path_scratch.0 = path;
    }

    /// Removes one copy of leaf `node`, reached through `path`.
    fn remove_copy(&mut self, node: u32, path: &[u32], store: &PointStore) {
        self.mass = self.mass.saturating_sub(1);
        let s = slot(node);
        if self.leaf_mass[s] > 1 {
            self.leaf_mass[s] -= 1;
            return;
        }
        self.free_leaf(s);
        let Some((&parent, above)) = path.split_last() else {
            self.root = NULL;
            return;
        };
        let pi = parent as usize;
        let sibling = if self.nodes[pi].left == node {
            self.nodes[pi].right
        } else {
            self.nodes[pi].left
        };
        let grand = above.last().copied().unwrap_or(NULL);
        self.replace_child(grand, parent, sibling);
        self.free_node(pi);
        for &up in above.iter().rev() {
            if !self.rebuild_box(up, store) {
                break;
            }
        }
    }

    /// The child of internal node `n` on `q`'s side of its cut.
    #[inline(always)]
    fn child(&self, n: u32, q: &[f32]) -> u32 {
        let node = &self.nodes[n as usize];
        if q[node.cut_dim as usize] <= node.cut_value {
            node.left
        } else {
            node.right
        }
    }

    /// Walks from the root to the leaf `q` falls in, recording the internal nodes passed.
    pub(super) fn descend(
        &self,
        q: &[f32],
        store: &PointStore,
        path: &mut Vec<u32>,
    ) -> Option<LeafHit> {
        let [hit] = Self::descend_many([self], q, store, [path]);
        hit
    }

    /// [`Tree::descend`] in `N` trees at once. A walk down is one dependent load per level,
    /// each waiting for the last; walks in one loop wait for theirs together (and so do the
    /// looks at the leaves' points, one loop later).
    pub(super) fn descend_many<const N: usize>(
        trees: [&Tree; N],
        q: &[f32],
        store: &PointStore,
        paths: [&mut Vec<u32>; N],
    ) -> [Option<LeafHit>; N] {
        let mut paths = paths;
        let mut nodes = trees.map(|t| t.root);
        for path in paths.iter_mut() {
            path.clear();
        }
        loop {
            let mut walking = false;
            for k in 0..N {
                let node = nodes[k];
                if node != NULL && !is_leaf(node) {
                    walking = true;
                    paths[k].push(node);
                    nodes[k] = trees[k].child(node, q);
                }
            }
            if !walking {
                break;
            }
        }
        std::array::from_fn(|k| {
            let leaf = nodes[k];
            (leaf != NULL).then(|| {
                let s = slot(leaf);
                let tree = trees[k];
                let held = store.get(tree.leaf_point[s]) == q;
                LeafHit {
                    depth: paths[k].len(),
                    leaf,
                    copies: if held { tree.leaf_mass[s] } else { 0 },
                }
            })
        })
    }

    /// AWS RCF's anomaly score of `q` in this tree, the expected displacement-based score,
    /// before its scaling by `log2(1 + mass)` (which the caller computes once for trees of
    /// equal mass).
    pub(super) fn unscaled_score(&self, q: &[f32], store: &PointStore, path: &mut Vec<u32>) -> f64 {
        let hit = self.descend(q, store, path);
        self.unscaled_score_after(hit, q, path)
    }

    /// [`Tree::unscaled_score`] from the walk down that [`Tree::descend`] made.
    pub(super) fn unscaled_score_after(
        &self,
        hit: Option<LeafHit>,
        q: &[f32],
        path: &[u32],
    ) -> f64 {
        let Some(hit) = hit else {
            return 0.0;
        };
        if hit.copies > 0 {
            let m = f64::from(hit.copies);
            let damp = 1.0 - m / (2.0 * f64::from(self.mass));
            return damp / (hit.depth as f64 + (1.0 + m).log2());
        }
        let reciprocal = |depth: usize| {
            RECIPROCALS
                .get(depth)
                .copied()
                .unwrap_or_else(|| 1.0 / (depth as f64 + 1.0))
        };
        let mut score = reciprocal(hit.depth);
        for (depth, &node) in path.iter().enumerate().rev() {
            let prob = self.separation(node, q);
            if prob == 0.0 {
                break;
            }
            score += prob * (reciprocal(depth) - score);
        }
        score
    }

    /// The probability that a random cut of `node`'s box grown to hold `q` separates `q`.
    fn separation(&self, node: u32, q: &[f32]) -> f64 {
        let (min, max) = self.node_box(node as usize);
        let (outside, range) = outside_and_range(min, max, q);
        if outside == 0.0 {
            0.0
        } else {
            outside / (range + outside)
        }
    }

    /// Adds this tree's score of `q`, split by dimension and direction (AWS's `DiVector`), to
    /// `high` and `low`; the parts add up to the tree's score.
    pub(super) fn attribute(
        &self,
        q: &[f32],
        store: &PointStore,
        path: &mut Vec<u32>,
        high: &mut [f64],
        low: &mut [f64],
    ) {
        let Some(hit) = self.descend(q, store, path) else {
            return;
        };
        let d = self.dim;
        let total = f64::from(self.mass);
        let leaf_point = store.get(self.leaf_point[slot(hit.leaf)]);
        if hit.copies > 0 {
            // A point the tree holds: nothing sets one feature apart; spread the score evenly.
            let m = f64::from(hit.copies);
            let damp = 1.0 - m / (2.0 * total);
            let t = damp / (hit.depth as f64 + (1.0 + m).log2()) * (1.0 + total).log2();
            for i in 0..d {
                high[i] += t / (2 * d) as f64;
                low[i] += t / (2 * d) as f64;
            }
            return;
        }
        let mut hi = vec![0.0f64; d];
        let mut lo = vec![0.0f64; d];
        let diff = |a: f32, b: f32| f64::from(a) - f64::from(b);
        let leaf_out: f64 = (0..d).map(|i| diff(leaf_point[i], q[i]).abs()).sum();
        let mut score = 1.0 / (hit.depth as f64 + 1.0);
        for i in 0..d {
            hi[i] = diff(q[i], leaf_point[i]).max(0.0) / leaf_out * score;
            lo[i] = diff(leaf_point[i], q[i]).max(0.0) / leaf_out * score;
        }
        for (depth, &node) in path.iter().enumerate().rev() {
            let (min, max) = self.node_box(node as usize);
            let (outside, range) = outside_and_range(min, max, q);
            if outside == 0.0 {
                break;
            }
            let scale = 1.0 / (range + outside);
            let prob = outside * scale;
            let v = 1.0 / (depth as f64 + 1.0);
            score = (1.0 - prob) * score + prob * v;
            for i in 0..d {
                hi[i] = hi[i] * (1.0 - prob) + diff(q[i], max[i]).max(0.0) * scale * v;
                lo[i] = lo[i] * (1.0 - prob) + diff(min[i], q[i]).max(0.0) * scale * v;
            }
        }
        let t = score * (1.0 + total).log2();
        let sum: f64 = hi.iter().chain(&lo).sum();
        let factor = if sum > 0.0 { t / sum } else { 0.0 };
        for i in 0..d {
            high[i] += hi[i] * factor;
            low[i] += lo[i] * factor;
        }
    }

    /// Rebuilds every box from the leaves and checks the structure of a loaded tree: every
    /// node reached once, masses equal to the leaves' counts, free slots exactly the unused.
    pub(super) fn rebuild_and_check(
        &mut self,
        store: &PointStore,
        counts: &mut [u32],
    ) -> Result<(), String> {
        let internal = self.capacity.saturating_sub(1).max(1);
        let d = self.dim;
        let sizes_ok = [self.nodes.len(), self.node_mass.len()]
            .iter()
            .all(|&n| n == internal)
            && [self.leaf_point.len(), self.leaf_mass.len()]
                .iter()
                .all(|&n| n == self.capacity);
        if !sizes_ok || d != store.dim() {
            return Err("tree arrays do not match the forest's sizes".into());
        }
        self.boxes = vec![0.0; internal * 2 * d];
        let mut seen_nodes = vec![false; internal];
        let mut seen_leaves = vec![false; self.capacity];
        let mass = if self.root == NULL {
            0
        } else {
            self.check_structure(store, counts, &mut seen_nodes, &mut seen_leaves)?
        };
        if mass != self.mass {
            return Err("tree mass differs from its leaves' counts".into());
        }
        let mut free_nodes = self.free_nodes.clone();
        free_nodes.sort_unstable();
        free_nodes.dedup();
        let mut free_leaves = self.free_leaves.clone();
        free_leaves.sort_unstable();
        free_leaves.dedup();
        let unused_nodes: Vec<u32> = (0..internal as u32)
            .filter(|&i| !seen_nodes[i as usize])
            .collect();
        let unused_leaves: Vec<u32> = (0..self.capacity as u32)
            .filter(|&i| !seen_leaves[i as usize])
            .collect();
        if free_nodes != unused_nodes
            || free_leaves != unused_leaves
            || free_nodes.len() != self.free_nodes.len()
            || free_leaves.len() != self.free_leaves.len()
        {
            return Err("free slots differ from the unused ones".into());
        }
        Ok(())
    }

    /// Walks a loaded tree (with an explicit stack: a hostile snapshot may be a chain as deep
    /// as the capacity), checking every node is reached once, masses add up, and every point
    /// lies on its side of each cut; rebuilds the boxes on the way back up. Returns the mass.
    fn check_structure(
        &mut self,
        store: &PointStore,
        counts: &mut [u32],
        seen_nodes: &mut [bool],
        seen_leaves: &mut [bool],
    ) -> Result<u32, String> {
        let cap = self.capacity as u64;
        // (node, children done?)
        let mut stack = vec![(self.root, false)];
        let mut masses: Vec<u64> = Vec::new();
        while let Some((node, done)) = stack.pop() {
            if node == NULL {
                return Err("an internal node lacks a child".into());
            }
            if is_leaf(node) {
                let s = slot(node);
                if s >= self.capacity || seen_leaves[s] {
                    return Err("a leaf is out of range or reached twice".into());
                }
                seen_leaves[s] = true;
                let point = self.leaf_point[s] as usize;
                let mass = self.leaf_mass[s];
                if point >= counts.len() || mass == 0 || u64::from(mass) > cap {
                    return Err("a leaf's point or mass is invalid".into());
                }
                counts[point] = counts[point].saturating_add(mass);
                masses.push(u64::from(mass));
                continue;
            }
            let n = node as usize;
            if !done {
                if n >= seen_nodes.len() || seen_nodes[n] {
                    return Err("an internal node is out of range or reached twice".into());
                }
                seen_nodes[n] = true;
                let cut = self.nodes[n];
                if cut.cut_dim as usize >= self.dim || !cut.cut_value.is_finite() {
                    return Err("a cut is invalid".into());
                }
                stack.push((node, true));
                stack.push((cut.right, false));
                stack.push((cut.left, false));
                continue;
            }
            let (Some(left), Some(right)) = (masses.pop(), masses.pop()) else {
                return Err("a subtree is missing".into());
            };
            let mass = left + right;
            if mass != u64::from(self.node_mass[n]) || mass > cap {
                return Err("an internal node's mass differs from its leaves' counts".into());
            }
            self.rebuild_box(node, store);
            // Every point must lie on its side of the cut, or walks by value get lost.
            let cut = self.nodes[n];
            let dim = cut.cut_dim as usize;
            if self.bounds(cut.left, store).1[dim] > cut.cut_value
                || self.bounds(cut.right, store).0[dim] <= cut.cut_value
            {
                return Err("a point lies on the wrong side of a cut".into());
            }
            masses.push(mass);
        }
        match masses.as_slice() {
            [mass] => u32::try_from(*mass).map_err(|_| "tree mass overflows".into()),
            _ => Err("the tree is not one tree".into()),
        }
    }

    /// Every box holds exactly its points and every mass equals its leaves' counts (for tests).
    pub(super) fn invariants_hold(&self, store: &PointStore) -> bool {
        let mut copy = self.clone();
        let mut counts = vec![0; store.slots()];
        copy.rebuild_and_check(store, &mut counts).is_ok() && copy.boxes == self.boxes
    }

    pub(super) fn bytes(&self) -> usize {
        let internal = self.nodes.len();
        internal * (16 + 4)
            + self.leaf_point.len() * 8
            + self.boxes.len() * 4
            + (self.free_nodes.capacity() + self.free_leaves.capacity()) * 4
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{PointStore, Tree};

    fn points() -> impl Strategy<Value = Vec<Vec<f32>>> {
        prop::collection::vec(
            prop::collection::vec(prop_oneof![-3.0f32..3.0, Just(0.5f32)], 3),
            1..60,
        )
    }

    /// The tree without its random state (which moves on with every cut drawn).
    fn shape(tree: &Tree) -> Tree {
        Tree {
            rng: 0,
            ..tree.clone()
        }
    }

    proptest! {
        /// The SSE sums and the plain ones agree exactly, for every dimension count.
        #[test]
        fn every_target_sums_distances_alike(
            rows in prop::collection::vec(
                (-1e6f32..1e6, 0.0f32..1e3, -1e6f32..1e6),
                1..20,
            ),
        ) {
            let min: Vec<f32> = rows.iter().map(|r| r.0).collect();
            let max: Vec<f32> = rows.iter().map(|r| r.0 + r.1).collect();
            let q: Vec<f32> = rows.iter().map(|r| r.2).collect();
            let (outside, range) = super::sums_f32(&min, &max, &q);
            let (plain_outside, plain_range) = super::sums_f32_portable(&min, &max, &q);
            prop_assert!(outside == plain_outside && range == plain_range);
        }

        #[test]
        fn boxes_hold_their_points_and_masses_count_leaves(points in points(), seed in 0u64..500) {
            let mut store = PointStore::new(3);
            let mut tree = Tree::new(64, 3, seed);
            let mut held = Vec::new();
            for p in &points {
                let index = store.add(p);
                let kept = tree.insert(index, &store);
                store.retain(kept);
                held.push(kept);
                prop_assert!(tree.invariants_hold(&store));
                prop_assert_eq!(tree.mass() as usize, held.len());
            }
            // Deleting in any order keeps them too, down to the empty tree.
            while let Some(index) = held.pop() {
                tree.delete(index, &store);
                store.release(index);
                prop_assert!(tree.invariants_hold(&store));
                prop_assert_eq!(tree.mass() as usize, held.len());
            }
        }

        #[test]
        fn inserting_then_deleting_a_point_leaves_the_tree_as_it_was(
            points in points(),
            extra in prop::collection::vec(-5.0f32..5.0, 3),
            seed in 0u64..500,
        ) {
            let mut store = PointStore::new(3);
            let mut tree = Tree::new(64, 3, seed);
            for p in &points {
                let index = store.add(p);
                let kept = tree.insert(index, &store);
                store.retain(kept);
            }
            let before = shape(&tree);
            let index = store.add(&extra);
            let kept = tree.insert(index, &store);
            store.retain(kept);
            prop_assert!(tree.invariants_hold(&store));
            tree.delete(kept, &store);
            prop_assert_eq!(shape(&tree), before);
        }
    }
}
