//! Anomaly detectors with score-before-learn enforced by the type system.
//!
//! Scoring an event returns a [`Scored`] value; the only way to learn that event is to call
//! [`Scored::learn`] on it, which consumes it. So an event cannot be learned before it is
//! scored, nor learned twice:
//!
//! ```
//! use anomaly_core::anomaly::{AnomalyDetector, HalfSpaceTrees, HstParams};
//!
//! let mut hst = HalfSpaceTrees::with_features(HstParams::default(), &["amount", "hour"])?;
//! let scored = hst.score(&[0.3, 0.5][..])?;
//! let score = scored.score();
//! scored.learn();
//! # let _ = score;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every way around the rule fails to compile. Learning an event that was never scored, because
//! there is nothing to call `learn` on (E0599: no such method):
//!
//! ```compile_fail,E0599
//! use anomaly_core::anomaly::{HalfSpaceTrees, HstParams};
//!
//! let mut hst = HalfSpaceTrees::with_features(HstParams::default(), &["amount"]).unwrap();
//! hst.learn(&[0.3][..]);
//! ```
//!
//! Learning the same scored event twice (E0382: use of a moved value):
//!
//! ```compile_fail,E0382
//! use anomaly_core::anomaly::{AnomalyDetector, HalfSpaceTrees, HstParams};
//!
//! let mut hst = HalfSpaceTrees::with_features(HstParams::default(), &["amount"]).unwrap();
//! let scored = hst.score(&[0.3][..]).unwrap();
//! scored.learn();
//! scored.learn();
//! ```
//!
//! Learning with a stale score, after the model scored another event (E0499: the first score
//! still borrows the model):
//!
//! ```compile_fail,E0499
//! use anomaly_core::anomaly::{AnomalyDetector, HalfSpaceTrees, HstParams};
//!
//! let mut hst = HalfSpaceTrees::with_features(HstParams::default(), &["amount"]).unwrap();
//! let first = hst.score(&[0.3][..]).unwrap();
//! let second = hst.score(&[0.9][..]).unwrap();
//! first.learn();
//! # drop(second);
//! ```
//!
//! Calling the learning half directly through a generic bound, which can see it (E0061: it
//! takes a proof of coming from this crate that no caller outside can supply):
//!
//! ```compile_fail,E0061
//! use anomaly_core::anomaly::AnomalyDetector;
//!
//! fn sneaky<D: AnomalyDetector>(detector: &mut D, pending: D::Pending) {
//!     detector.learn_pending(pending);
//! }
//! ```
//!
//! Making that proof, or anything else of the private module, by hand (E0603: the module is
//! private):
//!
//! ```compile_fail,E0603
//! use anomaly_core::anomaly::AnomalyDetector;
//!
//! fn sneaky<D: AnomalyDetector>(detector: &mut D, pending: D::Pending) {
//!     detector.learn_pending(pending, anomaly_core::anomaly::sealed::Token(()));
//! }
//! ```
//!
//! Building what scoring leaves for learning, to hand it over (E0308: outside this crate it
//! is an opaque type; its concrete types are made only inside the crate's private module, and
//! a value of it only by scoring, inside [`Scored`]):
//!
//! ```compile_fail,E0308
//! use anomaly_core::anomaly::AnomalyDetector;
//!
//! fn forge<D: AnomalyDetector>() -> D::Pending {
//!     ()
//! }
//! ```
//!
//! Dropping a [`Scored`] without learning leaves the model exactly as it was before scoring
//! (that is how filters protect a model from anomalies). Training a fresh model on history has
//! its own, explicit entry points (`train_fresh`).

mod ensemble;
mod event;
mod filter;
mod gaussian;
mod hst;
mod loda;
mod lof;
mod members;
mod one_class_svm;
mod predictive;
mod rcf;
mod sad;
mod sgd;

pub(crate) use ensemble::EnsembleState;
pub use ensemble::{Components, Ensemble, EnsembleParams};
pub use event::MAX_FEATURES;
pub use filter::{QuantileFilter, ThresholdFilter};
pub use gaussian::{GaussianScorer, GaussianScorerParams};
pub use hst::{FeatureContribution, HalfSpaceTrees, HstParams, TreeRng, TreeSpec};
pub use loda::{Loda, LodaParams};
pub use lof::{LocalOutlierFactor, LofParams};
pub use members::{MemberKind, MemberParams};
pub use one_class_svm::{OneClassSvm, OneClassSvmParams};
pub use predictive::{
    LinearRegression, LinearRegressionParams, MinMaxScaled, PadParams, PredictiveAnomalyDetection,
    Predictor, Row, ValidPredictor,
};
pub use rcf::{Attribution, RandomCutForest, RcfParams};
pub use sad::{Sad, SadCentre, SadParams};

use thiserror::Error;

use crate::{InputError, ParameterError};

/// Why an event could not be scored. The model is unchanged.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AnomalyError {
    /// A feature value is NaN, infinite or too large.
    #[error("feature `{feature}`: {source}")]
    BadFeature {
        /// The feature's name.
        feature: String,
        /// What was wrong with its value.
        source: InputError,
    },
    /// A univariate input value is NaN, infinite or too large.
    #[error(transparent)]
    BadInput(#[from] InputError),
    /// A dense row does not have one value per model feature.
    #[error(
        "row has {got} values but the model has {expected} features; pass them in the order given to with_features"
    )]
    RowLength {
        /// Features the model has.
        expected: usize,
        /// Values the row has.
        got: usize,
    },
    /// The model cannot score this way yet.
    #[error("{model} is not ready: {reason}")]
    NotReady {
        /// The model.
        model: &'static str,
        /// Why, and what to do.
        reason: &'static str,
    },
    /// Bad parameters for a model built on the fly (e.g. by `train_fresh`).
    #[error(transparent)]
    Parameter(#[from] ParameterError),
    /// The event names more distinct features than a model accepts.
    #[error(
        "{model}: more than {limit} distinct feature names; features must be a fixed set, not values"
    )]
    TooManyFeatures {
        /// The model.
        model: &'static str,
        /// The most names one model accepts.
        limit: usize,
    },
    /// The event's values, combined with what the model learned, overflow a double (for
    /// example two infinite products of opposite signs); the model is unchanged.
    #[error(
        "{model}: the event's values overflow with the learned weights; rescale the features (e.g. min-max or log)"
    )]
    Overflow {
        /// The model.
        model: &'static str,
    },
    /// The event lacks the feature a predictive detector predicts.
    #[error("{model}: the event has no value for the target feature `{target}`")]
    MissingTarget {
        /// The model.
        model: &'static str,
        /// The target feature's name.
        target: String,
    },
}

/// A score that does not exist for the detector's current state; the event can still be
/// learned (see [`Scored::learn`]), which is how such a detector gets out of that state.
///
/// River raises an exception or returns NaN at these points; this crate never returns NaN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{model}: no score: {reason}")]
pub struct UndefinedScore {
    /// The detector.
    pub model: &'static str,
    /// Why, in words.
    pub reason: &'static str,
}

/// Working memory kept between scoring and learning: not part of a model's identity, so it is
/// neither compared nor serialized.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Transient<T>(pub(crate) T);

impl<T> PartialEq for Transient<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

pub(crate) mod sealed {
    use super::AnomalyError;

    /// The proof that a call comes from inside this crate: every method of [`Detector`] takes
    /// one, and only this crate can make one (its field is private to the crate and its module
    /// cannot be named outside). So although a generic bound `D: AnomalyDetector` lets outside
    /// code see these methods, it cannot call them.
    #[derive(Clone, Copy, Debug)]
    pub struct Token(pub(crate) ());

    /// What a detector with nothing to carry from scoring to learning leaves: a value only
    /// this crate can make, so that no `Pending` can be built outside it.
    #[derive(Debug)]
    pub struct Ready(pub(crate) ());

    /// The two halves of score-then-learn. Private, so they can only be reached through
    /// [`super::Scored`], which pairs them.
    pub trait Detector {
        /// What scoring leaves for learning; not `Clone`, so it can be used once.
        type Pending;
        /// What one event is.
        type Input: ?Sized;
        /// What a score is: `f64` for detectors that always produce one, `Result<f64,
        /// UndefinedScore>` for those whose score is undefined in some states (the event can
        /// still be learned).
        type Score: Copy + std::fmt::Debug;
        fn score_pending(
            &mut self,
            x: &Self::Input,
            token: Token,
        ) -> Result<(Self::Score, Self::Pending), AnomalyError>;
        fn learn_pending(&mut self, pending: Self::Pending, token: Token);
        /// Undoes whatever scoring prepared, when the event is not learned.
        fn abandon_pending(&mut self, pending: Self::Pending, token: Token);
    }
}

/// The crate's own [`sealed::Token`].
pub(crate) const TOKEN: sealed::Token = sealed::Token(());

/// A streaming anomaly detector: score an event, then (optionally) learn it.
///
/// Higher scores mean more anomalous.
pub trait AnomalyDetector: sealed::Detector + Sized {
    /// The model's name (River's where it has one).
    const NAME: &'static str;

    /// Scores `x` with what the model knows now; call [`Scored::learn`] on the result to
    /// learn `x`.
    /// One event is a dense row (`[f64]`) or a univariate value (`f64`), depending on the
    /// model.
    fn score(&mut self, x: &Self::Input) -> Result<Scored<'_, Self>, AnomalyError> {
        let (score, pending) = sealed::Detector::score_pending(self, x, TOKEN)?;
        Ok(Scored {
            detector: self,
            score,
            pending: Some(pending),
        })
    }
}

/// An event's score, holding the right to learn that event exactly once.
///
/// While it lives, the model is borrowed: nothing else can score or learn in between, so the
/// learning step sees exactly the state the score was computed from.
#[must_use = "call .learn() to learn the event, or drop it to leave the model unchanged"]
pub struct Scored<'m, D: AnomalyDetector> {
    detector: &'m mut D,
    score: D::Score,
    pending: Option<D::Pending>,
}

impl<'m, D: AnomalyDetector> Scored<'m, D> {
    /// The anomaly score (higher = more anomalous): an `f64`, or for detectors whose score
    /// can be undefined ([`GaussianScorer`], [`PredictiveAnomalyDetection`]) a
    /// `Result<f64, UndefinedScore>`. Either way the event can be learned.
    pub fn score(&self) -> D::Score {
        self.score
    }

    /// The model that produced the score.
    pub fn detector(&self) -> &D {
        self.detector
    }

    /// Learns the event that was scored.
    pub fn learn(mut self) {
        if let Some(pending) = self.pending.take() {
            self.detector.learn_pending(pending, TOKEN);
        }
    }
}

impl<D: AnomalyDetector> Drop for Scored<'_, D> {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.detector.abandon_pending(pending, TOKEN);
        }
    }
}

impl<D: AnomalyDetector> std::fmt::Debug for Scored<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scored")
            .field("detector", &D::NAME)
            .field("score", &self.score)
            .finish()
    }
}
