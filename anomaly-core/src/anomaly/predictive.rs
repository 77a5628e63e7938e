use std::borrow::Borrow;

use serde::{Deserialize, Serialize};

use super::event::{EventBuilder, EventDetector, FeatureNames, feature_list, score_named};
use super::sgd::{check_sgd, python_clip};
use super::{AnomalyDetector, AnomalyError, Scored, Transient, UndefinedScore, sealed};
use crate::error::{ParameterError, check};
use crate::stats::{Var, python_square};

/// One event's features as a predictor sees them: `(feature id, value)` pairs in the order
/// they were given (ids index the detector's feature list).
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    ids: &'a [u32],
    values: &'a [f64],
}

impl<'a> Row<'a> {
    /// A row of `(ids[i], values[i])` pairs.
    ///
    /// Panics if the lengths differ or an id is not below [`MAX_FEATURES`](super::MAX_FEATURES)
    /// (predictors keep one slot per id).
    ///
    /// ```
    /// use anomaly_core::anomaly::Row;
    ///
    /// let row = Row::new(&[0, 2], &[1.5, -0.5]);
    /// assert_eq!(row.iter().collect::<Vec<_>>(), [(0, 1.5), (2, -0.5)]);
    /// ```
    pub fn new(ids: &'a [u32], values: &'a [f64]) -> Self {
        assert_eq!(ids.len(), values.len(), "one value per feature id");
        assert!(
            ids.iter().all(|&i| (i as usize) < super::MAX_FEATURES),
            "feature ids must be below MAX_FEATURES"
        );
        Self { ids, values }
    }

    /// The `(feature id, value)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, f64)> + 'a {
        let (ids, values) = (self.ids, self.values);
        ids.iter().map(|&i| i as usize).zip(values.iter().copied())
    }

    /// Number of features present.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no feature is present.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// An online regressor a [`PredictiveAnomalyDetection`] can watch: predicts, then learns.
///
/// ```
/// use anomaly_core::anomaly::{Predictor, Row};
///
/// /// Predicts the running mean of the target, whatever the features.
/// #[derive(Clone, Debug, Default, PartialEq)]
/// struct MeanOfTarget { n: f64, mean: f64 }
///
/// impl Predictor for MeanOfTarget {
///     fn predict(&self, _: Row<'_>) -> f64 { self.mean }
///     fn learn(&mut self, _: Row<'_>, y: f64) {
///         self.n += 1.0;
///         self.mean += (y - self.mean) / self.n;
///     }
/// }
/// ```
pub trait Predictor {
    /// The prediction for `x`, with what the model knows now (must not change the model).
    fn predict(&self, x: Row<'_>) -> f64;
    /// Learns that `x` had target `y`.
    fn learn(&mut self, x: Row<'_>, y: f64);
}

/// LinearRegression's parameters (River's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinearRegressionParams {
    /// Plain SGD step for the weights (River's `optimizer=optim.SGD(lr)`), > 0. Default 0.01.
    pub learning_rate: f64,
    /// SGD step for the intercept, >= 0. Default 0.01.
    pub intercept_lr: f64,
    /// Gradients are clipped to `[-clip_gradient, clip_gradient]`, > 0. Default 1e12.
    pub clip_gradient: f64,
    /// A feature's weight when first learned. Default 0.
    pub initial_weight: f64,
}

impl Default for LinearRegressionParams {
    fn default() -> Self {
        Self {
            learning_rate: 0.01,
            intercept_lr: 0.01,
            clip_gradient: 1e12,
            initial_weight: 0.0,
        }
    }
}

/// Online linear regression by SGD on the squared loss (River's
/// `linear_model.LinearRegression` with its default optimizer).
///
/// ```
/// use anomaly_core::anomaly::{LinearRegression, LinearRegressionParams, Predictor, Row};
///
/// let mut model = LinearRegression::new(LinearRegressionParams::default())?;
/// for i in 0..2000 {
///     let x = (i % 10) as f64 / 10.0;
///     model.learn(Row::new(&[0], &[x]), 2.0 * x + 1.0);
/// }
/// let y = model.predict(Row::new(&[0], &[0.5]));
/// assert!((y - 2.0).abs() < 0.1, "{y}");
/// # Ok::<(), anomaly_core::ParameterError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearRegression {
    params: LinearRegressionParams,
    weights: Vec<Option<f64>>,
    intercept: f64,
}

impl LinearRegression {
    /// An untrained model.
    pub fn new(params: LinearRegressionParams) -> Result<Self, ParameterError> {
        check_sgd(
            "LinearRegression",
            params.learning_rate,
            params.intercept_lr,
            params.clip_gradient,
            params.initial_weight,
        )?;
        Ok(Self {
            params,
            weights: Vec::new(),
            intercept: 0.0,
        })
    }

    /// The intercept.
    pub fn intercept(&self) -> f64 {
        self.intercept
    }

    /// The weight of feature `id`, if learned.
    pub fn weight(&self, id: usize) -> Option<f64> {
        self.weights.get(id).copied().flatten()
    }

    fn valid(&self, n_features: usize) -> bool {
        let p = self.params;
        check_sgd(
            "LinearRegression",
            p.learning_rate,
            p.intercept_lr,
            p.clip_gradient,
            p.initial_weight,
        )
        .is_ok()
            && self.weights.len() <= n_features
            && self.intercept.is_finite()
            && self.weights.iter().flatten().all(|w| w.is_finite())
    }
}

impl Predictor for LinearRegression {
    fn predict(&self, x: Row<'_>) -> f64 {
        let mut dot = 0.0;
        for (id, v) in x.iter() {
            dot += self.weight(id).unwrap_or(0.0) * v;
        }
        dot + self.intercept
    }

    fn learn(&mut self, x: Row<'_>, y: f64) {
        let p = self.params;
        let mut dot = 0.0;
        for (id, v) in x.iter() {
            if self.weights.len() <= id {
                self.weights.resize(id + 1, None);
            }
            dot += *self.weights[id].get_or_insert(p.initial_weight) * v;
        }
        let g0 = python_clip(2.0 * ((dot + self.intercept) - y), p.clip_gradient);
        self.intercept -= p.intercept_lr * g0;
        for (id, v) in x.iter() {
            if let Some(w) = &mut self.weights[id] {
                *w -= p.learning_rate * (v * g0);
            }
        }
    }
}

/// A predictor fed min-max scaled features, each mapped to [0, 1] by the range learned so far
/// (River's `preprocessing.MinMaxScaler() | model`). A feature whose range is still unknown
/// scales to NaN, as in River.
///
/// ```
/// use anomaly_core::anomaly::{LinearRegression, MinMaxScaled, Predictor, Row};
///
/// let mut model = MinMaxScaled::new(LinearRegression::new(Default::default())?);
/// model.learn(Row::new(&[0], &[10.0]), 1.0);
/// assert!(model.predict(Row::new(&[1], &[3.0])).is_nan()); // feature 1 never learned
/// # Ok::<(), anomaly_core::ParameterError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinMaxScaled<P> {
    /// `(min, max)` per feature id; `None` until the feature is learned.
    ranges: Vec<Option<(f64, f64)>>,
    model: P,
}

impl<P> MinMaxScaled<P> {
    /// Wraps `model`.
    pub fn new(model: P) -> Self {
        Self {
            ranges: Vec::new(),
            model,
        }
    }

    /// The wrapped model.
    pub fn model(&self) -> &P {
        &self.model
    }

    fn scale(&self, x: Row<'_>) -> Vec<f64> {
        x.iter()
            .map(|(id, v)| {
                // An unlearned feature has River's empty range (+inf, -inf): (v - inf) / -inf
                // is NaN.
                let (lo, hi) = self
                    .ranges
                    .get(id)
                    .copied()
                    .flatten()
                    .unwrap_or((f64::INFINITY, f64::NEG_INFINITY));
                let d = hi - lo;
                if d != 0.0 { (v - lo) / d } else { 0.0 }
            })
            .collect()
    }
}

impl<P: Predictor> Predictor for MinMaxScaled<P> {
    fn predict(&self, x: Row<'_>) -> f64 {
        let scaled = self.scale(x);
        self.model.predict(Row::new(x.ids, &scaled))
    }

    fn learn(&mut self, x: Row<'_>, y: f64) {
        for (id, v) in x.iter() {
            if self.ranges.len() <= id {
                self.ranges.resize(id + 1, None);
            }
            let (lo, hi) = self.ranges[id].get_or_insert((v, v));
            if v < *lo {
                *lo = v;
            }
            if v > *hi {
                *hi = v;
            }
        }
        let scaled = self.scale(x);
        self.model.learn(Row::new(x.ids, &scaled), y);
    }
}

/// A predictor whose loaded state can be checked against the detector's features (the
/// predictors a snapshot can hold).
pub trait ValidPredictor {
    /// Whether the state is consistent with a detector of `n_features` features.
    fn valid(&self, n_features: usize) -> bool;
}

impl ValidPredictor for LinearRegression {
    fn valid(&self, n_features: usize) -> bool {
        LinearRegression::valid(self, n_features)
    }
}

impl<P: ValidPredictor> ValidPredictor for MinMaxScaled<P> {
    fn valid(&self, n_features: usize) -> bool {
        self.ranges.len() <= n_features
            && self
                .ranges
                .iter()
                .flatten()
                .all(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo <= hi)
            && self.model.valid(n_features)
    }
}

/// PredictiveAnomalyDetection's parameters (River's, plus the target's name).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PadParams {
    /// The feature the predictor predicts from the others (River passes it apart, as `y`).
    pub target: String,
    /// An event whose squared error reaches `mean + n_std * std` of past squared errors
    /// scores 1. Default 3.
    pub n_std: f64,
    /// Events scored 0 while the predictor learns its first `warmup_period` events. Default 0
    /// (River's): the very first score is then undefined, and with the min-max scaled model
    /// every later one too (see [`PredictiveAnomalyDetection`]).
    pub warmup_period: u64,
}

impl Default for PadParams {
    fn default() -> Self {
        Self {
            target: "y".into(),
            n_std: 3.0,
            warmup_period: 0,
        }
    }
}

/// Predictive anomaly detection (River's `anomaly.PredictiveAnomalyDetection`): a predictor
/// learns the target feature from the others, and an event whose squared prediction error is
/// large against past errors is anomalous: `se / (mean + n_std * std)` of past squared
/// errors, capped at 1.
///
/// Good when one quantity should follow from the others (an amount from the merchant's and
/// customer's usual amounts); the cost is the predictor's (one dot product for the linear
/// models), memory one weight per feature.
///
/// The score is undefined (an [`UndefinedScore`], where River raises or returns NaN) when the
/// predictor cannot predict yet (a min-max scaled feature it never learned) or when the error
/// threshold is 0. River then keeps NaN in its error statistics, so every later score is NaN;
/// so does this port, to stay River's: use a warm-up period and features present from the
/// first event on with the scaled model, or the plain [`LinearRegression`].
///
/// Unlike River, the error statistics are updated when an event is learned, not when it is
/// scored, so an event that is scored and dropped leaves the detector as it was; in the
/// score-then-learn protocol the scores are River's to the bit.
///
/// ```
/// use anomaly_core::anomaly::{
///     AnomalyDetector, LinearRegression, PadParams, PredictiveAnomalyDetection,
/// };
///
/// let params = PadParams { target: "amount".into(), warmup_period: 50, ..PadParams::default() };
/// let model = LinearRegression::new(Default::default())?;
/// let mut pad = PredictiveAnomalyDetection::with_features(params, model, &["usual", "amount"])?;
/// for i in 0..3000 {
///     let usual = (i % 10) as f64 / 10.0;
///     pad.score(&[usual, 2.0 * usual][..])?.learn();
/// }
/// let fits = pad.score(&[0.5, 1.0][..])?.score()?;
/// let odd = pad.score(&[0.5, 3.0][..])?.score()?;
/// assert!(fits < 0.5 && odd == 1.0, "{fits} {odd}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictiveAnomalyDetection<P> {
    params: PadParams,
    features: FeatureNames,
    target: u32,
    model: P,
    /// Squared errors learned so far (mean and variance).
    errors: Var,
    /// A learned squared error was not finite: River's statistics are NaN from then on, and
    /// so every later score is undefined.
    poisoned: bool,
    /// Events learned.
    iter: u64,
    #[serde(skip)]
    scratch: Transient<PadScratch>,
}

#[derive(Clone, Debug, Default)]
struct PadScratch {
    builder: EventBuilder,
    ids: Vec<u32>,
    values: Vec<f64>,
    y: f64,
    squared_error: Option<f64>,
}

impl<P> PredictiveAnomalyDetection<P> {
    /// A detector that learns its features from the named events it sees; each event must
    /// name the target.
    pub fn new(params: PadParams, model: P) -> Result<Self, ParameterError> {
        check(
            params.n_std >= 0.0 && params.n_std.is_finite(),
            "PAD",
            "n_std",
            "a finite number >= 0",
            params.n_std,
        )?;
        check(
            !params.target.is_empty(),
            "PAD",
            "target",
            "a feature name",
            "\"\"",
        )?;
        let mut features = FeatureNames::default();
        let target = features.push(params.target.clone());
        Ok(Self {
            params,
            features,
            target,
            model,
            errors: Var::default(),
            poisoned: false,
            iter: 0,
            scratch: Transient(PadScratch::default()),
        })
    }

    /// A detector over a fixed list of features (the target among them), scored with dense
    /// rows in that order.
    pub fn with_features<S: AsRef<str>>(
        params: PadParams,
        model: P,
        features: &[S],
    ) -> Result<Self, AnomalyError> {
        let mut pad = Self::new(params, model)?;
        pad.features = feature_list("PAD", features)?;
        pad.target = pad.features.get(&pad.params.target).ok_or_else(|| {
            ParameterError::new("PAD", "target", "one of the features", &pad.params.target)
        })?;
        Ok(pad)
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &PadParams {
        &self.params
    }

    /// Feature names (the target included).
    pub fn features(&self) -> &[String] {
        self.features.names()
    }

    /// The predictor.
    pub fn model(&self) -> &P {
        &self.model
    }

    /// Events learned.
    pub fn n_learned(&self) -> u64 {
        self.iter
    }
}

impl<P: ValidPredictor> PredictiveAnomalyDetection<P> {
    /// Whether a loaded detector is consistent.
    pub(crate) fn is_valid(&self) -> bool {
        (self.target as usize) < self.features.len()
            && self.features.names()[self.target as usize] == self.params.target
            && self.model.valid(self.features.len())
            && self.errors.mean.mean.is_finite()
            && self.errors.sum_sq.is_finite()
    }
}

impl<P: Predictor> PredictiveAnomalyDetection<P> {
    /// Scores an event given as named features (the target among them).
    ///
    /// ```
    /// use anomaly_core::anomaly::{LinearRegression, PadParams, PredictiveAnomalyDetection};
    ///
    /// let model = LinearRegression::new(Default::default())?;
    /// let params = PadParams { warmup_period: 1, ..PadParams::default() };
    /// let mut pad = PredictiveAnomalyDetection::new(params, model)?;
    /// let scored = pad.score_named([("x", 0.5), ("y", 2.0)])?;
    /// assert_eq!(scored.score(), Ok(0.0)); // warming up
    /// scored.learn();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn score_named<K, V, M>(&mut self, x: M) -> Result<Scored<'_, Self>, AnomalyError>
    where
        M: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Borrow<f64>,
    {
        score_named(self, x)
    }

    /// The predictor's prediction of the target for the event being scored, from the other
    /// features (as River's `predict_one`).
    fn split_target(&mut self) -> Result<(), AnomalyError> {
        let s = &mut self.scratch.0;
        s.ids.clear();
        s.values.clear();
        let mut y = None;
        for (id, v) in s.builder.event.iter() {
            if id == self.target {
                y = Some(v);
            } else {
                s.ids.push(id);
                s.values.push(v);
            }
        }
        s.y = y.ok_or_else(|| AnomalyError::MissingTarget {
            model: "PAD",
            target: self.params.target.clone(),
        })?;
        Ok(())
    }

    /// What the predictor predicts for the event just scored.
    pub fn last_prediction(&self) -> f64 {
        let s = &self.scratch.0;
        self.model.predict(Row::new(&s.ids, &s.values))
    }

    fn learn_built(&mut self) {
        let s = &mut self.scratch.0;
        s.builder.commit(&mut self.features);
        match s.squared_error.take() {
            Some(se) if se.is_finite() => self.errors.update(se),
            Some(_) => self.poisoned = true,
            None => {}
        }
        self.iter = self.iter.saturating_add(1);
        self.model.learn(Row::new(&s.ids, &s.values), s.y);
    }
}

const POISONED: &str = "a prediction was not a finite number (e.g. a min-max scaled feature the predictor never learned), which poisons the error statistics for good, as in River; use a warm-up period, or LinearRegression without scaling";

impl<P: Predictor> EventDetector for PredictiveAnomalyDetection<P> {
    fn builder_and_names(&mut self) -> (&mut EventBuilder, &FeatureNames) {
        (&mut self.scratch.0.builder, &self.features)
    }

    fn score_built(&mut self) -> Result<(Self::Score, sealed::Ready), AnomalyError> {
        self.split_target()?;
        let s = &self.scratch.0;
        let y_pred = self.model.predict(Row::new(&s.ids, &s.values));
        let se = python_square(y_pred - s.y);
        let threshold = self.errors.mean.mean + (self.params.n_std * self.errors.get().sqrt());
        if self.iter < self.params.warmup_period {
            self.scratch.0.squared_error = None;
            return Ok((Ok(0.0), sealed::Ready(())));
        }
        self.scratch.0.squared_error = Some(se);
        let score = if self.poisoned {
            Err(UndefinedScore {
                model: "PAD",
                reason: POISONED,
            })
        } else if se >= threshold {
            Ok(1.0)
        } else if threshold == 0.0 {
            Err(UndefinedScore {
                model: "PAD",
                reason: "the error threshold is 0 (no error learned yet, or a prediction that was not a number); River raises ZeroDivisionError here",
            })
        } else {
            let score = se / threshold;
            if score.is_nan() {
                Err(UndefinedScore {
                    model: "PAD",
                    reason: POISONED,
                })
            } else {
                Ok(score)
            }
        };
        Ok((score, sealed::Ready(())))
    }
}

impl<P: Predictor> sealed::Detector for PredictiveAnomalyDetection<P> {
    type Pending = sealed::Ready;
    type Input = [f64];
    type Score = Result<f64, UndefinedScore>;

    fn score_pending(
        &mut self,
        row: &[f64],
        _: sealed::Token,
    ) -> Result<(Self::Score, sealed::Ready), AnomalyError> {
        self.scratch.0.builder.dense("PAD", &self.features, row)?;
        self.score_built()
    }

    fn learn_pending(&mut self, _: sealed::Ready, _: sealed::Token) {
        self.learn_built();
    }

    fn abandon_pending(&mut self, _: sealed::Ready, _: sealed::Token) {
        self.scratch.0.squared_error = None;
    }
}

impl<P: Predictor> AnomalyDetector for PredictiveAnomalyDetection<P> {
    const NAME: &'static str = "PAD";
}
