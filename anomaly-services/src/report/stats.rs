//! The report's figures, accumulated event by event in constant memory: a run over a file of
//! any length keeps these and nothing per event.

use anomaly_core::metrics::Confusion;

use crate::messages::{Alert, ScoredEvent};

/// Points per score chart: events are averaged into this many buckets.
pub(super) const SCORE_BUCKETS: u64 = 400;
/// Points per precision/recall chart.
pub(super) const QUALITY_BUCKETS: u64 = 40;

/// Mean and maximum score of consecutive events.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct ScoreBucket {
    pub(super) events: u64,
    pub(super) sum: f64,
    pub(super) max: f64,
}

/// Everything the summary and the charts need from the scored events and alerts.
///
/// ```
/// use anomaly_services::report::RunStats;
///
/// let stats = RunStats::new(1_000);
/// assert_eq!(stats.scored(), 0);
/// assert_eq!(stats.roc_auc(), None);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RunStats {
    pub(super) scored: u64,
    pub(super) confusion: Confusion,
    pub(super) auc: ExactRocAuc,
    /// Events per score-chart bucket, from the events the run expects.
    pub(super) score_per: u64,
    pub(super) score_buckets: Vec<ScoreBucket>,
    /// Events per quality-chart bucket.
    pub(super) quality_per: u64,
    pub(super) quality_buckets: Vec<Confusion>,
    /// `(index of the first event it scored, version)` for each model after the first.
    pub(super) version_changes: Vec<(u64, u64)>,
    last_version: u64,
    pub(super) alerts_by_severity: [u64; 4],
}

impl Default for RunStats {
    fn default() -> Self {
        Self::new(0)
    }
}

impl RunStats {
    /// Empty figures for a run of about `expected_events` (it sets the charts' resolution
    /// only: a run may score fewer or more).
    pub fn new(expected_events: u64) -> Self {
        Self {
            scored: 0,
            confusion: Confusion::default(),
            auc: ExactRocAuc::default(),
            score_per: (expected_events / SCORE_BUCKETS).max(1),
            score_buckets: Vec::new(),
            quality_per: (expected_events / QUALITY_BUCKETS).max(1),
            quality_buckets: Vec::new(),
            version_changes: Vec::new(),
            last_version: 1,
            alerts_by_severity: [0; 4],
        }
    }

    /// The figures of events kept in memory.
    pub fn of<'a>(
        scored: impl ExactSizeIterator<Item = &'a ScoredEvent>,
        alerts: impl Iterator<Item = &'a Alert>,
    ) -> Self {
        let mut stats = Self::new(scored.len() as u64);
        scored.for_each(|e| stats.add_scored(e));
        alerts.for_each(|a| stats.add_alert(a));
        stats
    }

    /// Counts a scored event (in stream order).
    pub fn add_scored(&mut self, e: &ScoredEvent) {
        let index = self.scored;
        self.scored += 1;
        self.confusion.add(e.is_anomaly, e.is_fraud);
        self.auc.add(e.score, e.is_fraud);
        if index % self.score_per == 0 {
            // More events than expected (a file that grew, or fewer lines than records):
            // halve the resolution rather than grow with the run.
            if self.score_buckets.len() as u64 == 2 * SCORE_BUCKETS {
                self.score_buckets = self
                    .score_buckets
                    .chunks(2)
                    .map(|pair| ScoreBucket {
                        events: pair.iter().map(|b| b.events).sum(),
                        sum: pair.iter().map(|b| b.sum).sum(),
                        max: pair.iter().map(|b| b.max).fold(0.0, f64::max),
                    })
                    .collect();
                self.score_per *= 2;
            }
        }
        if index % self.score_per == 0 {
            self.score_buckets.push(ScoreBucket::default());
        }
        if let Some(bucket) = self.score_buckets.last_mut() {
            bucket.events += 1;
            bucket.sum += e.score;
            bucket.max = bucket.max.max(e.score);
        }
        if index % self.quality_per == 0 && self.quality_buckets.len() as u64 == 2 * QUALITY_BUCKETS
        {
            self.quality_buckets = self
                .quality_buckets
                .chunks(2)
                .map(|pair| {
                    let mut merged = Confusion::default();
                    for c in pair {
                        merged.true_positives += c.true_positives;
                        merged.false_positives += c.false_positives;
                        merged.false_negatives += c.false_negatives;
                        merged.true_negatives += c.true_negatives;
                    }
                    merged
                })
                .collect();
            self.quality_per *= 2;
        }
        if index % self.quality_per == 0 {
            self.quality_buckets.push(Confusion::default());
        }
        if let Some(bucket) = self.quality_buckets.last_mut() {
            bucket.add(e.is_anomaly, e.is_fraud);
        }
        if e.model_version != self.last_version {
            self.last_version = e.model_version;
            self.version_changes.push((index, e.model_version));
        }
    }

    /// Counts an alert.
    pub fn add_alert(&mut self, a: &Alert) {
        self.alerts_by_severity[a.severity as usize] += 1;
    }

    /// Events scored.
    pub fn scored(&self) -> u64 {
        self.scored
    }

    /// Points of the score chart (at most 800, whatever the run's length).
    pub fn score_points(&self) -> usize {
        self.score_buckets.len()
    }

    /// Exact ROC AUC of the scores against the labels; `None` without both classes.
    pub fn roc_auc(&self) -> Option<f64> {
        self.auc.roc_auc()
    }
}

/// Scores on the ensemble's grid (multiples of 1e-6 in [0, 1]).
const GRID: usize = 1_000_000;
/// Grid points per block of counts: blocks are allocated as scores land in them, so a run
/// whose scores span part of [0, 1] touches only that part (the whole grid is 4 MB).
const BLOCK: usize = 1_000;

/// Exact ROC AUC of a stream of scores in constant memory: the ensemble rounds its scores to 6
/// decimals, so counting fraud and normal events per grid point gives the same ranks (ties
/// averaged) as sorting every score, as
/// [`anomaly_core::metrics::roc_auc`] does. Scores off the grid count at their nearest point.
///
/// ```
/// use anomaly_core::metrics::roc_auc;
/// use anomaly_services::report::ExactRocAuc;
///
/// let (scores, labels) = ([0.1, 0.4, 0.35, 0.8, 0.4], [false, false, true, true, true]);
/// let mut auc = ExactRocAuc::default();
/// for (s, l) in scores.iter().zip(labels) {
///     auc.add(*s, l);
/// }
/// assert_eq!(auc.roc_auc(), roc_auc(&scores, &labels));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ExactRocAuc {
    /// `[normal, fraud]` counts per grid point, by blocks of [`BLOCK`] points. 16 bits: a
    /// long run touches most blocks, and each new page of them costs more than the rare
    /// overflow.
    blocks: Vec<Option<Box<[[u16; 2]; BLOCK]>>>,
    /// Counts that no longer fit in a `u16`, by multiples of 2^16 (a point holds more than
    /// 65,535 events of a class only in a long run, at a few points: the warm-up's zeros, the
    /// saturated scores).
    overflow: Vec<(usize, usize, u64)>,
    /// Scores not yet counted, as `point << 1 | is_fraud`: they are counted by sorted runs of
    /// [`PENDING`], which sweep the grid in order where one count at a time would miss the
    /// cache on nearly every score (the grid is megabytes).
    pending: Vec<u32>,
}

/// Scores counted together (16 KB of pending keys).
const PENDING: usize = 4_096;

/// Equal when they count the same scores at the same points, whether or not those are
/// counted yet.
impl PartialEq for ExactRocAuc {
    fn eq(&self, other: &Self) -> bool {
        let held = |auc: &Self| {
            auc.counts()
                .filter(|(_, counts)| *counts != [0, 0])
                .collect::<Vec<_>>()
        };
        held(self) == held(other)
    }
}

impl ExactRocAuc {
    /// Counts one labelled score.
    pub fn add(&mut self, score: f64, is_fraud: bool) {
        if self.blocks.is_empty() {
            self.blocks = vec![None; GRID / BLOCK + 1];
        }
        // NaN casts to 0; the clamp keeps out-of-range scores at the ends.
        let point = ((score * GRID as f64).round().max(0.0) as usize).min(GRID);
        // The block exists from the first score in it on, so that `counts` finds every
        // pending point inside a block it walks.
        self.blocks[point / BLOCK].get_or_insert_with(|| Box::new([[0; 2]; BLOCK]));
        // GRID < 2^31, so the point and the label fit in 32 bits.
        self.pending.push((point as u32) << 1 | u32::from(is_fraud));
        if self.pending.len() == PENDING {
            self.count_pending();
        }
    }

    fn count_pending(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_unstable();
        for &key in &pending {
            let (point, class) = ((key >> 1) as usize, (key & 1) as usize);
            let Some(block) = self.blocks[point / BLOCK].as_mut() else {
                continue; // Unreachable: `add` made the block.
            };
            let count = &mut block[point % BLOCK][class];
            match count.checked_add(1) {
                Some(next) => *count = next,
                None => {
                    *count = 0;
                    self.overflow.push((point, class, 1 << 16));
                }
            }
        }
        pending.clear();
        self.pending = pending;
    }

    /// Every point of the blocks in use with its `[normal, fraud]` counts, lowest first.
    fn counts(&self) -> impl Iterator<Item = (usize, [u64; 2])> + '_ {
        // Overflowed and pending counts, merged into the walk in point order.
        let mut extra: Vec<(usize, usize, u64)> = self.overflow.clone();
        extra.extend(
            self.pending
                .iter()
                .map(|&key| ((key >> 1) as usize, (key & 1) as usize, 1)),
        );
        extra.sort_unstable();
        let mut extra = extra.into_iter().peekable();
        self.blocks
            .iter()
            .enumerate()
            .filter_map(|(b, block)| block.as_ref().map(|block| (b, block)))
            .flat_map(|(b, block)| {
                block
                    .iter()
                    .enumerate()
                    .map(move |(i, c)| (b * BLOCK + i, [u64::from(c[0]), u64::from(c[1])]))
            })
            .map(move |(point, mut counts)| {
                while let Some((_, class, amount)) = extra.next_if(|e| e.0 == point) {
                    counts[class] += amount;
                }
                (point, counts)
            })
    }

    /// The ROC AUC so far; `None` until there is a fraud and a normal event.
    pub fn roc_auc(&self) -> Option<f64> {
        // Twice the rank sum, in integers: average ranks of ties are halves.
        let (mut rank_sum_twice, mut below, mut positives) = (0u128, 0u128, 0u128);
        for (_, [normal, fraud]) in self.counts() {
            let tied = u128::from(normal + fraud);
            if tied == 0 {
                continue;
            }
            // Ranks below+1 ..= below+tied share (2*below + tied + 1) / 2.
            rank_sum_twice += u128::from(fraud) * (2 * below + tied + 1);
            below += tied;
            positives += u128::from(fraud);
        }
        let (positives, negatives) = (positives as f64, (below - positives) as f64);
        if positives == 0.0 || negatives == 0.0 {
            return None;
        }
        let rank_sum = rank_sum_twice as f64 / 2.0;
        Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anomaly_core::metrics::roc_auc;
    use proptest::prelude::*;

    proptest! {
        /// Counting per grid point gives exactly the sorted computation's AUC, ties included
        /// (few distinct points make many ties).
        #[test]
        fn counting_equals_sorting(
            events in proptest::collection::vec((0u32..=1_000_000, any::<bool>()), 0..400),
            spread in 1u32..1_000_000,
        ) {
            let scores: Vec<f64> = events
                .iter()
                .map(|(k, _)| f64::from(k % spread.max(1) * (1_000_000 / spread.max(1))) / 1e6)
                .collect();
            let labels: Vec<bool> = events.iter().map(|(_, l)| *l).collect();
            let mut auc = ExactRocAuc::default();
            for (s, l) in scores.iter().zip(&labels) {
                auc.add(*s, *l);
            }
            prop_assert_eq!(auc.roc_auc(), roc_auc(&scores, &labels));
        }
    }

    /// Counters of the same scores are equal, however many are pending; the same counts at
    /// other points are not.
    #[test]
    fn equality_is_of_points_and_counts() {
        let counter = |scores: &[f64]| {
            let mut auc = ExactRocAuc::default();
            scores.iter().for_each(|&s| auc.add(s, false));
            auc
        };
        let pending = counter(&[0.0, 0.5]);
        let mut counted = pending.clone();
        counted.count_pending();
        assert_eq!(pending, counted);
        assert_ne!(counter(&[0.0]), counter(&[0.005]));
        assert_ne!(counter(&[0.0, 0.5]), counter(&[0.0, 0.6]));
    }

    /// Counts past 16 bits at a point carry into the overflow list, pending or counted.
    #[test]
    fn counts_past_sixteen_bits_are_kept() {
        let mut scores = Vec::new();
        let mut labels = Vec::new();
        for i in 0..150_000u32 {
            let (score, fraud) = match i % 10 {
                0..=6 => (0.25, false),
                7 => (0.25, true),
                8 => (0.75, true),
                _ => (0.75, false),
            };
            scores.push(score);
            labels.push(fraud);
        }
        let mut auc = ExactRocAuc::default();
        for (s, l) in scores.iter().zip(&labels) {
            auc.add(*s, *l);
        }
        assert!(!auc.overflow.is_empty());
        assert_eq!(auc.roc_auc(), roc_auc(&scores, &labels));
    }

    proptest! {
        // Each case walks the million-point grid a few times.
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Runs long enough to be counted in several sorted runs, with part still pending,
        /// give the sorted computation's AUC too, and equal counters compare equal however
        /// much of them is pending.
        #[test]
        fn counting_in_sorted_runs_equals_sorting(
            seed in any::<u64>(),
            len in PENDING..3 * PENDING + 100,
            distinct in 1u64..50_000,
        ) {
            let mut state = seed;
            let mut next = || {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                state >> 33
            };
            let events: Vec<(f64, bool)> = (0..len)
                .map(|_| ((next() % distinct) as f64 / distinct as f64, next() % 5 == 0))
                .collect();
            let (scores, labels): (Vec<f64>, Vec<bool>) = events.iter().copied().unzip();
            let mut auc = ExactRocAuc::default();
            for &(s, l) in &events {
                auc.add(s, l);
            }
            prop_assert!(auc.pending.len() < PENDING);
            prop_assert_eq!(auc.roc_auc(), roc_auc(&scores, &labels));
            let mut counted = auc.clone();
            counted.count_pending();
            prop_assert!(counted.pending.is_empty());
            prop_assert_eq!(&counted, &auc);
            prop_assert_eq!(counted.roc_auc(), auc.roc_auc());
        }
    }
}
