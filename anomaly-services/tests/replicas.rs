//! Several instances of a service: every ml-inference instance adopts every published model
//! (read back from each instance's `/metrics`), although an announcement on `model-updates`
//! reaches one member of the group; retraining workers racing to publish get distinct,
//! increasing versions, and the active model never goes back.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

mod common;

use common::{
    database_url, delete_redis_prefix, drop_schema, free_port, health, metric, redis_url,
    terminate, unique, wait_until,
};

use anomaly_core::anomaly::Ensemble;
use anomaly_core::features::TransactionFeatures;
use anomaly_core::snapshot::{Model, Snapshot};
use anomaly_services::adapters::kafka::{KafkaIo, Output};
use anomaly_services::adapters::postgres::PgEventStore;
use anomaly_services::adapters::redis::RedisModelStore;
use anomaly_services::messages::ModelUpdate;
use anomaly_services::pipeline::default_model;
use rdkafka::mocking::MockCluster;

fn snapshot(version: u64) -> Vec<u8> {
    let model = Ensemble::with_features(default_model(), &TransactionFeatures::NAMES).unwrap();
    Snapshot::new(version, Model::Ensemble(model)).to_bytes()
}

fn ml_inference(bootstrap: &str, prefix: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ml-inference"))
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("KAFKA_OFFSET_RESET", "earliest")
        .env("REDIS_URL", redis_url())
        .env("REDIS_PREFIX", prefix)
        .env("HTTP_PORT", port.to_string())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn every_ml_inference_instance_adopts_every_published_model() {
    let cluster = MockCluster::new(3).unwrap();
    for topic in ["features", "scores", "alerts"] {
        cluster.create_topic(topic, 6, 1).unwrap();
    }
    for topic in ["model-updates", "dead-letters"] {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let prefix = unique("test:replicas") + ":";
    let mut models = RedisModelStore::connect(&redis_url(), &prefix).unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut instances: Vec<Child> = ports
        .iter()
        .map(|&port| ml_inference(&bootstrap, &prefix, port))
        .collect();
    for &port in &ports {
        wait_until("an instance to start", Duration::from_secs(60), || {
            health(port).is_some()
        });
    }
    let writer = KafkaIo::connect(&bootstrap, "writer", &[], "earliest").unwrap();
    for _ in 0..2 {
        let version = models.allocate_version().unwrap();
        assert!(models.publish(version, &snapshot(version)).unwrap());
        // One announcement: one member of the group reads it.
        let update = ModelUpdate {
            schema_version: anomaly_services::messages::SCHEMA_VERSION,
            model_version: version,
            timestamp_ms: 1_767_225_600_000,
            reason: "test".into(),
            previous_auc: None,
            auc: None,
        };
        writer
            .send_all(
                &[Output {
                    topic: "model-updates",
                    key: None,
                    payload: serde_json::to_vec(&update).unwrap(),
                }],
                Duration::from_secs(10),
            )
            .unwrap();
        wait_until(
            "every instance on the new version",
            Duration::from_secs(60),
            || {
                ports
                    .iter()
                    .all(|&port| metric(port, "anomaly_active_model_version") == version)
            },
        );
    }
    for instance in &mut instances {
        let status = terminate(instance, Duration::from_secs(15));
        assert!(status.success(), "{status:?}");
    }
    delete_redis_prefix(&prefix);
}

/// Four workers allocate a version each, at once, then publish in the reverse order of their
/// versions (the newest first): every version is distinct, only the newest becomes active,
/// and only it gets a `model_versions` row; the active version never went back.
#[test]
fn racing_publishers_get_distinct_versions_and_the_active_model_never_goes_back() {
    let prefix = unique("test:race") + ":";
    let schema = unique("test_race");
    PgEventStore::connect(&database_url(), &schema).unwrap();
    let workers = 4;
    let allocated = Arc::new(Barrier::new(workers));
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (prefix, schema, allocated) = (prefix.clone(), schema.clone(), allocated.clone());
            std::thread::spawn(move || {
                let mut models = RedisModelStore::connect(&redis_url(), &prefix).unwrap();
                let mut events = PgEventStore::connect(&database_url(), &schema).unwrap();
                let version = models.allocate_version().unwrap();
                allocated.wait();
                // The newest publishes first; the others find it active.
                std::thread::sleep(Duration::from_millis(200 * (10 - version)));
                let published = models.publish(version, &snapshot(version)).unwrap();
                if published {
                    events
                        .write_model_version(&ModelUpdate {
                            schema_version: anomaly_services::messages::SCHEMA_VERSION,
                            model_version: version,
                            timestamp_ms: 1_767_225_600_000,
                            reason: "race".into(),
                            previous_auc: None,
                            auc: None,
                        })
                        .unwrap();
                }
                (version, published)
            })
        })
        .collect();
    let mut outcomes: Vec<(u64, bool)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    outcomes.sort();
    let versions: Vec<u64> = outcomes.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        versions,
        [2, 3, 4, 5],
        "distinct versions above the fresh model's"
    );
    let published: Vec<u64> = outcomes
        .iter()
        .filter(|(_, p)| *p)
        .map(|(v, _)| *v)
        .collect();
    assert_eq!(published, [5]);
    let mut models = RedisModelStore::connect(&redis_url(), &prefix).unwrap();
    assert_eq!(models.active_version().unwrap(), Some(5));
    let active = Snapshot::from_bytes(&models.load().unwrap().unwrap()).unwrap();
    assert_eq!(active.model_version, 5);
    let mut admin = postgres::Client::connect(&database_url(), postgres::NoTls).unwrap();
    let rows: Vec<i64> = admin
        .query(
            &format!("SELECT model_version FROM \"{schema}\".model_versions"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, [5]);
    delete_redis_prefix(&prefix);
    drop_schema(&schema);
}
