use serde::{Deserialize, Serialize};

use crate::InputError;
use crate::error::{ParameterError, check, check_input};

/// [`EwmStats`]'s parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EwmParams {
    /// Weight of the newest value, in (0, 1]. 1 keeps only the latest value; small values
    /// remember longer (the weights' half-life is about `ln 2 / alpha` updates). Default 0.5,
    /// River's default `fading_factor`.
    pub alpha: f64,
}

impl Default for EwmParams {
    fn default() -> Self {
        Self { alpha: 0.5 }
    }
}

/// Exponentially weighted mean and variance.
///
/// The first value sets `mean = x, variance = 0`; every later value `x` does (Finch, 2009,
/// "Incremental calculation of weighted mean and variance"):
///
/// ```text
/// d        = x - mean
/// mean     = mean + alpha * d
/// variance = (1 - alpha) * (variance + alpha * d^2)
/// ```
///
/// This is the exact exponentially weighted variance of the values around their weighted
/// mean; unlike River's `stats.EWVar`, which computes `E[x^2] - E[x]^2`, it never subtracts two
/// large numbers. The mean is kept relative to the first value for the same reason, so a
/// stream around 1e9 with a spread of 1 keeps its variance as accurate as a stream around 0.
///
/// ```
/// use anomaly_core::features::{EwmParams, EwmStats};
///
/// let mut ewm = EwmStats::new(EwmParams { alpha: 0.5 })?;
/// for x in [10.0, 20.0] {
///     ewm.push(x)?;
/// }
/// // d = 10, mean = 10 + 0.5 * 10, variance = 0.5 * (0 + 0.5 * 100)
/// assert_eq!((ewm.mean(), ewm.variance()), (15.0, 25.0));
/// assert_eq!(ewm.std(), 5.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EwmStats {
    params: EwmParams,
    count: u64,
    /// The first value; `mean` is relative to it.
    shift: f64,
    mean: f64,
    variance: f64,
}

impl Default for EwmStats {
    fn default() -> Self {
        Self::fresh(EwmParams::default())
    }
}

impl EwmStats {
    /// Builds the statistics; `alpha` must be in (0, 1].
    pub fn new(params: EwmParams) -> Result<Self, ParameterError> {
        check(
            params.alpha > 0.0 && params.alpha <= 1.0,
            "EwmStats",
            "alpha",
            "in (0, 1]",
            params.alpha,
        )?;
        Ok(Self::fresh(params))
    }

    fn fresh(params: EwmParams) -> Self {
        Self {
            params,
            count: 0,
            shift: 0.0,
            mean: 0.0,
            variance: 0.0,
        }
    }

    /// The parameters these statistics were built with.
    pub fn params(&self) -> &EwmParams {
        &self.params
    }

    /// Adds one value. NaN, infinities and magnitudes above [`crate::MAX_INPUT_MAGNITUDE`] are
    /// rejected and leave the statistics untouched.
    pub fn push(&mut self, x: f64) -> Result<(), InputError> {
        let x = check_input("EwmStats", x)?;
        if self.count == 0 {
            self.shift = x;
            self.mean = 0.0;
            self.variance = 0.0;
        } else {
            let alpha = self.params.alpha;
            let d = (x - self.shift) - self.mean;
            self.mean += alpha * d;
            self.variance = (1.0 - alpha) * (self.variance + alpha * d * d);
        }
        self.count = self.count.saturating_add(1);
        Ok(())
    }

    /// Values seen so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Exponentially weighted mean; 0 before any value.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.shift + self.mean
        }
    }

    /// Exponentially weighted variance; 0 before the second value.
    pub fn variance(&self) -> f64 {
        self.variance.max(0.0)
    }

    /// Square root of [`variance`](Self::variance).
    pub fn std(&self) -> f64 {
        self.variance().sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_is_validated() {
        for alpha in [0.0, -0.1, 1.01, f64::NAN] {
            let err = EwmStats::new(EwmParams { alpha }).unwrap_err();
            assert_eq!(err.parameter, "alpha");
        }
        assert!(EwmStats::new(EwmParams { alpha: 1.0 }).is_ok());
    }

    #[test]
    fn alpha_one_keeps_only_the_latest_value() {
        let mut ewm = EwmStats::new(EwmParams { alpha: 1.0 }).unwrap();
        for x in [3.0, 8.0, -2.0] {
            ewm.push(x).unwrap();
        }
        assert_eq!((ewm.mean(), ewm.variance(), ewm.count()), (-2.0, 0.0, 3));
    }

    #[test]
    fn shift_invariant_far_from_zero() {
        let params = EwmParams { alpha: 0.1 };
        let mut near = EwmStats::new(params).unwrap();
        let mut far = EwmStats::new(params).unwrap();
        for i in 0..5_000 {
            let u = f64::from((i * 7919) % 1000) / 1000.0;
            near.push(u).unwrap();
            far.push(1e9 + u).unwrap();
        }
        let (a, b) = (near.variance(), far.variance());
        assert!((a - b).abs() / a < 1e-6, "{a} vs {b}");
        assert!((far.mean() - 1e9 - near.mean()).abs() < 1e-6);
    }

    #[test]
    fn rejects_bad_input_untouched() {
        let mut ewm = EwmStats::default();
        ewm.push(2.0).unwrap();
        let before = ewm;
        assert!(ewm.push(f64::NAN).is_err());
        assert!(ewm.push(-1e200).is_err());
        assert_eq!(ewm, before);
    }
}
