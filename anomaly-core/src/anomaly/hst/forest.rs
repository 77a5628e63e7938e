//! The trees' storage: complete binary trees in flat arrays, with masses that switch windows
//! in O(1).
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
    /// Node index of the leaf reached (within the tree).
    pub(super) leaf: u32,
    /// `sum of r_mass * 2^depth` over the scored part of the path.
    pub(super) mass_score: u64,
    /// Column of the split that led into the node where scoring stopped, if it stopped early.
    pub(super) isolated_by: Option<u32>,
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Forest {
    pub(super) height: u32,
    pub(super) n_trees: u32,
    /// `n_trees * (2^height - 1)` branches, each tree in breadth-first order (children of
    /// node `i` at `2i + 1` and `2i + 2`).
    pub(super) branches: Vec<Branch>,
    /// `n_trees * 2^height` leaves.
    pub(super) leaves: Vec<Mass>,
    /// Number of window boundaries passed.
    pub(super) window: u32,
}

/// Window numbers are rebased long before `u32` could wrap, so stale stamps never alias.
const REBASE_AT: u32 = 1 << 31;

impl Forest {
    pub(super) fn branches_per_tree(&self) -> usize {
        (1usize << self.height) - 1
    }

    pub(super) fn leaves_per_tree(&self) -> usize {
        1usize << self.height
    }

    /// Walks one tree for `row`, scoring the path (unless `score` is false) with River's
    /// rule and, when `learn` is true, incrementing the latest mass of every visited node.
    #[inline]
    pub(super) fn walk<R: Row>(
        &mut self,
        tree: usize,
        row: &R,
        score: bool,
        size_limit: f64,
        learn: bool,
    ) -> Walk {
        let now = self.window;
        let per_tree = self.branches_per_tree();
        let base = tree * per_tree;
        let mut node = 0usize;
        let mut scoring = score;
        let mut mass_score = 0u64;
        let mut isolated_by = None;
        let mut previous_feature = None;
        for depth in 0..self.height {
            let branch = self.branches[base + node];
            if scoring {
                let reference = branch.mass.at(now).1;
                mass_score += u64::from(reference) << depth;
                if f64::from(reference) < size_limit {
                    scoring = false;
                    isolated_by = previous_feature;
                }
            }
            if learn {
                self.branches[base + node].mass.increment(now);
            }
            let go_right = match row.value(branch.feature as usize) {
                // Ties go right, as in River (inputs are checked finite, so `>=` is `!(<)`).
                Some(x) => x >= branch.threshold,
                // River sends an event lacking the feature towards the child with more
                // latest-window mass, left on ties.
                None => {
                    let left = self.mass_of(tree, 2 * node + 1).at(now).0;
                    let right = self.mass_of(tree, 2 * node + 2).at(now).0;
                    left < right
                }
            };
            previous_feature = Some(branch.feature);
            node = 2 * node + 1 + usize::from(go_right);
        }
        let leaf = &mut self.leaves[tree * (per_tree + 1) + node - per_tree];
        if scoring {
            mass_score += u64::from(leaf.at(now).1) << self.height;
        }
        if learn {
            leaf.increment(now);
        }
        Walk {
            leaf: node as u32,
            mass_score,
            isolated_by,
        }
    }

    fn mass_of(&self, tree: usize, node: usize) -> Mass {
        let per_tree = self.branches_per_tree();
        if node < per_tree {
            self.branches[tree * per_tree + node].mass
        } else {
            self.leaves[tree * (per_tree + 1) + node - per_tree]
        }
    }

    /// Removes one learned visit along the path ending at `leaf` (undoing a walk's learning).
    pub(super) fn unlearn_path(&mut self, tree: usize, leaf: u32) {
        let now = self.window;
        let per_tree = self.branches_per_tree();
        let mut node = leaf as usize;
        self.leaves[tree * (per_tree + 1) + node - per_tree].decrement(now);
        while node > 0 {
            node = (node - 1) / 2;
            self.branches[tree * per_tree + node].mass.decrement(now);
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

    /// `(l_mass, r_mass)` of a node as River would hold them now.
    pub(super) fn masses(&self, tree: usize, node: usize) -> (u32, u32) {
        self.mass_of(tree, node).at(self.window)
    }
}
