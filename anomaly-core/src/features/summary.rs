use super::moments::Moments;

/// Count, sum, mean, variance, min and max of a set of values: what a [`RunningStats`] has
/// seen, or what a [`SlidingWindow`] retains.
///
/// Variance comes in two flavours: the **population** variance divides the sum of squared
/// deviations by `n` (the values are the whole population, e.g. "every transaction of the last
/// hour"); the **sample** variance divides by `n - 1` (the values estimate a larger
/// population). Both are 0 when they are undefined (no values, or one value for the sample
/// variance), as in River; so are the mean and the sum of nothing. Min and max are `None` when
/// there are no values.
///
/// ```
/// use anomaly_core::features::RunningStats;
///
/// let mut stats = RunningStats::default();
/// for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
///     stats.push(x)?;
/// }
/// let s = stats.summary();
/// assert_eq!((s.count(), s.sum(), s.mean()), (8, 40.0, 5.0));
/// assert_eq!(s.population_std(), 2.0);
/// assert!((s.sample_variance() - 32.0 / 7.0).abs() < 1e-12);
/// assert_eq!((s.min(), s.max()), (Some(2.0), Some(9.0)));
/// # Ok::<(), anomaly_core::InputError>(())
/// ```
///
/// [`RunningStats`]: super::RunningStats
/// [`SlidingWindow`]: super::SlidingWindow
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Moments are kept relative to `shift` (a value of the set) for precision; see
    /// [`super::SlidingWindow`]'s notes on numerics.
    shift: f64,
    moments: Moments,
}

impl Summary {
    pub(crate) fn new(shift: f64, moments: Moments) -> Self {
        Self { shift, moments }
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.moments.n as u64
    }

    /// Sum of the values; 0 when there are none.
    pub fn sum(&self) -> f64 {
        if self.moments.n > 0.0 {
            self.moments.n * self.shift + self.moments.sum
        } else {
            0.0
        }
    }

    /// Arithmetic mean; 0 when there are no values.
    pub fn mean(&self) -> f64 {
        if self.moments.n > 0.0 {
            self.shift + self.moments.mean
        } else {
            0.0
        }
    }

    /// Sum of squared deviations divided by `n`; 0 when there are no values.
    pub fn population_variance(&self) -> f64 {
        self.moments.population_variance()
    }

    /// Sum of squared deviations divided by `n - 1`; 0 with fewer than two values.
    pub fn sample_variance(&self) -> f64 {
        self.moments.sample_variance()
    }

    /// Square root of [`population_variance`](Self::population_variance).
    pub fn population_std(&self) -> f64 {
        self.population_variance().sqrt()
    }

    /// Square root of [`sample_variance`](Self::sample_variance).
    pub fn sample_std(&self) -> f64 {
        self.sample_variance().sqrt()
    }

    /// Smallest value, exact; `None` when there are no values.
    pub fn min(&self) -> Option<f64> {
        (self.moments.n > 0.0).then_some(self.moments.min)
    }

    /// Largest value, exact; `None` when there are no values.
    pub fn max(&self) -> Option<f64> {
        (self.moments.n > 0.0).then_some(self.moments.max)
    }
}
