//! The further detectors an [`super::Ensemble`] can take on, and how each one's score is
//! brought to [0, 1] so the ensemble's weights mean the same thing for all of them.

use serde::{Deserialize, Serialize};

use super::ensemble::deviation_to_unit;
use super::{
    AnomalyError, GaussianScorer, GaussianScorerParams, LinearRegression, LinearRegressionParams,
    LocalOutlierFactor, Loda, LodaParams, LofParams, OneClassSvm, OneClassSvmParams, PadParams,
    PredictiveAnomalyDetection, RandomCutForest, RcfParams, TOKEN, sealed::Detector,
};
use crate::error::{ParameterError, check};
use crate::stats::Var;

/// A detector that joins the ensemble, with its weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberParams {
    /// Which detector, with its parameters.
    pub detector: MemberKind,
    /// Its weight in the combined score, finite and >= 0.
    pub weight: f64,
}

/// The detectors an ensemble can take on. Those with unbounded scores (LOF, OneClassSVM,
/// LODA, Random Cut Forest) are standardised against their own learned scores and mapped like SAD's deviation,
/// `erf(z / sqrt 2)` for `z` standard deviations above their mean (0 below it, and during the
/// ensemble's `sad_grace_period`); GaussianScorer's and PAD's are in [0, 1] already (an
/// undefined score counts 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MemberKind {
    /// GaussianScorer on one of the features.
    Gaussian {
        /// The feature it watches.
        feature: String,
        /// Its parameters.
        params: GaussianScorerParams,
    },
    /// LocalOutlierFactor over all features.
    Lof(LofParams),
    /// OneClassSVM over all features.
    OneClassSvm(OneClassSvmParams),
    /// LODA over all features.
    Loda(LodaParams),
    /// Random Cut Forest over all features.
    Rcf(RcfParams),
    /// PredictiveAnomalyDetection of `params.target` (one of the features) from the others,
    /// with linear regression.
    Pad {
        /// Its parameters (the target among them).
        params: PadParams,
        /// The regression's.
        regression: LinearRegressionParams,
    },
}

/// A member's model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum MemberModel {
    Gaussian {
        column: usize,
        model: GaussianScorer,
    },
    Lof(LocalOutlierFactor),
    OneClassSvm(OneClassSvm),
    Loda(Loda),
    Pad(PredictiveAnomalyDetection<LinearRegression>),
    Rcf(RandomCutForest),
}

/// A member's model and the running statistics of the raw scores it learned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Member {
    model: MemberModel,
    scores: Var,
}

impl Member {
    pub(crate) fn new<S: AsRef<str>>(
        params: &MemberParams,
        features: &[S],
    ) -> Result<Self, AnomalyError> {
        let model = match &params.detector {
            MemberKind::Gaussian { feature, params } => {
                let column = features.iter().position(|f| f.as_ref() == feature);
                check(
                    column.is_some(),
                    "Ensemble",
                    "members.Gaussian.feature",
                    "one of the features",
                    feature,
                )?;
                MemberModel::Gaussian {
                    column: column.unwrap_or(0),
                    model: GaussianScorer::new(*params)?,
                }
            }
            MemberKind::Lof(p) => {
                MemberModel::Lof(LocalOutlierFactor::with_features(*p, features)?)
            }
            MemberKind::OneClassSvm(p) => {
                MemberModel::OneClassSvm(OneClassSvm::with_features(*p, features)?)
            }
            MemberKind::Loda(p) => MemberModel::Loda(Loda::with_features(*p, features)?),
            MemberKind::Rcf(p) => {
                MemberModel::Rcf(RandomCutForest::with_features(p.clone(), features)?)
            }
            MemberKind::Pad { params, regression } => {
                MemberModel::Pad(PredictiveAnomalyDetection::with_features(
                    params.clone(),
                    LinearRegression::new(*regression)?,
                    features,
                )?)
            }
        };
        Ok(Self {
            model,
            scores: Var::default(),
        })
    }

    /// Whether a loaded member is the one `params` describes, over `n_features` columns.
    pub(crate) fn matches(&self, params: &MemberParams, n_features: usize) -> Result<(), String> {
        let ok = match (&self.model, &params.detector) {
            (MemberModel::Gaussian { column, model }, MemberKind::Gaussian { params, .. }) => {
                *column < n_features && model.params() == params
            }
            (MemberModel::Lof(m), MemberKind::Lof(p)) => {
                m.params() == p && m.features().len() == n_features
            }
            (MemberModel::OneClassSvm(m), MemberKind::OneClassSvm(p)) => {
                m.params() == p && m.features().len() == n_features
            }
            (MemberModel::Loda(m), MemberKind::Loda(p)) => {
                m.params().n_bins == p.n_bins
                    && m.params().n_random_cuts == p.n_random_cuts
                    && m.features().len() == n_features
            }
            (MemberModel::Rcf(m), MemberKind::Rcf(p)) => {
                m.params().number_of_trees == p.number_of_trees
                    && m.params().sample_size == p.sample_size
                    && m.features().len() == n_features
            }
            (MemberModel::Pad(m), MemberKind::Pad { params, .. }) => {
                m.params() == params && m.features().len() == n_features && m.is_valid()
            }
            _ => false,
        };
        let n = self.scores.mean.n;
        let stats_ok = n >= 0.0
            && n.fract() == 0.0
            && self.scores.mean.mean.is_finite()
            && self.scores.sum_sq.is_finite()
            && self.scores.sum_sq >= 0.0;
        if ok && stats_ok {
            Ok(())
        } else {
            Err("a member does not match its parameters".into())
        }
    }

    /// The member's raw score of `row` (`None` when undefined), without learning it.
    pub(crate) fn score(&mut self, row: &[f64]) -> Result<Option<f64>, AnomalyError> {
        Ok(match &mut self.model {
            MemberModel::Gaussian { column, model } => {
                let value = row.get(*column).copied().unwrap_or(f64::NAN);
                model.score_pending(&value, TOKEN)?.0.ok()
            }
            MemberModel::Lof(m) => Some(m.score_pending(row, TOKEN)?.0),
            MemberModel::OneClassSvm(m) => Some(m.score_pending(row, TOKEN)?.0),
            MemberModel::Loda(m) => Some(m.score_pending(row, TOKEN)?.0),
            MemberModel::Pad(m) => m.score_pending(row, TOKEN)?.0.ok(),
            // Before `output_after` points the forest scores 0 for lack of data: not a score
            // to learn the spread of scores from.
            MemberModel::Rcf(m) => {
                let (score, _) = m.score_pending(row, TOKEN)?;
                m.is_ready().then_some(score)
            }
        })
    }

    /// The raw score mapped to [0, 1].
    pub(crate) fn unit(&self, raw: Option<f64>, grace_period: u32) -> f64 {
        let Some(raw) = raw else {
            return 0.0;
        };
        match self.model {
            MemberModel::Gaussian { .. } | MemberModel::Pad(_) => raw.clamp(0.0, 1.0),
            _ if self.scores.mean.n < f64::from(grace_period) => 0.0,
            _ => {
                let std = self.scores.get().max(0.0).sqrt();
                let unit = deviation_to_unit((raw - self.scores.mean.mean) / (std + 1e-10));
                if unit.is_nan() { 0.0 } else { unit }
            }
        }
    }

    /// Learns the row last scored, whose raw score was `raw`.
    pub(crate) fn learn(&mut self, raw: Option<f64>) {
        match &mut self.model {
            MemberModel::Gaussian { model, .. } => {
                model.learn_pending(super::sealed::Ready(()), TOKEN)
            }
            MemberModel::Lof(m) => m.learn_pending(super::sealed::Ready(()), TOKEN),
            MemberModel::OneClassSvm(m) => m.learn_pending(super::sealed::Ready(()), TOKEN),
            MemberModel::Loda(m) => m.learn_pending(super::sealed::Ready(()), TOKEN),
            MemberModel::Pad(m) => m.learn_pending(super::sealed::Ready(()), TOKEN),
            MemberModel::Rcf(m) => m.learn_pending(super::sealed::Ready(()), TOKEN),
        }
        if let Some(raw) = raw.filter(|r| r.is_finite()) {
            self.scores.update(raw);
        }
    }

    /// Undoes what scoring prepared (nothing is recorded but PAD's pending error).
    pub(crate) fn abandon(&mut self) {
        if let MemberModel::Pad(m) = &mut self.model {
            m.abandon_pending(super::sealed::Ready(()), TOKEN);
        }
    }
}

/// Checks every weight of an ensemble (finite, >= 0) and their sum (finite, > 0): the one
/// check for a new ensemble and a loaded one.
pub(crate) fn check_weights(
    hst_weight: f64,
    sad_weight: f64,
    members: &[MemberParams],
) -> Result<(), ParameterError> {
    let named = [("hst_weight", hst_weight), ("sad_weight", sad_weight)];
    let of_members = members.iter().map(|m| ("members.weight", m.weight));
    let mut total = 0.0;
    for (name, w) in named.into_iter().chain(of_members) {
        check(
            w.is_finite() && w >= 0.0,
            "Ensemble",
            name,
            "finite and >= 0",
            w,
        )?;
        total += w;
    }
    check(
        total > 0.0 && total.is_finite(),
        "Ensemble",
        "hst_weight",
        "positive when every other weight is 0, and all weights a finite sum",
        hst_weight,
    )
}
