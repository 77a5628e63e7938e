//! Time-decayed weighted reservoir sampling (AWS RCF's `CompactSampler`): each tree keeps the
//! `capacity` points of smallest weight `ln(-ln u) - t·λ`, so newer points (larger `t`) are
//! more likely to stay and old ones fade out at rate `λ`.

use serde::{Deserialize, Serialize};

use crate::anomaly::Transient;

/// A max-heap of `(weight, point)` on the weight: the root is the next to go.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Sampler {
    weights: Vec<f32>,
    points: Vec<u32>,
    #[serde(skip)]
    rejection: Transient<Option<RejectionBound>>,
}

/// Draws `u` at or below `below` give a weight the full sample rejects, while its top weight
/// is `top` and until entry `until` (see [`Sampler::surely_rejects`]).
#[derive(Clone, Copy, Debug)]
struct RejectionBound {
    top: f32,
    until: u64,
    below: f64,
}

/// Entries one rejection bound serves: the bound is set for the last of them.
const BOUND_SPAN: u64 = 64;

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

    /// Whether a full sample surely rejects the draw `u` at entry `t` (the exact answer when
    /// it says so; `false` means "weigh it"), without the two logarithms of its weight: most
    /// draws are rejected once the sample is full.
    ///
    /// A weight `ln(-ln u) - t·λ` is at least the top one exactly when
    /// `u <= exp(-exp(top + t·λ))`, a bound that only falls as `t` grows. So the bound is
    /// computed for the last entry of a span, and for a top raised by a margin far above the
    /// rounding of either computation; draws between it and the true bound are weighed.
    pub(super) fn surely_rejects(&mut self, u: f64, t: u64, decay: f64) -> bool {
        let Some(&top) = self.weights.first() else {
            return false;
        };
        let bound = match self.rejection.0 {
            Some(bound) if bound.top == top && t <= bound.until => bound,
            _ => {
                let until = t.saturating_add(BOUND_SPAN);
                let shift = until as f64 * decay;
                let exponent = f64::from(top) + shift;
                // The exponent's own rounding grows with the shift (its two terms are about
                // as large as the shift and nearly cancel), by 2^-52 of it: 1e-12 covers it
                // four thousand times over without eating the bound on long streams.
                let margin = 1e-6 * (1.0 + exponent.abs()) + 1e-12 * shift;
                let below = (-(exponent + margin).exp()).exp();
                // Near 1, the bound's own rounding is as large as the margin's effect: weigh.
                let below = if below < 1.0 - 1e-6 { below } else { 0.0 };
                let bound = RejectionBound { top, until, below };
                self.rejection.0 = Some(bound);
                bound
            }
        };
        u <= bound.below
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Sampler;

    /// The weight the exact way gives the draw `u` at entry `t`.
    fn weight(u: f64, t: u64, decay: f64) -> f32 {
        ((-u.ln()).ln() - t as f64 * decay) as f32
    }

    proptest! {
        /// A quick rejection is always the exact comparison's answer, also for draws a few
        /// units in the last place from the bound, and as the entries move on under one
        /// cached bound.
        #[test]
        fn a_quick_rejection_is_always_an_exact_one(
            top in -30.0f32..5.0,
            start in prop_oneof![0u64..10_000_000, 0u64..100_000_000_000],
            decay in prop_oneof![Just(0.0), 1e-7f64..1e-2],
            nudge in -64i64..64,
        ) {
            let mut sampler = Sampler::default();
            sampler.push(top, 0);
            for t in start..start + 200 {
                // The draw at the true bound, nudged by a few units in the last place.
                let edge = (-(f64::from(top) + t as f64 * decay).exp()).exp();
                let near = f64::from_bits(edge.to_bits().saturating_add_signed(nudge));
                // And one well inside the rejections, which the quick way settles.
                for u in [near, edge * 0.999] {
                    let u = u.clamp(f64::MIN_POSITIVE, 1.0 - f64::EPSILON);
                    if sampler.surely_rejects(u, t, decay) {
                        prop_assert!(weight(u, t, decay) >= top, "u {u} t {t}");
                    }
                }
            }
        }
    }

    /// The quick way does the work: at a full sample's usual state (about nine draws in ten
    /// rejected) it settles nearly every draw the exact way would reject, also after ten
    /// billion entries (days of a busy stream).
    #[test]
    fn most_rejections_skip_the_logarithms() {
        let decay = 0.1 / 256.0;
        for start in [0u64, 1_000_000, 10_000_000_000] {
            // The top weight of a full sample, shifted with the entries as weights are.
            let top = (-2.5 - start as f64 * decay) as f32;
            let mut sampler = Sampler::default();
            sampler.push(top, 0);
            let (mut exact, mut quick) = (0, 0);
            let mut rng = 7u64;
            for t in start..start + 2_000 {
                let u = super::super::tree::next_f64(&mut rng).max(f64::MIN_POSITIVE);
                if weight(u, t, decay) >= top {
                    exact += 1;
                    quick += usize::from(sampler.surely_rejects(u, t, decay));
                }
            }
            assert!(exact > 1_500, "start {start}: {exact}");
            assert!(
                quick * 100 >= exact * 98,
                "start {start}: quick {quick} of {exact}"
            );
        }
    }
}
