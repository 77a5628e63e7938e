use std::borrow::Borrow;

use serde::{Deserialize, Serialize};

use super::event::{
    EventBuilder, EventDetector, FeatureNames, dense_row_detector, feature_list, score_named,
};
use super::{AnomalyError, Scored, Transient, sealed};
use crate::error::{ParameterError, check};
use crate::rng::PyRandom;

/// LODA's parameters (River's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LodaParams {
    /// Bins per histogram, >= 1. Default 10.
    pub n_bins: usize,
    /// Random projections (each with its own histogram), >= 1. Default 100.
    pub n_random_cuts: usize,
    /// Seed of the projections (drawn with Python's generator, as River does, so a seed gives
    /// River's projections); `None` picks one at random.
    pub seed: Option<u64>,
}

impl Default for LodaParams {
    fn default() -> Self {
        Self {
            n_bins: 10,
            n_random_cuts: 100,
            seed: None,
        }
    }
}

/// A streaming histogram bin: `[left, right]` holding `count` values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Bin {
    left: f64,
    right: f64,
    count: u64,
}

/// River's `sketch.Histogram` (Ben-Haim and Tom-Tov): at most `max_bins` bins, merging the
/// two whose right edges are closest when one too many.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Histogram {
    bins: Vec<Bin>,
    n: u64,
}

impl Histogram {
    fn update(&mut self, z: f64, max_bins: usize) {
        self.n = self.n.saturating_add(1);
        let bins = &mut self.bins;
        let lo = bins.partition_point(|b| b.right < z);
        if lo == bins.len() {
            bins.push(Bin {
                left: z,
                right: z,
                count: 1,
            });
        } else if z >= bins[lo].left {
            bins[lo].count += 1;
        } else {
            bins.insert(
                lo,
                Bin {
                    left: z,
                    right: z,
                    count: 1,
                },
            );
        }
        if bins.len() > max_bins {
            let mut best = 1;
            let mut best_diff = f64::INFINITY;
            for idx in 1..bins.len() {
                let diff = bins[idx].right - bins[idx - 1].right;
                if diff < best_diff {
                    best_diff = diff;
                    best = idx;
                }
            }
            let merged = bins.remove(best);
            let into = &mut bins[best - 1];
            into.left = into.left.min(merged.left);
            into.right = into.right.max(merged.right);
            into.count += merged.count;
        }
    }

    fn density(&self, z: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let n = self.n as f64;
        for (i, b) in self.bins.iter().enumerate() {
            if z > b.right {
                continue;
            }
            if z < b.left {
                return 0.0;
            }
            let share = b.count as f64 / n;
            let width = b.right - b.left;
            if width > 0.0 {
                return share / width;
            }
            // A single-value bin borrows the gap to its nearest neighbour as its width.
            let left_gap = match i.checked_sub(1) {
                Some(prev) => b.left - self.bins[prev].right,
                None => f64::INFINITY,
            };
            let right_gap = match self.bins.get(i + 1) {
                Some(next) => next.left - b.right,
                None => f64::INFINITY,
            };
            let width = left_gap.min(right_gap);
            if !width.is_finite() || width <= 0.0 {
                return share;
            }
            return share / width;
        }
        0.0
    }
}

/// One random cut: a sparse projection and the histogram of the projected values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Cut {
    projection: Vec<(u32, f64)>,
    histogram: Histogram,
}

/// Lightweight On-line Detector of Anomalies (River's `anomaly.LODA`): many sparse random
/// projections of the event, each with a streaming histogram; the score is the mean negative
/// log density of the event's projections, so rare regions score high (unbounded; about
/// 27.6 for an event outside every histogram).
///
/// Good for many features at a fixed, small cost: `n_random_cuts` projections of about
/// `sqrt(features)` features each, and a histogram lookup per projection; memory
/// `n_random_cuts · (sqrt(features) + n_bins)`. The features are fixed by the first event
/// learned (River's rule): features first seen later are ignored.
///
/// ```
/// use anomaly_core::anomaly::{AnomalyDetector, Loda, LodaParams};
///
/// let params = LodaParams { seed: Some(42), ..LodaParams::default() };
/// let mut loda = Loda::with_features(params, &["amount", "hour", "distance"])?;
/// for i in 0..1000 {
///     let t = (i % 10) as f64 / 10.0;
///     loda.score(&[t, 1.0 - t, 0.5][..])?.learn();
/// }
/// let usual = loda.score(&[0.3, 0.7, 0.5][..])?.score();
/// let odd = loda.score(&[5.0, -3.0, 9.0][..])?.score();
/// assert!(odd > usual + 10.0, "{usual} {odd}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LodaState")]
pub struct Loda {
    params: LodaParams,
    seed: u64,
    features: FeatureNames,
    cuts: Vec<Cut>,
    #[serde(skip)]
    builder: Transient<EventBuilder>,
    /// The event's values by feature id (0 where missing), for the projections.
    #[serde(skip)]
    values: Transient<Vec<f64>>,
}

#[derive(Deserialize)]
struct LodaState {
    params: LodaParams,
    seed: u64,
    features: FeatureNames,
    cuts: Vec<Cut>,
}

impl TryFrom<LodaState> for Loda {
    type Error = String;

    fn try_from(state: LodaState) -> Result<Self, String> {
        let model = Self::new(state.params).map_err(|e| e.to_string())?;
        let n_features = state.features.len();
        let cuts_ok = state.cuts.is_empty() || state.cuts.len() == state.params.n_random_cuts;
        let valid = state.cuts.iter().all(|cut| {
            let h = &cut.histogram;
            !cut.projection.is_empty()
                && cut
                    .projection
                    .iter()
                    .all(|(id, w)| (*id as usize) < n_features && w.is_finite())
                && h.bins.len() <= state.params.n_bins
                && h.bins
                    .iter()
                    .try_fold(0u64, |sum, b| sum.checked_add(b.count))
                    == Some(h.n)
                && h.n < u64::MAX / 2
                && h.bins.iter().all(|b| b.left <= b.right && b.count > 0)
                && h.bins.windows(2).all(|w| w[0].right < w[1].left)
        });
        if !cuts_ok || !valid {
            return Err("projections or histograms are inconsistent".into());
        }
        Ok(Self {
            seed: state.seed,
            features: state.features,
            cuts: state.cuts,
            ..model
        })
    }
}

/// `random.gauss(0.0, 1.0)` of CPython 3.11, which keeps the second normal of each
/// Box–Muller pair for the next call.
fn python_gauss(rng: &mut PyRandom, cached: &mut Option<f64>) -> f64 {
    let z = match cached.take() {
        Some(z) => z,
        None => {
            let u1 = rng.random();
            let u2 = rng.random();
            let x2pi = u1 * std::f64::consts::TAU;
            let g2rad = (-2.0 * (1.0 - u2).ln()).sqrt();
            *cached = Some(x2pi.sin() * g2rad);
            x2pi.cos() * g2rad
        }
    };
    0.0 + z * 1.0
}

impl Loda {
    /// A detector whose features are those of the first named event it learns
    /// ([`Loda::score_named`]).
    pub fn new(params: LodaParams) -> Result<Self, ParameterError> {
        check(
            params.n_bins >= 1,
            "LODA",
            "n_bins",
            "at least 1",
            params.n_bins,
        )?;
        check(
            (1..=100_000).contains(&params.n_random_cuts),
            "LODA",
            "n_random_cuts",
            "in 1..=100000",
            params.n_random_cuts,
        )?;
        Ok(Self {
            params,
            seed: params.seed.unwrap_or_else(rand::random),
            features: FeatureNames::default(),
            cuts: Vec::new(),
            builder: Transient(EventBuilder::default()),
            values: Transient(Vec::new()),
        })
    }

    /// A detector over a fixed list of features, scored with dense rows in that order.
    pub fn with_features<S: AsRef<str>>(
        params: LodaParams,
        features: &[S],
    ) -> Result<Self, AnomalyError> {
        let mut model = Self::new(params)?;
        model.features = feature_list("LODA", features)?;
        Ok(model)
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &LodaParams {
        &self.params
    }

    /// Feature names: those given, or learned from named events (the projections use those
    /// of the first learned event).
    pub fn features(&self) -> &[String] {
        self.features.names()
    }

    /// The seed the projections are (or will be) drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The projections, once the first event was learned: per cut, `(feature, weight)` in
    /// summation order.
    pub fn projections(&self) -> Vec<Vec<(&str, f64)>> {
        let names = self.features.names();
        self.cuts
            .iter()
            .map(|cut| {
                cut.projection
                    .iter()
                    .map(|&(id, w)| (names[id as usize].as_str(), w))
                    .collect()
            })
            .collect()
    }

    /// Each cut's histogram bins as `(left, right, count)`.
    pub fn histograms(&self) -> Vec<Vec<(f64, f64, u64)>> {
        self.cuts
            .iter()
            .map(|cut| {
                cut.histogram
                    .bins
                    .iter()
                    .map(|b| (b.left, b.right, b.count))
                    .collect()
            })
            .collect()
    }

    /// Scores an event given as named features; missing features count as 0.
    ///
    /// ```
    /// use anomaly_core::anomaly::{Loda, LodaParams};
    ///
    /// let mut loda = Loda::new(LodaParams { seed: Some(1), ..LodaParams::default() })?;
    /// let scored = loda.score_named([("amount", 0.4), ("hour", 0.9)])?;
    /// assert_eq!(scored.score(), 0.0); // nothing learned yet
    /// scored.learn(); // draws the projections over amount and hour
    /// assert_eq!(loda.projections().len(), 100);
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

    /// Draws the projections over the features of the first learned event, exactly as River.
    fn initialise(&mut self) {
        let mut sorted: Vec<u32> = self.builder.0.event.ids.clone();
        sorted.sort_by(|a, b| {
            self.features.names()[*a as usize].cmp(&self.features.names()[*b as usize])
        });
        let d = sorted.len();
        let m = ((d as f64).sqrt() as usize).max(1);
        let mut rng = PyRandom::new(self.seed);
        let mut cached = None;
        let mut chosen = Vec::with_capacity(m);
        self.cuts = (0..self.params.n_random_cuts)
            .map(|_| {
                rng.sample_range(d as u32, m as u32, &mut chosen);
                let projection = chosen
                    .iter()
                    .map(|&j| (sorted[j as usize], python_gauss(&mut rng, &mut cached)))
                    .collect();
                Cut {
                    projection,
                    histogram: Histogram::default(),
                }
            })
            .collect();
    }

    /// Spreads the built event over a dense array by feature id (0 where missing).
    fn scatter(&mut self) {
        let values = &mut self.values.0;
        values.clear();
        values.resize(self.features.len(), 0.0);
        for (id, v) in self.builder.0.event.iter() {
            if let Some(slot) = values.get_mut(id as usize) {
                *slot = v;
            }
        }
    }

    fn learn_built(&mut self) {
        self.builder.0.commit(&mut self.features);
        if self.cuts.is_empty() {
            self.initialise();
        }
        self.scatter();
        let values = &self.values.0;
        for cut in &mut self.cuts {
            let z = project(&cut.projection, values);
            cut.histogram.update(z, self.params.n_bins);
        }
    }
}

fn project(projection: &[(u32, f64)], values: &[f64]) -> f64 {
    let mut z = 0.0;
    for &(id, w) in projection {
        z += w * values.get(id as usize).copied().unwrap_or(0.0);
    }
    z
}

impl EventDetector for Loda {
    fn builder_and_names(&mut self) -> (&mut EventBuilder, &FeatureNames) {
        (&mut self.builder.0, &self.features)
    }

    fn build_named<K, V, M>(&mut self, x: M) -> Result<(), AnomalyError>
    where
        M: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Borrow<f64>,
    {
        self.builder.0.named("LODA", &self.features, x)?;
        if self.cuts.is_empty() && self.builder.0.event.len() == 0 {
            return Err(AnomalyError::NotReady {
                model: "LODA",
                reason: "the first event learned fixes the features, so it must have at least one",
            });
        }
        Ok(())
    }

    fn score_built(&mut self) -> Result<(f64, sealed::Ready), AnomalyError> {
        if self.cuts.is_empty() {
            return Ok((0.0, sealed::Ready(())));
        }
        self.scatter();
        let values = &self.values.0;
        let mut score = 0.0;
        for cut in &self.cuts {
            let density = cut.histogram.density(project(&cut.projection, values));
            score -= (if 1e-12 > density { 1e-12 } else { density }).ln();
        }
        Ok((score / self.cuts.len() as f64, sealed::Ready(())))
    }
}

dense_row_detector!(Loda, "LODA");
