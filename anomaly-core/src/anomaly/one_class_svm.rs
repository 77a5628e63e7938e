use std::borrow::Borrow;

use serde::{Deserialize, Serialize};

use super::event::{
    EventBuilder, EventDetector, FeatureNames, dense_row_detector, feature_list, score_named,
};
use super::sgd::{check_sgd, python_clip};
use super::{AnomalyError, Scored, Transient, sealed};
use crate::error::{ParameterError, check};

/// OneClassSVM's parameters (River's defaults; River passes the two rates as an optimizer and
/// a number, and the initial weight as an initializer).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OneClassSvmParams {
    /// Upper bound on the fraction of training events treated as outliers, in (0, 1];
    /// the L2 penalty is `nu / 2`. Default 0.1.
    pub nu: f64,
    /// Plain SGD step for the weights (River's `optimizer=optim.SGD(lr)`), > 0. Default 0.01.
    pub learning_rate: f64,
    /// SGD step for the intercept, >= 0. Default 0.01.
    pub intercept_lr: f64,
    /// Gradients are clipped to `[-clip_gradient, clip_gradient]`, > 0. Default 1e12.
    pub clip_gradient: f64,
    /// The weight a feature starts with when it is first learned (River's
    /// `initializer=optim.initializers.Constant(c)`; `Zeros` is 0). Default 0.
    pub initial_weight: f64,
}

impl Default for OneClassSvmParams {
    fn default() -> Self {
        Self {
            nu: 0.1,
            learning_rate: 0.01,
            intercept_lr: 0.01,
            clip_gradient: 1e12,
            initial_weight: 0.0,
        }
    }
}

/// One-class SVM trained online by stochastic gradient descent (River's
/// `anomaly.OneClassSVM`): a linear boundary `w·x = b` around the normal events, pushed by the
/// hinge loss; the score is `w·x`, the signed distance past the boundary (unbounded, higher =
/// more anomalous).
///
/// Good for many features whose normal events share a direction or scale (a linear notion of
/// normal) at the cost of one dot product per event; memory is one weight per feature. Its
/// scores are not calibrated: use a quantile filter or compare them with each other. Missing
/// features count as 0; a feature first seen late starts at `initial_weight`.
///
/// ```
/// use anomaly_core::anomaly::{AnomalyDetector, OneClassSvm, OneClassSvmParams};
///
/// let mut svm = OneClassSvm::with_features(OneClassSvmParams::default(), &["amount", "hour"])?;
/// for i in 0..500 {
///     svm.score(&[0.1 + 0.001 * (i % 10) as f64, 0.5][..])?.learn();
/// }
/// let usual = svm.score(&[0.1, 0.5][..])?.score();
/// let odd = svm.score(&[3.0, 0.5][..])?.score();
/// assert!(odd > usual);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SvmState")]
pub struct OneClassSvm {
    params: OneClassSvmParams,
    features: FeatureNames,
    /// Per feature id; `None` until the feature is learned.
    weights: Vec<Option<f64>>,
    intercept: f64,
    n_iterations: u64,
    #[serde(skip)]
    builder: Transient<EventBuilder>,
}

#[derive(Deserialize)]
struct SvmState {
    params: OneClassSvmParams,
    features: FeatureNames,
    weights: Vec<Option<f64>>,
    intercept: f64,
    n_iterations: u64,
}

impl TryFrom<SvmState> for OneClassSvm {
    type Error = String;

    fn try_from(state: SvmState) -> Result<Self, String> {
        let model = Self::new(state.params).map_err(|e| e.to_string())?;
        if state.weights.len() > state.features.len()
            || !state.intercept.is_finite()
            || !state.weights.iter().flatten().all(|w| w.is_finite())
        {
            return Err("weights do not match the features, or are not finite".into());
        }
        Ok(Self {
            features: state.features,
            weights: state.weights,
            intercept: state.intercept,
            n_iterations: state.n_iterations,
            ..model
        })
    }
}

impl Default for OneClassSvm {
    fn default() -> Self {
        Self {
            params: OneClassSvmParams::default(),
            features: FeatureNames::default(),
            weights: Vec::new(),
            intercept: 1.0,
            n_iterations: 0,
            builder: Transient(EventBuilder::default()),
        }
    }
}

impl OneClassSvm {
    /// A detector that learns its features from the named events it sees
    /// ([`OneClassSvm::score_named`]).
    pub fn new(params: OneClassSvmParams) -> Result<Self, ParameterError> {
        let model = "OneClassSVM";
        check(
            params.nu > 0.0 && params.nu <= 1.0,
            model,
            "nu",
            "in (0, 1]",
            params.nu,
        )?;
        check_sgd(
            model,
            params.learning_rate,
            params.intercept_lr,
            params.clip_gradient,
            params.initial_weight,
        )?;
        Ok(Self {
            params,
            ..Self::default()
        })
    }

    /// A detector over a fixed list of features, scored with dense rows in that order (named
    /// events work too).
    pub fn with_features<S: AsRef<str>>(
        params: OneClassSvmParams,
        features: &[S],
    ) -> Result<Self, AnomalyError> {
        let mut model = Self::new(params)?;
        model.features = feature_list("OneClassSVM", features)?;
        Ok(model)
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &OneClassSvmParams {
        &self.params
    }

    /// Feature names, in the order they were first learned (or given).
    pub fn features(&self) -> &[String] {
        self.features.names()
    }

    /// The learned weights, as `(feature, weight)` in the order features were first learned.
    pub fn weights(&self) -> Vec<(&str, f64)> {
        self.features
            .names()
            .iter()
            .zip(&self.weights)
            .filter_map(|(name, w)| w.map(|w| (name.as_str(), w)))
            .collect()
    }

    /// The intercept `b` (starts at 1).
    pub fn intercept(&self) -> f64 {
        self.intercept
    }

    /// Events learned.
    pub fn n_iterations(&self) -> u64 {
        self.n_iterations
    }

    /// Scores an event given as named features; missing features count as 0.
    ///
    /// ```
    /// use anomaly_core::anomaly::{OneClassSvm, OneClassSvmParams};
    ///
    /// let mut svm = OneClassSvm::new(OneClassSvmParams::default())?;
    /// let scored = svm.score_named([("amount", 0.4), ("hour", 0.9)])?;
    /// assert_eq!(scored.score(), 0.0); // nothing learned yet
    /// scored.learn();
    /// assert_eq!(svm.features(), ["amount", "hour"]);
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

    fn weight(&self, id: u32) -> f64 {
        self.weights
            .get(id as usize)
            .copied()
            .flatten()
            .unwrap_or(0.0)
    }

    fn learn_built(&mut self) {
        let builder = &mut self.builder.0;
        builder.commit(&mut self.features);
        if self.weights.len() < self.features.len() {
            self.weights.resize(self.features.len(), None);
        }
        let p = self.params;
        let event = &builder.event;
        // Learning-mode prediction: a feature seen for the first time enters with its
        // initial weight, which the prediction already uses.
        let mut dot = 0.0;
        for (id, v) in event.iter() {
            let w = self.weights[id as usize].get_or_insert(p.initial_weight);
            dot += *w * v;
        }
        let y_pred = dot + self.intercept;
        // Hinge loss for the label 1: a point on the margin is a violation.
        let g0 = if y_pred <= 1.0 { -1.0 } else { 0.0 };
        let g0 = python_clip(g0, p.clip_gradient);
        let l2 = p.nu / 2.0;
        self.intercept -= (p.intercept_lr * g0) + ((2.0 * p.intercept_lr) * l2);
        for (id, v) in event.iter() {
            if let Some(w) = &mut self.weights[id as usize] {
                let mut g = v * g0;
                if l2 != 0.0 {
                    g += l2 * *w;
                }
                *w -= p.learning_rate * g;
            }
        }
        self.n_iterations = self.n_iterations.saturating_add(1);
    }
}

impl EventDetector for OneClassSvm {
    fn builder_and_names(&mut self) -> (&mut EventBuilder, &FeatureNames) {
        (&mut self.builder.0, &self.features)
    }

    fn score_built(&mut self) -> Result<(f64, sealed::Ready), AnomalyError> {
        let mut dot = 0.0;
        for (id, v) in self.builder.0.event.iter() {
            dot += self.weight(id) * v;
        }
        // River computes the raw margin `dot + b` and then takes `b` off again; the two
        // roundings are kept so the scores are River's to the bit.
        let score = (dot + self.intercept) - self.intercept;
        if score.is_nan() {
            return Err(AnomalyError::Overflow {
                model: "OneClassSVM",
            });
        }
        Ok((score, sealed::Ready(())))
    }
}

dense_row_detector!(OneClassSvm, "OneClassSVM");
