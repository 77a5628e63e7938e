//! Random Cut Forest (Guha et al., 2016), with the semantics of AWS's implementation
//! (`aws/random-cut-forest-by-aws`): time-decayed reservoir samples, random cut trees over
//! them, the displacement-based anomaly score and its per-feature attribution.

mod sampler;
mod store;
mod tree;

use serde::{Deserialize, Serialize};

use super::event::feature_list;
use super::{AnomalyDetector, AnomalyError, FeatureContribution, Scored, Transient, sealed};
use crate::error::{ParameterError, check, check_input};
use sampler::{Decision, Sampler};
use store::PointStore;
use tree::{Tree, next_f64, next_u64};

/// Random Cut Forest's parameters (AWS's names and defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RcfParams {
    /// Trees, >= 1. Default 50.
    pub number_of_trees: usize,
    /// Points each tree samples (AWS's `sample_size` / tree capacity), 2..=65536. Default 256.
    pub sample_size: usize,
    /// How fast old points fade from the samples, >= 0 (0 = a uniform sample of everything);
    /// `None` is AWS's default `0.1 / sample_size`.
    pub time_decay: Option<f64>,
    /// Consecutive events forming one point (internal shingling, for time series), >= 1.
    /// Default 1.
    pub shingle_size: usize,
    /// Scores are 0 until this many points were learned; `None` is AWS's `1 + sample_size / 4`.
    pub output_after: Option<u64>,
    /// While a sample fills, the fraction of it taken without competing, in (0, 1]. Default
    /// 0.125 (AWS's Rust default).
    pub initial_accept_fraction: f64,
    /// Seed of the samplers and the cuts; `None` picks one at random.
    pub seed: Option<u64>,
}

impl Default for RcfParams {
    fn default() -> Self {
        Self {
            number_of_trees: 50,
            sample_size: 256,
            time_decay: None,
            shingle_size: 1,
            output_after: None,
            initial_accept_fraction: 0.125,
            seed: None,
        }
    }
}

/// A score split by feature and direction (AWS's `DiVector`): `high[i]` is the part due to
/// the event lying above what the trees hold in feature `i`, `low[i]` below. All parts add up
/// to the score.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attribution {
    /// Per feature (per shingled position with shingling): above the data.
    pub high: Vec<f64>,
    /// Per feature: below the data.
    pub low: Vec<f64>,
}

impl Attribution {
    /// The sum of every part: the score.
    pub fn total(&self) -> f64 {
        self.high.iter().chain(&self.low).sum()
    }
}

/// A tree with the sampler that feeds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SampledTree {
    sampler: Sampler,
    tree: Tree,
}

/// Random Cut Forest (AWS's semantics): each tree holds a time-decayed random sample of the
/// points seen and cuts space at random in proportion to the sample's ranges; an event scores
/// by how much it would displace the trees, about 1 for an ordinary event, larger for an
/// anomaly (at most `log2(1 + sample_size)`, ≈ 8 for 256). Scores adapt to the data's own
/// ranges, so no scaling is needed; [`Scored::attribution`] says which features, and in which
/// direction, made the score.
///
/// Scoring costs a walk down each tree and back up while the event is outside the boxes
/// (O(trees · depth · features)); learning a point, one insertion and at most one deletion
/// per tree that samples it. Memory: the sample once (points shared by the trees, as `f32`)
/// and per tree `2 · sample_size` nodes with cached boxes.
///
/// Differences from AWS's Rust code, all documented in docs/ANOMALY.md: its own random number
/// streams (so not the same forest for a seed), true leaf masses for repeated points (as AWS's
/// Java), and an even split of the score in the attribution of a point the trees hold exactly.
///
/// ```
/// use anomaly_core::anomaly::{AnomalyDetector, RandomCutForest, RcfParams};
///
/// let params = RcfParams { seed: Some(7), ..RcfParams::default() };
/// let mut forest = RandomCutForest::with_features(params, &["amount", "hour"])?;
/// for i in 0..2000 {
///     let t = (i % 50) as f64 / 50.0;
///     forest.score(&[10.0 + t, 12.0 + t][..])?.learn();
/// }
/// let usual = forest.score(&[10.5, 12.5][..])?.score();
/// let odd = forest.score(&[10.5, 30.0][..])?;
/// assert!(usual < 1.2 && odd.score() > 2.0, "{usual} {}", odd.score());
/// assert_eq!(odd.explain()[0].feature, "hour");
/// assert!(odd.attribution().high[1] > odd.score() * 0.8); // hour, above the data
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ForestState")]
pub struct RandomCutForest {
    params: RcfParams,
    features: Vec<String>,
    seed: u64,
    store: PointStore,
    trees: Vec<SampledTree>,
    /// Points learned (full shingles).
    entries_seen: u64,
    /// Events learned (shingling counts these).
    values_seen: u64,
    /// The latest shingle, oldest values first.
    shingle: Vec<f32>,
    #[serde(skip)]
    scratch: Transient<Scratch>,
}

#[derive(Clone, Debug, Default)]
struct Scratch {
    query: Vec<f32>,
    row: Vec<f32>,
    path: Vec<u32>,
    /// The walks of [`Tree::descend_many`].
    paths: [Vec<u32>; WALKS],
}

/// Trees walked down at once when scoring.
const WALKS: usize = 4;

#[derive(Deserialize)]
struct ForestState {
    params: RcfParams,
    features: Vec<String>,
    seed: u64,
    store: PointStore,
    trees: Vec<SampledTree>,
    entries_seen: u64,
    values_seen: u64,
    shingle: Vec<f32>,
}

impl TryFrom<ForestState> for RandomCutForest {
    type Error = String;

    fn try_from(mut s: ForestState) -> Result<Self, String> {
        check_params(&s.params).map_err(|e| e.to_string())?;
        feature_list("RCF", &s.features).map_err(|e| e.to_string())?;
        let dim = s.features.len() * s.params.shingle_size;
        if s.trees.len() != s.params.number_of_trees
            || s.shingle.len() != dim
            || !s.shingle.iter().all(|v| v.is_finite())
            || s.store.dim() != dim
        {
            return Err("the forest's shape does not match its parameters".into());
        }
        let mut counts = vec![0u32; s.store.slots()];
        for t in &mut s.trees {
            if !t.sampler.valid(s.params.sample_size) || t.tree.capacity() != s.params.sample_size {
                return Err("a sampler is not a valid sample".into());
            }
            let mut held = vec![0u32; counts.len()];
            t.tree.rebuild_and_check(&s.store, &mut held)?;
            // The tree holds exactly the sampler's points (an equal point counted on its leaf).
            let mut sampled = vec![0u32; counts.len()];
            for &p in t.sampler.points() {
                let slot = sampled
                    .get_mut(p as usize)
                    .ok_or("a sampled point is out of range")?;
                *slot += 1;
            }
            if sampled != held {
                return Err("a tree does not hold its sampler's points".into());
            }
            for (c, h) in counts.iter_mut().zip(&held) {
                *c += h;
            }
        }
        if !s.store.consistent_with(&counts) {
            return Err("the point store's references are inconsistent".into());
        }
        Ok(Self {
            params: s.params,
            features: s.features,
            seed: s.seed,
            store: s.store,
            trees: s.trees,
            entries_seen: s.entries_seen,
            values_seen: s.values_seen,
            shingle: s.shingle,
            scratch: Transient(Scratch::default()),
        })
    }
}

impl RandomCutForest {
    /// A forest over `features` (dense rows in that order).
    pub fn with_features<S: AsRef<str>>(
        params: RcfParams,
        features: &[S],
    ) -> Result<Self, ParameterError> {
        let names = feature_list("RCF", features)?;
        check_params(&params)?;
        let p = &params;
        let features: Vec<String> = names.names().to_vec();
        let dim = features.len() * p.shingle_size;
        let seed = p.seed.unwrap_or_else(rand::random);
        let mut seeds = seed;
        let trees = (0..p.number_of_trees)
            .map(|_| SampledTree {
                sampler: Sampler::default(),
                tree: Tree::new(p.sample_size, dim, next_u64(&mut seeds)),
            })
            .collect();
        Ok(Self {
            store: PointStore::new(dim),
            shingle: vec![0.0; dim],
            params,
            features,
            seed,
            trees,
            entries_seen: 0,
            values_seen: 0,
            scratch: Transient(Scratch::default()),
        })
    }

    /// The parameters this forest was built with.
    pub fn params(&self) -> &RcfParams {
        &self.params
    }

    /// Feature names, in row order.
    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// The seed the samplers and cuts were drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Points learned (full shingles).
    pub fn entries_seen(&self) -> u64 {
        self.entries_seen
    }

    /// Points each tree holds now (duplicates counted).
    pub fn tree_masses(&self) -> Vec<u32> {
        self.trees.iter().map(|t| t.tree.mass()).collect()
    }

    /// Distinct points stored for all trees.
    pub fn stored_points(&self) -> usize {
        self.store.live()
    }

    /// Bytes of the model's point store and trees (its memory, give or take the vectors'
    /// headers).
    pub fn memory_bytes(&self) -> usize {
        self.store.bytes()
            + self
                .trees
                .iter()
                .map(|t| t.tree.bytes() + t.sampler.len() * 8)
                .sum::<usize>()
    }

    /// The time decay in use.
    pub fn time_decay(&self) -> f64 {
        self.params
            .time_decay
            .unwrap_or(0.1 / self.params.sample_size as f64)
    }

    fn output_after(&self) -> u64 {
        self.params
            .output_after
            .unwrap_or(1 + self.params.sample_size as u64 / 4)
    }

    /// Whether scores are real yet (`output_after` points learned); before, they are 0.
    pub fn is_ready(&self) -> bool {
        self.entries_seen >= self.output_after()
    }

    /// A score mapped to [0, 1]: the fraction of the largest score a tree can give,
    /// `score / log2(1 + sample_size)`.
    pub fn normalize(&self, score: f64) -> f64 {
        (score / (1.0 + self.params.sample_size as f64).log2()).clamp(0.0, 1.0)
    }

    /// Every tree's boxes hold exactly its points and its masses equal its leaves' counts,
    /// and every sampler holds at most `sample_size` points (for tests).
    #[doc(hidden)]
    pub fn invariants_hold(&self) -> bool {
        self.trees.iter().all(|t| {
            t.sampler.len() <= self.params.sample_size
                && t.sampler.len() == t.tree.mass() as usize
                && t.tree.invariants_hold(&self.store)
        })
    }

    /// Checks and converts a row into `scratch.row`.
    fn read_row(&mut self, row: &[f64]) -> Result<(), AnomalyError> {
        if row.len() != self.features.len() {
            return Err(AnomalyError::RowLength {
                expected: self.features.len(),
                got: row.len(),
            });
        }
        let out = &mut self.scratch.0.row;
        out.clear();
        for (value, name) in row.iter().zip(&self.features) {
            let bad = |source| AnomalyError::BadFeature {
                feature: name.clone(),
                source,
            };
            check_input("RCF", *value).map_err(bad)?;
            let single = *value as f32;
            if !single.is_finite() {
                return Err(bad(crate::InputError::TooLarge {
                    model: "RCF",
                    value: *value,
                }));
            }
            out.push(single);
        }
        Ok(())
    }

    /// The point learning the row would add: the shingle shifted by one event.
    fn build_query(&mut self) {
        let s = &mut self.scratch.0;
        let base = self.features.len();
        s.query.clear();
        s.query.extend_from_slice(&self.shingle[base..]);
        s.query.extend_from_slice(&s.row);
    }

    fn score_query(&mut self) -> f64 {
        if !self.is_ready() {
            return 0.0;
        }
        let s = &mut self.scratch.0;
        // Trees hold equal masses once full: one logarithm for a run of them.
        let (mut mass, mut scale) = (0, 0.0);
        let mut total = 0.0;
        let mut add = |tree: &Tree, unscaled: f64| {
            if tree.mass() != mass {
                mass = tree.mass();
                scale = (1.0 + f64::from(mass)).log2();
            }
            total += unscaled * scale;
        };
        let groups = self.trees.chunks_exact(WALKS);
        let rest = groups.remainder();
        for group in groups {
            let trees: [&Tree; WALKS] = std::array::from_fn(|k| &group[k].tree);
            let hits = Tree::descend_many(trees, &s.query, &self.store, s.paths.each_mut());
            for ((tree, hit), path) in trees.into_iter().zip(hits).zip(&s.paths) {
                add(tree, tree.unscaled_score_after(hit, &s.query, path));
            }
        }
        for t in rest {
            add(
                &t.tree,
                t.tree.unscaled_score(&s.query, &self.store, &mut s.path),
            );
        }
        total / self.trees.len() as f64
    }

    fn learn_query(&mut self) {
        self.shingle.copy_from_slice(&self.scratch.0.query);
        self.values_seen = self.values_seen.saturating_add(1);
        if self.values_seen < self.params.shingle_size as u64 {
            return;
        }
        let index = self.store.add(&self.scratch.0.query);
        let decay = self.time_decay();
        let capacity = self.params.sample_size;
        let t = self.entries_seen as f64;
        let iaf = self.params.initial_accept_fraction;
        for st in &mut self.trees {
            let rng = st.tree.rng();
            let u = next_f64(rng).max(f64::MIN_POSITIVE);
            let len = st.sampler.len();
            if len == capacity && st.sampler.surely_rejects(u, self.entries_seen, decay) {
                continue;
            }
            let weight = ((-u.ln()).ln() - t * decay) as f32;
            let initial = len < capacity && {
                let v = next_f64(rng);
                let fill = len as f64 / capacity as f64;
                let p = if fill < iaf {
                    1.0
                } else if iaf >= 1.0 {
                    0.0
                } else {
                    1.0 - (fill - iaf) / (1.0 - iaf)
                };
                v < p
            };
            match st.sampler.decide(weight, initial, capacity) {
                Decision::Reject => continue,
                Decision::Replace(old) => {
                    st.tree.delete(old, &self.store);
                    self.store.release(old);
                }
                Decision::Add => {}
            }
            let held = st.tree.insert(index, &self.store);
            self.store.retain(held);
            st.sampler.push(weight, held);
        }
        self.store.release_if_unheld(index);
        self.entries_seen = self.entries_seen.saturating_add(1);
    }

    fn attribution_of_query(&self) -> Attribution {
        let d = self.store.dim();
        let mut out = Attribution {
            high: vec![0.0; d],
            low: vec![0.0; d],
        };
        if self.entries_seen < self.output_after() {
            return out;
        }
        let mut path = Vec::new();
        for t in &self.trees {
            t.tree.attribute(
                &self.scratch.0.query,
                &self.store,
                &mut path,
                &mut out.high,
                &mut out.low,
            );
        }
        let n = self.trees.len() as f64;
        out.high
            .iter_mut()
            .chain(out.low.iter_mut())
            .for_each(|v| *v /= n);
        out
    }
}

/// Checks a forest's parameters without building anything (a snapshot's are checked before
/// its trees are looked at).
fn check_params(p: &RcfParams) -> Result<(), ParameterError> {
    check(
        p.number_of_trees >= 1 && p.number_of_trees <= 10_000,
        "RCF",
        "number_of_trees",
        "in 1..=10000",
        p.number_of_trees,
    )?;
    check(
        (2..=65_536).contains(&p.sample_size),
        "RCF",
        "sample_size",
        "in 2..=65536",
        p.sample_size,
    )?;
    check(
        (1..=1_000).contains(&p.shingle_size),
        "RCF",
        "shingle_size",
        "in 1..=1000",
        p.shingle_size,
    )?;
    if let Some(decay) = p.time_decay {
        check(
            decay >= 0.0 && decay.is_finite(),
            "RCF",
            "time_decay",
            "a finite number >= 0",
            decay,
        )?;
    }
    check(
        p.initial_accept_fraction > 0.0 && p.initial_accept_fraction <= 1.0,
        "RCF",
        "initial_accept_fraction",
        "in (0, 1]",
        p.initial_accept_fraction,
    )?;
    Ok(())
}

impl Scored<'_, RandomCutForest> {
    /// The score split by feature and direction (with shingling, by shingle position: the
    /// latest event's features are the last `features().len()` entries).
    pub fn attribution(&self) -> Attribution {
        self.detector().attribution_of_query()
    }

    /// The features that made the score, largest share first: each feature's share of the
    /// score (high and low, over every shingle position), zero shares left out.
    pub fn explain(&self) -> Vec<FeatureContribution> {
        let forest = self.detector();
        let a = forest.attribution_of_query();
        let total = a.total();
        if total <= 0.0 {
            return Vec::new();
        }
        let base = forest.features.len();
        let mut shares = vec![0.0; base];
        for (i, (h, l)) in a.high.iter().zip(&a.low).enumerate() {
            shares[i % base] += (h + l) / total;
        }
        let mut out: Vec<FeatureContribution> = forest
            .features
            .iter()
            .zip(shares)
            .filter(|(_, share)| *share > 0.0)
            .map(|(feature, share)| FeatureContribution {
                feature: feature.clone(),
                share,
            })
            .collect();
        out.sort_by(|a, b| b.share.total_cmp(&a.share));
        out
    }
}

impl sealed::Detector for RandomCutForest {
    type Pending = sealed::Ready;
    type Input = [f64];
    type Score = f64;

    fn score_pending(
        &mut self,
        row: &[f64],
        _: sealed::Token,
    ) -> Result<(f64, sealed::Ready), AnomalyError> {
        self.read_row(row)?;
        self.build_query();
        Ok((self.score_query(), sealed::Ready(())))
    }

    fn learn_pending(&mut self, _: sealed::Ready, _: sealed::Token) {
        self.learn_query();
    }

    fn abandon_pending(&mut self, _: sealed::Ready, _: sealed::Token) {}
}

impl AnomalyDetector for RandomCutForest {
    const NAME: &'static str = "RCF";
}
