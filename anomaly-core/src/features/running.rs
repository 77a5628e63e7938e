use serde::{Deserialize, Serialize};

use super::moments::Moments;
use super::summary::Summary;
use crate::InputError;
use crate::error::check_input;

/// Running count, mean, variance, min and max of a whole stream, in O(1) memory.
///
/// Welford's update, applied to `x - shift` where `shift` is the first value seen: a stream of
/// values around 1e9 with a spread of 1 keeps a variance accurate to about 1e-14 relative,
/// where the textbook `E[x^2] - E[x]^2` would lose every digit.
///
/// ```
/// use anomaly_core::features::RunningStats;
///
/// let mut stats = RunningStats::default();
/// for x in [1e9 + 0.25, 1e9 + 0.5, 1e9 + 0.75] {
///     stats.push(x)?;
/// }
/// let s = stats.summary();
/// assert_eq!(s.mean(), 1e9 + 0.5);
/// assert!((s.population_variance() - 0.125 / 3.0).abs() < 1e-15);
/// assert!(stats.push(f64::NAN).is_err()); // rejected, state untouched
/// assert_eq!(stats.summary().count(), 3);
/// # Ok::<(), anomaly_core::InputError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunningStats {
    shift: f64,
    moments: Moments,
}

impl RunningStats {
    /// Adds one value. NaN, infinities and magnitudes above [`crate::MAX_INPUT_MAGNITUDE`] are
    /// rejected and leave the statistics untouched.
    pub fn push(&mut self, x: f64) -> Result<(), InputError> {
        let x = check_input("RunningStats", x)?;
        if self.moments.n == 0.0 {
            self.shift = x;
        }
        self.moments = self.moments.merge(&Moments::single(x, self.shift));
        Ok(())
    }

    /// Everything seen so far.
    pub fn summary(&self) -> Summary {
        Summary::new(self.shift, self.moments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_summary_is_all_zero() {
        let s = RunningStats::default().summary();
        assert_eq!((s.count(), s.sum(), s.mean()), (0, 0.0, 0.0));
        assert_eq!((s.sample_variance(), s.population_variance()), (0.0, 0.0));
        assert_eq!((s.min(), s.max()), (None, None));
    }

    #[test]
    fn variance_stays_accurate_far_from_zero() {
        let mut stats = RunningStats::default();
        let xs: Vec<f64> = (0..10_000)
            .map(|i| 1e9 + f64::from(i % 97) / 97.0)
            .collect();
        for &x in &xs {
            stats.push(x).unwrap();
        }
        let mean = xs.iter().map(|x| x - 1e9).sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - 1e9 - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        let got = stats.summary().population_variance();
        assert!((got - var).abs() / var < 1e-9, "{got} vs {var}");
    }

    #[test]
    fn rejects_bad_input_untouched() {
        let mut stats = RunningStats::default();
        stats.push(1.0).unwrap();
        let before = stats;
        for bad in [f64::NAN, f64::INFINITY, -f64::INFINITY, 1e101] {
            assert!(stats.push(bad).is_err());
        }
        assert_eq!(stats, before);
    }

    #[test]
    fn serde_round_trip_continues_identically() {
        let mut a = RunningStats::default();
        for x in [3.0, 1.0, 4.0] {
            a.push(x).unwrap();
        }
        let mut b: RunningStats =
            serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        for x in [1.0, 5.0, 9.0] {
            a.push(x).unwrap();
            b.push(x).unwrap();
        }
        assert_eq!(a, b);
    }
}
