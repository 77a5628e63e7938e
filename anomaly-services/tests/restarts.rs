//! Dependencies restarting under load, with the real binaries: Redis and PostgreSQL servers of
//! the tests' own are crashed twice each while a service consumes a stream. The service
//! recovers by itself (`/health` goes 503 while the dependency is down, 200 once it is back),
//! commits to the end of the topic (read back from the cluster), and the stores hold exactly
//! what a run without crashes gives: every transaction once in the card windows; every scored
//! event once in the table, and the drifts of detectors that saw every score once.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod common;

use common::instances::{OwnPostgres, OwnRedis};
use common::{
    card_states, committed_and_end, free_port, health, metric, terminate, unique, wait_until,
};

use anomaly_core::features::{CardState, FeatureStore, InMemoryStore};
use anomaly_services::adapters::kafka::{KafkaIo, Output};
use anomaly_services::generator::{Generator, GeneratorParams};
use anomaly_services::messages::{FeatureVector, RawTransaction, ScoredEvent};
use anomaly_services::stages::drift_monitor::DriftMonitor;
use anomaly_services::stages::feature_engineering::FeatureEngineer;
use rdkafka::mocking::MockCluster;

/// Sends `outputs` in chunks of 500, 150 ms apart, until they run out or `stop` is set;
/// returns how many it sent (the first ones of `outputs`).
fn send_until_stopped(
    bootstrap: &str,
    outputs: Vec<Output>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    let bootstrap = bootstrap.to_owned();
    std::thread::spawn(move || {
        let writer = KafkaIo::connect(&bootstrap, "writer", &[], "earliest").unwrap();
        let mut sent = 0;
        for chunk in outputs.chunks(500) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            writer.send_all(chunk, Duration::from_secs(30)).unwrap();
            sent += chunk.len();
            std::thread::sleep(Duration::from_millis(150));
        }
        sent
    })
}

/// Streams `outputs` to the service on `port` and, while records keep arriving, twice: once
/// it has consumed `at[i]` records, crashes the dependency (`set_up(false)`), waits for
/// `/health` to turn 503, restarts it (`set_up(true)`) and waits for `/health` to turn 200
/// with records flowing again. Then stops the stream; returns how many records were sent.
fn crash_twice_under_load(
    bootstrap: &str,
    port: u16,
    outputs: Vec<Output>,
    at: [u64; 2],
    mut set_up: impl FnMut(bool),
) -> usize {
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_until_stopped(bootstrap, outputs, stop.clone());
    for threshold in at {
        wait_until("records to flow", Duration::from_secs(60), || {
            metric(port, "anomaly_events_in_total") >= threshold
        });
        set_up(false);
        wait_until(
            "/health to report the outage",
            Duration::from_secs(30),
            || health(port) == Some(503),
        );
        set_up(true);
        let consumed = metric(port, "anomaly_events_in_total");
        wait_until(
            "/health to recover by itself",
            Duration::from_secs(60),
            || health(port) == Some(200) && metric(port, "anomaly_events_in_total") > consumed,
        );
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    assert!(
        sent as u64 > at[1],
        "the stream ended before the second crash"
    );
    sent
}

fn wait_for_commits_to_the_end(bootstrap: &str, group: &str, topic: &str) {
    wait_until(
        "offsets committed to the end of the topic",
        Duration::from_secs(120),
        || {
            committed_and_end(bootstrap, group, topic)
                .iter()
                .all(|(committed, end)| committed == end)
        },
    );
}

fn feature_engineer(bootstrap: &str, redis_url: &str, prefix: &str, port: u16) -> Child {
    common::service_command(env!("CARGO_BIN_EXE_feature-engineer"), bootstrap, port)
        .env("KAFKA_BATCH_SIZE", "200")
        .env("REDIS_URL", redis_url)
        .env("REDIS_PREFIX", prefix)
        .spawn()
        .unwrap()
}

#[test]
fn feature_engineer_recovers_from_redis_restarts_and_counts_every_transaction_once() {
    let cluster = MockCluster::new(3).unwrap();
    for topic in ["raw-transactions", "features"] {
        cluster.create_topic(topic, 4, 1).unwrap();
    }
    cluster.create_topic("dead-letters", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let mut redis = OwnRedis::start();
    let prefix = unique("test:restarts") + ":";
    let mut transactions: Vec<RawTransaction> = Generator::new(GeneratorParams {
        events: 100_000,
        cards: 300,
        ..GeneratorParams::default()
    })
    .collect();
    let outputs = transactions
        .iter()
        .map(|tx| Output {
            topic: "raw-transactions",
            key: Some(tx.card_id.clone()),
            payload: serde_json::to_vec(tx).unwrap(),
        })
        .collect();

    let port = free_port();
    let mut service = feature_engineer(&bootstrap, &redis.url(), &prefix, port);
    let sent = crash_twice_under_load(&bootstrap, port, outputs, [3_000, 15_000], |up| {
        if up { redis.restart() } else { redis.crash() }
    });
    transactions.truncate(sent);
    wait_for_commits_to_the_end(&bootstrap, "feature-engineer", "raw-transactions");
    let dead_letters = metric(port, "anomaly_dead_letters_total");
    let redis_failures = metric(port, "anomaly_errors_total{kind=\"redis_unavailable\"");
    let status = terminate(&mut service, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert_eq!(dead_letters, 0);
    assert!(redis_failures >= 2, "{redis_failures} failed batches");

    // Every transaction has its vector, equal to a run without restarts; a vector sent twice
    // (its batch's card states were not written before the crash) is the same vector.
    let mut reference = FeatureEngineer::new(InMemoryStore::new(CardState::default()));
    let expected: std::collections::HashMap<String, FeatureVector> = transactions
        .iter()
        .map(|tx| (tx.event_id.clone(), reference.process(tx).unwrap()))
        .collect();
    let reader = KafkaIo::connect(&bootstrap, "test-reader", &["features"], "earliest").unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut vectors = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < transactions.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} distinct vectors",
            seen.len()
        );
        for record in reader.poll_batch(5_000, Duration::from_millis(200)).records {
            let vector: FeatureVector = serde_json::from_slice(&record.payload).unwrap();
            assert_eq!(vector, expected[&vector.event_id]);
            seen.insert(vector.event_id);
            vectors += 1;
        }
    }
    eprintln!(
        "{} vectors for {} transactions",
        vectors,
        transactions.len()
    );
    // The card windows, read back from the restarted Redis, count every transaction once.
    let states = card_states(&mut redis.connection(), &prefix);
    assert_eq!(states.len(), 300);
    for (card, state) in states {
        assert_eq!(
            Some(&state.card),
            reference.store_mut().load(&card).unwrap().as_ref(),
            "{card}"
        );
    }
}

fn drift_detector(bootstrap: &str, database_url: &str, prefix: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_drift-detector"))
        .env("REDIS_URL", common::redis_url())
        .env("REDIS_PREFIX", prefix)
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("KAFKA_OFFSET_RESET", "earliest")
        .env("KAFKA_BATCH_SIZE", "200")
        .env("TIMESCALE_URL", database_url)
        .env("TIMESCALE_SCHEMA", "anomaly")
        .env("HTTP_PORT", port.to_string())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn drift_detector_recovers_from_postgres_restarts_and_stores_every_event_once() {
    let cluster = MockCluster::new(3).unwrap();
    // One partition: the detectors see the scores in the order sent, so a run without
    // crashes is known exactly.
    for topic in ["scores", "drift-events", "alerts", "dead-letters"] {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let mut postgres = OwnPostgres::start();
    // Scores that shift every 5,000 events, so ADWIN keeps finding drifts.
    let mut events: Vec<ScoredEvent> = (0..100_000u32)
        .map(|i| {
            common::scored_event(
                i,
                format!("card-{}", i % 97),
                if (i / 5_000) % 2 == 0 { 0.3 } else { 0.8 },
            )
        })
        .collect();
    let outputs = events
        .iter()
        .map(|event| Output {
            topic: "scores",
            key: Some(event.card_id.clone()),
            payload: serde_json::to_vec(event).unwrap(),
        })
        .collect();

    let port = free_port();
    let prefix = unique("test:restarts-drift") + ":";
    let mut service = drift_detector(&bootstrap, &postgres.url(), &prefix, port);
    wait_until("the schema", Duration::from_secs(60), || {
        health(port).is_some()
    });
    let sent = crash_twice_under_load(&bootstrap, port, outputs, [3_000, 15_000], |up| {
        if up {
            postgres.restart()
        } else {
            postgres.crash()
        }
    });
    events.truncate(sent);
    wait_for_commits_to_the_end(&bootstrap, "drift-detector", "scores");
    // The detectors run apart from the group, in the lease owner: after the outages they may
    // still be catching up when every row is stored.
    common::wait_for_drift_checkpoint(&prefix, sent as u64, Duration::from_secs(120));
    let dead_letters = metric(port, "anomaly_dead_letters_total");
    let failures = metric(port, "anomaly_errors_total{kind=\"postgres_unavailable\"");
    let status = terminate(&mut service, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert_eq!(dead_letters, 0);
    assert!(failures >= 2, "{failures} failed batches");

    let mut db = postgres::Client::connect(&postgres.url(), postgres::NoTls).unwrap();
    let stored: i64 = db
        .query_one("SELECT COUNT(*) FROM anomaly.scored_events", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, events.len() as i64, "rows");
    // The detectors were put back to their last committed state before each replay: the
    // drifts stored are those of detectors that saw every score once, in order.
    let model = anomaly_services::pipeline::default_model();
    let mut monitor =
        DriftMonitor::new(u64::from(model.hst.window_size) + u64::from(model.sad_grace_period));
    let mut expected: Vec<String> = events
        .iter()
        .flat_map(|event| monitor.process(event))
        .map(|drift| drift.drift_id)
        .collect();
    expected.sort();
    let got: Vec<String> = db
        .query(
            "SELECT drift_id FROM anomaly.drift_events ORDER BY drift_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        expected.len() >= 2,
        "{} drifts: the stream must drift",
        expected.len()
    );
    assert_eq!(got, expected);
    common::delete_redis_prefix(&prefix);
}
