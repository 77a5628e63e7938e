use serde::{Deserialize, Serialize};

use super::{AnomalyDetector, AnomalyError, Scored, sealed};
use crate::error::{ParameterError, check};
use crate::quantile::P2Quantile;

/// Flags scores at or above a fixed threshold and, when protecting, keeps the wrapped
/// detector from learning flagged events (River's `anomaly.ThresholdFilter`).
///
/// River's `protect_anomaly_detector=False` never lets the detector learn at all (its base
/// class only learns when protecting); here `protect = false` means "learn everything".
///
/// ```
/// use anomaly_core::anomaly::{AnomalyDetector, Sad, SadParams, ThresholdFilter};
///
/// let history: Vec<f64> = (0..100).map(|i| (i % 5) as f64).collect();
/// let sad = Sad::train_fresh(SadParams::default(), &history)?;
/// let mut filter = ThresholdFilter::new(sad, 3.0, true)?;
/// let usual = filter.score(&2.0)?;
/// assert!(!usual.is_anomaly());
/// usual.learn();
/// let spike = filter.score(&50.0)?;
/// assert!(spike.is_anomaly());
/// spike.learn(); // protected: SAD does not learn the spike
/// assert_eq!(filter.detector().n(), 101);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdFilter<D> {
    detector: D,
    threshold: f64,
    protect: bool,
}

impl<D: AnomalyDetector<Score = f64>> ThresholdFilter<D> {
    /// Wraps `detector`; scores `>= threshold` are anomalies.
    pub fn new(detector: D, threshold: f64, protect: bool) -> Result<Self, ParameterError> {
        check(
            threshold.is_finite(),
            "ThresholdFilter",
            "threshold",
            "finite",
            threshold,
        )?;
        Ok(Self {
            detector,
            threshold,
            protect,
        })
    }

    /// Whether `score` is an anomaly.
    pub fn classify(&self, score: f64) -> bool {
        score >= self.threshold
    }

    /// The wrapped detector.
    pub fn detector(&self) -> &D {
        &self.detector
    }
}

impl<D: AnomalyDetector<Score = f64>> sealed::Detector for ThresholdFilter<D> {
    type Pending = (D::Pending, bool);
    type Input = D::Input;
    type Score = f64;

    fn score_pending(
        &mut self,
        x: &D::Input,
        _: sealed::Token,
    ) -> Result<(f64, Self::Pending), AnomalyError> {
        let (score, pending) = self.detector.score_pending(x, crate::anomaly::TOKEN)?;
        Ok((score, (pending, self.classify(score))))
    }

    fn learn_pending(&mut self, (pending, anomalous): Self::Pending, _: sealed::Token) {
        if self.protect && anomalous {
            self.detector
                .abandon_pending(pending, crate::anomaly::TOKEN);
        } else {
            self.detector.learn_pending(pending, crate::anomaly::TOKEN);
        }
    }

    fn abandon_pending(&mut self, (pending, _): Self::Pending, _: sealed::Token) {
        self.detector
            .abandon_pending(pending, crate::anomaly::TOKEN);
    }
}

impl<D: AnomalyDetector<Score = f64>> AnomalyDetector for ThresholdFilter<D> {
    const NAME: &'static str = "ThresholdFilter";
}

impl<D: AnomalyDetector<Score = f64>> Scored<'_, ThresholdFilter<D>> {
    /// Whether this score is at or above the threshold.
    pub fn is_anomaly(&self) -> bool {
        self.detector.classify(self.score)
    }
}

/// Flags scores at or above a running quantile of past scores and, when protecting, keeps the
/// wrapped detector from learning flagged events (River's `anomaly.QuantileFilter`: every
/// score, flagged or not, updates the quantile when the event is learned).
///
/// ```
/// use anomaly_core::anomaly::{AnomalyDetector, QuantileFilter, Sad, SadParams};
///
/// let stream: Vec<f64> = (0..2000).map(|i| (i * 7919 % 100) as f64).collect();
/// let sad = Sad::train_fresh(SadParams::default(), &stream[..100])?;
/// let mut filter = QuantileFilter::new(sad, 0.95, true)?;
/// let mut flagged = 0;
/// for y in &stream[100..] {
///     let scored = filter.score(y)?;
///     flagged += usize::from(scored.is_anomaly());
///     scored.learn();
/// }
/// // About the top 5% of scores are flagged.
/// assert!((50..=150).contains(&flagged), "{flagged}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantileFilter<D> {
    detector: D,
    quantile: P2Quantile,
    protect: bool,
}

impl<D: AnomalyDetector<Score = f64>> QuantileFilter<D> {
    /// Wraps `detector`; scores at or above the running `q`-quantile of scores are anomalies.
    pub fn new(detector: D, q: f64, protect: bool) -> Result<Self, ParameterError> {
        check(q > 0.0 && q < 1.0, "QuantileFilter", "q", "in (0, 1)", q)?;
        Ok(Self {
            detector,
            quantile: P2Quantile::new(q),
            protect,
        })
    }

    /// The quantile level.
    pub fn q(&self) -> f64 {
        self.quantile.q()
    }

    /// Whether `score` is an anomaly (never, before any score was learned).
    pub fn classify(&self, score: f64) -> bool {
        !self.quantile.is_empty() && score >= self.quantile.get()
    }

    /// The wrapped detector.
    pub fn detector(&self) -> &D {
        &self.detector
    }
}

impl<D: AnomalyDetector<Score = f64>> sealed::Detector for QuantileFilter<D> {
    type Pending = (D::Pending, f64);
    type Input = D::Input;
    type Score = f64;

    fn score_pending(
        &mut self,
        x: &D::Input,
        _: sealed::Token,
    ) -> Result<(f64, Self::Pending), AnomalyError> {
        let (score, pending) = self.detector.score_pending(x, crate::anomaly::TOKEN)?;
        Ok((score, (pending, score)))
    }

    fn learn_pending(&mut self, (pending, score): Self::Pending, _: sealed::Token) {
        if self.protect && self.classify(score) {
            self.detector
                .abandon_pending(pending, crate::anomaly::TOKEN);
        } else {
            self.detector.learn_pending(pending, crate::anomaly::TOKEN);
        }
        if score.is_finite() {
            self.quantile.update(score);
        }
    }

    fn abandon_pending(&mut self, (pending, _): Self::Pending, _: sealed::Token) {
        self.detector
            .abandon_pending(pending, crate::anomaly::TOKEN);
    }
}

impl<D: AnomalyDetector<Score = f64>> AnomalyDetector for QuantileFilter<D> {
    const NAME: &'static str = "QuantileFilter";
}

impl<D: AnomalyDetector<Score = f64>> Scored<'_, QuantileFilter<D>> {
    /// Whether this score is at or above the running quantile.
    pub fn is_anomaly(&self) -> bool {
        self.detector.classify(self.score)
    }
}
