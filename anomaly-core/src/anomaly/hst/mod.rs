//! HalfSpaceTrees (Tan, Ting & Liu, 2011), River's `anomaly.HalfSpaceTrees`.

mod build;
mod flat;
mod forest;

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use self::forest::{Dense, Forest, ForestRecord, NodeAt, Row, Sparse, Walk};
use super::{AnomalyDetector, AnomalyError, Scored, sealed};
use crate::error::{ParameterError, check, check_input};
use crate::rng::PyRandom;

/// Which generator grows the trees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeRng {
    /// ChaCha8 (`rand_chacha`): fast, portable, the default.
    #[default]
    ChaCha,
    /// Python's `random.Random`: the very trees River grows for the same seed.
    River,
}

/// HalfSpaceTrees' parameters, with River's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HstParams {
    /// Number of trees. Default 10.
    pub n_trees: u32,
    /// Levels of splits per tree (a tree has `2^(height+1) - 1` nodes). Default 8.
    pub height: u32,
    /// Events per window: masses are compared with the previous full window. Default 250.
    pub window_size: u32,
    /// `(low, high)` range per feature; features not listed use `(0, 1)`. Default empty.
    pub limits: BTreeMap<String, (f64, f64)>,
    /// Seed of the tree generator; `None` draws one from the OS. Default `None`.
    pub seed: Option<u64>,
    /// Generator that grows the trees. Default [`TreeRng::ChaCha`].
    pub tree_rng: TreeRng,
}

impl Default for HstParams {
    fn default() -> Self {
        Self {
            n_trees: 10,
            height: 8,
            window_size: 250,
            limits: BTreeMap::new(),
            seed: None,
            tree_rng: TreeRng::ChaCha,
        }
    }
}

/// Largest supported `height`: a tree of height 20 already has two million nodes.
const MAX_HEIGHT: u32 = 20;
/// Largest supported forest, in nodes (about 3.6 GB of node storage with 16-bit counters,
/// 7.2 GB with 32-bit ones).
const MAX_NODES: u64 = 1 << 28;

impl HstParams {
    fn validate(&self) -> Result<(), ParameterError> {
        check(
            (1..=10_000).contains(&self.n_trees),
            "HST",
            "n_trees",
            "in 1..=10000",
            self.n_trees,
        )?;
        check(
            (1..=MAX_HEIGHT).contains(&self.height),
            "HST",
            "height",
            "in 1..=20",
            self.height,
        )?;
        let nodes = u64::from(self.n_trees) * ((2u64 << self.height) - 1);
        check(
            nodes <= MAX_NODES,
            "HST",
            "n_trees",
            "small enough that n_trees * 2^(height+1) stays within 2^28 nodes",
            self.n_trees,
        )?;
        check(
            self.window_size >= 1,
            "HST",
            "window_size",
            "at least 1",
            self.window_size,
        )?;
        for (name, &(lo, hi)) in &self.limits {
            check(
                lo.is_finite() && hi.is_finite() && lo < hi,
                "HST",
                "limits",
                "finite (low, high) pairs with low < high",
                format!("{name}: ({lo}, {hi})"),
            )?;
        }
        Ok(())
    }

    fn size_limit(&self) -> f64 {
        0.1 * f64::from(self.window_size)
    }

    fn max_score(&self) -> f64 {
        (u64::from(self.n_trees) * u64::from(self.window_size) * ((2u64 << self.height) - 1)) as f64
    }
}

/// Explicit trees, in the shape of the golden set's `hst_trees/*.json`: the feature order
/// (sorted names) and, per tree, its `2^height - 1` splits `[feature, threshold]` in pre-order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TreeSpec {
    /// Feature names; also the model's column order.
    pub feature_order: Vec<String>,
    /// Per tree, its splits in pre-order (node, left subtree, right subtree).
    pub trees_preorder_branches: Vec<Vec<(String, f64)>>,
}

/// How much one feature explains an event's score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureContribution {
    /// The feature's name.
    pub feature: String,
    /// Share of the trees that isolated the event right after a split on this feature, in
    /// [0, 1]; shares over all features add up to the fraction of trees that isolated it.
    pub share: f64,
}

/// Streaming anomaly detection with an ensemble of random half-space trees, River's
/// `anomaly.HalfSpaceTrees` with the same scores (higher = more anomalous, in [0, 1]).
///
/// Each tree splits the feature space at random; every node counts the events of the latest
/// window that fell in its half-space. An event scores high when it lands in regions that held
/// few events in the previous full window. Scores are 0 during the first window.
///
/// Features are expected roughly within `limits` (default `[0, 1]`, e.g. after min-max
/// scaling); values outside still route correctly, they just all share the outer cells.
///
/// ```
/// use anomaly_core::anomaly::{AnomalyDetector, HalfSpaceTrees, HstParams};
///
/// let params = HstParams { seed: Some(42), ..HstParams::default() };
/// let mut hst = HalfSpaceTrees::with_features(params, &["amount", "hour"])?;
/// for i in 0..1000 {
///     let normal = [0.2 + 0.1 * ((i % 7) as f64 / 7.0), 0.5];
///     hst.score(&normal[..])?.learn();
/// }
/// let usual = hst.score(&[0.25, 0.5][..])?.score();
/// let odd = hst.score(&[0.95, 0.05][..])?;
/// assert!(odd.score() > usual);
/// println!("explained by {:?}", odd.explain());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "HstRecord", into = "HstRecord")]
pub struct HalfSpaceTrees {
    state: HstState,
    scratch: Scratch,
}

/// Everything that defines the model.
#[derive(Clone, Debug, PartialEq)]
struct HstState {
    params: HstParams,
    /// The seed actually used.
    seed: u64,
    /// Column order of the features; empty until the first event is learned when the model
    /// was built with [`HalfSpaceTrees::new`].
    features: Vec<String>,
    /// `None` until the trees are grown.
    forest: Option<Forest>,
    /// Events learned in the current window.
    counter: u32,
    first_window: bool,
}

/// Per-event working memory (not part of the model).
#[derive(Clone, Debug, Default)]
struct Scratch {
    index: HashMap<String, usize>,
    values: Vec<f64>,
    present: Vec<bool>,
    walks: Vec<Walk>,
    /// The first event of a lazily featured model: its sorted names and values.
    first_event: Option<Vec<(String, f64)>>,
    /// A scored event's visits are recorded in the masses and not yet learned.
    visits_pending: bool,
}

impl PartialEq for HalfSpaceTrees {
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
    }
}

/// The model as it is serialized: [`HstState`] with the trees in their layout-independent
/// form.
#[derive(Serialize, Deserialize)]
struct HstRecord {
    params: HstParams,
    seed: u64,
    features: Vec<String>,
    forest: Option<ForestRecord>,
    counter: u32,
    first_window: bool,
}

impl From<HalfSpaceTrees> for HstRecord {
    fn from(model: HalfSpaceTrees) -> Self {
        let s = model.state;
        HstRecord {
            forest: s.forest.as_ref().map(Forest::to_record),
            params: s.params,
            seed: s.seed,
            features: s.features,
            counter: s.counter,
            first_window: s.first_window,
        }
    }
}

impl TryFrom<HstRecord> for HalfSpaceTrees {
    type Error = String;

    fn try_from(record: HstRecord) -> Result<Self, String> {
        validate_record(&record)?;
        let forest = record
            .forest
            .as_ref()
            .map(|f| Forest::from_record(f, record.params.window_size, record.features.len()));
        Ok(Self::from_state(HstState {
            params: record.params,
            seed: record.seed,
            features: record.features,
            forest,
            counter: record.counter,
            first_window: record.first_window,
        }))
    }
}

impl HalfSpaceTrees {
    /// A model whose features are those of the first event it learns (River's behaviour);
    /// until then only [`score_named`](Self::score_named) can be used.
    pub fn new(params: HstParams) -> Result<Self, ParameterError> {
        params.validate()?;
        let seed = params.seed.unwrap_or_else(rand::random);
        Ok(Self::from_state(HstState {
            params,
            seed,
            features: Vec::new(),
            forest: None,
            counter: 0,
            first_window: true,
        }))
    }

    /// A model over `features`, in this column order (the order of dense rows). The trees are
    /// grown now, over the names in sorted order as River does, so with
    /// [`TreeRng::River`] they are River's trees for the same seed and feature names.
    pub fn with_features<S: AsRef<str>>(
        params: HstParams,
        features: &[S],
    ) -> Result<Self, ParameterError> {
        let mut model = Self::new(params)?;
        let names: Vec<String> = features.iter().map(|s| s.as_ref().to_owned()).collect();
        check(
            !names.is_empty(),
            "HST",
            "features",
            "at least one feature",
            "none",
        )?;
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        check(
            unique.len() == names.len(),
            "HST",
            "features",
            "distinct names",
            names.join(","),
        )?;
        model.grow(names);
        Ok(model)
    }

    /// A model with the given trees (e.g. River's, from a golden `hst_trees/*.json`).
    /// `params.n_trees` and `params.height` must match the spec.
    pub fn from_trees(params: HstParams, spec: &TreeSpec) -> Result<Self, ParameterError> {
        let mut model = Self::new(params)?;
        let p = &model.state.params;
        check(
            spec.trees_preorder_branches.len() == p.n_trees as usize,
            "HST",
            "trees_preorder_branches",
            "one entry per tree (n_trees)",
            spec.trees_preorder_branches.len(),
        )?;
        let per_tree = (1usize << p.height) - 1;
        let column: HashMap<&str, u32> = spec
            .feature_order
            .iter()
            .enumerate()
            .map(|(i, f)| (f.as_str(), i as u32))
            .collect();
        check(
            column.len() == spec.feature_order.len() && !column.is_empty(),
            "HST",
            "feature_order",
            "distinct names, at least one",
            spec.feature_order.join(","),
        )?;
        let mut trees = Vec::with_capacity(spec.trees_preorder_branches.len());
        for tree in &spec.trees_preorder_branches {
            check(
                tree.len() == per_tree,
                "HST",
                "trees_preorder_branches",
                "2^height - 1 splits per tree",
                tree.len(),
            )?;
            let mut splits = Vec::with_capacity(per_tree);
            for (name, threshold) in tree {
                let feature = column.get(name.as_str()).copied();
                check(
                    feature.is_some() && threshold.is_finite(),
                    "HST",
                    "trees_preorder_branches",
                    "splits on listed features with finite thresholds",
                    format!("[{name}, {threshold}]"),
                )?;
                splits.push((feature.unwrap_or(0), *threshold));
            }
            trees.push(splits);
        }
        model.state.features = spec.feature_order.clone();
        model.state.forest = Some(build::from_preorder(
            p.height,
            &trees,
            p.window_size,
            spec.feature_order.len(),
        ));
        model.index_features();
        Ok(model)
    }

    /// Trains a fresh model on historical rows (in column order) without scoring them: the
    /// explicit entry point for retraining outside the streaming path.
    ///
    /// ```
    /// use anomaly_core::anomaly::{HalfSpaceTrees, HstParams};
    ///
    /// let history = vec![vec![0.1, 0.2]; 500];
    /// let hst = HalfSpaceTrees::train_fresh(HstParams::default(), &["a", "b"], &history)?;
    /// assert_eq!(hst.events_learned_in_window(), 0); // two full windows of 250
    /// # Ok::<(), anomaly_core::anomaly::AnomalyError>(())
    /// ```
    pub fn train_fresh<S: AsRef<str>, R: AsRef<[f64]>>(
        params: HstParams,
        features: &[S],
        history: &[R],
    ) -> Result<Self, AnomalyError> {
        let mut model = Self::with_features(params, features)?;
        for row in history {
            let row = row.as_ref();
            model.check_dense(row)?;
            model.walk_all(&Dense(row));
            model.finish_learning();
        }
        Ok(model)
    }

    fn from_state(state: HstState) -> Self {
        let mut model = Self {
            state,
            scratch: Scratch::default(),
        };
        model.index_features();
        model
    }

    fn index_features(&mut self) {
        let features = &self.state.features;
        self.scratch.index = features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i))
            .collect();
        self.scratch.values = vec![0.0; features.len()];
        self.scratch.present = vec![false; features.len()];
        let n_trees = self.state.params.n_trees as usize;
        self.scratch.walks = vec![Walk::default(); n_trees];
    }

    /// Grows the trees over `features` (column order) with the configured generator.
    fn grow(&mut self, features: Vec<String>) {
        let p = &self.state.params;
        let mut sorted: Vec<(usize, &String)> = features.iter().enumerate().collect();
        sorted.sort_by(|a, b| a.1.cmp(b.1));
        let sorted_columns: Vec<u32> = sorted.iter().map(|(i, _)| *i as u32).collect();
        let limits: Vec<(f64, f64)> = sorted
            .iter()
            .map(|(_, name)| p.limits.get(*name).copied().unwrap_or((0.0, 1.0)))
            .collect();
        let forest = match p.tree_rng {
            TreeRng::ChaCha => build::grow(
                &mut build::chacha(self.state.seed),
                p.n_trees,
                p.height,
                &sorted_columns,
                &limits,
                p.window_size,
            ),
            TreeRng::River => build::grow(
                &mut PyRandom::new(self.state.seed),
                p.n_trees,
                p.height,
                &sorted_columns,
                &limits,
                p.window_size,
            ),
        };
        self.state.features = features;
        self.state.forest = Some(forest);
        self.index_features();
    }

    /// The parameters this model was built with.
    pub fn params(&self) -> &HstParams {
        &self.state.params
    }

    /// The seed the trees were grown from.
    pub fn seed(&self) -> u64 {
        self.state.seed
    }

    /// Feature names in column order (empty before a lazily featured model learns).
    pub fn features(&self) -> &[String] {
        &self.state.features
    }

    /// Whether the first window is still filling (scores are 0 until it is full).
    pub fn in_first_window(&self) -> bool {
        self.state.first_window
    }

    /// Events learned in the current window.
    pub fn events_learned_in_window(&self) -> u32 {
        self.state.counter
    }

    /// Bytes of node storage (the bulk of the model's memory).
    pub fn node_memory_bytes(&self) -> usize {
        self.state.forest.as_ref().map_or(0, Forest::memory_bytes)
    }

    /// `(l_mass, r_mass)` of node `node` (breadth-first index) of tree `tree`, as River
    /// holds them now; `None` before the trees exist or for an index out of range.
    pub fn node_masses(&self, tree: usize, node: usize) -> Option<(u32, u32)> {
        let forest = self.state.forest.as_ref()?;
        let per_tree = (2usize << forest.height()) - 1;
        (tree < self.state.params.n_trees as usize && node < per_tree)
            .then(|| forest.masses(tree, NodeAt::from_breadth_first(node)))
    }

    /// The trees as explicit splits (the inverse of [`from_trees`](Self::from_trees));
    /// `None` before they are grown.
    ///
    /// ```
    /// use anomaly_core::anomaly::{HalfSpaceTrees, HstParams, TreeRng};
    ///
    /// let params = HstParams { n_trees: 2, height: 3, seed: Some(7), tree_rng: TreeRng::River, ..HstParams::default() };
    /// let hst = HalfSpaceTrees::with_features(params.clone(), &["x", "y"])?;
    /// let spec = hst.tree_spec().unwrap();
    /// assert_eq!(spec.trees_preorder_branches[0].len(), 7);
    /// assert_eq!(HalfSpaceTrees::from_trees(params, &spec)?.tree_spec(), Some(spec));
    /// # Ok::<(), anomaly_core::ParameterError>(())
    /// ```
    pub fn tree_spec(&self) -> Option<TreeSpec> {
        let forest = self.state.forest.as_ref()?;
        let per_tree = (1usize << forest.height()) - 1;
        let trees = (0..self.state.params.n_trees as usize)
            .map(|tree| {
                let mut splits = Vec::with_capacity(per_tree);
                let mut stack = vec![NodeAt { depth: 0, pos: 0 }];
                while let Some(at) = stack.pop() {
                    if at.depth == forest.height() {
                        continue;
                    }
                    let (feature, threshold) = forest.split(tree, at);
                    splits.push((self.state.features[feature as usize].clone(), threshold));
                    stack.push(NodeAt {
                        depth: at.depth + 1,
                        pos: 2 * at.pos + 1,
                    });
                    stack.push(NodeAt {
                        depth: at.depth + 1,
                        pos: 2 * at.pos,
                    });
                }
                splits
            })
            .collect();
        Some(TreeSpec {
            feature_order: self.state.features.clone(),
            trees_preorder_branches: trees,
        })
    }

    /// Scores an event given as named features (any map from name to value). Features the
    /// model does not know are ignored; features it knows but `x` lacks follow River's
    /// missing-feature rule.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use anomaly_core::anomaly::{HalfSpaceTrees, HstParams};
    ///
    /// let mut hst = HalfSpaceTrees::new(HstParams::default())?;
    /// let event = HashMap::from([("amount".to_string(), 0.4), ("hour".to_string(), 0.9)]);
    /// let scored = hst.score_named(&event)?;
    /// assert_eq!(scored.score(), 0.0); // first window
    /// scored.learn(); // the model's features are now amount and hour
    /// assert_eq!(hst.features(), ["amount", "hour"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn score_named<K, V, M>(&mut self, x: M) -> Result<Scored<'_, Self>, AnomalyError>
    where
        M: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Borrow<f64>,
    {
        self.undo_unlearned_visits();
        if self.state.forest.is_none() {
            let mut event: Vec<(String, f64)> = Vec::new();
            for (name, value) in x {
                let (name, value) = (name.as_ref(), *value.borrow());
                check_feature(name, value)?;
                event.push((name.to_owned(), value));
            }
            event.sort_by(|a, b| a.0.cmp(&b.0));
            event.dedup_by(|a, b| a.0 == b.0);
            if event.is_empty() {
                return Err(AnomalyError::NotReady {
                    model: "HST",
                    reason: "the first event must have at least one feature",
                });
            }
            self.scratch.first_event = Some(event);
            return Ok(Scored {
                detector: self,
                score: 0.0,
                pending: Some(sealed::Ready(())),
            });
        }
        self.scratch.present.iter_mut().for_each(|p| *p = false);
        for (name, value) in x {
            let (name, value) = (name.as_ref(), *value.borrow());
            if let Some(&column) = self.scratch.index.get(name) {
                check_feature(name, value)?;
                self.scratch.values[column] = value;
                self.scratch.present[column] = true;
            }
        }
        let values = std::mem::take(&mut self.scratch.values);
        let present = std::mem::take(&mut self.scratch.present);
        let score = self.score_and_visit(&Sparse {
            values: &values,
            present: &present,
        });
        self.scratch.values = values;
        self.scratch.present = present;
        Ok(Scored {
            detector: self,
            score,
            pending: Some(sealed::Ready(())),
        })
    }

    fn check_dense(&self, row: &[f64]) -> Result<(), AnomalyError> {
        if self.state.forest.is_none() {
            return Err(AnomalyError::NotReady {
                model: "HST",
                reason: "features are unknown until the first event is learned; use score_named, or build with with_features",
            });
        }
        if row.len() != self.state.features.len() {
            return Err(AnomalyError::RowLength {
                expected: self.state.features.len(),
                got: row.len(),
            });
        }
        // One pass without branches for the usual row; NaN fails the comparison too.
        if row
            .iter()
            .fold(true, |ok, v| ok & (v.abs() <= crate::MAX_INPUT_MAGNITUDE))
        {
            return Ok(());
        }
        for (value, name) in row.iter().zip(&self.state.features) {
            check_feature(name, *value)?;
        }
        Ok(())
    }

    /// One fused walk per tree: scores the event and records its visits (River's
    /// `score_one` followed by the mass updates of `learn_one`, which follow the same path).
    fn score_and_visit<R: Row>(&mut self, row: &R) -> f64 {
        let scoring = !self.state.first_window;
        let mass_score = self.walk_all(row);
        self.scratch.visits_pending = true;
        if scoring {
            1.0 - mass_score as f64 / self.state.params.max_score()
        } else {
            0.0
        }
    }

    /// Walks and learns `row` in every tree; returns the sum of River's scoring terms (valid
    /// once the first window is over).
    fn walk_all<R: Row>(&mut self, row: &R) -> u64 {
        let size_limit = self.state.params.size_limit();
        match self.state.forest.as_mut() {
            Some(forest) => forest.walk_all(row, size_limit, &mut self.scratch.walks),
            None => 0,
        }
    }

    /// Counts the learned event and pivots the window when it is full.
    fn finish_learning(&mut self) {
        self.state.counter += 1;
        if self.state.counter == self.state.params.window_size {
            if let Some(forest) = self.state.forest.as_mut() {
                forest.next_window();
            }
            self.state.first_window = false;
            self.state.counter = 0;
        }
    }

    /// Takes back the visits of a scored event that was neither learned nor abandoned
    /// (possible only if its `Scored` was leaked with `mem::forget`).
    fn undo_unlearned_visits(&mut self) {
        if self.scratch.visits_pending {
            self.scratch.visits_pending = false;
            if let Some(forest) = self.state.forest.as_mut() {
                for (tree, walk) in self.scratch.walks.iter().enumerate() {
                    forest.unlearn_path(tree, walk.leaf);
                }
            }
        }
    }

    pub(in crate::anomaly) fn explain_last(&self) -> Vec<FeatureContribution> {
        if self.state.first_window || self.state.forest.is_none() {
            return Vec::new();
        }
        let mut counts = vec![0u32; self.state.features.len()];
        let Some(forest) = self.state.forest.as_ref() else {
            return Vec::new();
        };
        let size_limit = self.state.params.size_limit();
        for (tree, walk) in self.scratch.walks.iter().enumerate() {
            // The split that led into the node where the walk was isolated: the branch one
            // level up on the path to the leaf.
            let stop = forest.stop_depth(tree, walk.leaf, size_limit);
            if let Some(depth) = stop.filter(|&d| d > 0) {
                let parent = NodeAt {
                    depth: depth - 1,
                    pos: walk.leaf >> (forest.height() - depth + 1),
                };
                counts[forest.split(tree, parent).0 as usize] += 1;
            }
        }
        let n_trees = f64::from(self.state.params.n_trees);
        let mut contributions: Vec<FeatureContribution> = counts
            .iter()
            .zip(&self.state.features)
            .filter(|(count, _)| **count > 0)
            .map(|(count, feature)| FeatureContribution {
                feature: feature.clone(),
                share: f64::from(*count) / n_trees,
            })
            .collect();
        contributions.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.feature.cmp(&b.feature)));
        contributions
    }
}

impl Scored<'_, HalfSpaceTrees> {
    /// Which features isolated this event, most important first: for each feature, the share
    /// of trees whose walk reached a sparsely populated region (fewer than
    /// `0.1 * window_size` events in the reference window) right after splitting on it.
    /// Empty during the first window and for events no tree isolated.
    pub fn explain(&self) -> Vec<FeatureContribution> {
        self.detector.explain_last()
    }
}

fn check_feature(name: &str, value: f64) -> Result<(), AnomalyError> {
    check_input("HST", value)
        .map(|_| ())
        .map_err(|source| AnomalyError::BadFeature {
            feature: name.to_owned(),
            source,
        })
}

impl sealed::Detector for HalfSpaceTrees {
    type Pending = sealed::Ready;
    type Input = [f64];
    type Score = f64;

    fn score_pending(
        &mut self,
        row: &[f64],
        _: sealed::Token,
    ) -> Result<(f64, sealed::Ready), AnomalyError> {
        self.undo_unlearned_visits();
        self.check_dense(row)?;
        Ok((self.score_and_visit(&Dense(row)), sealed::Ready(())))
    }

    fn learn_pending(&mut self, _: sealed::Ready, _: sealed::Token) {
        if let Some(event) = self.scratch.first_event.take() {
            let (names, values): (Vec<String>, Vec<f64>) = event.into_iter().unzip();
            self.grow(names);
            self.walk_all(&Dense(&values));
        }
        self.scratch.visits_pending = false;
        self.finish_learning();
    }

    fn abandon_pending(&mut self, _: sealed::Ready, _: sealed::Token) {
        self.scratch.first_event = None;
        self.undo_unlearned_visits();
    }
}

impl AnomalyDetector for HalfSpaceTrees {
    const NAME: &'static str = "HST";
}

/// Checks a deserialized model: shapes, finite thresholds, and masses consistent with the
/// window counter (every node's mass is the sum of its children's).
fn validate_record(state: &HstRecord) -> Result<(), String> {
    state.params.validate().map_err(|e| e.to_string())?;
    let p = &state.params;
    if state.counter >= p.window_size {
        return Err(format!(
            "window counter {} is not below window_size {}",
            state.counter, p.window_size
        ));
    }
    let Some(forest) = &state.forest else {
        return if state.features.is_empty() && state.counter == 0 && state.first_window {
            Ok(())
        } else {
            Err("a model without trees must not have learned anything".into())
        };
    };
    if forest.height != p.height || forest.n_trees != p.n_trees {
        return Err("tree shape does not match n_trees/height".into());
    }
    let per_tree = forest.branches_per_tree();
    if forest.branches.len() != per_tree * p.n_trees as usize
        || forest.leaves.len() != forest.leaves_per_tree() * p.n_trees as usize
    {
        return Err("node counts do not match n_trees/height".into());
    }
    if state.features.is_empty() {
        return Err("a model with trees must name its features".into());
    }
    let mut unique = state.features.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != state.features.len() {
        return Err("feature names are not distinct".into());
    }
    for b in &forest.branches {
        if b.feature as usize >= state.features.len() || !b.threshold.is_finite() {
            return Err(format!(
                "a split uses feature {} with threshold {}",
                b.feature, b.threshold
            ));
        }
    }
    let expected_reference = if state.first_window { 0 } else { p.window_size };
    for tree in 0..p.n_trees as usize {
        let root = forest.masses(tree, NodeAt { depth: 0, pos: 0 });
        if root != (state.counter, expected_reference) {
            return Err(format!(
                "tree {tree}: root masses {root:?}, expected ({}, {expected_reference})",
                state.counter
            ));
        }
        for depth in 0..p.height {
            for pos in 0..1u32 << depth {
                let at = NodeAt { depth, pos };
                let (l, r) = forest.masses(tree, at);
                let (ll, lr) = forest.masses(
                    tree,
                    NodeAt {
                        depth: depth + 1,
                        pos: 2 * pos,
                    },
                );
                let (rl, rr) = forest.masses(
                    tree,
                    NodeAt {
                        depth: depth + 1,
                        pos: 2 * pos + 1,
                    },
                );
                if u64::from(l) != u64::from(ll) + u64::from(rl)
                    || u64::from(r) != u64::from(lr) + u64::from(rr)
                {
                    return Err(format!(
                        "tree {tree} node at depth {depth}, position {pos}: masses are not the sum of its children's"
                    ));
                }
            }
        }
    }
    Ok(())
}
