//! ml-inference's checkpoints of what it learned online, against the real Redis: saved on a
//! timer, restored at start from its own, its previous or another instance's, never from a
//! corrupt one or one of an older model.

mod common;

use std::time::Duration;

use anomaly_core::anomaly::Ensemble;
use anomaly_core::features::TransactionFeatures;
use anomaly_services::adapters::kafka::Record;
use anomaly_services::adapters::learned_models::RedisLearnedModels;
use anomaly_services::messages::{FeatureVector, SCHEMA_VERSION};
use anomaly_services::pipeline::default_model;
use anomaly_services::service::Handler;
use anomaly_services::services::ml_inference::{
    FEATURES, InferenceService, ModelSource, restore_learned,
};
use anomaly_services::stages::inference::Inference;
use anomaly_services::telemetry::http::Status;
use common::{delete_redis_prefix, redis_connection, redis_url, unique};

const WEEK: Duration = Duration::from_secs(7 * 86_400);

fn stage(version: u64) -> Inference {
    let model = Ensemble::with_features(default_model(), &TransactionFeatures::NAMES).unwrap();
    Inference::new(model, version, 0.85)
}

fn vector(i: usize) -> FeatureVector {
    FeatureVector {
        schema_version: SCHEMA_VERSION,
        event_id: format!("e{i}"),
        card_id: format!("c{}", i % 13),
        timestamp_ms: 1_767_225_600_000 + i as i64,
        features: vec![(i % 29) as f64 / 29.0; TransactionFeatures::NAMES.len()],
        amount: 10.0,
        is_fraud: false,
        phase: "normal".into(),
        merchant: "m".into(),
    }
}

/// A stage that has learned `events` vectors.
fn learned(version: u64, events: std::ops::Range<usize>) -> Inference {
    let mut stage = stage(version);
    for i in events {
        stage.process(&vector(i)).unwrap();
    }
    stage
}

fn checkpoints(prefix: &str, instance: &str) -> RedisLearnedModels {
    RedisLearnedModels::connect(&redis_url(), prefix, instance, WEEK).unwrap()
}

fn corrupt_count(status: &Status) -> u64 {
    status
        .metrics
        .errors
        .with_label_values(&["checkpoint_corrupt"])
        .get()
}

#[test]
fn a_restart_resumes_from_its_own_checkpoint_and_a_missing_one_changes_nothing() {
    let prefix = unique("test:learned") + ":";
    let status = Status::new("ml-inference");
    let mut restarted = stage(3);
    assert_eq!(
        restore_learned(
            &mut restarted,
            &mut checkpoints(&prefix, "a"),
            &status.metrics
        ),
        None
    );
    assert_eq!(restarted.model(), stage(3).model(), "nothing to restore");

    let before = learned(3, 0..500);
    checkpoints(&prefix, "a")
        .save(&before.checkpoint())
        .unwrap();
    let source = restore_learned(
        &mut restarted,
        &mut checkpoints(&prefix, "a"),
        &status.metrics,
    );
    assert_eq!(source.as_deref(), Some("own checkpoint"));
    assert_eq!(restarted.model(), before.model());
    assert_eq!(restarted.version(), 3);
    assert_eq!(corrupt_count(&status), 0);
    delete_redis_prefix(&prefix);
}

#[test]
fn a_corrupt_checkpoint_falls_back_to_the_previous_one_and_is_counted() {
    let prefix = unique("test:learned") + ":";
    let status = Status::new("ml-inference");
    let (older, newer) = (learned(2, 0..300), learned(2, 0..600));
    let mut store = checkpoints(&prefix, "a");
    store.save(&older.checkpoint()).unwrap();
    store.save(&newer.checkpoint()).unwrap();
    // Flip a byte of the newest in Redis.
    let key = format!("{prefix}learned_model:a");
    let mut bytes: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query(&mut redis_connection())
        .unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(bytes)
        .query(&mut redis_connection())
        .unwrap();

    let mut restarted = stage(2);
    let source = restore_learned(&mut restarted, &mut store, &status.metrics);
    assert_eq!(source.as_deref(), Some("own previous checkpoint"));
    assert_eq!(restarted.model(), older.model());
    assert_eq!(corrupt_count(&status), 1);
    delete_redis_prefix(&prefix);
}

#[test]
fn a_checkpoint_of_an_older_model_gives_way_to_the_newer_publication() {
    let prefix = unique("test:learned") + ":";
    let status = Status::new("ml-inference");
    checkpoints(&prefix, "a")
        .save(&learned(2, 0..300).checkpoint())
        .unwrap();
    // Version 3 was published after the checkpoint: the instance starts on it as published.
    let mut restarted = stage(3);
    let source = restore_learned(
        &mut restarted,
        &mut checkpoints(&prefix, "a"),
        &status.metrics,
    );
    assert_eq!(source, None);
    assert_eq!(restarted.model(), stage(3).model());
    assert_eq!(restarted.version(), 3);
    assert_eq!(corrupt_count(&status), 0, "superseded is not corrupt");
    delete_redis_prefix(&prefix);
}

#[test]
fn a_new_instance_starts_from_the_freshest_checkpoint_of_another() {
    let prefix = unique("test:learned") + ":";
    let status = Status::new("ml-inference");
    let (stale, fresh) = (learned(4, 0..200), learned(4, 0..400));
    checkpoints(&prefix, "a").save(&stale.checkpoint()).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    checkpoints(&prefix, "b").save(&fresh.checkpoint()).unwrap();
    let mut added = stage(4);
    let source = restore_learned(&mut added, &mut checkpoints(&prefix, "c"), &status.metrics);
    assert_eq!(source.as_deref(), Some("checkpoint of instance b"));
    assert_eq!(added.model(), fresh.model());
    delete_redis_prefix(&prefix);
}

struct NoModels;

impl ModelSource for NoModels {
    fn load_active(&mut self) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
    fn active_version(&mut self) -> Result<Option<u64>, String> {
        Ok(None)
    }
}

/// The service checkpoints its committed model once the interval has passed, between
/// batches, and records the checkpoint's size.
#[test]
fn the_service_checkpoints_its_committed_model_on_its_timer() {
    let prefix = unique("test:learned") + ":";
    let status = Status::new("ml-inference");
    let interval = Duration::from_millis(300);
    let mut service = InferenceService::new(stage(1), NoModels, status.clone())
        .with_checkpoints(Box::new(checkpoints(&prefix, "a")), interval);
    let mut out = Vec::new();
    for i in 0..200 {
        let record = Record {
            topic: FEATURES.into(),
            partition: 0,
            offset: i as i64,
            key: None,
            payload: serde_json::to_vec(&vector(i)).unwrap(),
            timestamp_ms: None,
        };
        service.handle(&record, &mut out).unwrap();
    }
    service.end_batch(&[], &mut out).unwrap();
    service.before_commit().unwrap();
    service.batch_committed();
    service.tick();
    let key = format!("{prefix}learned_model:a");
    let exists = || -> bool {
        redis::cmd("EXISTS")
            .arg(&key)
            .query(&mut redis_connection())
            .unwrap()
    };
    assert!(!exists(), "not before the interval");
    std::thread::sleep(interval);
    service.tick();
    assert!(exists());
    let mut restarted = stage(1);
    restore_learned(
        &mut restarted,
        &mut checkpoints(&prefix, "a"),
        &status.metrics,
    )
    .unwrap();
    assert_eq!(restarted.model(), learned(1, 0..200).model());
    assert!(status.metrics.checkpoint_bytes.get() > 0);
    delete_redis_prefix(&prefix);
}
