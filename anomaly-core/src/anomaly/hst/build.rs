//! Growing the trees: from a random generator (River's algorithm) or from an explicit spec.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::forest::{Branch, Forest, Mass};
use crate::rng::PyRandom;

/// A source of uniform doubles in [0, 1).
pub(super) trait UnitRandom {
    fn unit(&mut self) -> f64;
}

impl UnitRandom for PyRandom {
    fn unit(&mut self) -> f64 {
        self.random()
    }
}

impl UnitRandom for ChaCha8Rng {
    fn unit(&mut self) -> f64 {
        self.random::<f64>()
    }
}

pub(super) fn chacha(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `random.choices(range(len(weights)), weights)`: cumulative sums in order, one draw,
/// `bisect_right` over all but the last bound.
fn weighted_index(rng: &mut impl UnitRandom, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().fold(0.0, |acc, w| acc + w);
    let target = rng.unit() * total;
    let mut cumulative = 0.0;
    let last = weights.len() - 1;
    for (i, w) in weights[..last].iter().enumerate() {
        cumulative += w;
        if target < cumulative {
            return i;
        }
    }
    last
}

/// Grows `n_trees` complete trees of `height` levels of splits, as River does: each split
/// picks a feature with probability proportional to the width of the current box along it,
/// and a threshold uniformly in the middle 70% of that width.
///
/// `sorted_columns[i]` is the column of the i-th feature in name order (River draws over the
/// sorted names); `limits[i]` is that feature's `(low, high)` box.
pub(super) fn grow(
    rng: &mut impl UnitRandom,
    n_trees: u32,
    height: u32,
    sorted_columns: &[u32],
    limits: &[(f64, f64)],
) -> Forest {
    let per_tree = (1usize << height) - 1;
    let placeholder = Branch {
        threshold: 0.0,
        feature: 0,
        mass: Mass::default(),
    };
    let mut branches = vec![placeholder; n_trees as usize * per_tree];
    let mut box_limits = limits.to_vec();
    let mut widths = vec![0.0; limits.len()];
    for tree in 0..n_trees as usize {
        let slots = &mut branches[tree * per_tree..(tree + 1) * per_tree];
        grow_node(
            rng,
            slots,
            0,
            height,
            sorted_columns,
            &mut box_limits,
            &mut widths,
        );
    }
    Forest {
        height,
        n_trees,
        branches,
        leaves: vec![Mass::default(); n_trees as usize * (per_tree + 1)],
        window: 0,
    }
}

fn grow_node(
    rng: &mut impl UnitRandom,
    slots: &mut [Branch],
    node: usize,
    depth_left: u32,
    sorted_columns: &[u32],
    box_limits: &mut [(f64, f64)],
    widths: &mut [f64],
) {
    if depth_left == 0 {
        return;
    }
    for (w, (lo, hi)) in widths.iter_mut().zip(box_limits.iter()) {
        *w = hi - lo;
    }
    let f = weighted_index(rng, widths);
    let (a, b) = box_limits[f];
    let low = a + 0.15 * (b - a);
    let high = b - 0.15 * (b - a);
    let threshold = low + (high - low) * rng.unit();
    slots[node].threshold = threshold;
    slots[node].feature = sorted_columns[f];
    box_limits[f] = (a, threshold);
    grow_node(
        rng,
        slots,
        2 * node + 1,
        depth_left - 1,
        sorted_columns,
        box_limits,
        widths,
    );
    box_limits[f] = (threshold, b);
    grow_node(
        rng,
        slots,
        2 * node + 2,
        depth_left - 1,
        sorted_columns,
        box_limits,
        widths,
    );
    box_limits[f] = (a, b);
}

/// Lays out explicit trees given as pre-order branch lists (node, left subtree, right
/// subtree) of `(column, threshold)`.
pub(super) fn from_preorder(height: u32, trees: &[Vec<(u32, f64)>]) -> Forest {
    let per_tree = (1usize << height) - 1;
    let mut branches = Vec::with_capacity(trees.len() * per_tree);
    for tree in trees {
        let mut slots = vec![
            Branch {
                threshold: 0.0,
                feature: 0,
                mass: Mass::default(),
            };
            per_tree
        ];
        let mut next = tree.iter();
        place_preorder(&mut slots, 0, height, &mut next);
        branches.extend(slots);
    }
    Forest {
        height,
        n_trees: trees.len() as u32,
        branches,
        leaves: vec![Mass::default(); trees.len() * (per_tree + 1)],
        window: 0,
    }
}

fn place_preorder<'a>(
    slots: &mut [Branch],
    node: usize,
    depth_left: u32,
    next: &mut impl Iterator<Item = &'a (u32, f64)>,
) {
    if depth_left == 0 {
        return;
    }
    if let Some(&(feature, threshold)) = next.next() {
        slots[node].feature = feature;
        slots[node].threshold = threshold;
    }
    place_preorder(slots, 2 * node + 1, depth_left - 1, next);
    place_preorder(slots, 2 * node + 2, depth_left - 1, next);
}
