use serde::{Deserialize, Serialize};

use super::hddm_a::check_confidence;
use super::{DriftDetector, DriftStatus, Outcome};
use crate::InputError;
use crate::error::{ParameterError, check};

/// HDDM_W's parameters, with River's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HddmWParams {
    /// Confidence level of the drift test, in (0, 1). Default 0.001.
    pub drift_confidence: f64,
    /// Confidence level of the warning test, in (0, 1). Default 0.005.
    pub warning_confidence: f64,
    /// Weight of the newest value in the exponentially weighted means, in (0, 1].
    /// Default 0.05.
    pub lambda_val: f64,
    /// Also detect decreases of the error rate. Default false.
    pub two_sided_test: bool,
}

impl Default for HddmWParams {
    fn default() -> Self {
        Self {
            drift_confidence: 0.001,
            warning_confidence: 0.005,
            lambda_val: 0.05,
            two_sided_test: false,
        }
    }
}

/// An exponentially weighted mean with its bound-correction factor (River's `SampleInfo`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct WeightedSample {
    ewma: f64,
    /// Sum of squared weights, the variance factor of the Hoeffding/McDiarmid bound.
    ibc: f64,
    initialised: bool,
}

impl WeightedSample {
    const FRESH: Self = Self {
        ewma: 0.0,
        ibc: 1.0,
        initialised: false,
    };

    #[inline]
    fn update(&mut self, x: f64, lambda: f64, one_minus_lambda: f64) {
        self.ewma = if self.initialised {
            lambda * x + one_minus_lambda * self.ewma
        } else {
            x
        };
        self.initialised = true;
        // River updates ibc on the very first value too (MOA resets it to 1 there).
        self.ibc = lambda * lambda + one_minus_lambda * one_minus_lambda * self.ibc;
    }
}

/// Drift detection with McDiarmid's bounds on weighted moving averages
/// (Frías-Blanco et al., 2014), bit-exact with River's `drift.binary.HDDMW`.
///
/// ```
/// use anomaly_core::drift::{DriftDetector, HddmW, Outcome};
///
/// let mut hddm = HddmW::default();
/// let first_drift = (0..4000).position(|i| {
///     let every = if i < 2000 { 10 } else { 2 };
///     hddm.update(Outcome::from_error_flag(i % every == 0)).unwrap().is_drift()
/// });
/// assert!(first_drift.is_some_and(|i| i > 2000));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HddmW {
    params: HddmWParams,
    total: WeightedSample,
    incr_before: WeightedSample,
    incr_after: WeightedSample,
    decr_before: WeightedSample,
    decr_after: WeightedSample,
    /// Lowest `ewma + bound` so far; `None` stands for River's initial `+inf`.
    incr_cut: Option<f64>,
    /// Highest `ewma - bound` so far; `None` stands for River's initial `-inf`.
    decr_cut: Option<f64>,
    drift: bool,
    warning: bool,
}

impl Default for HddmW {
    fn default() -> Self {
        Self::fresh(HddmWParams::default())
    }
}

fn bound(ibc: f64, confidence: f64) -> f64 {
    (ibc * (1.0 / confidence).ln() / 2.0).sqrt()
}

/// Whether `after` exceeds `before` by more than the bound at `confidence`.
fn rose(before: &WeightedSample, after: &WeightedSample, confidence: f64) -> bool {
    before.initialised
        && after.initialised
        && after.ewma - before.ewma > bound(before.ibc + after.ibc, confidence)
}

impl HddmW {
    /// Builds HDDM_W with the given parameters.
    pub fn new(params: HddmWParams) -> Result<Self, ParameterError> {
        check_confidence("HDDM_W", "drift_confidence", params.drift_confidence)?;
        check_confidence("HDDM_W", "warning_confidence", params.warning_confidence)?;
        check(
            params.lambda_val > 0.0 && params.lambda_val <= 1.0,
            "HDDM_W",
            "lambda_val",
            "in (0, 1]",
            params.lambda_val,
        )?;
        Ok(Self::fresh(params))
    }

    fn fresh(params: HddmWParams) -> Self {
        Self {
            params,
            total: WeightedSample::FRESH,
            incr_before: WeightedSample::FRESH,
            incr_after: WeightedSample::FRESH,
            decr_before: WeightedSample::FRESH,
            decr_after: WeightedSample::FRESH,
            incr_cut: None,
            decr_cut: None,
            drift: false,
            warning: false,
        }
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &HddmWParams {
        &self.params
    }

    /// The exponentially weighted error rate since the last reset.
    pub fn estimation(&self) -> f64 {
        self.total.ewma
    }
}

impl DriftDetector for HddmW {
    type Input = Outcome;
    const NAME: &'static str = "HDDM_W";

    fn update(&mut self, outcome: Outcome) -> Result<DriftStatus, InputError> {
        if self.drift {
            self.reset();
        }
        let x = if outcome.is_error() { 1.0 } else { 0.0 };
        let lambda = self.params.lambda_val;
        let one_minus = 1.0 - lambda;
        let (drift_conf, warning_conf) =
            (self.params.drift_confidence, self.params.warning_confidence);
        self.total.update(x, lambda, one_minus);

        let eps = bound(self.total.ibc, drift_conf);
        let incr_candidate = self.total.ewma + eps;
        if incr_candidate < self.incr_cut.unwrap_or(f64::INFINITY) {
            self.incr_cut = Some(incr_candidate);
            self.incr_before = self.total;
            self.incr_after = WeightedSample::FRESH;
        } else {
            self.incr_after.update(x, lambda, one_minus);
        }
        self.drift = rose(&self.incr_before, &self.incr_after, drift_conf);
        self.warning = !self.drift && rose(&self.incr_before, &self.incr_after, warning_conf);

        // River keeps the decrease bookkeeping up to date even for one-sided tests.
        let decr_candidate = self.total.ewma - eps;
        if decr_candidate > self.decr_cut.unwrap_or(f64::NEG_INFINITY) {
            self.decr_cut = Some(decr_candidate);
            self.decr_before = self.total;
            self.decr_after = WeightedSample::FRESH;
        } else {
            self.decr_after.update(x, lambda, one_minus);
        }
        if self.params.two_sided_test {
            if rose(&self.decr_after, &self.decr_before, drift_conf) {
                self.drift = true;
            } else if rose(&self.decr_after, &self.decr_before, warning_conf) {
                self.warning = true;
            }
        }
        Ok(self.status())
    }

    fn drift_detected(&self) -> bool {
        self.drift
    }

    fn warning_detected(&self) -> bool {
        self.warning
    }

    fn reset(&mut self) {
        *self = Self::fresh(self.params);
    }
}
