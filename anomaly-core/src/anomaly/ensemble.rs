use super::Transient;
use serde::{Deserialize, Serialize};

use super::{
    AnomalyDetector, AnomalyError, FeatureContribution, HalfSpaceTrees, HstParams, Sad, SadParams,
    Scored, sealed,
};
use crate::error::{ParameterError, check};

/// How the ensemble combines HalfSpaceTrees and StandardAbsoluteDeviation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnsembleParams {
    /// The trees. Default: River's defaults (10 trees, height 8, window 250).
    pub hst: HstParams,
    /// The univariate detector. Default: deviation from the running mean.
    pub sad: SadParams,
    /// The feature SAD watches (e.g. the scaled amount). Must be one of the model's features.
    pub sad_feature: String,
    /// Weight of the HST score, >= 0. Default 0.7.
    pub hst_weight: f64,
    /// Weight of the mapped SAD score, >= 0. Default 0.3.
    pub sad_weight: f64,
    /// SAD contributes 0 until it has learned this many values (its first scores are
    /// meaningless: with no variance yet, any value is "infinitely" far). Default 30.
    pub sad_grace_period: u32,
}

impl Default for EnsembleParams {
    fn default() -> Self {
        Self {
            hst: HstParams::default(),
            sad: SadParams::default(),
            sad_feature: String::new(),
            hst_weight: 0.7,
            sad_weight: 0.3,
            sad_grace_period: 30,
        }
    }
}

/// HalfSpaceTrees and StandardAbsoluteDeviation combined into one score in [0, 1].
///
/// The score is `(w_hst * hst + w_sad * sad01) / (w_hst + w_sad)`, rounded to 6 decimals,
/// where `hst` is the trees' score (already in [0, 1]) and `sad01 = erf(z / sqrt 2)` maps
/// SAD's unbounded deviation `z` (in standard deviations) to [0, 1): the probability that a
/// normal value lies closer to the centre than this one (z = 1 gives 0.683, 2 gives 0.954,
/// 3 gives 0.997).
///
/// ```
/// use anomaly_core::anomaly::{AnomalyDetector, Ensemble, EnsembleParams, HstParams};
///
/// let params = EnsembleParams {
///     hst: HstParams { seed: Some(1), ..HstParams::default() },
///     sad_feature: "amount".into(),
///     ..EnsembleParams::default()
/// };
/// let mut model = Ensemble::with_features(params, &["amount", "hour"])?;
/// for i in 0..600 {
///     model.score(&[0.2 + 0.01 * (i % 5) as f64, 0.5][..])?.learn();
/// }
/// let odd = model.score(&[0.9, 0.5][..])?;
/// assert!(odd.score() > 0.7 && odd.score() <= 1.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "EnsembleState")]
pub struct Ensemble {
    params: EnsembleParams,
    sad_column: usize,
    hst: HalfSpaceTrees,
    sad: Sad,
    #[serde(skip)]
    last: Transient<Components>,
}

/// What a serialized ensemble holds, checked before it becomes an [`Ensemble`].
#[derive(Deserialize)]
struct EnsembleState {
    params: EnsembleParams,
    sad_column: usize,
    hst: HalfSpaceTrees,
    sad: Sad,
}

impl TryFrom<EnsembleState> for Ensemble {
    type Error = String;

    fn try_from(state: EnsembleState) -> Result<Self, String> {
        let features = state.hst.features();
        if features.get(state.sad_column) != Some(&state.params.sad_feature) {
            return Err(format!(
                "sad_column {} does not point at sad_feature `{}`",
                state.sad_column, state.params.sad_feature
            ));
        }
        if state.sad.params() != &state.params.sad {
            return Err("SAD parameters differ from the ensemble's".into());
        }
        Ok(Self {
            params: state.params,
            sad_column: state.sad_column,
            hst: state.hst,
            sad: state.sad,
            last: Transient(Components::default()),
        })
    }
}

/// The parts of the latest ensemble score.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Components {
    /// HalfSpaceTrees' score, in [0, 1].
    pub hst: f64,
    /// SAD's raw deviation, in standard deviations.
    pub sad_deviation: f64,
    /// SAD's deviation mapped to [0, 1) (0 during SAD's grace period).
    pub sad: f64,
}

impl Ensemble {
    /// Builds the ensemble over `features` (column order of the rows it scores).
    pub fn with_features<S: AsRef<str>>(
        params: EnsembleParams,
        features: &[S],
    ) -> Result<Self, ParameterError> {
        for (name, w) in [
            ("hst_weight", params.hst_weight),
            ("sad_weight", params.sad_weight),
        ] {
            check(
                w.is_finite() && w >= 0.0,
                "Ensemble",
                name,
                "finite and >= 0",
                w,
            )?;
        }
        check(
            params.hst_weight + params.sad_weight > 0.0,
            "Ensemble",
            "hst_weight",
            "positive when sad_weight is 0",
            params.hst_weight,
        )?;
        let sad_column = features
            .iter()
            .position(|f| f.as_ref() == params.sad_feature);
        check(
            sad_column.is_some(),
            "Ensemble",
            "sad_feature",
            "one of the features",
            &params.sad_feature,
        )?;
        Ok(Self {
            hst: HalfSpaceTrees::with_features(params.hst.clone(), features)?,
            sad: Sad::new(params.sad)?,
            sad_column: sad_column.unwrap_or(0),
            params,
            last: Transient(Components::default()),
        })
    }

    /// Trains a fresh ensemble on historical rows without scoring them (for retraining).
    pub fn train_fresh<S: AsRef<str>, R: AsRef<[f64]>>(
        params: EnsembleParams,
        features: &[S],
        history: &[R],
    ) -> Result<Self, AnomalyError> {
        let mut model = Self::with_features(params, features)?;
        let column = model.sad_column;
        model.hst = HalfSpaceTrees::train_fresh(model.params.hst.clone(), features, history)?;
        model.hst_seed_fixup();
        let values: Vec<f64> = history.iter().map(|r| r.as_ref()[column]).collect();
        model.sad = Sad::train_fresh(model.params.sad, &values)?;
        Ok(model)
    }

    /// Keeps the recorded seed when the trees were drawn from the OS.
    fn hst_seed_fixup(&mut self) {
        self.params.hst.seed = Some(self.hst.seed());
    }

    /// The parameters.
    pub fn params(&self) -> &EnsembleParams {
        &self.params
    }

    /// The trees.
    pub fn hst(&self) -> &HalfSpaceTrees {
        &self.hst
    }

    /// The univariate detector.
    pub fn sad(&self) -> &Sad {
        &self.sad
    }

    fn combine(&self, hst: f64, sad: f64) -> f64 {
        let (wh, ws) = (self.params.hst_weight, self.params.sad_weight);
        let combined = ((wh * hst + ws * sad) / (wh + ws)).clamp(0.0, 1.0);
        (combined * 1e6).round() / 1e6
    }
}

impl Scored<'_, Ensemble> {
    /// The parts this score was combined from.
    pub fn components(&self) -> Components {
        self.detector.last.0
    }

    /// Which features isolated the event in the trees (see the HST explanation).
    pub fn explain(&self) -> Vec<FeatureContribution> {
        self.detector.hst.explain_last()
    }
}

/// `erf(x)`, Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7): enough for a score
/// rounded to 6 decimals and cheaper than a series.
fn erf(x: f64) -> f64 {
    let sign = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    sign * (1.0 - poly * (-x * x).exp())
}

/// SAD's deviation in standard deviations, mapped to [0, 1).
pub(crate) fn deviation_to_unit(z: f64) -> f64 {
    erf(z / std::f64::consts::SQRT_2).clamp(0.0, 1.0)
}

impl sealed::Detector for Ensemble {
    type Pending = sealed::Ready;
    type Input = [f64];
    type Score = f64;

    fn score_pending(
        &mut self,
        row: &[f64],
        _: sealed::Token,
    ) -> Result<(f64, sealed::Ready), AnomalyError> {
        let value = row
            .get(self.sad_column)
            .copied()
            .ok_or(AnomalyError::RowLength {
                expected: self.hst.features().len(),
                got: row.len(),
            })?;
        // SAD first: if it rejects the row, the trees have not recorded any visit.
        let (sad_deviation, _) =
            sealed::Detector::score_pending(&mut self.sad, &value, crate::anomaly::TOKEN)?;
        let (hst, _) = sealed::Detector::score_pending(&mut self.hst, row, crate::anomaly::TOKEN)?;
        let sad = if self.sad.n() >= u64::from(self.params.sad_grace_period) {
            deviation_to_unit(sad_deviation)
        } else {
            0.0
        };
        self.last = Transient(Components {
            hst,
            sad_deviation,
            sad,
        });
        Ok((self.combine(hst, sad), sealed::Ready(())))
    }

    fn learn_pending(&mut self, _: sealed::Ready, _: sealed::Token) {
        sealed::Detector::learn_pending(&mut self.hst, sealed::Ready(()), crate::anomaly::TOKEN);
        sealed::Detector::learn_pending(&mut self.sad, sealed::Ready(()), crate::anomaly::TOKEN);
    }

    fn abandon_pending(&mut self, _: sealed::Ready, _: sealed::Token) {
        sealed::Detector::abandon_pending(&mut self.hst, sealed::Ready(()), crate::anomaly::TOKEN);
        sealed::Detector::abandon_pending(&mut self.sad, sealed::Ready(()), crate::anomaly::TOKEN);
    }
}

impl AnomalyDetector for Ensemble {
    const NAME: &'static str = "Ensemble";
}

#[cfg(test)]
mod tests {
    use super::deviation_to_unit;

    #[test]
    fn deviation_mapping_matches_the_normal_distribution() {
        // P(|Z| < z) for a standard normal Z.
        for (z, p) in [
            (0.0, 0.0),
            (1.0, 0.682_689_492),
            (2.0, 0.954_499_736),
            (3.0, 0.997_300_204),
        ] {
            assert!((deviation_to_unit(z) - p).abs() < 2e-7, "z = {z}");
        }
        assert!(deviation_to_unit(1e10) <= 1.0);
    }
}
