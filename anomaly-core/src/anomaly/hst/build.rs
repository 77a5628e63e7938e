//! Growing the trees: from a random generator (River's algorithm) or from an explicit spec.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::forest::{Forest, NodeAt};
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
/// and a threshold uniformly in the middle 70% of that width. Splits are drawn in pre-order.
///
/// `sorted_columns[i]` is the column of the i-th feature in name order (River draws over the
/// sorted names); `limits[i]` is that feature's `(low, high)` box. The counters are sized for
/// `window_size`.
pub(super) fn grow(
    rng: &mut impl UnitRandom,
    n_trees: u32,
    height: u32,
    sorted_columns: &[u32],
    limits: &[(f64, f64)],
    window_size: u32,
) -> Forest {
    let mut forest = Forest::new(height, n_trees, window_size, sorted_columns.len());
    let mut box_limits = limits.to_vec();
    let mut widths = vec![0.0; limits.len()];
    for tree in 0..n_trees as usize {
        let mut grower = Grower {
            rng: &mut *rng,
            forest: &mut forest,
            tree,
            sorted_columns,
            box_limits: &mut box_limits,
            widths: &mut widths,
        };
        grower.grow(NodeAt { depth: 0, pos: 0 });
    }
    forest
}

struct Grower<'a, G> {
    rng: &'a mut G,
    forest: &'a mut Forest,
    tree: usize,
    sorted_columns: &'a [u32],
    box_limits: &'a mut [(f64, f64)],
    widths: &'a mut [f64],
}

impl<G: UnitRandom> Grower<'_, G> {
    fn grow(&mut self, at: NodeAt) {
        if at.depth == self.forest.height() {
            return;
        }
        for (w, (lo, hi)) in self.widths.iter_mut().zip(self.box_limits.iter()) {
            *w = hi - lo;
        }
        let f = weighted_index(self.rng, self.widths);
        let (a, b) = self.box_limits[f];
        let low = a + 0.15 * (b - a);
        let high = b - 0.15 * (b - a);
        let threshold = low + (high - low) * self.rng.unit();
        self.forest
            .set_split(self.tree, at, self.sorted_columns[f], threshold);
        let (left, right) = children(at);
        self.box_limits[f] = (a, threshold);
        self.grow(left);
        self.box_limits[f] = (threshold, b);
        self.grow(right);
        self.box_limits[f] = (a, b);
    }
}

fn children(at: NodeAt) -> (NodeAt, NodeAt) {
    let depth = at.depth + 1;
    (
        NodeAt {
            depth,
            pos: 2 * at.pos,
        },
        NodeAt {
            depth,
            pos: 2 * at.pos + 1,
        },
    )
}

/// Explicit trees given as pre-order branch lists of `(column, threshold)` over `n_features`
/// columns, with counters sized for `window_size`.
pub(super) fn from_preorder(
    height: u32,
    trees: &[Vec<(u32, f64)>],
    window_size: u32,
    n_features: usize,
) -> Forest {
    let mut forest = Forest::new(height, trees.len() as u32, window_size, n_features);
    for (tree, splits) in trees.iter().enumerate() {
        let mut next = splits.iter();
        place_preorder(&mut forest, tree, NodeAt { depth: 0, pos: 0 }, &mut next);
    }
    forest
}

fn place_preorder<'a>(
    forest: &mut Forest,
    tree: usize,
    at: NodeAt,
    next: &mut impl Iterator<Item = &'a (u32, f64)>,
) {
    if at.depth == forest.height() {
        return;
    }
    if let Some(&(feature, threshold)) = next.next() {
        forest.set_split(tree, at, feature, threshold);
    }
    let (left, right) = children(at);
    place_preorder(forest, tree, left, next);
    place_preorder(forest, tree, right, next);
}
