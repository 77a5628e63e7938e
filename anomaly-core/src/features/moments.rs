//! Mergeable summary of a bag of values: count, shifted mean, sum and sum of squared
//! deviations, and the exact min and max.
//!
//! Merging uses Chan et al.'s pairwise formula, which never subtracts a removed value, so the
//! windows built on it cannot accumulate cancellation error the way "add on insert, subtract
//! on evict" running sums do.

use serde::{Deserialize, Serialize};

/// Count, mean, sum and M2 of `x - shift` for a shift chosen by the owner, and min/max of the
/// raw values. An empty summary has every field at 0; its min and max are never read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Moments {
    /// Number of values; an `f64` because every use is floating-point (exact below 2^53).
    pub(crate) n: f64,
    /// Mean of the shifted values.
    pub(crate) mean: f64,
    /// Sum of the shifted values.
    pub(crate) sum: f64,
    /// Sum of squared deviations from the mean.
    pub(crate) m2: f64,
    /// Smallest raw value.
    pub(crate) min: f64,
    /// Largest raw value.
    pub(crate) max: f64,
}

impl Moments {
    pub(crate) const EMPTY: Self = Self {
        n: 0.0,
        mean: 0.0,
        sum: 0.0,
        m2: 0.0,
        min: 0.0,
        max: 0.0,
    };

    /// The summary of the single raw value `x`, shifted by `shift`.
    #[inline]
    pub(crate) fn single(x: f64, shift: f64) -> Self {
        let d = x - shift;
        Self {
            n: 1.0,
            mean: d,
            sum: d,
            m2: 0.0,
            min: x,
            max: x,
        }
    }

    /// The summary of `self`'s values followed by `other`'s (both with the same shift).
    ///
    /// Not commutative in floating point, so callers always merge older before newer: that
    /// keeps every summary a deterministic function of the values and their order, which is
    /// what makes decoded windows continue bit-identically.
    #[inline]
    pub(crate) fn merge(&self, other: &Self) -> Self {
        if other.n == 0.0 {
            return *self;
        }
        if self.n == 0.0 {
            return *other;
        }
        let n = self.n + other.n;
        let delta = other.mean - self.mean;
        let weight = other.n / n;
        Self {
            n,
            mean: self.mean + delta * weight,
            sum: self.sum + other.sum,
            m2: self.m2 + other.m2 + delta * delta * self.n * weight,
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }

    /// Population variance (divides by n); 0 when empty.
    #[inline]
    pub(crate) fn population_variance(&self) -> f64 {
        if self.n > 0.0 {
            (self.m2 / self.n).max(0.0)
        } else {
            0.0
        }
    }

    /// Sample variance (divides by n - 1); 0 with fewer than two values.
    #[inline]
    pub(crate) fn sample_variance(&self) -> f64 {
        if self.n > 1.0 {
            (self.m2 / (self.n - 1.0)).max(0.0)
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(xs: &[f64], shift: f64) -> Moments {
        xs.iter().fold(Moments::EMPTY, |acc, &x| {
            acc.merge(&Moments::single(x, shift))
        })
    }

    #[test]
    fn merge_matches_two_pass() {
        let xs = [3.0, -1.0, 4.0, 1.5, 9.0, 2.0];
        let m = fold(&xs, 0.0);
        let mean = xs.iter().sum::<f64>() / 6.0;
        let m2: f64 = xs.iter().map(|x| (x - mean).powi(2)).sum();
        assert_eq!(m.n, 6.0);
        assert!((m.mean - mean).abs() < 1e-12);
        assert!((m.m2 - m2).abs() < 1e-12);
        assert_eq!((m.min, m.max), (-1.0, 9.0));
        assert!((m.sample_variance() - m2 / 5.0).abs() < 1e-12);
    }

    #[test]
    fn merging_halves_equals_folding_all() {
        let xs: Vec<f64> = (0..50).map(|i| f64::from(i).sin() * 10.0).collect();
        let whole = fold(&xs, 1.0);
        let halves = fold(&xs[..20], 1.0).merge(&fold(&xs[20..], 1.0));
        assert!((whole.mean - halves.mean).abs() < 1e-12);
        assert!((whole.m2 - halves.m2).abs() < 1e-9);
        assert_eq!(whole.n, halves.n);
    }

    #[test]
    fn empty_is_the_identity() {
        let m = Moments::single(2.5, 0.5);
        assert_eq!(Moments::EMPTY.merge(&m), m);
        assert_eq!(m.merge(&Moments::EMPTY), m);
        assert_eq!(Moments::EMPTY.sample_variance(), 0.0);
        assert_eq!(Moments::EMPTY.population_variance(), 0.0);
    }
}
