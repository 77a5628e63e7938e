//! Drift events -> retraining jobs -> new model versions, published only if not worse.

use std::collections::{HashSet, VecDeque};

use anomaly_core::anomaly::{AnomalyDetector, AnomalyError, Ensemble, EnsembleParams};
use anomaly_core::snapshot::{Model, Snapshot};
use serde::{Deserialize, Serialize};

use crate::ids::name_uuid;
use crate::messages::{DriftEvent, FeatureVector, ModelUpdate, ScoredEvent};
use anomaly_core::metrics::roc_auc;

/// How retraining is triggered and judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrainingParams {
    /// A drift within this many scored events of the previous job's request starts no new
    /// job (drift storms are debounced).
    pub debounce_events: u64,
    /// Recent feature vectors a new model is trained on.
    pub history: usize,
    /// The most recent labelled events both models are judged on (not trained on).
    pub holdout: usize,
}

impl Default for RetrainingParams {
    fn default() -> Self {
        Self {
            debounce_events: 10_000,
            history: 5_000,
            holdout: 2_000,
        }
    }
}

/// A retraining request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetrainingJob {
    /// Unique id.
    pub job_id: String,
    /// The drift that caused it.
    pub reason: String,
    /// Scored events seen when it was requested.
    pub sequence: u64,
    /// Event time of the request.
    pub timestamp_ms: i64,
}

/// What a job did, recorded whether or not it published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// The job.
    pub job: RetrainingJob,
    /// Version running when the job ran.
    pub previous_version: u64,
    /// Version of the candidate, if one was trained.
    pub candidate_version: Option<u64>,
    /// Running model's ROC AUC on the holdout (its live scores).
    pub previous_auc: Option<f64>,
    /// Candidate's ROC AUC on the same holdout, scored progressively.
    pub candidate_auc: Option<f64>,
    /// Whether the candidate was published.
    pub published: bool,
    /// Why, in words.
    pub decision: String,
}

impl JobOutcome {
    /// The outcome of a job whose training failed with `error`: nothing trained, nothing
    /// published.
    pub fn failed(job: RetrainingJob, running_version: u64, error: &dyn std::fmt::Display) -> Self {
        Self::untrained(job, running_version, format!("failed: {error}"))
    }

    /// Nothing trained yet, `running_version` kept, for the reason `decision`.
    fn untrained(job: RetrainingJob, running_version: u64, decision: String) -> Self {
        JobOutcome {
            job,
            previous_version: running_version,
            candidate_version: None,
            previous_auc: None,
            candidate_auc: None,
            published: false,
            decision,
        }
    }
}

/// A model to publish: its `model-updates` message and its snapshot bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Publication {
    /// The message announcing it (also the `model_versions` row).
    pub update: ModelUpdate,
    /// The snapshot to store as the active model.
    pub snapshot: Vec<u8>,
}

/// A recent labelled event, as retraining needs it.
#[derive(Clone, Debug)]
struct Example {
    /// [`id_key`] of its event id.
    id: u64,
    features: Vec<f64>,
    is_fraud: bool,
    live_score: f64,
}

/// A 64-bit key of an event id: the set of recent ids keeps these instead of the strings.
/// Two of the few thousand recent ids share a key with a probability near 1e-12 (the later
/// one would be taken for a replay and not kept).
///
/// Eight bytes per multiply, then murmur3's finalizer so that every input bit reaches every
/// output bit: a quarter of the instructions of the SipHash it replaces, which was a third
/// of keeping an event. Neither is keyed with a secret, so an id crafted to collide was
/// possible before too; the cost of one is an event not kept for retraining.
fn id_key(event_id: &str) -> u64 {
    const MULTIPLIER: u64 = 0x517c_c1b7_2722_0a95;
    let bytes = event_id.as_bytes();
    let step = |hash: u64, word: u64| (hash.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER);
    // The length first: ids that differ only by trailing zero bytes get different keys.
    let mut hash = step(0, bytes.len() as u64);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        hash = step(hash, u64::from_le_bytes(le));
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    hash = step(hash, u64::from_le_bytes(tail));
    // murmur3's fmix64.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// The keys are already hashes: the set uses them as they are.
#[derive(Clone, Copy, Default)]
struct KeyAsHash(u64);

impl std::hash::Hasher for KeyAsHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed (write_u64); this keeps any other input well mixed.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

type KeySet = HashSet<u64, std::hash::BuildHasherDefault<KeyAsHash>>;

/// Keeps the recent labelled vectors, turns drifts into jobs, runs them.
pub struct Retrainer {
    params: RetrainingParams,
    model_params: EnsembleParams,
    features: Vec<String>,
    recent: VecDeque<Example>,
    /// Keys of the event ids in `recent`: a replayed event is kept once.
    recent_ids: KeySet,
    /// Sequence of the drift of the last job that trained.
    last_request: Option<u64>,
}

impl Retrainer {
    /// A retrainer for ensembles built with `model_params` over `features`.
    pub fn new(
        params: RetrainingParams,
        model_params: EnsembleParams,
        features: Vec<String>,
    ) -> Self {
        Self {
            recent: VecDeque::with_capacity(params.history + params.holdout),
            // Twice the ids it holds: the set sees an insert and a removal per event, and
            // hashbrown reclaims removed slots by rehashing the whole table once the spare
            // ones run out; sized to its content, that was every ~170 events.
            recent_ids: KeySet::with_capacity_and_hasher(
                (params.history + params.holdout).saturating_mul(2),
                Default::default(),
            ),
            params,
            model_params,
            features,
            last_request: None,
        }
    }

    /// Records a scored event (its features, label and live score).
    /// An event already kept (a replayed batch) is ignored.
    pub fn observe(&mut self, scored: &ScoredEvent) {
        self.keep(
            &scored.event_id,
            &scored.features,
            scored.is_fraud,
            scored.score,
        );
    }

    fn keep(&mut self, event_id: &str, features: &[f64], is_fraud: bool, live_score: f64) {
        let id = id_key(event_id);
        if !self.recent_ids.insert(id) {
            return;
        }
        let mut kept = Vec::new();
        if self.recent.len() == self.params.history + self.params.holdout
            && let Some(oldest) = self.recent.pop_front()
        {
            self.recent_ids.remove(&oldest.id);
            // The oldest's buffer takes the new features: no allocation once full.
            kept = oldest.features;
            kept.clear();
        }
        kept.extend_from_slice(features);
        self.recent.push_back(Example {
            id,
            features: kept,
            is_fraud,
            live_score,
        });
    }

    /// A job for `drift`, unless a job ran (trained a candidate) less than `debounce_events`
    /// before it. A job that could not run for lack of data starts no debounce. The job id
    /// derives from the drift's, so a replayed drift asks for the same job.
    pub fn request(&self, drift: &DriftEvent) -> Option<RetrainingJob> {
        if let Some(last) = self.last_request
            && drift.sequence < last + self.params.debounce_events
        {
            return None;
        }
        Some(RetrainingJob {
            job_id: name_uuid("retraining-job", &drift.drift_id),
            reason: format!("{} drift: {}", drift.detector.name(), drift.detail),
            sequence: drift.sequence,
            timestamp_ms: drift.timestamp_ms,
        })
    }

    /// Replaces the recent events with `events` (oldest first), for a job that trains on a
    /// history kept elsewhere (shared by several workers); at most the history and holdout
    /// are kept, each event once.
    pub fn replace_recent(&mut self, events: impl IntoIterator<Item = (FeatureVector, f64)>) {
        self.recent.clear();
        self.recent_ids.clear();
        for (vector, score) in events {
            self.keep(&vector.event_id, &vector.features, vector.is_fraud, score);
        }
    }

    /// How many recent labelled events are kept: the history and the holdout.
    pub fn capacity(&self) -> usize {
        self.params.history + self.params.holdout
    }

    /// Labelled events kept for the next job (history and holdout together).
    pub fn recent_events(&self) -> usize {
        self.recent.len()
    }

    /// Labelled events a job needs: the holdout and half the history.
    pub fn needed_events(&self) -> usize {
        self.params.holdout + self.params.history / 2
    }

    /// Whether a job would train now (enough recent labelled events); until then a job waits.
    pub fn ready(&self) -> bool {
        self.recent.len() >= self.needed_events()
    }

    /// Trains a candidate on the recent history, judges it against the running model on the
    /// holdout, and returns the snapshot to publish as `version` (allocated by the caller: with
    /// several workers, from a shared counter) if the candidate is not worse. A job that trained starts the debounce (see
    /// [`request`](Self::request)); one without enough data (see [`ready`](Self::ready))
    /// trains nothing and starts none.
    pub fn run(
        &mut self,
        job: RetrainingJob,
        running_version: u64,
        version: u64,
    ) -> Result<(JobOutcome, Option<Publication>), AnomalyError> {
        let mut outcome = JobOutcome::untrained(job, running_version, String::new());
        if !self.ready() {
            outcome.decision = format!(
                "kept version {running_version}: only {} recent events, {} needed",
                self.recent.len(),
                self.needed_events()
            );
            return Ok((outcome, None));
        }
        self.last_request = Some(outcome.job.sequence);
        let split = self.recent.len() - self.params.holdout;
        let train: Vec<&[f64]> = self
            .recent
            .iter()
            .take(split)
            .map(|e| e.features.as_slice())
            .collect();
        let mut params = self.model_params.clone();
        params.hst.seed = Some(params.hst.seed.unwrap_or(0).wrapping_add(version));
        let mut candidate = Ensemble::train_fresh(params, &self.features, &train)?;
        let holdout: Vec<&Example> = self.recent.iter().skip(split).collect();
        let labels: Vec<bool> = holdout.iter().map(|e| e.is_fraud).collect();
        let live: Vec<f64> = holdout.iter().map(|e| e.live_score).collect();
        let mut fresh = Vec::with_capacity(holdout.len());
        for example in &holdout {
            let scored = candidate.score(&example.features)?;
            fresh.push(scored.score());
            scored.learn();
        }
        outcome.candidate_version = Some(version);
        outcome.previous_auc = roc_auc(&live, &labels);
        outcome.candidate_auc = roc_auc(&fresh, &labels);
        let (Some(before), Some(after)) = (outcome.previous_auc, outcome.candidate_auc) else {
            outcome.decision = format!(
                "kept version {running_version}: the holdout has no fraud or no normal event to compare on"
            );
            return Ok((outcome, None));
        };
        if after < before {
            outcome.decision = format!(
                "kept version {running_version}: candidate AUC {after:.4} < running {before:.4}"
            );
            return Ok((outcome, None));
        }
        outcome.published = true;
        outcome.decision =
            format!("published version {version}: candidate AUC {after:.4} >= running {before:.4}");
        let update = ModelUpdate {
            schema_version: crate::messages::SCHEMA_VERSION,
            model_version: version,
            timestamp_ms: outcome.job.timestamp_ms,
            reason: outcome.job.reason.clone(),
            previous_auc: Some(before),
            auc: Some(after),
        };
        let snapshot = Snapshot::new(version, Model::Ensemble(candidate)).to_bytes();
        Ok((outcome, Some(Publication { update, snapshot })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::default_model;

    fn vector(i: usize) -> FeatureVector {
        FeatureVector {
            schema_version: crate::messages::SCHEMA_VERSION,
            event_id: format!("e{i}"),
            card_id: "c".into(),
            timestamp_ms: i as i64,
            features: vec![0.5; 11],
            amount: 1.0,
            is_fraud: false,
            phase: "p".into(),
            merchant: "m".into(),
        }
    }

    fn scored(v: FeatureVector, score: f64) -> ScoredEvent {
        ScoredEvent {
            schema_version: crate::messages::SCHEMA_VERSION,
            event_id: v.event_id,
            card_id: v.card_id,
            timestamp_ms: v.timestamp_ms,
            score,
            is_anomaly: false,
            is_fraud: v.is_fraud,
            model_version: 1,
            amount: v.amount,
            phase: v.phase,
            merchant: v.merchant,
            features: v.features,
        }
    }

    fn drift(sequence: u64) -> DriftEvent {
        DriftEvent {
            schema_version: crate::messages::SCHEMA_VERSION,
            drift_id: format!("d{sequence}"),
            detector: crate::messages::DriftSource::Adwin,
            timestamp_ms: sequence as i64,
            event_id: format!("e{sequence}"),
            sequence,
            model_version: 1,
            detail: String::new(),
        }
    }

    /// A job without enough data trains nothing and starts no debounce: the next drift asks
    /// for a job again. A job that trained debounces the drifts that follow it.
    #[test]
    fn only_a_job_that_trained_debounces() {
        let params = RetrainingParams {
            history: 40,
            holdout: 20,
            debounce_events: 1_000,
        };
        let names: Vec<String> = anomaly_core::features::TransactionFeatures::NAMES
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut retrainer = Retrainer::new(params, default_model(), names);
        let job = retrainer.request(&drift(10)).unwrap();
        assert!(!retrainer.ready());
        let (outcome, _) = retrainer.run(job, 1, 2).unwrap();
        assert_eq!(outcome.candidate_version, None);
        assert!(retrainer.request(&drift(20)).is_some(), "no debounce yet");

        for i in 0..40 {
            let mut v = vector(i);
            v.is_fraud = i % 4 == 0;
            retrainer.observe(&scored(v, 0.5));
        }
        assert!(retrainer.ready());
        let job = retrainer.request(&drift(30)).unwrap();
        let (outcome, _) = retrainer.run(job, 1, 2).unwrap();
        assert_eq!(outcome.candidate_version, Some(2));
        assert!(retrainer.request(&drift(500)).is_none(), "debounced");
        assert!(retrainer.request(&drift(1_030)).is_some(), "debounce over");
    }

    /// A replayed batch observes its events again; each is kept once, and the bound holds.
    #[test]
    fn replayed_events_are_kept_once() {
        let params = RetrainingParams {
            history: 3,
            holdout: 2,
            ..RetrainingParams::default()
        };
        let mut retrainer = Retrainer::new(params, default_model(), Vec::new());
        for _ in 0..2 {
            for i in 0..4 {
                retrainer.observe(&scored(vector(i), 0.1));
            }
        }
        assert_eq!(retrainer.recent_events(), 4);
        for i in 4..10 {
            retrainer.observe(&scored(vector(i), 0.1));
        }
        assert_eq!(retrainer.recent_events(), 5);
        // An event that fell out of the window counts as new again.
        retrainer.observe(&scored(vector(0), 0.1));
        assert_eq!(retrainer.recent_events(), 5);
        assert_eq!(retrainer.recent.back().map(|e| e.id), Some(id_key("e0")));
    }

    /// Ids that differ anywhere (one character, the length, trailing zero bytes) get
    /// different keys: a million of each shape the pipeline sees, and near misses.
    #[test]
    fn distinct_ids_get_distinct_keys() {
        let mut keys = std::collections::HashSet::new();
        let mut ids = 0;
        let mut add = |id: &str| {
            ids += 1;
            assert!(keys.insert(id_key(id)), "{id} shares a key");
        };
        for i in 0..1_000_000u32 {
            add(&format!("e{i}"));
            add(&crate::ids::name_uuid("test", &i.to_string()));
        }
        for near in [
            "",
            "\0",
            "\0\0",
            "a",
            "a\0",
            "aaaaaaaa",
            "aaaaaaaa\0",
            "aaaaaaab",
        ] {
            add(near);
        }
        assert_eq!(keys.len(), ids);
    }
}
