//! `features` -> `scores` (+ `alerts`), and `model-updates` -> hot swap of the active model.

use std::time::{Duration, Instant};

use log::{info, warn};

use crate::adapters::kafka::{Output, Record};
use crate::failure::Unavailable;
use crate::messages::{ModelUpdate, decode, decode_features};
use crate::service::{Failure, Handler, json_output, reject};
use crate::stages::inference::Inference;
use crate::telemetry::metrics::Metrics;

/// Topic of feature vectors.
pub const FEATURES: &str = "features";
/// Topic announcing new models.
pub const MODEL_UPDATES: &str = "model-updates";
/// Topic of scored events.
pub const SCORES: &str = "scores";
/// Topic of alerts.
pub const ALERTS: &str = "alerts";

/// Where the published model's snapshot is read from (Redis `active_model` in production).
pub trait ModelSource {
    /// The active snapshot's bytes, if any; `Err` for a store failure.
    fn load_active(&mut self) -> Result<Option<Vec<u8>>, String>;
    /// The active snapshot's version, if one was published with it.
    fn active_version(&mut self) -> Result<Option<u64>, String>;
}

impl ModelSource for crate::adapters::redis::RedisModelStore {
    fn load_active(&mut self) -> Result<Option<Vec<u8>>, String> {
        self.load().map_err(|e| e.to_string())
    }
    fn active_version(&mut self) -> Result<Option<u64>, String> {
        self.active_version().map_err(|e| e.to_string())
    }
}

/// Where an instance checkpoints what it has learned (Redis in production, see
/// [`RedisLearnedModels`](crate::adapters::learned_models::RedisLearnedModels)).
pub trait LearnedModelStore {
    /// Saves `checkpoint` as this instance's newest.
    fn save(&mut self, checkpoint: &[u8]) -> Result<(), Unavailable>;
}

impl LearnedModelStore for crate::adapters::learned_models::RedisLearnedModels {
    fn save(&mut self, checkpoint: &[u8]) -> Result<(), Unavailable> {
        crate::adapters::learned_models::RedisLearnedModels::save(self, checkpoint)
            .map_err(Unavailable::redis)
    }
}

/// Checkpoints on a timer.
struct Checkpointing {
    store: Box<dyn LearnedModelStore + Send>,
    interval: Duration,
    next: Instant,
}

/// Resumes `stage` (running the active published model) from the first checkpoint that loads
/// and continues that same model: this instance's newest, its previous, then the freshest of
/// other instances (all learned on the same distribution: partitions are keyed by card).
/// A checkpoint that does not load is counted (`errors{kind="checkpoint_corrupt"}`) and the
/// next one tried; one of an older model is skipped (a newer one was published since). Returns
/// where the state came from, or `None` (the published model as it is).
pub fn restore_learned(
    stage: &mut Inference,
    checkpoints: &mut crate::adapters::learned_models::RedisLearnedModels,
    metrics: &Metrics,
) -> Option<String> {
    let order = match checkpoints.restore_order() {
        Ok(order) => order,
        Err(e) => {
            warn!(error = e.to_string().as_str(); "Could not read the learned-model checkpoints; starting from the published model");
            return None;
        }
    };
    for (source, key) in order {
        let bytes = match checkpoints.fetch(&key) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            Err(e) => {
                warn!(error = e.to_string().as_str(); "Could not read a learned-model checkpoint; starting from the published model");
                return None;
            }
        };
        match stage.restore(&bytes) {
            Ok(()) => {
                info!(source = source.as_str(), version = stage.version(); "Resumed learning from a checkpoint");
                return Some(source);
            }
            Err(e @ crate::stages::inference::SwapError::OtherBase { .. }) => {
                info!(source = source.as_str(), reason = e.to_string().as_str(); "Checkpoint superseded by a newer model");
            }
            Err(e) => {
                metrics
                    .errors
                    .with_label_values(&["checkpoint_corrupt"])
                    .inc();
                warn!(source = source.as_str(), error = e.to_string().as_str(); "Learned-model checkpoint unreadable; trying the next");
            }
        }
    }
    None
}

/// How often every instance checks Redis for a newer active model. An announcement on
/// `model-updates` reaches one instance of the group (and makes it check at once); the others
/// adopt the model within this interval.
pub const MODEL_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Scores then learns every vector; swaps models when a newer valid one is published.
pub struct InferenceService<M> {
    stage: Inference,
    /// The stage after the last committed batch.
    committed: Inference,
    models: M,
    metrics: std::sync::Arc<crate::telemetry::http::Status>,
    next_poll: Instant,
    /// The newest version found invalid: not loaded again.
    rejected: u64,
    /// A batch failed and has not been processed again yet: no model is adopted between
    /// (its replay must score with the model of its first run).
    replay_pending: bool,
    checkpointing: Option<Checkpointing>,
}

impl<M: ModelSource> InferenceService<M> {
    /// A handler running `stage`, reading published models from `models`.
    pub fn new(
        stage: Inference,
        models: M,
        status: std::sync::Arc<crate::telemetry::http::Status>,
    ) -> Self {
        status
            .metrics
            .active_model_version
            .set(stage.version() as i64);
        Self {
            committed: stage.clone(),
            stage,
            models,
            metrics: status,
            next_poll: Instant::now(),
            rejected: 0,
            replay_pending: false,
            checkpointing: None,
        }
    }

    /// Checkpoints what the model learned to `store` every `interval` (between batches: the
    /// committed state).
    pub fn with_checkpoints(
        mut self,
        store: Box<dyn LearnedModelStore + Send>,
        interval: Duration,
    ) -> Self {
        self.checkpointing = Some(Checkpointing {
            store,
            interval,
            next: Instant::now() + interval,
        });
        self
    }

    /// Saves the committed model as this instance's checkpoint now (at shutdown, and on the
    /// timer); does nothing without a store.
    pub fn save_checkpoint(&mut self) -> Result<(), Unavailable> {
        let Some(checkpointing) = self.checkpointing.as_mut() else {
            return Ok(());
        };
        checkpointing.next = Instant::now() + checkpointing.interval;
        let started = Instant::now();
        let bytes = self.committed.checkpoint();
        checkpointing.store.save(&bytes)?;
        let metrics = &self.metrics.metrics;
        metrics
            .checkpoint_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.checkpoint_bytes.set(bytes.len() as i64);
        Ok(())
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics.metrics
    }

    /// Swaps to the active model if it is newer than the running one and not known to be
    /// invalid; returns whether it did.
    fn adopt_active(&mut self) -> Result<bool, String> {
        let Some(active) = self.models.active_version()? else {
            return Ok(false);
        };
        if active <= self.stage.version() || active <= self.rejected {
            return Ok(false);
        }
        let Some(bytes) = self.models.load_active()? else {
            warn!(version = active; "Active version set but no active model stored");
            return Ok(false);
        };
        match self.stage.swap(&bytes) {
            Ok(version) => {
                self.metrics().active_model_version.set(version as i64);
                info!(version = version; "Switched to a new model");
                Ok(true)
            }
            Err(e) => {
                // The running model stays; a bad snapshot is not a record's fault.
                self.rejected = active;
                self.metrics()
                    .errors
                    .with_label_values(&["model_rejected"])
                    .inc();
                warn!(version = active, error = e.to_string().as_str(); "Rejected a published model");
                Ok(false)
            }
        }
    }
}

impl<M: ModelSource> Handler for InferenceService<M> {
    fn handle(&mut self, record: &Record, out: &mut Vec<Output>) -> Result<(), Failure> {
        if record.topic == MODEL_UPDATES {
            let _: ModelUpdate = decode(&record.payload).map_err(reject)?;
            self.adopt_active().map_err(Failure::redis)?;
            return Ok(());
        }
        let vector = decode_features(&record.payload).map_err(reject)?;
        let (scored, alert) = self.stage.process(&vector).map_err(|e| Failure::Reject {
            kind: "invalid",
            error: e.to_string(),
        })?;
        if scored.is_anomaly {
            self.metrics().anomalies.inc();
        }
        out.push(json_output(SCORES, Some(scored.card_id.clone()), &scored));
        if let Some(alert) = alert {
            self.metrics()
                .alerts
                .with_label_values(&[alert.severity.name()])
                .inc();
            out.push(json_output(ALERTS, alert.card_id.clone(), &alert));
        }
        Ok(())
    }

    fn batch_committed(&mut self) {
        self.committed.clone_from(&self.stage);
        self.replay_pending = false;
    }

    fn tick(&mut self) {
        if self.replay_pending {
            return;
        }
        if self
            .checkpointing
            .as_ref()
            .is_some_and(|c| Instant::now() >= c.next)
            && let Err(e) = self.save_checkpoint()
        {
            self.metrics()
                .errors
                .with_label_values(&["redis_unavailable"])
                .inc();
            warn!(error = e.to_string().as_str(); "Could not checkpoint the learned model; trying again at the next interval");
        }
        if Instant::now() < self.next_poll {
            return;
        }
        self.next_poll = Instant::now() + MODEL_POLL_INTERVAL;
        // Between batches the stage is the committed one: a model adopted here is committed.
        match self.adopt_active() {
            Ok(true) => self.committed.clone_from(&self.stage),
            Ok(false) => {}
            Err(e) => {
                self.metrics()
                    .errors
                    .with_label_values(&["redis_unavailable"])
                    .inc();
                warn!(error = e.as_str(); "Could not check for a newer model");
            }
        }
    }

    fn replay_moved_away(&mut self) {
        // Another consumer replays the failed batch, with its own model: nothing to wait for.
        // The stage is already the committed one (`batch_failed`).
        self.replay_pending = false;
    }

    fn batch_failed(&mut self) {
        // The replay scores the same vectors again: the model must not have learned them.
        self.stage.clone_from(&self.committed);
        self.replay_pending = true;
        self.metrics()
            .active_model_version
            .set(self.stage.version() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::FeatureVector;
    use crate::pipeline::default_model;
    use anomaly_core::anomaly::Ensemble;
    use anomaly_core::features::TransactionFeatures;

    struct NoModels;

    impl ModelSource for NoModels {
        fn load_active(&mut self) -> Result<Option<Vec<u8>>, String> {
            Ok(None)
        }
        fn active_version(&mut self) -> Result<Option<u64>, String> {
            Ok(None)
        }
    }

    fn service() -> InferenceService<NoModels> {
        let model = Ensemble::with_features(default_model(), &TransactionFeatures::NAMES).unwrap();
        InferenceService::new(
            Inference::new(model, 1, 0.5),
            NoModels,
            crate::telemetry::http::Status::new("ml-inference"),
        )
    }

    fn batch(from: usize) -> Vec<Record> {
        (from..from + 300)
            .map(|i| {
                let x = (i % 17) as f64 / 17.0;
                let vector = FeatureVector {
                    schema_version: crate::messages::SCHEMA_VERSION,
                    event_id: format!("e{i}"),
                    card_id: "c".into(),
                    timestamp_ms: 1_767_225_600_000 + i as i64,
                    features: vec![x; TransactionFeatures::NAMES.len()],
                    amount: 1.0,
                    is_fraud: false,
                    phase: "p".into(),
                    merchant: "m".into(),
                };
                Record {
                    topic: FEATURES.into(),
                    partition: 0,
                    offset: i as i64,
                    key: None,
                    payload: serde_json::to_vec(&vector).unwrap(),
                    timestamp_ms: None,
                }
            })
            .collect()
    }

    fn handle_all<M: ModelSource>(
        service: &mut InferenceService<M>,
        records: &[Record],
    ) -> Vec<Output> {
        let mut out = Vec::new();
        for record in records {
            service.handle(record, &mut out).unwrap();
        }
        out
    }

    /// A batch that failed and is consumed again is learned once, not twice.
    #[test]
    fn a_failed_batch_is_unlearned_before_its_replay() {
        let (mut once, mut replayed) = (service(), service());
        for start in [0, 300] {
            let records = batch(start);
            let expected = handle_all(&mut once, &records);
            once.batch_committed();
            handle_all(&mut replayed, &records);
            replayed.batch_failed();
            assert_eq!(handle_all(&mut replayed, &records), expected);
            replayed.batch_committed();
        }
        assert_eq!(replayed.stage.model(), once.stage.model());
    }

    /// A published model `version`, always the active one.
    struct Published {
        version: u64,
        snapshot: Vec<u8>,
    }

    impl ModelSource for Published {
        fn load_active(&mut self) -> Result<Option<Vec<u8>>, String> {
            Ok(Some(self.snapshot.clone()))
        }
        fn active_version(&mut self) -> Result<Option<u64>, String> {
            Ok(Some(self.version))
        }
    }

    /// While a failed batch waits for its replay, no newer model is adopted; once its
    /// partitions have moved to another consumer there is no replay to wait for, and the
    /// next check adopts it (before, an instance left idle stayed on its old model for good).
    #[test]
    fn a_replay_that_moved_away_no_longer_holds_back_a_newer_model() {
        let model = Ensemble::with_features(default_model(), &TransactionFeatures::NAMES).unwrap();
        let published = Published {
            version: 2,
            snapshot: Inference::new(model.clone(), 2, 0.5).checkpoint(),
        };
        let mut service = InferenceService::new(
            Inference::new(model, 1, 0.5),
            published,
            crate::telemetry::http::Status::new("ml-inference"),
        );
        handle_all(&mut service, &batch(0));
        service.batch_failed();
        service.tick();
        assert_eq!(
            service.stage.version(),
            1,
            "adopted while the replay was pending"
        );
        service.replay_moved_away();
        service.tick();
        assert_eq!(service.stage.version(), 2);
        assert_eq!(service.committed.version(), 2);
        assert_eq!(service.metrics().active_model_version.get(), 2);
    }
}
