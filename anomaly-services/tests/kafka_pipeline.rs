//! The six services' loops chained over Kafka (librdkafka's mock cluster) with real Redis and
//! PostgreSQL: producer -> feature-engineer -> ml-inference -> drift-detector ->
//! retraining-worker and alert-router, plus a local HTTP server standing in for Slack that
//! rate-limits its first request.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

mod common;

use common::{
    database_url, delete_redis_prefix, drop_schema, redis_connection, redis_url, unique, wait_until,
};

use anomaly_core::anomaly::Ensemble;
use anomaly_core::features::TransactionFeatures;
use anomaly_services::adapters::kafka::{KafkaIo, Output};
use anomaly_services::adapters::labelled_history::RedisLabelledHistory;
use anomaly_services::adapters::outbox::PgOutbox;
use anomaly_services::adapters::postgres::{PgEventStore, Table};
use anomaly_services::adapters::redis::{RedisFeatureStore, RedisModelStore};
use anomaly_services::config::Secret;
use anomaly_services::generator::{Generator, GeneratorParams};
use anomaly_services::messages::Severity;
use anomaly_services::pipeline::default_model;
use anomaly_services::service::{self, Handler};
use anomaly_services::services::TOPICS;
use anomaly_services::services::alert_router::AlertRouterService;
use anomaly_services::services::applied_card::AppliedCard;
use anomaly_services::services::drift_detector::DriftService;
use anomaly_services::services::feature_engineer::FeatureEngineerService;
use anomaly_services::services::ml_inference::InferenceService;
use anomaly_services::services::notifier::{NotifierSettings, SlackNotifier, run_notifier};
use anomaly_services::services::producer::{MemoryProgress, Shard, produce};
use anomaly_services::services::retraining_worker::{
    RedisJobQueue, RetrainingService, SOURCES, StorePublisher,
};
use anomaly_services::stages::alert_routing::AlertRouter;
use anomaly_services::stages::inference::Inference;
use anomaly_services::stages::retraining::{Retrainer, RetrainingParams};
use anomaly_services::telemetry::http::Status;
use rdkafka::mocking::MockCluster;

/// A stand-in for Slack: answers 429 (Retry-After: 1) to its first request, 200 after.
fn fake_slack() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/services/T0/B0/secret",
        listener.local_addr().unwrap().port()
    );
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let body = common::read_http_body(&mut stream).unwrap_or_default();
            let first = {
                let mut b = seen.lock().unwrap();
                b.push(body);
                b.len() == 1
            };
            let reply = if first {
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (url, bodies)
}

fn spawn_service<H: Handler + Send + 'static>(
    bootstrap: &str,
    group: &str,
    topics: &'static [&'static str],
    handler: impl FnOnce() -> H + Send + 'static,
    status: Arc<Status>,
    shutdown: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let (bootstrap, group) = (bootstrap.to_owned(), group.to_owned());
    std::thread::spawn(move || {
        let io = KafkaIo::connect(&bootstrap, &group, topics, "earliest").unwrap();
        let mut handler = handler();
        service::run(&io, &mut handler, &status, &shutdown).unwrap();
    })
}

#[test]
fn transactions_flow_through_six_services_into_the_database_and_slack() {
    let cluster = MockCluster::new(1).unwrap();
    for topic in TOPICS {
        cluster.create_topic(topic, 2, 1).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let schema = unique("test_pipeline");
    let prefix = unique("test:pipeline") + ":";
    let (slack_url, slack_bodies) = fake_slack();

    let transactions: Vec<_> = Generator::new(GeneratorParams {
        events: 3_000,
        cards: 50,
        ..GeneratorParams::default()
    })
    .collect();
    // The producer service's own loop sends them, as two instances splitting the cards
    // (every row below is checked to exist once: neither sends what the other does).
    let producer_status = Status::new("producer");
    let sent: u64 = (0..2)
        .map(|instance| {
            produce(
                &KafkaIo::connect(&bootstrap, "producer", &[], "latest").unwrap(),
                Generator::new(GeneratorParams {
                    events: 3_000,
                    cards: 50,
                    ..GeneratorParams::default()
                }),
                Shard::new(instance, 2).unwrap(),
                0.0,
                &mut MemoryProgress::default(),
                &producer_status,
                &AtomicBool::new(false),
            )
            .unwrap()
        })
        .sum();
    assert_eq!(sent, transactions.len() as u64);

    let shutdown = Arc::new(AtomicBool::new(false));
    let statuses: Vec<Arc<Status>> = [
        "feature-engineer",
        "ml-inference",
        "drift-detector",
        "alert-router",
        "retraining-worker",
    ]
    .into_iter()
    .map(Status::new)
    .collect();
    let mut threads = Vec::new();
    {
        let (prefix, url, fe_status) = (prefix.clone(), redis_url(), statuses[0].clone());
        threads.push(spawn_service(
            &bootstrap,
            "feature-engineer",
            &["raw-transactions"],
            move || {
                FeatureEngineerService::new(
                    RedisFeatureStore::connect(
                        &url,
                        &(prefix + "card:"),
                        600,
                        AppliedCard::default(),
                    )
                    .unwrap(),
                    fe_status,
                )
            },
            statuses[0].clone(),
            shutdown.clone(),
        ));
    }
    {
        let (prefix, url, status) = (prefix.clone(), redis_url(), statuses[1].clone());
        threads.push(spawn_service(
            &bootstrap,
            "ml-inference",
            &["features", "model-updates"],
            move || {
                let names: Vec<String> = TransactionFeatures::NAMES
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let model = Ensemble::with_features(default_model(), &names).unwrap();
                InferenceService::new(
                    Inference::new(model, 1, 0.85),
                    RedisModelStore::connect(&url, &prefix).unwrap(),
                    status,
                )
            },
            statuses[1].clone(),
            shutdown.clone(),
        ));
    }
    {
        let (schema, status) = (schema.clone(), statuses[2].clone());
        threads.push(spawn_service(
            &bootstrap,
            "drift-detector",
            &["scores"],
            move || {
                DriftService::new(
                    PgEventStore::connect(&database_url(), &schema).unwrap(),
                    280,
                    status,
                )
            },
            statuses[2].clone(),
            shutdown.clone(),
        ));
    }
    {
        let (router_schema, status) = (schema.clone(), statuses[3].clone());
        threads.push(spawn_service(
            &bootstrap,
            "alert-router",
            &["alerts"],
            move || {
                AlertRouterService::new(
                    AlertRouter::new(Severity::Low, 60_000),
                    PgEventStore::connect(&database_url(), &router_schema).unwrap(),
                    true,
                    status,
                )
            },
            statuses[3].clone(),
            shutdown.clone(),
        ));
        // The alert router's notifier thread (its outbox appears with the router's schema).
        let (schema, status, url, shutdown) = (
            schema.clone(),
            statuses[3].clone(),
            slack_url.clone(),
            shutdown.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut outbox = PgOutbox::connect(&database_url(), &schema).unwrap();
            let mut slack = SlackNotifier::new(Secret::new(url));
            let settings = NotifierSettings {
                first_retry_wait: Duration::from_millis(50),
                ..NotifierSettings::default()
            };
            run_notifier(&mut outbox, &mut slack, &settings, &status, &shutdown);
        }));
    }

    {
        let (schema, prefix, url, status) = (
            schema.clone(),
            prefix.clone(),
            redis_url(),
            statuses[4].clone(),
        );
        threads.push(spawn_service(
            &bootstrap,
            "retraining-worker",
            &SOURCES,
            move || {
                let names: Vec<String> = TransactionFeatures::NAMES
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let params = RetrainingParams {
                    debounce_events: 500,
                    history: 800,
                    holdout: 400,
                };
                let retrainer = Retrainer::new(params, default_model(), names);
                let queue = RedisJobQueue::connect(&url, &prefix, "worker-1", 60, 1).unwrap();
                let publisher = StorePublisher {
                    models: RedisModelStore::connect(&url, &prefix).unwrap(),
                    events: PgEventStore::connect(&database_url(), &schema).unwrap(),
                };
                let history =
                    RedisLabelledHistory::connect(&url, &prefix, retrainer.capacity()).unwrap();
                RetrainingService::new(retrainer, queue, publisher, history, status)
            },
            statuses[4].clone(),
            shutdown.clone(),
        ));
    }

    let mut db = PgEventStore::connect(&database_url(), &schema).unwrap();
    wait_until(
        "every transaction to be scored and stored",
        Duration::from_secs(120),
        || db.count(Table::ScoredEvents).unwrap() >= transactions.len() as u64,
    );
    let alerts_made = statuses[1]
        .metrics
        .alerts
        .get_metric_with_label_values(&["LOW"])
        .map_or(0, |m| m.get());
    wait_until("alerts to be stored", Duration::from_secs(60), || {
        db.count(Table::Alerts).unwrap() > 0 && statuses[3].metrics.events_in.get() >= alerts_made
    });
    // A retraining job runs; every model it publishes is recorded and adopted by ml-inference.
    let jobs = |outcome: &str| {
        statuses[4]
            .metrics
            .retraining_jobs
            .get_metric_with_label_values(&[outcome])
            .map_or(0, |m| m.get())
    };
    wait_until("a retraining job", Duration::from_secs(60), || {
        jobs("published") + jobs("kept") >= 1
    });
    let published = jobs("published");
    assert_eq!(db.count(Table::ModelVersions).unwrap(), published);
    // Every job's decision and figures are recorded, published or not.
    wait_until("the jobs to be recorded", Duration::from_secs(30), || {
        db.count(Table::RetrainingJobs).unwrap() == jobs("published") + jobs("kept")
    });
    eprintln!(
        "retraining jobs: {} published, {} kept",
        jobs("published"),
        jobs("kept")
    );
    wait_until(
        "ml-inference to run the newest model",
        Duration::from_secs(60),
        || statuses[1].metrics.active_model_version.get() as u64 == 1 + published,
    );
    wait_until(
        "Slack to get the rate-limited notification again",
        Duration::from_secs(60),
        || {
            let bodies = slack_bodies.lock().unwrap();
            bodies.len() >= 2 && bodies[1..].contains(&bodies[0])
        },
    );

    shutdown.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }

    // Exactly one row per transaction: nothing lost, nothing doubled.
    assert_eq!(
        db.count(Table::ScoredEvents).unwrap(),
        transactions.len() as u64
    );
    assert_eq!(statuses[0].metrics.dead_letters.get(), 0);
    // The spending shift and the fraud wave are noticed.
    assert!(db.count(Table::DriftEvents).unwrap() > 0, "no drift stored");
    assert_eq!(
        db.count(Table::Alerts).unwrap(),
        statuses[3].metrics.events_in.get(),
        "every alert consumed is stored"
    );
    // Slack got alerts; the message it rate-limited was sent again later.
    let bodies = slack_bodies.lock().unwrap().clone();
    assert!(bodies[1..].contains(&bodies[0]), "{bodies:?}");
    assert!(bodies[0].contains("\"text\""));

    // A replay (a new consumer group reading the scores again, as after a crash) adds no row.
    let replay_shutdown = Arc::new(AtomicBool::new(false));
    let replay_status = Status::new("drift-detector");
    let replay = {
        let (schema, status) = (schema.clone(), replay_status.clone());
        spawn_service(
            &bootstrap,
            "drift-detector-replay",
            &["scores"],
            move || {
                DriftService::new(
                    PgEventStore::connect(&database_url(), &schema).unwrap(),
                    280,
                    status,
                )
            },
            replay_status.clone(),
            replay_shutdown.clone(),
        )
    };
    wait_until(
        "the replay to read every score",
        Duration::from_secs(60),
        || replay_status.metrics.events_in.get() >= transactions.len() as u64,
    );
    replay_shutdown.store(true, Ordering::Relaxed);
    replay.join().unwrap();
    assert_eq!(
        db.count(Table::ScoredEvents).unwrap(),
        transactions.len() as u64
    );

    drop_schema(&schema);
    delete_redis_prefix(&prefix);
}

/// ml-inference switches to a newer valid model announced on `model-updates`, and keeps its
/// model when the published snapshot is corrupted or older.
#[test]
fn ml_inference_hot_swaps_only_valid_newer_models() {
    use anomaly_core::snapshot::{Model, Snapshot};
    use anomaly_services::messages::ModelUpdate;

    let cluster = MockCluster::new(1).unwrap();
    for topic in ["features", "model-updates", "scores", "alerts"] {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let prefix = unique("test:swap") + ":";
    let names: Vec<String> = TransactionFeatures::NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut models = RedisModelStore::connect(&redis_url(), &prefix).unwrap();
    let writer = KafkaIo::connect(&bootstrap, "writer", &[], "earliest").unwrap();
    let announce = |version: u64| Output {
        topic: "model-updates",
        key: None,
        payload: serde_json::to_vec(&ModelUpdate {
            schema_version: anomaly_services::messages::SCHEMA_VERSION,
            model_version: version,
            timestamp_ms: 0,
            reason: "test".into(),
            previous_auc: None,
            auc: None,
        })
        .unwrap(),
    };

    let status = Status::new("ml-inference");
    let shutdown = Arc::new(AtomicBool::new(false));
    let service = {
        let (prefix, names, handler_status) = (prefix.clone(), names.clone(), status.clone());
        spawn_service(
            &bootstrap,
            "ml-inference",
            &["features", "model-updates"],
            move || {
                let model = Ensemble::with_features(default_model(), &names).unwrap();
                InferenceService::new(
                    Inference::new(model, 1, 0.85),
                    RedisModelStore::connect(&redis_url(), &prefix).unwrap(),
                    handler_status,
                )
            },
            status.clone(),
            shutdown.clone(),
        )
    };
    let version = || status.metrics.active_model_version.get();
    let rejected = || {
        status
            .metrics
            .errors
            .get_metric_with_label_values(&["model_rejected"])
            .map_or(0, |m| m.get())
    };

    // A valid version 2 is adopted.
    let v2 = Ensemble::with_features(default_model(), &names).unwrap();
    assert!(
        models
            .publish(2, &Snapshot::new(2, Model::Ensemble(v2)).to_bytes())
            .unwrap()
    );
    writer
        .send_all(&[announce(2)], Duration::from_secs(10))
        .unwrap();
    wait_until("version 2", Duration::from_secs(30), || version() == 2);

    // Corrupted bytes are rejected; version 2 keeps running.
    let mut bytes = Snapshot::new(
        3,
        Model::Ensemble(Ensemble::with_features(default_model(), &names).unwrap()),
    )
    .to_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    assert!(models.publish(3, &bytes).unwrap());
    writer
        .send_all(&[announce(3)], Duration::from_secs(10))
        .unwrap();
    wait_until(
        "the corrupted model to be rejected",
        Duration::from_secs(30),
        || rejected() == 1,
    );
    assert_eq!(version(), 2);

    shutdown.store(true, Ordering::Relaxed);
    service.join().unwrap();
    let mut redis = redis_connection();
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{prefix}active_model"))
        .query(&mut redis)
        .unwrap();
}
