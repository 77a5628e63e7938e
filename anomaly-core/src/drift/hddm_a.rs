use serde::{Deserialize, Serialize};

use super::{DriftDetector, DriftStatus, Outcome};
use crate::InputError;
use crate::error::{ParameterError, check};
use crate::stats::Mean;

/// HDDM_A's parameters, with River's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HddmAParams {
    /// Confidence level of the drift test, in (0, 1). Default 0.001.
    pub drift_confidence: f64,
    /// Confidence level of the warning test, in (0, 1). Default 0.005.
    pub warning_confidence: f64,
    /// Also detect decreases of the error rate. Default false.
    pub two_sided_test: bool,
}

impl Default for HddmAParams {
    fn default() -> Self {
        Self {
            drift_confidence: 0.001,
            warning_confidence: 0.005,
            two_sided_test: false,
        }
    }
}

pub(crate) fn check_confidence(
    model: &'static str,
    parameter: &'static str,
    value: f64,
) -> Result<(), ParameterError> {
    check(
        value > 0.0 && value < 1.0,
        model,
        parameter,
        "in (0, 1)",
        value,
    )
}

/// Drift detection with Hoeffding's bounds on moving averages (Frías-Blanco et al., 2014),
/// bit-exact with River's `drift.binary.HDDMA`.
///
/// With `two_sided_test`, a decrease of the error rate is reported too; a decrease test can
/// then raise a warning on the same update as a drift, so check
/// [`warning_detected`](DriftDetector::warning_detected) if both matter.
///
/// ```
/// use anomaly_core::drift::{DriftDetector, HddmA, Outcome};
///
/// let mut hddm = HddmA::default();
/// let first_drift = (0..4000).position(|i| {
///     let every = if i < 2000 { 10 } else { 2 };
///     hddm.update(Outcome::from_error_flag(i % every == 0)).unwrap().is_drift()
/// });
/// assert!(first_drift.is_some_and(|i| i > 2000));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HddmA {
    params: HddmAParams,
    /// Everything since the last reset.
    total: Mean,
    /// Snapshot of `total` where the mean was lowest (cut point for increases).
    low: Mean,
    /// Snapshot of `total` where the mean was highest (cut point for decreases).
    high: Mean,
    /// `ln(1 / drift_confidence)`, used by every Hoeffding bound.
    ln_inv_drift_conf: f64,
    drift: bool,
    warning: bool,
}

impl Default for HddmA {
    fn default() -> Self {
        Self::fresh(HddmAParams::default())
    }
}

impl HddmA {
    /// Builds HDDM_A with the given parameters.
    pub fn new(params: HddmAParams) -> Result<Self, ParameterError> {
        check_confidence("HDDM_A", "drift_confidence", params.drift_confidence)?;
        check_confidence("HDDM_A", "warning_confidence", params.warning_confidence)?;
        Ok(Self::fresh(params))
    }

    fn fresh(params: HddmAParams) -> Self {
        Self {
            params,
            total: Mean::default(),
            low: Mean::default(),
            high: Mean::default(),
            ln_inv_drift_conf: (1.0 / params.drift_confidence).ln(),
            drift: false,
            warning: false,
        }
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &HddmAParams {
        &self.params
    }

    /// Updates since the last reset.
    pub fn n(&self) -> u64 {
        self.total.n as u64
    }

    fn hoeffding(&self, n: f64) -> f64 {
        (1.0 / (2.0 * n) * self.ln_inv_drift_conf).sqrt()
    }

    /// Whether the mean moved from `cut`'s mean by at least the bound at `confidence`,
    /// upwards (`increase`) or downwards.
    fn mean_moved(&self, cut: &Mean, confidence: f64, increase: bool) -> bool {
        if cut.n == self.total.n {
            return false;
        }
        let m = (self.total.n - cut.n) / cut.n * (1.0 / self.total.n);
        let epsilon = (m / 2.0 * (2.0 / confidence).ln()).sqrt();
        if increase {
            self.total.mean - cut.mean >= epsilon
        } else {
            cut.mean - self.total.mean >= epsilon
        }
    }
}

impl DriftDetector for HddmA {
    type Input = Outcome;
    const NAME: &'static str = "HDDM_A";

    fn update(&mut self, outcome: Outcome) -> Result<DriftStatus, InputError> {
        if self.drift {
            self.reset();
        }
        self.total
            .update(if outcome.is_error() { 1.0 } else { 0.0 });
        if self.low.n == 0.0 {
            self.low = self.total;
        }
        if self.high.n == 0.0 {
            self.high = self.total;
        }
        let eps_total = self.hoeffding(self.total.n);
        if self.low.mean + self.hoeffding(self.low.n) >= self.total.mean + eps_total {
            self.low = self.total;
        }
        if self.high.mean - self.hoeffding(self.high.n) <= self.total.mean - eps_total {
            self.high = self.total;
        }
        let (drift_conf, warning_conf) =
            (self.params.drift_confidence, self.params.warning_confidence);
        self.drift = self.mean_moved(&self.low, drift_conf, true);
        self.warning = !self.drift && self.mean_moved(&self.low, warning_conf, true);
        if self.params.two_sided_test {
            if self.mean_moved(&self.high, drift_conf, false) {
                self.drift = true;
            } else if self.mean_moved(&self.high, warning_conf, false) {
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
