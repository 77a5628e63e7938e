use serde::{Deserialize, Serialize};

use super::{DriftDetector, DriftStatus};
use crate::InputError;
use crate::error::{ParameterError, check, check_input};
use crate::stats::Mean;

/// Which direction of change PageHinkley reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PageHinkleyMode {
    /// Only increases of the mean.
    Up,
    /// Only decreases of the mean.
    Down,
    /// Both directions (River's default).
    Both,
}

/// PageHinkley's parameters, with River's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PageHinkleyParams {
    /// Updates before any drift can be reported. Default 30.
    pub min_instances: u32,
    /// Magnitude of change tolerated, subtracted (added) at every step. Default 0.005.
    pub delta: f64,
    /// Cumulative deviation that signals a drift. Default 50.0.
    pub threshold: f64,
    /// Forgetting factor of the cumulative sums, in (0, 1]. Default 0.9999.
    pub alpha: f64,
    /// Direction(s) of change to report. Default [`PageHinkleyMode::Both`].
    pub mode: PageHinkleyMode,
}

impl Default for PageHinkleyParams {
    fn default() -> Self {
        Self {
            min_instances: 30,
            delta: 0.005,
            threshold: 50.0,
            alpha: 1.0 - 0.0001,
            mode: PageHinkleyMode::Both,
        }
    }
}

/// The Page-Hinkley test (Page, 1954), bit-exact with River's `drift.PageHinkley`.
///
/// ```
/// use anomaly_core::drift::{DriftDetector, PageHinkley};
///
/// let mut ph = PageHinkley::default();
/// let first_drift = (0..2000).position(|i| {
///     let x = if i < 1000 { 0.0 } else { 5.0 };
///     ph.update(x).unwrap().is_drift()
/// });
/// assert!(first_drift.is_some_and(|i| i >= 1000));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageHinkley {
    params: PageHinkleyParams,
    mean: Mean,
    sum_increase: f64,
    sum_decrease: f64,
    /// Minimum of `sum_increase`; `None` stands for River's initial `+inf`.
    min_increase: Option<f64>,
    max_decrease: f64,
    drift: bool,
}

impl Default for PageHinkley {
    fn default() -> Self {
        Self::fresh(PageHinkleyParams::default())
    }
}

impl PageHinkley {
    /// Builds PageHinkley with the given parameters.
    pub fn new(params: PageHinkleyParams) -> Result<Self, ParameterError> {
        check(
            params.delta.is_finite() && params.delta >= 0.0,
            "PageHinkley",
            "delta",
            "finite and >= 0",
            params.delta,
        )?;
        check(
            params.threshold.is_finite() && params.threshold >= 0.0,
            "PageHinkley",
            "threshold",
            "finite and >= 0",
            params.threshold,
        )?;
        check(
            params.alpha > 0.0 && params.alpha <= 1.0,
            "PageHinkley",
            "alpha",
            "in (0, 1]",
            params.alpha,
        )?;
        Ok(Self::fresh(params))
    }

    fn fresh(params: PageHinkleyParams) -> Self {
        Self {
            params,
            mean: Mean::default(),
            sum_increase: 0.0,
            sum_decrease: 0.0,
            min_increase: None,
            // River starts at -1, not -inf; the first update always exceeds it.
            max_decrease: -1.0,
            drift: false,
        }
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &PageHinkleyParams {
        &self.params
    }

    /// Updates since the last reset.
    pub fn n(&self) -> u64 {
        self.mean.n as u64
    }

    /// Mean of the inputs since the last reset.
    pub fn estimation(&self) -> f64 {
        self.mean.mean
    }
}

impl DriftDetector for PageHinkley {
    type Input = f64;
    const NAME: &'static str = "PageHinkley";

    fn update(&mut self, x: f64) -> Result<DriftStatus, InputError> {
        let x = check_input(Self::NAME, x)?;
        if self.drift {
            self.reset();
        }
        let p = self.params;
        self.mean.update(x);
        let deviation = x - self.mean.mean;
        self.sum_increase = p.alpha * self.sum_increase + deviation - p.delta;
        self.sum_decrease = p.alpha * self.sum_decrease + deviation + p.delta;
        let min_increase = match self.min_increase {
            Some(m) if m <= self.sum_increase => m,
            _ => self.sum_increase,
        };
        self.min_increase = Some(min_increase);
        if self.sum_decrease > self.max_decrease {
            self.max_decrease = self.sum_decrease;
        }
        if self.mean.n >= f64::from(p.min_instances) {
            let up = self.sum_increase - min_increase > p.threshold;
            let down = self.max_decrease - self.sum_decrease > p.threshold;
            self.drift = match p.mode {
                PageHinkleyMode::Up => up,
                PageHinkleyMode::Down => down,
                PageHinkleyMode::Both => up || down,
            };
        }
        Ok(self.status())
    }

    fn drift_detected(&self) -> bool {
        self.drift
    }

    fn warning_detected(&self) -> bool {
        false
    }

    fn reset(&mut self) {
        *self = Self::fresh(self.params);
    }
}
