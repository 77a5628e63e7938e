use super::Transient;
use serde::{Deserialize, Serialize};

use super::members::{Member, MemberParams, check_weights};
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
    /// meaningless: with no variance yet, any value is "infinitely" far). Default 30. The
    /// standardised members (LOF, OneClassSVM, LODA) wait as long.
    pub sad_grace_period: u32,
    /// Further detectors (any of River's), each with its weight. Default none.
    pub members: Vec<MemberParams>,
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
            members: Vec::new(),
        }
    }
}

/// HalfSpaceTrees and StandardAbsoluteDeviation, and any further detectors of the crate
/// ([`EnsembleParams::members`]), combined into one score in [0, 1].
///
/// The score is `(w_hst * hst + w_sad * sad01 + sum w_i * m_i) / (w_hst + w_sad + sum w_i)`,
/// rounded to 6 decimals, where `hst` is the trees' score (already in [0, 1]) and
/// `sad01 = erf(z / sqrt 2)` maps SAD's unbounded deviation `z` (in standard deviations) to
/// [0, 1): the probability that a normal value lies closer to the centre than this one (z = 1
/// gives 0.683, 2 gives 0.954, 3 gives 0.997). Each member's score `m_i` is brought to [0, 1]
/// as [`MemberKind`](super::MemberKind) says.
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
///
/// With River's other detectors joining in:
///
/// ```
/// use anomaly_core::anomaly::{
///     AnomalyDetector, Ensemble, EnsembleParams, HstParams, LofParams, MemberKind, MemberParams,
/// };
///
/// let params = EnsembleParams {
///     hst: HstParams { seed: Some(1), ..HstParams::default() },
///     sad_feature: "amount".into(),
///     members: vec![MemberParams {
///         detector: MemberKind::Lof(LofParams { window_size: 200, ..LofParams::default() }),
///         weight: 0.5,
///     }],
///     ..EnsembleParams::default()
/// };
/// let mut model = Ensemble::with_features(params, &["amount", "hour"])?;
/// for i in 0..600 {
///     model.score(&[0.2 + 0.01 * (i % 5) as f64, 0.5][..])?.learn();
/// }
/// let odd = model.score(&[0.9, 0.5][..])?;
/// assert!(odd.score() > 0.7 && odd.score() <= 1.0);
/// assert!(odd.member_scores()[0] > 0.9); // LOF's share, in [0, 1]
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "EnsembleState")]
pub struct Ensemble {
    params: EnsembleParams,
    sad_column: usize,
    hst: HalfSpaceTrees,
    sad: Sad,
    members: Vec<Member>,
    #[serde(skip)]
    last: Transient<Components>,
    /// The members' raw scores of the event being scored (`None` = undefined).
    #[serde(skip)]
    member_raw: Transient<Vec<Option<f64>>>,
}

/// What a serialized ensemble holds, checked before it becomes an [`Ensemble`].
#[derive(Deserialize)]
pub(crate) struct EnsembleState {
    pub(crate) params: EnsembleParams,
    pub(crate) sad_column: usize,
    pub(crate) hst: HalfSpaceTrees,
    pub(crate) sad: Sad,
    #[serde(default)]
    pub(crate) members: Vec<Member>,
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
        if state.members.len() != state.params.members.len() {
            return Err("the members differ from the ensemble's parameters".into());
        }
        for (member, params) in state.members.iter().zip(&state.params.members) {
            member.matches(params, features.len())?;
        }
        let p = &state.params;
        check_weights(p.hst_weight, p.sad_weight, &p.members).map_err(|e| e.to_string())?;
        let n_members = state.members.len();
        Ok(Self {
            params: state.params,
            sad_column: state.sad_column,
            hst: state.hst,
            sad: state.sad,
            members: state.members,
            last: Transient(Components::default()),
            member_raw: Transient(vec![None; n_members]),
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
        check_weights(params.hst_weight, params.sad_weight, &params.members)?;
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
        let members = params
            .members
            .iter()
            .map(|m| Member::new(m, features))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| match e {
                AnomalyError::Parameter(p) => p,
                other => ParameterError::new(
                    "Ensemble",
                    "members",
                    "detectors over the ensemble's features",
                    other,
                ),
            })?;
        Ok(Self {
            hst: HalfSpaceTrees::with_features(params.hst.clone(), features)?,
            sad: Sad::new(params.sad)?,
            sad_column: sad_column.unwrap_or(0),
            member_raw: Transient(vec![None; members.len()]),
            members,
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
        // The members learn the history as they would have in the stream (their score
        // statistics included).
        for row in history {
            let row = row.as_ref();
            for member in &mut model.members {
                let raw = member.score(row)?;
                member.learn(raw);
            }
        }
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
        let (mut total, mut weights) = (wh * hst + ws * sad, wh + ws);
        for ((member, params), raw) in self
            .members
            .iter()
            .zip(&self.params.members)
            .zip(&self.member_raw.0)
        {
            total += params.weight * member.unit(*raw, self.params.sad_grace_period);
            weights += params.weight;
        }
        let combined = (total / weights).clamp(0.0, 1.0);
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

    /// Each member's share of this score, in [0, 1], in the order of
    /// [`EnsembleParams::members`].
    pub fn member_scores(&self) -> Vec<f64> {
        let d = &self.detector;
        d.members
            .iter()
            .zip(&d.member_raw.0)
            .map(|(m, raw)| m.unit(*raw, d.params.sad_grace_period))
            .collect()
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
        // SAD and the members first: if one rejects the row, the trees have not recorded any
        // visit.
        let (sad_deviation, _) =
            sealed::Detector::score_pending(&mut self.sad, &value, crate::anomaly::TOKEN)?;
        for (at, member) in self.members.iter_mut().enumerate() {
            match member.score(row) {
                Ok(raw) => self.member_raw.0[at] = raw,
                Err(e) => {
                    self.members[..at].iter_mut().for_each(Member::abandon);
                    return Err(e);
                }
            }
        }
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
        for (member, raw) in self.members.iter_mut().zip(&self.member_raw.0) {
            member.learn(*raw);
        }
    }

    fn abandon_pending(&mut self, _: sealed::Ready, _: sealed::Token) {
        sealed::Detector::abandon_pending(&mut self.hst, sealed::Ready(()), crate::anomaly::TOKEN);
        sealed::Detector::abandon_pending(&mut self.sad, sealed::Ready(()), crate::anomaly::TOKEN);
        self.members.iter_mut().for_each(Member::abandon);
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
