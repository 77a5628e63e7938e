use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::is_valid_value;
use crate::error::{ParameterError, check};

/// A row given to [`MinMaxScaler`] was rejected; the scaler is exactly as it was before.
///
/// ```
/// use anomaly_core::features::MinMaxScaler;
///
/// let mut scaler = MinMaxScaler::new(3)?;
/// let err = scaler.learn(&[1.0, f64::NAN, 2.0]).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "MinMaxScaler: feature 1 must be finite with magnitude at most 1e100, got NaN; drop or impute it before scaling"
/// );
/// assert_eq!(scaler.rows_learned(), 0);
/// # Ok::<(), anomaly_core::ParameterError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ScalerError {
    /// The row or output buffer does not have one slot per feature.
    #[error(
        "MinMaxScaler: {buffer} must have {expected} values (one per feature, in the scaler's fixed order), got {got}"
    )]
    WrongLength {
        /// `"row"` or `"output"`.
        buffer: &'static str,
        /// The scaler's number of features.
        expected: usize,
        /// The rejected length.
        got: usize,
    },
    /// A value is NaN, infinite or larger in magnitude than
    /// [`MAX_INPUT_MAGNITUDE`](crate::MAX_INPUT_MAGNITUDE).
    #[error(
        "MinMaxScaler: feature {feature} must be finite with magnitude at most 1e100, got {value}; drop or impute it before scaling"
    )]
    InvalidValue {
        /// Index of the offending feature in the row.
        feature: usize,
        /// The rejected value.
        value: f64,
    },
}

/// Online min-max scaling of dense rows, with River's `preprocessing.MinMaxScaler` semantics.
///
/// Per feature, `learn` widens the running `[min, max]` (which starts empty) and `transform`
/// maps `x` to `(x - min) / (max - min)`, or to `0.0` when `max - min` is 0 (River's
/// `safe_div`) or when nothing has been learnt yet (where River would produce NaN). Values
/// outside the learnt range land outside `[0, 1]`, as in River; the `_clamped` variant clips
/// them to `[0, 1]`.
///
/// In a River pipeline the scaler learns a row before transforming it; [`learn_transform`]
/// does exactly that, so it gives River's numbers and always stays within `[0, 1]`.
///
/// Rows are dense slices in a fixed feature order (no per-feature hashing), so a row costs a
/// handful of nanoseconds.
///
/// ```
/// use anomaly_core::features::MinMaxScaler;
///
/// let mut scaler = MinMaxScaler::new(2)?;
/// let mut out = [0.0; 2];
/// scaler.learn_transform(&[1.0, 10.0], &mut out)?;
/// assert_eq!(out, [0.0, 0.0]); // one value seen: max - min = 0
/// scaler.learn_transform(&[3.0, 30.0], &mut out)?;
/// assert_eq!(out, [1.0, 1.0]);
/// scaler.transform(&[2.0, 50.0], &mut out)?;
/// assert_eq!(out, [0.5, 2.0]); // outside the learnt range
/// scaler.transform_clamped(&[2.0, 50.0], &mut out)?;
/// assert_eq!(out, [0.5, 1.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`learn_transform`]: MinMaxScaler::learn_transform
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "ScalerRepr", try_from = "ScalerRepr")]
pub struct MinMaxScaler {
    /// Rows learnt. Every row widens every feature, so one counter says whether the bounds
    /// are real; before the first row they hold +inf / -inf, which serde_json cannot write,
    /// hence the `ScalerRepr` indirection.
    rows: u64,
    min: Vec<f64>,
    max: Vec<f64>,
}

impl MinMaxScaler {
    /// A scaler for rows of `n_features` values (at least 1).
    pub fn new(n_features: usize) -> Result<Self, ParameterError> {
        check(
            n_features >= 1,
            "MinMaxScaler",
            "n_features",
            "at least 1",
            n_features,
        )?;
        Ok(Self {
            rows: 0,
            min: vec![f64::INFINITY; n_features],
            max: vec![f64::NEG_INFINITY; n_features],
        })
    }

    /// Number of features per row.
    pub fn n_features(&self) -> usize {
        self.min.len()
    }

    /// Rows learnt so far.
    pub fn rows_learned(&self) -> u64 {
        self.rows
    }

    /// The learnt `(min, max)` of feature `i`; `None` before the first row or out of range.
    pub fn bounds(&self, i: usize) -> Option<(f64, f64)> {
        if self.rows == 0 {
            return None;
        }
        Some((*self.min.get(i)?, *self.max.get(i)?))
    }

    /// Widens every feature's range to include `row`.
    pub fn learn(&mut self, row: &[f64]) -> Result<(), ScalerError> {
        self.check_row(row)?;
        self.learn_unchecked(row);
        Ok(())
    }

    /// Scales `row` into `out` with the ranges learnt so far (values outside them fall
    /// outside `[0, 1]`).
    pub fn transform(&self, row: &[f64], out: &mut [f64]) -> Result<(), ScalerError> {
        self.check_row(row)?;
        self.check_out(out)?;
        self.transform_unchecked(row, out, false);
        Ok(())
    }

    /// Like [`transform`](Self::transform), then clips every output to `[0, 1]`.
    pub fn transform_clamped(&self, row: &[f64], out: &mut [f64]) -> Result<(), ScalerError> {
        self.check_row(row)?;
        self.check_out(out)?;
        self.transform_unchecked(row, out, true);
        Ok(())
    }

    /// Learns `row`, then scales it into `out`: River's pipeline order, every output in
    /// `[0, 1]`.
    pub fn learn_transform(&mut self, row: &[f64], out: &mut [f64]) -> Result<(), ScalerError> {
        self.check_row(row)?;
        self.check_out(out)?;
        self.learn_unchecked(row);
        self.transform_unchecked(row, out, false);
        Ok(())
    }

    fn check_row(&self, row: &[f64]) -> Result<(), ScalerError> {
        if row.len() != self.min.len() {
            return Err(ScalerError::WrongLength {
                buffer: "row",
                expected: self.min.len(),
                got: row.len(),
            });
        }
        // `!(|x| <= MAX)` also catches NaN. The fold has no early exit so it vectorises; the
        // slow search for the culprit only runs on the error path.
        let ok = row.iter().fold(true, |ok, &x| ok & is_valid_value(x));
        if ok {
            return Ok(());
        }
        match row.iter().enumerate().find(|(_, x)| !is_valid_value(**x)) {
            Some((feature, &value)) => Err(ScalerError::InvalidValue { feature, value }),
            None => Ok(()),
        }
    }

    fn check_out(&self, out: &[f64]) -> Result<(), ScalerError> {
        if out.len() == self.min.len() {
            Ok(())
        } else {
            Err(ScalerError::WrongLength {
                buffer: "output",
                expected: self.min.len(),
                got: out.len(),
            })
        }
    }

    #[inline]
    fn learn_unchecked(&mut self, row: &[f64]) {
        for ((lo, hi), &x) in self.min.iter_mut().zip(self.max.iter_mut()).zip(row) {
            *lo = lo.min(x);
            *hi = hi.max(x);
        }
        self.rows = self.rows.saturating_add(1);
    }

    #[inline]
    fn transform_unchecked(&self, row: &[f64], out: &mut [f64], clamp: bool) {
        for (((o, &x), &lo), &hi) in out.iter_mut().zip(row).zip(&self.min).zip(&self.max) {
            let range = hi - lo;
            // `range > 0` is false both for a constant feature (River's 0.0) and before the
            // first row (range = -inf), so neither can produce NaN.
            let scaled = if range > 0.0 { (x - lo) / range } else { 0.0 };
            *o = if clamp {
                scaled.clamp(0.0, 1.0)
            } else {
                scaled
            };
        }
    }
}

/// Serialized form: bounds are omitted (empty) until a row has been learnt.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScalerRepr {
    n_features: usize,
    rows: u64,
    min: Vec<f64>,
    max: Vec<f64>,
}

impl From<MinMaxScaler> for ScalerRepr {
    fn from(s: MinMaxScaler) -> Self {
        let n_features = s.min.len();
        let (min, max) = if s.rows == 0 {
            (Vec::new(), Vec::new())
        } else {
            (s.min, s.max)
        };
        Self {
            n_features,
            rows: s.rows,
            min,
            max,
        }
    }
}

impl TryFrom<ScalerRepr> for MinMaxScaler {
    type Error = String;

    fn try_from(r: ScalerRepr) -> Result<Self, String> {
        let mut scaler = Self::new(r.n_features).map_err(|e| e.to_string())?;
        if r.rows == 0 {
            if r.min.is_empty() && r.max.is_empty() {
                return Ok(scaler);
            }
            return Err("MinMaxScaler: `min` and `max` must be empty when `rows` is 0".into());
        }
        let valid = r.min.len() == r.n_features
            && r.max.len() == r.n_features
            && r.min
                .iter()
                .zip(&r.max)
                .all(|(lo, hi)| is_valid_value(*lo) && is_valid_value(*hi) && lo <= hi);
        if !valid {
            return Err(
                "MinMaxScaler: `min` and `max` must hold `n_features` finite values with min <= max"
                    .into(),
            );
        }
        scaler.rows = r.rows;
        scaler.min = r.min;
        scaler.max = r.max;
        Ok(scaler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_before_learning_is_zero_not_nan() {
        let scaler = MinMaxScaler::new(3).unwrap();
        let mut out = [9.0; 3];
        scaler.transform(&[1.0, -5.0, 0.0], &mut out).unwrap();
        assert_eq!(out, [0.0; 3]);
        assert_eq!(scaler.bounds(0), None);
    }

    #[test]
    fn matches_river_semantics() {
        // River: learn_one then transform_one, per feature (x - min) / (max - min) or 0.
        let rows = [[5.0, 1.0], [3.0, 1.0], [7.0, 1.0], [4.0, 2.0]];
        let expected = [[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.25, 1.0]];
        let mut scaler = MinMaxScaler::new(2).unwrap();
        let mut out = [0.0; 2];
        for (row, want) in rows.iter().zip(expected) {
            scaler.learn_transform(row, &mut out).unwrap();
            assert_eq!(out, want);
        }
        assert_eq!(scaler.bounds(0), Some((3.0, 7.0)));
        assert_eq!(scaler.rows_learned(), 4);
    }

    #[test]
    fn bad_rows_are_rejected_untouched() {
        let mut scaler = MinMaxScaler::new(2).unwrap();
        scaler.learn(&[1.0, 2.0]).unwrap();
        let before = scaler.clone();
        let mut out = [0.0; 2];
        assert_eq!(
            scaler.learn(&[1.0]),
            Err(ScalerError::WrongLength {
                buffer: "row",
                expected: 2,
                got: 1
            })
        );
        assert!(matches!(
            scaler.learn_transform(&[0.0, f64::NAN], &mut out),
            Err(ScalerError::InvalidValue { feature: 1, .. })
        ));
        assert!(matches!(
            scaler.learn(&[f64::INFINITY, 0.0]),
            Err(ScalerError::InvalidValue { feature: 0, .. })
        ));
        assert!(matches!(
            scaler.learn_transform(&[0.0, 0.0], &mut [0.0; 3]),
            Err(ScalerError::WrongLength {
                buffer: "output",
                ..
            })
        ));
        assert_eq!(scaler, before);
        assert!(MinMaxScaler::new(0).is_err());
    }

    #[test]
    fn serde_round_trips_fresh_and_learnt() {
        let mut scaler = MinMaxScaler::new(2).unwrap();
        let json = serde_json::to_string(&scaler).unwrap();
        assert_eq!(serde_json::from_str::<MinMaxScaler>(&json).unwrap(), scaler);
        scaler.learn(&[1.0, -2.0]).unwrap();
        scaler.learn(&[3.0, 2.0]).unwrap();
        let json = serde_json::to_string(&scaler).unwrap();
        assert_eq!(serde_json::from_str::<MinMaxScaler>(&json).unwrap(), scaler);
        let bad = r#"{"n_features":1,"rows":1,"min":[2.0],"max":[1.0]}"#;
        assert!(serde_json::from_str::<MinMaxScaler>(bad).is_err());
    }
}
