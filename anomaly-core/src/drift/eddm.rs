use serde::{Deserialize, Serialize};

use super::{DriftDetector, DriftStatus, Outcome};
use crate::InputError;
use crate::error::{ParameterError, check};
use crate::stats::{Var, python_pow_half};

/// EDDM's parameters, with River's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EddmParams {
    /// Updates, and errors, needed before any test. Default 30.
    pub warm_start: u32,
    /// Warning level, in (0, 1]: warn when the distance statistic falls below `alpha` times
    /// its maximum. Default 0.95.
    pub alpha: f64,
    /// Drift level, in (0, alpha]. Default 0.9.
    pub beta: f64,
}

impl Default for EddmParams {
    fn default() -> Self {
        Self {
            warm_start: 30,
            alpha: 0.95,
            beta: 0.9,
        }
    }
}

/// Early Drift Detection Method (Baena-García et al., 2006), bit-exact with River's
/// `drift.binary.EDDM`.
///
/// EDDM watches the distance (in updates) between consecutive errors: when errors come closer
/// together than they used to, the statistic `mean + 2 std` of that distance falls below a
/// fraction of its maximum. Tests only happen on errors, so the warning flag keeps its value
/// across correct predictions, as in River.
///
/// ```
/// use anomaly_core::drift::{DriftDetector, Eddm, Outcome};
///
/// let mut eddm = Eddm::default();
/// let mut drifted = false;
/// for i in 0..3000 {
///     let every = if i < 1500 { 20 } else { 2 }; // errors become ten times as frequent
///     drifted |= eddm.update(Outcome::from_error_flag(i % every == 0)).unwrap().is_drift();
/// }
/// assert!(drifted);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Eddm {
    params: EddmParams,
    n: u64,
    n_errors: u64,
    last_error: u64,
    distance: Var,
    /// Largest `mean + 2 std` seen; `None` stands for River's initial -1.
    max_statistic: Option<f64>,
    drift: bool,
    warning: bool,
}

impl Default for Eddm {
    fn default() -> Self {
        Self::fresh(EddmParams::default())
    }
}

impl Eddm {
    /// Builds EDDM with the given parameters.
    pub fn new(params: EddmParams) -> Result<Self, ParameterError> {
        check(
            params.alpha > 0.0 && params.alpha <= 1.0,
            "EDDM",
            "alpha",
            "in (0, 1]",
            params.alpha,
        )?;
        check(
            params.beta > 0.0 && params.beta <= params.alpha,
            "EDDM",
            "beta",
            "in (0, alpha]",
            params.beta,
        )?;
        Ok(Self::fresh(params))
    }

    fn fresh(params: EddmParams) -> Self {
        Self {
            params,
            n: 0,
            n_errors: 0,
            last_error: 0,
            distance: Var::default(),
            max_statistic: None,
            drift: false,
            warning: false,
        }
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &EddmParams {
        &self.params
    }

    /// Updates since the last reset.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Errors since the last reset.
    pub fn n_errors(&self) -> u64 {
        self.n_errors
    }
}

impl DriftDetector for Eddm {
    type Input = Outcome;
    const NAME: &'static str = "EDDM";

    fn update(&mut self, outcome: Outcome) -> Result<DriftStatus, InputError> {
        if self.drift {
            self.reset();
        }
        self.n += 1;
        if outcome.is_error() {
            self.n_errors += 1;
            self.distance.update((self.n - self.last_error) as f64);
            if self.n > u64::from(self.params.warm_start) {
                let statistic =
                    self.distance.mean.mean + 2.0 * python_pow_half(self.distance.get());
                match self.max_statistic {
                    Some(max) if statistic <= max => {
                        if self.n_errors > u64::from(self.params.warm_start) {
                            let level = statistic / max;
                            if level < self.params.beta {
                                self.drift = true;
                            } else {
                                self.warning = level < self.params.alpha;
                            }
                        }
                    }
                    _ => self.max_statistic = Some(statistic),
                }
            }
            self.last_error = self.n;
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
