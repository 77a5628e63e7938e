//! Events with named features, the way River's dict inputs behave: a feature may be missing
//! from an event, a new one may appear late, and the order features come in is kept, because
//! River sums over a dict in its insertion order and a different order gives different bits.

use std::borrow::Borrow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{AnomalyDetector, AnomalyError, Scored};
use crate::error::{ParameterError, check, check_input};

/// The most distinct feature names one model accepts; beyond it an event is rejected, so a
/// stream of ever-new names cannot grow a model without bound.
pub const MAX_FEATURES: usize = 10_000;

/// The feature names a model knows, in the order it first learned them; a feature's id is its
/// position here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub(crate) struct FeatureNames {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl TryFrom<Vec<String>> for FeatureNames {
    type Error = String;

    fn try_from(names: Vec<String>) -> Result<Self, String> {
        if names.len() > MAX_FEATURES {
            return Err(format!(
                "{} feature names, at most {MAX_FEATURES}",
                names.len()
            ));
        }
        let mut out = Self::default();
        for name in names {
            if out.index.contains_key(&name) {
                return Err(format!("feature `{name}` is listed twice"));
            }
            out.push(name);
        }
        Ok(out)
    }
}

impl From<FeatureNames> for Vec<String> {
    fn from(names: FeatureNames) -> Self {
        names.names
    }
}

impl FeatureNames {
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub(crate) fn push(&mut self, name: String) -> u32 {
        let id = self.names.len() as u32;
        self.index.insert(name.clone(), id);
        self.names.push(name);
        id
    }
}

/// One event: `(feature id, value)` pairs in the order the caller gave them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Event {
    pub(crate) ids: Vec<u32>,
    pub(crate) values: Vec<f64>,
}

impl Event {
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.ids.iter().copied().zip(self.values.iter().copied())
    }

    /// The value of feature `id`, if the event has it.
    pub(crate) fn get(&self, id: u32) -> Option<f64> {
        self.ids
            .iter()
            .position(|&i| i == id)
            .map(|at| self.values[at])
    }

    /// Every id is below `n_features` (what a loaded snapshot must hold).
    pub(crate) fn ids_below(&self, n_features: usize) -> bool {
        self.ids.len() == self.values.len() && self.ids.iter().all(|&i| (i as usize) < n_features)
    }
}

/// Turns caller input into an [`Event`], without touching the model: names the model has not
/// learned yet get provisional ids (after the known ones) that become real only when the event
/// is learned, so scoring and then dropping an event leaves the model as it was.
#[derive(Clone, Debug, Default)]
pub(crate) struct EventBuilder {
    pub(crate) event: Event,
    provisional: Vec<String>,
}

impl EventBuilder {
    /// A dense row: one value per known feature, in the order of [`FeatureNames`].
    pub(crate) fn dense(
        &mut self,
        model: &'static str,
        names: &FeatureNames,
        row: &[f64],
    ) -> Result<(), AnomalyError> {
        if names.len() == 0 {
            return Err(AnomalyError::NotReady {
                model,
                reason: "features are unknown until one is named; use score_named, or build with with_features",
            });
        }
        if row.len() != names.len() {
            return Err(AnomalyError::RowLength {
                expected: names.len(),
                got: row.len(),
            });
        }
        for (value, name) in row.iter().zip(names.names()) {
            check_feature(model, name, *value)?;
        }
        self.provisional.clear();
        self.event.ids.clear();
        self.event.ids.extend(0..row.len() as u32);
        self.event.values.clear();
        self.event.values.extend_from_slice(row);
        Ok(())
    }

    /// Named values in any order; a name given twice keeps its first position and its last
    /// value, as a dict would.
    pub(crate) fn named<K, V, M>(
        &mut self,
        model: &'static str,
        names: &FeatureNames,
        x: M,
    ) -> Result<(), AnomalyError>
    where
        M: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Borrow<f64>,
    {
        self.provisional.clear();
        self.event.ids.clear();
        self.event.values.clear();
        for (name, value) in x {
            let (name, value) = (name.as_ref(), *value.borrow());
            check_feature(model, name, value)?;
            let id = match names.get(name) {
                Some(id) => id,
                None => match self.provisional.iter().position(|p| p == name) {
                    Some(at) => (names.len() + at) as u32,
                    None => {
                        if names.len() + self.provisional.len() >= MAX_FEATURES {
                            return Err(AnomalyError::TooManyFeatures {
                                model,
                                limit: MAX_FEATURES,
                            });
                        }
                        self.provisional.push(name.to_owned());
                        (names.len() + self.provisional.len() - 1) as u32
                    }
                },
            };
            match self.event.ids.iter().position(|&i| i == id) {
                Some(at) => self.event.values[at] = value,
                None => {
                    self.event.ids.push(id);
                    self.event.values.push(value);
                }
            }
        }
        Ok(())
    }

    /// Makes the provisional names of the built event real (when it is learned).
    pub(crate) fn commit(&mut self, names: &mut FeatureNames) {
        for name in self.provisional.drain(..) {
            names.push(name);
        }
    }
}

fn check_feature(model: &'static str, name: &str, value: f64) -> Result<(), AnomalyError> {
    check_input(model, value)
        .map(|_| ())
        .map_err(|source| AnomalyError::BadFeature {
            feature: name.to_owned(),
            source,
        })
}

/// A detector whose events are built by an [`EventBuilder`]; gives it `score_named`.
pub(crate) trait EventDetector: AnomalyDetector {
    /// The detector's builder and the feature names it knows.
    fn builder_and_names(&mut self) -> (&mut EventBuilder, &FeatureNames);

    /// Builds the event from named values into the detector's builder.
    fn build_named<K, V, M>(&mut self, x: M) -> Result<(), AnomalyError>
    where
        M: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Borrow<f64>,
    {
        let (builder, names) = self.builder_and_names();
        builder.named(Self::NAME, names, x)
    }

    /// Scores the event the builder holds.
    fn score_built(&mut self) -> Result<(Self::Score, Self::Pending), AnomalyError>;
}

/// `score_named` for any [`EventDetector`].
pub(crate) fn score_named<D, K, V, M>(detector: &mut D, x: M) -> Result<Scored<'_, D>, AnomalyError>
where
    D: EventDetector,
    M: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: Borrow<f64>,
{
    detector.build_named(x)?;
    let (score, pending) = detector.score_built()?;
    Ok(Scored {
        detector,
        score,
        pending: Some(pending),
    })
}

/// Validates a fixed feature list for `with_features`.
pub(crate) fn feature_list<S: AsRef<str>>(
    model: &'static str,
    features: &[S],
) -> Result<FeatureNames, ParameterError> {
    let names: Vec<String> = features.iter().map(|f| f.as_ref().to_owned()).collect();
    let shown = format!("{names:?}");
    check(
        !names.is_empty(),
        model,
        "features",
        "at least one name",
        &shown,
    )?;
    FeatureNames::try_from(names)
        .map_err(|_| ParameterError::new(model, "features", "distinct names, at most 10000", shown))
}

/// The score-then-learn plumbing of a detector over dense rows whose events are built by its
/// `builder` over its `features`, scored by [`EventDetector::score_built`] and learned by its
/// `learn_built` method.
macro_rules! dense_row_detector {
    ($detector:ty, $name:literal) => {
        impl $crate::anomaly::sealed::Detector for $detector {
            type Pending = $crate::anomaly::sealed::Ready;
            type Input = [f64];
            type Score = f64;

            fn score_pending(
                &mut self,
                row: &[f64],
                _: $crate::anomaly::sealed::Token,
            ) -> Result<(f64, Self::Pending), $crate::anomaly::AnomalyError> {
                self.builder.0.dense($name, &self.features, row)?;
                $crate::anomaly::event::EventDetector::score_built(self)
            }

            fn learn_pending(&mut self, _: Self::Pending, _: $crate::anomaly::sealed::Token) {
                self.learn_built();
            }

            fn abandon_pending(&mut self, _: Self::Pending, _: $crate::anomaly::sealed::Token) {}
        }

        impl $crate::anomaly::AnomalyDetector for $detector {
            const NAME: &'static str = $name;
        }
    };
}
pub(crate) use dense_row_detector;
