use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{AnomalyDetector, AnomalyError, Scored, Transient, UndefinedScore, sealed};
use crate::error::{ParameterError, check, check_input};
use crate::stats::{Var, c_erf, python_pow_half};

/// GaussianScorer's parameters (River's names and defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GaussianScorerParams {
    /// Fit the Gaussian to the last `window_size` learned values only; `None` (the default)
    /// fits it to everything learned. At least 1.
    pub window_size: Option<usize>,
    /// Scores are 0 until this many values are in the fit. Default 100. With a window smaller
    /// than this, the scorer scores 0 forever, as River's does.
    pub grace_period: u64,
}

impl Default for GaussianScorerParams {
    fn default() -> Self {
        Self {
            window_size: None,
            grace_period: 100,
        }
    }
}

/// Univariate Gaussian scorer (River's `anomaly.GaussianScorer`): fits a normal distribution
/// to the values learned (all, or a sliding window) and scores `y` by how far into the tails
/// it lies, `2 |cdf(y) - 0.5|`, in [0, 1].
///
/// Good for one well-behaved quantity (a per-merchant amount, a latency) whose normal range
/// moves slowly; O(1) per event, memory O(window).
///
/// Its score is undefined in one state River raises in: a rolling window whose values are all
/// equal can leave the variance a tiny negative number by cancellation. The score is then an
/// [`UndefinedScore`]; learning the next values gets it out. A zero variance scores 1.0 for
/// every value, as River does.
///
/// ```
/// use anomaly_core::anomaly::{AnomalyDetector, GaussianScorer, GaussianScorerParams};
///
/// let params = GaussianScorerParams { grace_period: 10, ..GaussianScorerParams::default() };
/// let mut scorer = GaussianScorer::new(params)?;
/// for i in 0..200 {
///     scorer.score(&(100.0 + (i % 7) as f64))?.learn();
/// }
/// let usual = scorer.score(&103.0)?.score()?;
/// let odd = scorer.score(&140.0)?.score()?;
/// assert!(usual < 0.2 && odd > 0.999);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "GaussianState")]
pub struct GaussianScorer {
    params: GaussianScorerParams,
    gaussian: Var,
    window: VecDeque<f64>,
    #[serde(skip)]
    pending: Transient<f64>,
}

#[derive(Deserialize)]
struct GaussianState {
    params: GaussianScorerParams,
    gaussian: Var,
    window: VecDeque<f64>,
}

impl TryFrom<GaussianState> for GaussianScorer {
    type Error = String;

    fn try_from(state: GaussianState) -> Result<Self, String> {
        let model = Self::new(state.params).map_err(|e| e.to_string())?;
        let n = state.gaussian.mean.n;
        let consistent = match state.params.window_size {
            Some(w) => state.window.len() <= w && n == state.window.len() as f64,
            None => state.window.is_empty() && n >= 0.0 && n.fract() == 0.0,
        };
        if !consistent
            || !state.window.iter().all(|v| v.is_finite())
            || state
                .window
                .iter()
                .any(|v| v.abs() > crate::MAX_INPUT_MAGNITUDE)
            || !state.gaussian.mean.mean.is_finite()
            || !state.gaussian.sum_sq.is_finite()
            || state.gaussian.mean.mean.abs() > crate::MAX_INPUT_MAGNITUDE
            || state.gaussian.sum_sq.abs() > 4e200 * n.max(1.0)
        {
            return Err("the fitted Gaussian does not match its window".into());
        }
        Ok(Self {
            gaussian: state.gaussian,
            window: state.window,
            ..model
        })
    }
}

impl Default for GaussianScorer {
    fn default() -> Self {
        Self {
            params: GaussianScorerParams::default(),
            gaussian: Var::default(),
            window: VecDeque::new(),
            pending: Transient(0.0),
        }
    }
}

impl GaussianScorer {
    /// Builds the scorer.
    pub fn new(params: GaussianScorerParams) -> Result<Self, ParameterError> {
        if let Some(w) = params.window_size {
            check(
                w >= 1,
                "GaussianScorer",
                "window_size",
                "at least 1 (or None for no window)",
                w,
            )?;
        }
        Ok(Self {
            params,
            ..Self::default()
        })
    }

    /// The parameters this scorer was built with.
    pub fn params(&self) -> &GaussianScorerParams {
        &self.params
    }

    /// Values in the fit (capped at the window size).
    pub fn n(&self) -> u64 {
        self.gaussian.mean.n as u64
    }

    /// The fitted mean.
    pub fn mean(&self) -> f64 {
        self.gaussian.mean.mean
    }

    fn raw_score(&self, y: f64) -> Result<f64, UndefinedScore> {
        let n = self.gaussian.mean.n;
        if n < self.params.grace_period as f64 {
            return Ok(0.0);
        }
        let var = self.gaussian.get();
        if var < 0.0 {
            return Err(UndefinedScore {
                model: "GaussianScorer",
                reason: "the windowed variance cancelled to a negative number (the window holds one repeated value); learn more values",
            });
        }
        let sigma = python_pow_half(var);
        if sigma == 0.0 {
            return Ok(1.0);
        }
        let z = (y - self.gaussian.mean.mean) / sigma;
        let cdf = 0.5 * (1.0 + c_erf(z / std::f64::consts::SQRT_2));
        let score = 2.0 * (cdf - 0.5).abs();
        if score.is_nan() {
            return Err(UndefinedScore {
                model: "GaussianScorer",
                reason: "the fitted Gaussian is not finite",
            });
        }
        Ok(score)
    }

    fn learn_value(&mut self, y: f64) {
        if let Some(w) = self.params.window_size {
            if self.window.len() == w
                && let Some(oldest) = self.window.pop_front()
            {
                self.gaussian.revert(oldest);
            }
            self.window.push_back(y);
        }
        self.gaussian.update(y);
    }
}

impl sealed::Detector for GaussianScorer {
    type Pending = sealed::Ready;
    type Input = f64;
    type Score = Result<f64, UndefinedScore>;

    fn score_pending(
        &mut self,
        y: &f64,
        _: sealed::Token,
    ) -> Result<(Self::Score, sealed::Ready), AnomalyError> {
        let y = check_input("GaussianScorer", *y)?;
        self.pending = Transient(y);
        Ok((self.raw_score(y), sealed::Ready(())))
    }

    fn learn_pending(&mut self, _: sealed::Ready, _: sealed::Token) {
        self.learn_value(self.pending.0);
    }

    fn abandon_pending(&mut self, _: sealed::Ready, _: sealed::Token) {}
}

impl AnomalyDetector for GaussianScorer {
    const NAME: &'static str = "GaussianScorer";
}

impl GaussianScorer {
    /// Scores `y`; a shorthand for [`AnomalyDetector::score`].
    pub fn score_value(&mut self, y: f64) -> Result<Scored<'_, Self>, AnomalyError> {
        self.score(&y)
    }
}
