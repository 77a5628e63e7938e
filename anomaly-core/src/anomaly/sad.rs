use serde::{Deserialize, Serialize};

use super::{AnomalyDetector, AnomalyError, Scored, Transient, sealed};
use crate::error::{ParameterError, check, check_input};
use crate::quantile::P2Quantile;
use crate::stats::{Var, python_pow_half};

/// The centre StandardAbsoluteDeviation measures deviations from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum SadCentre {
    /// Running mean (River's default `stats.Mean()`).
    Mean,
    /// Exponentially weighted mean with this weight for the newest value, in (0, 1]
    /// (River's `stats.EWMean(alpha)`).
    EwMean(f64),
    /// Running quantile by the P² estimator, e.g. 0.5 for the median, in (0, 1)
    /// (River's `stats.Quantile(q)`).
    Quantile(f64),
}

/// StandardAbsoluteDeviation's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SadParams {
    /// The centre of the deviation. Default [`SadCentre::Mean`].
    pub sub_stat: SadCentre,
}

impl Default for SadParams {
    fn default() -> Self {
        Self {
            sub_stat: SadCentre::Mean,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Centre {
    Mean,
    EwMean {
        alpha: f64,
        mean: f64,
        initialised: bool,
    },
    Quantile(P2Quantile),
}

/// Standard absolute deviation (River's `anomaly.StandardAbsoluteDeviation`): how many
/// standard deviations a value lies from the stream's centre, `|y - centre| / (std + 1e-10)`.
///
/// Univariate and unbounded (0 = at the centre). Like River, the first value of a stream
/// scores `|y| * 1e10` because the variance is still 0.
///
/// ```
/// use anomaly_core::anomaly::{AnomalyDetector, Sad};
///
/// let mut sad = Sad::default();
/// for i in 0..1000 {
///     let y = (i % 10) as f64; // mean 4.5, std ~2.87
///     sad.score(&y)?.learn();
/// }
/// let spike = sad.score(&40.0)?;
/// assert!(spike.score() > 10.0);
/// spike.learn();
/// # Ok::<(), anomaly_core::anomaly::AnomalyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sad {
    params: SadParams,
    variance: Var,
    centre: Centre,
    #[serde(skip)]
    pending: Transient<f64>,
}

impl Default for Sad {
    fn default() -> Self {
        Self::fresh(SadParams::default())
    }
}

impl Sad {
    /// Builds the detector with the given parameters.
    pub fn new(params: SadParams) -> Result<Self, ParameterError> {
        match params.sub_stat {
            SadCentre::Mean => {}
            SadCentre::EwMean(alpha) => check(
                alpha > 0.0 && alpha <= 1.0,
                "SAD",
                "sub_stat",
                "EwMean(alpha) with alpha in (0, 1]",
                alpha,
            )?,
            SadCentre::Quantile(q) => check(
                q > 0.0 && q < 1.0,
                "SAD",
                "sub_stat",
                "Quantile(q) with q in (0, 1)",
                q,
            )?,
        }
        Ok(Self::fresh(params))
    }

    fn fresh(params: SadParams) -> Self {
        let centre = match params.sub_stat {
            SadCentre::Mean => Centre::Mean,
            SadCentre::EwMean(alpha) => Centre::EwMean {
                alpha,
                mean: 0.0,
                initialised: false,
            },
            SadCentre::Quantile(q) => Centre::Quantile(P2Quantile::new(q)),
        };
        Self {
            params,
            variance: Var::default(),
            centre,
            pending: Transient(0.0),
        }
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &SadParams {
        &self.params
    }

    /// Values learned so far.
    pub fn n(&self) -> u64 {
        self.variance.mean.n as u64
    }

    /// The current centre; `None` for a quantile centre before its first value (River raises
    /// there).
    pub fn centre(&self) -> Option<f64> {
        match &self.centre {
            Centre::Mean => Some(self.variance.mean.mean),
            Centre::EwMean { mean, .. } => Some(*mean),
            Centre::Quantile(q) if q.is_empty() => None,
            Centre::Quantile(q) => Some(q.get()),
        }
    }

    /// The score River's `score_one` gives `y`, without the score-then-learn protocol.
    fn raw_score(&self, y: f64) -> Result<f64, AnomalyError> {
        let centre = self.centre().ok_or(AnomalyError::NotReady {
            model: "SAD",
            reason: "a quantile centre needs one learned value before it can score",
        })?;
        Ok(((y - centre) / (python_pow_half(self.variance.get()) + 1e-10)).abs())
    }
}

impl sealed::Detector for Sad {
    type Pending = sealed::Ready;
    type Input = f64;
    type Score = f64;

    fn score_pending(
        &mut self,
        y: &f64,
        _: sealed::Token,
    ) -> Result<(f64, sealed::Ready), AnomalyError> {
        let y = check_input("SAD", *y)?;
        let score = self.raw_score(y)?;
        self.pending = Transient(y);
        Ok((score, sealed::Ready(())))
    }

    fn learn_pending(&mut self, _: sealed::Ready, _: sealed::Token) {
        let y = self.pending.0;
        self.variance.update(y);
        match &mut self.centre {
            Centre::Mean => {}
            Centre::EwMean {
                alpha,
                mean,
                initialised,
            } => {
                *mean = if *initialised {
                    *alpha * y + (1.0 - *alpha) * *mean
                } else {
                    y
                };
                *initialised = true;
            }
            Centre::Quantile(q) => q.update(y),
        }
    }

    fn abandon_pending(&mut self, _: sealed::Ready, _: sealed::Token) {}
}

impl AnomalyDetector for Sad {
    const NAME: &'static str = "SAD";
}

impl Sad {
    /// Trains a fresh detector on historical values (no scores are produced); the explicit
    /// entry point for retraining outside the streaming path.
    ///
    /// ```
    /// use anomaly_core::anomaly::{Sad, SadParams};
    ///
    /// let sad = Sad::train_fresh(SadParams::default(), &[1.0, 2.0, 3.0])?;
    /// assert_eq!(sad.n(), 3);
    /// # Ok::<(), anomaly_core::anomaly::AnomalyError>(())
    /// ```
    pub fn train_fresh(params: SadParams, history: &[f64]) -> Result<Self, AnomalyError> {
        let mut sad = Self::new(params)?;
        for &y in history {
            sad.pending = Transient(check_input("SAD", y)?);
            sealed::Detector::learn_pending(&mut sad, sealed::Ready(()), crate::anomaly::TOKEN);
        }
        Ok(sad)
    }

    /// Scores `y` against what was learned so far, then returns the pending learning step.
    /// A shorthand for [`AnomalyDetector::score`].
    pub fn score_value(&mut self, y: f64) -> Result<Scored<'_, Self>, AnomalyError> {
        self.score(&y)
    }
}
