use serde::{Deserialize, Serialize};

use super::{DriftDetector, DriftStatus, Outcome};
use crate::InputError;
use crate::error::{ParameterError, check};
use crate::stats::Mean;

/// DDM's parameters, with River's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DdmParams {
    /// Updates before any test is made (tests start at update `warm_start + 1`). Default 30.
    pub warm_start: u32,
    /// Standard deviations above the best error rate that raise a warning. Default 2.0.
    pub warning_threshold: f64,
    /// Standard deviations above the best error rate that signal a drift. Default 3.0.
    pub drift_threshold: f64,
}

impl Default for DdmParams {
    fn default() -> Self {
        Self {
            warm_start: 30,
            warning_threshold: 2.0,
            drift_threshold: 3.0,
        }
    }
}

/// Drift Detection Method (Gama et al., 2004), bit-exact with River's `drift.binary.DDM`.
///
/// DDM tracks the error rate `p` and its standard deviation `s`, remembers the point where
/// `p + s` was lowest, and signals a warning (drift) when `p + s` climbs
/// `warning_threshold` (`drift_threshold`) deviations above it.
///
/// ```
/// use anomaly_core::drift::{Ddm, DriftDetector, DriftStatus, Outcome};
///
/// let mut ddm = Ddm::default();
/// // 10% errors, then 60% errors.
/// let outcome = |i: usize, rate: usize| Outcome::from_error_flag(i % 10 < rate);
/// let before: Vec<_> = (0..1000).map(|i| ddm.update(outcome(i, 1)).unwrap()).collect();
/// assert!(before.iter().all(|s| *s != DriftStatus::Drift));
/// let after = (0..1000).position(|i| ddm.update(outcome(i, 6)).unwrap() == DriftStatus::Drift);
/// assert!(after.is_some());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ddm {
    params: DdmParams,
    error_rate: Mean,
    /// `(p_min, s_min)` once the first test has been made.
    best: Option<(f64, f64)>,
    /// `p_min + s_min`; `None` stands for River's initial `+inf`.
    best_sum: Option<f64>,
    drift: bool,
    warning: bool,
}

impl Default for Ddm {
    fn default() -> Self {
        Self::fresh(DdmParams::default())
    }
}

impl Ddm {
    /// Builds DDM with the given parameters.
    pub fn new(params: DdmParams) -> Result<Self, ParameterError> {
        for (name, value) in [
            ("warning_threshold", params.warning_threshold),
            ("drift_threshold", params.drift_threshold),
        ] {
            check(
                value.is_finite() && value >= 0.0,
                "DDM",
                name,
                "finite and >= 0",
                value,
            )?;
        }
        Ok(Self::fresh(params))
    }

    fn fresh(params: DdmParams) -> Self {
        Self {
            params,
            error_rate: Mean::default(),
            best: None,
            best_sum: None,
            drift: false,
            warning: false,
        }
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &DdmParams {
        &self.params
    }

    /// Updates since the last reset.
    pub fn n(&self) -> u64 {
        self.error_rate.n as u64
    }

    /// Error rate since the last reset.
    pub fn error_rate(&self) -> f64 {
        self.error_rate.mean
    }
}

impl DriftDetector for Ddm {
    type Input = Outcome;
    const NAME: &'static str = "DDM";

    fn update(&mut self, outcome: Outcome) -> Result<DriftStatus, InputError> {
        if self.drift {
            self.reset();
        }
        let x = if outcome.is_error() { 1.0 } else { 0.0 };
        self.error_rate.update(x);
        let n = self.error_rate.n;
        let p = self.error_rate.mean;
        let s = (p * (1.0 - p) / n).sqrt();
        if n > f64::from(self.params.warm_start) {
            if p + s <= self.best_sum.unwrap_or(f64::INFINITY) {
                self.best = Some((p, s));
                self.best_sum = Some(p + s);
            }
            if let Some((p_min, s_min)) = self.best {
                self.warning = p + s > p_min + self.params.warning_threshold * s_min;
                if p + s > p_min + self.params.drift_threshold * s_min {
                    self.drift = true;
                    self.warning = false;
                }
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
