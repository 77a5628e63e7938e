//! Several instances of a service: every ml-inference instance adopts every published model
//! (read back from each instance's `/metrics`), although an announcement on `model-updates`
//! reaches one member of the group; retraining workers racing to publish get distinct,
//! increasing versions, and the active model never goes back.

use std::process::{Child, Command};
use std::sync::{Arc, Barrier};
use std::time::Duration;

mod common;

use common::{
    KillOnDrop, database_url, delete_redis_prefix, drop_schema, free_port, health, metric,
    redis_url, terminate, unique, wait_until,
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

/// These tests run many service processes each: one at a time, so that a two-core machine
/// runs them at a speed their timeouts allow.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Stopping a member of a group that is rebalancing takes longer than stopping a lone
/// consumer: its final commit is retried while it rejoins (up to 5 s), then it leaves.
const STOP_LIMIT: Duration = Duration::from_secs(30);

fn snapshot(version: u64) -> Vec<u8> {
    let model = Ensemble::with_features(default_model(), &TransactionFeatures::NAMES).unwrap();
    Snapshot::new(version, Model::Ensemble(model)).to_bytes()
}

fn ml_inference(bootstrap: &str, prefix: &str, port: u16) -> Child {
    common::service_command(env!("CARGO_BIN_EXE_ml-inference"), bootstrap, port)
        .env("REDIS_URL", redis_url())
        .env("REDIS_PREFIX", prefix)
        .spawn()
        .unwrap()
}

#[test]
fn every_ml_inference_instance_adopts_every_published_model() {
    let _serial = one_at_a_time();
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
    let mut instances: Vec<KillOnDrop> = ports
        .iter()
        .map(|&port| KillOnDrop(ml_inference(&bootstrap, &prefix, port)))
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
        let status = terminate(&mut instance.0, STOP_LIMIT);
        assert!(status.success(), "{status:?}");
    }
    delete_redis_prefix(&prefix);
}

/// Four workers allocate a version each, at once, then publish in the reverse order of their
/// versions (the newest first): every version is distinct, only the newest becomes active,
/// and only it gets a `model_versions` row; the active version never went back.
#[test]
fn racing_publishers_get_distinct_versions_and_the_active_model_never_goes_back() {
    let _serial = one_at_a_time();
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

/// Where an instance's log goes, to show when it exits badly.
fn log_path(port: u16) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("anomaly-test-drift-detector-{port}.log"))
}

fn drift_detector(bootstrap: &str, schema: &str, prefix: &str, port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(port))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_drift-detector"))
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("KAFKA_OFFSET_RESET", "earliest")
        // The mock cluster hands a killed member's partitions over when its session expires.
        .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("TIMESCALE_URL", database_url())
        .env("TIMESCALE_SCHEMA", schema)
        .env("REDIS_URL", redis_url())
        .env("REDIS_PREFIX", prefix)
        .env("HTTP_PORT", port.to_string())
        .env("RUST_LOG", "error")
        .stdout(log)
        .spawn()
        .unwrap()
}

/// Three drift-detector instances over six partitions, the stream arriving live with a shift
/// every 10,000 events; the owner of the detectors is SIGKILLed mid-stream and restarted:
/// - one instance at a time owns the detectors (each instance's `/metrics`), a standby takes
///   over after the kill, and the checkpoint covers every record once at the end (read back
///   from Redis);
/// - every scored event is stored once;
/// - every shift is found, about as often as one detector on the whole stream finds it: not
///   once per instance.
#[test]
fn three_drift_detectors_run_the_detectors_once_and_a_standby_takes_over() {
    let _serial = one_at_a_time();
    const EVENTS: u32 = 60_000;
    const SHIFT_EVERY: u32 = 10_000;
    let cluster = MockCluster::new(3).unwrap();
    for topic in ["scores", "drift-events", "alerts"] {
        cluster.create_topic(topic, 6, 1).unwrap();
    }
    cluster.create_topic("dead-letters", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let schema = unique("test_drift_replicas");
    let prefix = unique("test:drift-replicas") + ":";
    let events: Vec<anomaly_services::messages::ScoredEvent> = (0..EVENTS)
        .map(|i| {
            common::scored_event(
                i,
                format!("card-{}", i % 600),
                if (i / SHIFT_EVERY) % 2 == 0 { 0.3 } else { 0.8 },
            )
        })
        .collect();
    PgEventStore::connect(&database_url(), &schema).unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut instances: Vec<KillOnDrop> = ports
        .iter()
        .map(|&port| KillOnDrop(drift_detector(&bootstrap, &schema, &prefix, port)))
        .collect();
    let leaders = |ports: &[u16]| -> Vec<u16> {
        ports
            .iter()
            .copied()
            .filter(|&port| metric(port, "anomaly_drift_leader") == 1)
            .collect()
    };
    wait_until(
        "one owner of the detectors",
        Duration::from_secs(60),
        || leaders(&ports).len() == 1,
    );
    // The stream arrives live, 500 events every 100 ms.
    let sender = {
        let (bootstrap, events) = (bootstrap.clone(), events.clone());
        std::thread::spawn(move || {
            let writer = KafkaIo::connect(&bootstrap, "writer", &[], "earliest").unwrap();
            for chunk in events.chunks(500) {
                let outputs: Vec<Output> = chunk
                    .iter()
                    .map(|e| Output {
                        topic: "scores",
                        key: Some(e.card_id.clone()),
                        payload: serde_json::to_vec(e).unwrap(),
                    })
                    .collect();
                writer.send_all(&outputs, Duration::from_secs(30)).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Mid-stream, the owner is killed; a standby takes over; the killed one comes back.
    let mut db = PgEventStore::connect(&database_url(), &schema).unwrap();
    wait_until(
        "a third of the stream stored",
        Duration::from_secs(60),
        || {
            db.count(anomaly_services::adapters::postgres::Table::ScoredEvents)
                .unwrap()
                >= u64::from(EVENTS / 3)
        },
    );
    let owner = leaders(&ports)[0];
    let killed = ports.iter().position(|&p| p == owner).unwrap();
    instances[killed].0.kill().unwrap();
    instances[killed].0.wait().unwrap();
    let survivors: Vec<u16> = ports.iter().copied().filter(|&p| p != owner).collect();
    wait_until("a standby to take over", Duration::from_secs(60), || {
        leaders(&survivors).len() == 1
    });
    instances[killed] = KillOnDrop(drift_detector(&bootstrap, &schema, &prefix, ports[killed]));
    sender.join().unwrap();

    wait_until(
        "every scored event stored",
        Duration::from_secs(120),
        || {
            db.count(anomaly_services::adapters::postgres::Table::ScoredEvents)
                .unwrap()
                == u64::from(EVENTS)
        },
    );
    // The detectors' checkpoint covers every record of every partition, once.
    common::wait_for_drift_checkpoint(&prefix, u64::from(EVENTS), Duration::from_secs(60));
    assert_eq!(leaders(&ports).len(), 1, "one owner at the end");
    for (instance, port) in instances.iter_mut().zip(&ports) {
        let status = terminate(&mut instance.0, STOP_LIMIT);
        let log = std::fs::read_to_string(log_path(*port)).unwrap_or_default();
        assert!(status.success(), "{status:?}; its log:\n{log}");
        let _ = std::fs::remove_file(log_path(*port));
    }

    // One detector over the stream in the order sent: the drifts each shift gives.
    let model = default_model();
    let mut reference = anomaly_services::stages::drift_monitor::DriftMonitor::new(
        u64::from(model.hst.window_size) + u64::from(model.sad_grace_period),
    );
    let per_shift = |indexes: &mut dyn Iterator<Item = u32>| {
        let mut counts = vec![0usize; (EVENTS / SHIFT_EVERY) as usize];
        for i in indexes {
            counts[(i / SHIFT_EVERY) as usize] += 1;
        }
        counts
    };
    let expected = per_shift(
        &mut events
            .iter()
            .enumerate()
            .flat_map(|(i, e)| reference.process(e).into_iter().map(move |_| i as u32)),
    );
    let mut admin = postgres::Client::connect(&database_url(), postgres::NoTls).unwrap();
    let found: Vec<u32> = admin
        .query(
            &format!("SELECT event_id FROM \"{schema}\".drift_events WHERE detector = 'ADWIN'"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0)["event-".len()..].parse().unwrap())
        .collect();
    let got = per_shift(&mut found.into_iter());
    eprintln!("ADWIN drifts per stretch: one detector {expected:?}, three instances {got:?}");
    for (stretch, (&want, &have)) in expected.iter().zip(&got).enumerate().skip(1) {
        assert!(
            have >= 1,
            "the shift at {} was not found",
            stretch as u32 * SHIFT_EVERY
        );
        assert!(
            have <= want + 1,
            "stretch {stretch}: {have} drifts where one detector finds {want}"
        );
    }
    delete_redis_prefix(&prefix);
    drop_schema(&schema);
}

/// A service binary of the whole-pipeline run; ml-inference checkpoints what it learned
/// every 2 s, so that a killed instance has one to resume from.
fn service(name: &str, bootstrap: &str, schema: &str, prefix: &str, port: u16) -> KillOnDrop {
    KillOnDrop(
        common::pipeline_service(name, bootstrap, schema, prefix, port)
            .env("MODEL_CHECKPOINT_INTERVAL_S", "2")
            .spawn()
            .unwrap(),
    )
}

/// The whole-pipeline runs' stream: 12,000 transactions over 200 cards, sent by two
/// producers at 40 times event time (about 15 s).
const PIPELINE_EVENTS: u64 = 12_000;
const PIPELINE_CARDS: u32 = 200;

/// Where producer `instance` of the run with `prefix` logs (each start appends), so that a
/// producer that fails says why in the test's failure.
fn producer_log(prefix: &str, instance: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{prefix}-producer-{instance}.log"))
}

fn producer(bootstrap: &str, prefix: &str, instance: u32) -> KillOnDrop {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(producer_log(prefix, instance))
        .unwrap();
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_producer"))
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .env("REDIS_URL", redis_url())
            .env("REDIS_PREFIX", prefix)
            .env("REPLAY_SPEED", "40")
            .env("KAFKA_BATCH_SIZE", "200")
            .env("PRODUCER_EVENTS", PIPELINE_EVENTS.to_string())
            .env("PRODUCER_CARDS", PIPELINE_CARDS.to_string())
            .env("PRODUCER_INSTANCES", "2")
            .env("PRODUCER_INSTANCE", instance.to_string())
            // Nothing here reads a producer's /metrics: port 0 lets the kernel pick a free one
            // (a port found free beforehand can be taken by a connection before it is bound).
            .env("HTTP_PORT", "0")
            .env("RUST_LOG", "warn")
            .stdout(log)
            .spawn()
            .unwrap(),
    )
}

/// What a whole-pipeline run left behind.
struct PipelineRun {
    /// Per phase boundary of the generator, how many transactions after it the first ADWIN
    /// drift came (`None`: none before the next boundary).
    delays: Vec<Option<u64>>,
}

/// Runs the whole pipeline with several instances of every service over six partitions per
/// topic (two producers splitting the cards, three of each consumer, two retraining workers)
/// and checks it: every transaction sent once (read from the broker) and scored and stored
/// once, one instance owning the drift detectors, every ml-inference instance on the newest
/// published model. `disturb`: a third of the way in, one instance of every service
/// (a producer, and the drift detectors' owner among them) is SIGKILLed and started again,
/// and one more instance of every consumer is added.
fn run_pipeline(disturb: bool) -> PipelineRun {
    let cluster = MockCluster::new(3).unwrap();
    for topic in anomaly_services::services::TOPICS {
        cluster.create_topic(topic, 6, 1).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let schema = unique("test_all_replicas");
    let prefix = unique("test:all-replicas") + ":";
    PgEventStore::connect(&database_url(), &schema).unwrap();
    let mut running: Vec<(&str, u16, KillOnDrop)> = Vec::new();
    let start = |name: &'static str, running: &mut Vec<(&str, u16, KillOnDrop)>| {
        let port = free_port();
        running.push((
            name,
            port,
            service(name, &bootstrap, &schema, &prefix, port),
        ));
    };
    for (name, count) in [
        ("feature-engineer", 3),
        ("ml-inference", 3),
        ("drift-detector", 3),
        ("alert-router", 3),
        ("retraining-worker", 2),
    ] {
        for _ in 0..count {
            start(name, &mut running);
        }
    }
    for (_, port, _) in &running {
        wait_until("every instance up", Duration::from_secs(60), || {
            health(*port).is_some()
        });
    }
    let ports = |running: &[(&str, u16, KillOnDrop)], service: &str| -> Vec<u16> {
        running
            .iter()
            .filter(|(name, _, _)| *name == service)
            .map(|(_, port, _)| *port)
            .collect()
    };
    // Two producers, each the cards that hash to it; each exits once its share is sent.
    let mut producers: Vec<KillOnDrop> = (0..2).map(|i| producer(&bootstrap, &prefix, i)).collect();
    let mut db = PgEventStore::connect(&database_url(), &schema).unwrap();
    let stored = |db: &mut PgEventStore| {
        db.count(anomaly_services::adapters::postgres::Table::ScoredEvents)
            .unwrap()
    };
    if disturb {
        wait_until(
            "a third of the stream stored",
            Duration::from_secs(120),
            || stored(&mut db) >= PIPELINE_EVENTS / 3,
        );
        producers[0].0.kill().unwrap();
        producers[0].0.wait().unwrap();
        for name in [
            "feature-engineer",
            "ml-inference",
            "drift-detector",
            "alert-router",
            "retraining-worker",
        ] {
            // The drift detectors' owner, where there is one: the hardest to replace.
            let victim = running
                .iter()
                .position(|(n, port, _)| {
                    *n == name
                        && (name != "drift-detector" || metric(*port, "anomaly_drift_leader") == 1)
                })
                .unwrap();
            let (_, port, instance) = &mut running[victim];
            instance.0.kill().unwrap();
            instance.0.wait().unwrap();
            // Started again as itself (same port: same INSTANCE_ID, so ml-inference finds its
            // checkpoint), and one instance more.
            *instance = service(name, &bootstrap, &schema, &prefix, *port);
            start(name, &mut running);
        }
        producers[0] = producer(&bootstrap, &prefix, 0);
    }
    for (instance, producer) in producers.iter_mut().enumerate() {
        let status = producer.0.wait().unwrap();
        let log = std::fs::read_to_string(producer_log(&prefix, instance as u32));
        assert!(
            status.success(),
            "producer {instance}: {status:?}; its log:\n{log:?}"
        );
        let _ = std::fs::remove_file(producer_log(&prefix, instance as u32));
    }
    // The producers sent the stream once between them, the restarted one going on where it
    // stopped (read from the broker: the table's unique key would hide a duplicate).
    let reader: rdkafka::consumer::BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let on_topic: i64 = (0..6)
        .map(|p| {
            use rdkafka::consumer::Consumer;
            reader
                .fetch_watermarks("raw-transactions", p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum();
    assert_eq!(on_topic, PIPELINE_EVENTS as i64);
    // Each producer recorded reaching the end of the stream.
    for instance in 0..2 {
        let progress: Option<u64> = redis::cmd("GET")
            .arg(format!(
                "{prefix}producer:progress:run1-seed42-events{PIPELINE_EVENTS}-cards{PIPELINE_CARDS}:{instance}of2"
            ))
            .query(&mut common::redis_connection())
            .unwrap();
        assert_eq!(progress, Some(PIPELINE_EVENTS));
    }
    wait_until(
        "every transaction scored and stored",
        Duration::from_secs(300),
        || stored(&mut db) >= PIPELINE_EVENTS,
    );
    // A killed owner is replaced when its lease (10 s) ends.
    wait_until(
        "one owner of the drift detectors",
        Duration::from_secs(60),
        || {
            ports(&running, "drift-detector")
                .into_iter()
                .filter(|&port| metric(port, "anomaly_drift_leader") == 1)
                .count()
                == 1
        },
    );
    // The owner has seen every scored event once (its checkpoint's count and positions).
    let mut redis = common::redis_connection();
    let mut seen = None;
    let started = std::time::Instant::now();
    while seen != Some(PIPELINE_EVENTS) && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
        let bytes: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("{prefix}drift-detectors:checkpoint"))
            .query(&mut redis)
            .unwrap();
        seen = bytes.and_then(|bytes| {
            let checkpoint: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            checkpoint["monitor"]["seen"].as_u64()
        });
    }
    assert_eq!(
        seen,
        Some(PIPELINE_EVENTS),
        "scored events the drift detectors saw"
    );
    // Whatever was published last, every ml-inference instance runs it.
    let mut models = RedisModelStore::connect(&redis_url(), &prefix).unwrap();
    let started = std::time::Instant::now();
    loop {
        let active = models.active_version().unwrap().unwrap_or(1);
        // (port, the model it runs): 0 for an instance that does not answer.
        let instances: Vec<(u16, u64)> = ports(&running, "ml-inference")
            .into_iter()
            .map(|port| (port, metric(port, "anomaly_active_model_version")))
            .collect();
        if instances.iter().all(|&(_, version)| version == active) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for every ml-inference instance on the active model {active}: \
             (port, version) {instances:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Exactly once: as many rows as transactions (the count above could only grow past it),
    // and no event with two alerts.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stored(&mut db), PIPELINE_EVENTS);
    let mut admin = postgres::Client::connect(&database_url(), postgres::NoTls).unwrap();
    let doubled: i64 = admin
        .query_one(
            &format!(
                "SELECT count(*) FROM (SELECT event_id FROM \"{schema}\".alerts \
                 WHERE kind = 'anomaly' GROUP BY event_id HAVING count(*) > 1) d"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(doubled, 0, "an event alerted twice");
    let alerted: i64 = admin
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".alerts WHERE kind = 'anomaly'"),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(alerted > 0, "no anomaly alert to check for duplicates");
    // Where the first ADWIN drift after each phase boundary came, in transactions.
    let generator =
        anomaly_services::generator::Generator::new(anomaly_services::generator::GeneratorParams {
            events: PIPELINE_EVENTS,
            cards: PIPELINE_CARDS,
            ..Default::default()
        });
    let boundaries: Vec<u64> = generator.boundaries().iter().map(|b| b.index).collect();
    let index: std::collections::HashMap<String, u64> = generator
        .enumerate()
        .map(|(i, tx)| (tx.event_id, i as u64))
        .collect();
    // (No drift-by-drift comparison with one detector over the stored scores: live, the
    // owner merges partitions in the order records become available, which is event-time
    // order only as far as every partition has caught up; each record is seen once, checked
    // above.)
    let stored_drifts: Vec<(String, String)> = admin
        .query(
            &format!("SELECT detector, event_id FROM \"{schema}\".drift_events"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let drifts: Vec<u64> = stored_drifts
        .iter()
        .filter(|(detector, _)| detector == "ADWIN")
        .map(|(_, event)| index[event])
        .collect();
    let delays = boundaries
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, &boundary)| {
            let next = boundaries.get(i + 1).copied().unwrap_or(PIPELINE_EVENTS);
            drifts
                .iter()
                .filter(|&&d| d >= boundary && d < next)
                .min()
                .map(|d| d - boundary)
        })
        .collect();
    drop(running);
    delete_redis_prefix(&prefix);
    drop_schema(&schema);
    PipelineRun { delays }
}

/// How much later (in transactions) a disturbed run may find a phase boundary than an
/// undisturbed one: the shortest phase (2,400), so a boundary is never missed or found a phase
/// late. The drift detectors themselves lose nothing to a takeover (they resume from their
/// checkpoint and see every score once, checked above); the delays vary because the scores do:
/// each ml-inference instance learns its own partitions, a rebalance moves them, a restarted
/// instance loses up to a checkpoint interval of learning, retrained models are published at
/// other moments, and a fraud wave moves the mean score little. Measured over seven runs:
/// undisturbed 21 to 2,191 transactions, disturbed 140 to 2,298.
const DELAY_BOUND: u64 = 2_400;

/// Several instances of every service process every event once, undisturbed and with one
/// instance of every service SIGKILLed and restarted and one added mid-stream; the disturbed
/// run finds each phase boundary the undisturbed one finds, at most `DELAY_BOUND`
/// transactions later.
#[test]
fn several_instances_of_every_service_process_every_event_once_through_kills_and_additions() {
    let _serial = one_at_a_time();
    let calm = run_pipeline(false);
    let disturbed = run_pipeline(true);
    eprintln!(
        "first drift after each phase boundary: undisturbed {:?}, disturbed {:?}",
        calm.delays, disturbed.delays
    );
    assert!(
        calm.delays.iter().any(Option::is_some),
        "no phase boundary found: {:?}",
        calm.delays
    );
    for (boundary, (calm, disturbed)) in calm.delays.iter().zip(&disturbed.delays).enumerate() {
        // The fraud wave (boundary 1: 8% fraud instead of 0.5%) moves the mean score too
        // little for ADWIN to find it every time within its 2,400 events, disturbed or not
        // (measured: found 21 to 2,191 transactions after it, and once not at all); the
        // spending shift and the return to normal are found in every run.
        if boundary == 1 {
            continue;
        }
        if let Some(calm) = calm {
            let disturbed = disturbed.unwrap_or_else(|| {
                panic!("boundary {boundary}: found {calm} transactions after it undisturbed, not at all disturbed")
            });
            assert!(
                disturbed <= calm + DELAY_BOUND,
                "boundary {boundary}: {disturbed} transactions late, undisturbed {calm}"
            );
        }
    }
}
