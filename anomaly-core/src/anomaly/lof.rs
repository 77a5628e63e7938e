use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::event::{
    Event, EventBuilder, EventDetector, FeatureNames, dense_row_detector, feature_list, score_named,
};
use super::{AnomalyError, Scored, Transient, sealed};
use crate::error::{ParameterError, check};

/// LocalOutlierFactor's parameters (River's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LofParams {
    /// Neighbours per point, k >= 1. Default 10.
    pub n_neighbors: usize,
    /// The last `window_size` learned events are the reference set (River's
    /// `engine=neighbors.LazySearch(window_size=...)`; LOF's default is 1000), >= 1.
    pub window_size: usize,
}

impl Default for LofParams {
    fn default() -> Self {
        Self {
            n_neighbors: 10,
            window_size: 1000,
        }
    }
}

/// A neighbour: its distance from the point that searched, and its age (older = smaller).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Neighbour {
    distance: f64,
    seq: u64,
}

impl Neighbour {
    /// River's search order: nearest first, ties to the older point.
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.seq.cmp(&other.seq))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Point {
    seq: u64,
    event: Event,
    /// This point's nearest points of the window (itself included), nearest first: always
    /// exactly the first `len` of the whole window in River's order, with `len` between
    /// `k + 1` (or the window size) and `2 (k + 1)`, so that a neighbour leaving the window
    /// rarely forces a new search. Derived, so rebuilt rather than stored.
    /// (Not part of the model's identity: how much spare a list has depends on its history.)
    #[serde(skip)]
    nearest: Transient<Vec<Neighbour>>,
}

/// Incremental Local Outlier Factor (River's `anomaly.LocalOutlierFactor`): compares an
/// event's local density (how close its k nearest neighbours are) with theirs, over a sliding
/// window of learned events. About 1 inside a cluster; well above 1 for an event that sits
/// far from a dense group. Unbounded.
///
/// Good for transactions that fall into several normal groups of different spread (where a
/// single global distance threshold fails). Scoring costs one pass over the window
/// (O(window · features)); learning keeps every point's neighbour list current, O(window ·
/// features), and a point's list is searched again only when neighbours leaving the window
/// have emptied its spare half; memory O(window · (features + k)). River recomputes up to
/// `1 + k + k²` neighbour searches per score instead; the scores are River's to the bit.
///
/// ```
/// use anomaly_core::anomaly::{AnomalyDetector, LocalOutlierFactor, LofParams};
///
/// let mut lof = LocalOutlierFactor::with_features(LofParams::default(), &["x", "y"])?;
/// for i in 0..200 {
///     let t = i as f64 * 0.1;
///     lof.score(&[t.sin(), t.cos()][..])?.learn(); // points on a circle
/// }
/// let usual = lof.score(&[0.0, 1.0][..])?.score();
/// let odd = lof.score(&[3.0, 3.0][..])?.score();
/// assert!(usual < 1.5 && odd > 10.0, "{usual} {odd}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LofState")]
pub struct LocalOutlierFactor {
    params: LofParams,
    features: FeatureNames,
    window: VecDeque<Point>,
    next_seq: u64,
    #[serde(skip)]
    builder: Transient<EventBuilder>,
    #[serde(skip)]
    search: Transient<Vec<Neighbour>>,
}

#[derive(Deserialize)]
struct LofState {
    params: LofParams,
    features: FeatureNames,
    window: VecDeque<Point>,
    next_seq: u64,
}

impl TryFrom<LofState> for LocalOutlierFactor {
    type Error = String;

    fn try_from(state: LofState) -> Result<Self, String> {
        let mut model = Self::new(state.params).map_err(|e| e.to_string())?;
        let n = state.window.len();
        let contiguous = state
            .window
            .iter()
            .enumerate()
            .all(|(i, p)| p.seq.checked_add((n - i) as u64) == Some(state.next_seq));
        let valid_events = state.window.iter().all(|p| {
            p.event.ids_below(state.features.len()) && p.event.values.iter().all(|v| v.is_finite())
        });
        if n > state.params.window_size
            || !contiguous
            || !valid_events
            || state.next_seq > u64::MAX / 2
        {
            return Err("the window does not hold consecutive, valid events".into());
        }
        model.features = state.features;
        model.window = state.window;
        model.next_seq = state.next_seq;
        for at in 0..model.window.len() {
            model.rebuild_nearest(at);
        }
        Ok(model)
    }
}

impl Default for LocalOutlierFactor {
    fn default() -> Self {
        Self {
            params: LofParams::default(),
            features: FeatureNames::default(),
            window: VecDeque::new(),
            next_seq: 0,
            builder: Transient(EventBuilder::default()),
            search: Transient(Vec::new()),
        }
    }
}

/// River's distance from query `a` to stored point `b`: Euclidean, a missing feature counts 0,
/// summed over `a`'s features in its order, then over the features only `b` has.
fn distance(a: &Event, b: &Event) -> f64 {
    let mut total = 0.0;
    if a.ids == b.ids {
        for (x, y) in a.values.iter().zip(&b.values) {
            let d = x - y;
            total += d * d;
        }
        return total.sqrt();
    }
    for (id, av) in a.iter() {
        let d = av - b.get(id).unwrap_or(0.0);
        total += d * d;
    }
    for (id, bv) in b.iter() {
        if a.get(id).is_none() {
            total += bv * bv;
        }
    }
    total.sqrt()
}

/// Puts `candidate` into the sorted list of the nearest points, keeping at most `cap`. A list
/// that does not hold the whole window (`complete` false) only takes a candidate nearer than
/// its last entry: points it does not list may come before a farther one.
fn offer(list: &mut Vec<Neighbour>, candidate: Neighbour, cap: usize, complete: bool) {
    let nearer_than_last = list
        .last()
        .is_none_or(|last| candidate.cmp(last) == Ordering::Less);
    let room_in_a_complete_list = complete && list.len() < cap;
    if !(nearer_than_last || room_in_a_complete_list) {
        return;
    }
    let at = list.partition_point(|n| n.cmp(&candidate) == Ordering::Less);
    list.insert(at, candidate);
    list.truncate(cap);
}

impl LocalOutlierFactor {
    /// A detector that learns its features from the named events it sees
    /// ([`LocalOutlierFactor::score_named`]).
    pub fn new(params: LofParams) -> Result<Self, ParameterError> {
        check(
            (1..=10_000).contains(&params.n_neighbors),
            "LOF",
            "n_neighbors",
            "in 1..=10000",
            params.n_neighbors,
        )?;
        check(
            (1..=1_000_000).contains(&params.window_size),
            "LOF",
            "window_size",
            "in 1..=1000000",
            params.window_size,
        )?;
        Ok(Self {
            params,
            ..Self::default()
        })
    }

    /// A detector over a fixed list of features, scored with dense rows in that order (named
    /// events work too).
    pub fn with_features<S: AsRef<str>>(
        params: LofParams,
        features: &[S],
    ) -> Result<Self, AnomalyError> {
        let mut model = Self::new(params)?;
        model.features = feature_list("LOF", features)?;
        Ok(model)
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &LofParams {
        &self.params
    }

    /// Feature names, in the order they were first learned (or given).
    pub fn features(&self) -> &[String] {
        self.features.names()
    }

    /// Events in the window.
    pub fn window_len(&self) -> usize {
        self.window.len()
    }

    /// Scores an event given as named features; missing features count as 0.
    ///
    /// ```
    /// use anomaly_core::anomaly::{LocalOutlierFactor, LofParams};
    ///
    /// let mut lof = LocalOutlierFactor::new(LofParams::default())?;
    /// let scored = lof.score_named([("amount", 0.4), ("hour", 0.9)])?;
    /// assert_eq!(scored.score(), 0.0); // nothing to compare with yet
    /// scored.learn();
    /// assert_eq!(lof.window_len(), 1);
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

    fn position(&self, seq: u64) -> usize {
        let front = self.window.front().map_or(0, |p| p.seq);
        (seq - front) as usize
    }

    /// How many nearest points a stored point keeps: twice what a search returns.
    fn list_capacity(&self) -> usize {
        // A list never holds more than the whole window.
        (2 * (self.params.n_neighbors + 1)).min(self.params.window_size)
    }

    fn rebuild_nearest(&mut self, at: usize) {
        let cap = self.list_capacity();
        let mut list = std::mem::take(&mut self.window[at].nearest.0);
        list.clear();
        let query = &self.window[at].event;
        for point in &self.window {
            let candidate = Neighbour {
                distance: distance(query, &point.event),
                seq: point.seq,
            };
            offer(&mut list, candidate, cap, true);
        }
        self.window[at].nearest.0 = list;
    }

    /// A stored point's neighbourhood: its search for `k + 1` points without the first entry
    /// (itself, or an older exact duplicate).
    fn neighbourhood(&self, seq: u64) -> &[Neighbour] {
        let nearest = &self.window[self.position(seq)].nearest.0;
        let end = nearest.len().min(self.params.n_neighbors + 1);
        nearest.get(1..end).unwrap_or(&[])
    }

    fn k_distance(&self, seq: u64) -> f64 {
        self.neighbourhood(seq).last().map_or(0.0, |n| n.distance)
    }

    /// Local reachability density of a neighbour list.
    fn lrd(&self, list: &[Neighbour]) -> f64 {
        if list.is_empty() {
            return f64::INFINITY;
        }
        let mut total = 0.0;
        for n in list {
            total += python_max(n.distance, self.k_distance(n.seq));
        }
        1.0 / (total / list.len() as f64 + 1e-10)
    }

    fn learn_built(&mut self) {
        let builder = &mut self.builder.0;
        builder.commit(&mut self.features);
        let event = builder.event.clone();
        let cap = self.list_capacity();
        let needed = self.params.n_neighbors + 1;
        if self.window.len() == self.params.window_size
            && let Some(oldest) = self.window.pop_front()
        {
            // Dropping the oldest point from a list leaves the nearest of what remains; only a
            // list left shorter than a search needs a new search.
            let remaining = self.window.len();
            for at in 0..remaining {
                let list = &mut self.window[at].nearest.0;
                if let Some(i) = list.iter().position(|n| n.seq == oldest.seq) {
                    list.remove(i);
                    if list.len() < needed.min(remaining) {
                        self.rebuild_nearest(at);
                    }
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let window_len = self.window.len();
        let mut nearest = Vec::with_capacity(cap + 1);
        for point in &mut self.window {
            let there = distance(&point.event, &event);
            // Same features in the same order: the distance is the same both ways, bit for bit.
            let back = if point.event.ids == event.ids {
                there
            } else {
                distance(&event, &point.event)
            };
            let complete = point.nearest.0.len() == window_len;
            offer(
                &mut point.nearest.0,
                Neighbour {
                    distance: there,
                    seq,
                },
                cap,
                complete,
            );
            offer(
                &mut nearest,
                Neighbour {
                    distance: back,
                    seq: point.seq,
                },
                cap,
                true,
            );
        }
        offer(
            &mut nearest,
            Neighbour {
                distance: distance(&event, &event),
                seq,
            },
            cap,
            true,
        );
        self.window.push_back(Point {
            seq,
            event,
            nearest: Transient(nearest),
        });
    }
}

/// Python's `max(a, b)`: `a` unless `b` is larger.
fn python_max(a: f64, b: f64) -> f64 {
    if b > a { b } else { a }
}

impl EventDetector for LocalOutlierFactor {
    fn builder_and_names(&mut self) -> (&mut EventBuilder, &FeatureNames) {
        (&mut self.builder.0, &self.features)
    }

    fn score_built(&mut self) -> Result<(f64, sealed::Ready), AnomalyError> {
        let k = self.params.n_neighbors;
        let mut found = std::mem::take(&mut self.search.0);
        found.clear();
        let query = &self.builder.0.event;
        for point in &self.window {
            offer(
                &mut found,
                Neighbour {
                    distance: distance(query, &point.event),
                    seq: point.seq,
                },
                k + 1,
                true,
            );
        }
        // An event equal to a stored point does not count that point as its neighbour.
        let neighbours = match found.first() {
            Some(first) if first.distance == 0.0 => &found[1..],
            _ => &found[..found.len().min(k)],
        };
        let score = if neighbours.is_empty() {
            0.0
        } else {
            let lrd_x = self.lrd(neighbours);
            let mut total = 0.0;
            for n in neighbours {
                total += self.lrd(self.neighbourhood(n.seq));
            }
            let score = total / (neighbours.len() as f64 * lrd_x);
            if score.is_finite() { score } else { 0.0 }
        };
        self.search.0 = found;
        Ok((score, sealed::Ready(())))
    }
}

dense_row_detector!(LocalOutlierFactor, "LOF");
