//! Time-decayed weighted reservoir sampling (AWS RCF's `CompactSampler`): each tree keeps the
//! `capacity` points of smallest weight `ln(-ln u) - t·λ`, so newer points (larger `t`) are
//! more likely to stay and old ones fade out at rate `λ`.

use serde::{Deserialize, Serialize};

/// A max-heap of `(weight, point)` on the weight: the root is the next to go.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Sampler {
    weights: Vec<f32>,
    points: Vec<u32>,
}

/// What the sampler decided for a new point.
pub(super) enum Decision {
    /// Keep it; the tree must first drop this point.
    Replace(u32),
    /// Keep it, nothing leaves (the sample is still filling).
    Add,
    /// Do not keep it.
    Reject,
}

impl Sampler {
    pub(super) fn len(&self) -> usize {
        self.points.len()
    }

    pub(super) fn points(&self) -> &[u32] {
        &self.points
    }

    /// Decides on a point of `weight`, given whether it is accepted as an initial point while
    /// the sample fills.
    pub(super) fn decide(&mut self, weight: f32, initial: bool, capacity: usize) -> Decision {
        if initial && self.points.len() < capacity {
            return Decision::Add;
        }
        match self.weights.first() {
            Some(&max) if weight < max => Decision::Replace(self.pop_max()),
            _ => Decision::Reject,
        }
    }

    pub(super) fn push(&mut self, weight: f32, point: u32) {
        self.weights.push(weight);
        self.points.push(point);
        let mut i = self.weights.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.weights[parent] < self.weights[i] {
                self.weights.swap(parent, i);
                self.points.swap(parent, i);
                i = parent;
            } else {
                break;
            }
        }
    }

    fn pop_max(&mut self) -> u32 {
        let out = self.points[0];
        let last = self.weights.len() - 1;
        self.weights.swap(0, last);
        self.points.swap(0, last);
        self.weights.pop();
        self.points.pop();
        let n = self.weights.len();
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut largest = i;
            if l < n && self.weights[l] > self.weights[largest] {
                largest = l;
            }
            if r < n && self.weights[r] > self.weights[largest] {
                largest = r;
            }
            if largest == i {
                break;
            }
            self.weights.swap(i, largest);
            self.points.swap(i, largest);
            i = largest;
        }
        out
    }

    /// A loaded sampler is a valid heap of finite weights.
    pub(super) fn valid(&self, capacity: usize) -> bool {
        self.weights.len() == self.points.len()
            && self.points.len() <= capacity
            && self.weights.iter().all(|w| w.is_finite())
            && (1..self.weights.len()).all(|i| self.weights[(i - 1) / 2] >= self.weights[i])
    }
}
