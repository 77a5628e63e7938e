//! Faults with the real binaries: a service killed (SIGKILL) mid-stream and restarted loses
//! nothing and duplicates nothing in the database, resumes from the offsets it committed
//! (read back from the cluster), and its card windows count every transaction once; SIGTERM
//! stops it cleanly.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::{
    card_states, committed_and_end, database_url, delete_redis_prefix, drop_schema, free_port,
    http_get, metric, redis_connection, redis_url, terminate, unique, wait_until,
};

use anomaly_core::features::{CardState, FeatureStore, InMemoryStore};
use anomaly_services::adapters::kafka::{KafkaIo, Output};
use anomaly_services::adapters::postgres::{PgEventStore, Table};
use anomaly_services::generator::{Generator, GeneratorParams};
use anomaly_services::messages::{FeatureVector, RawTransaction};
use anomaly_services::stages::feature_engineering::FeatureEngineer;
use rdkafka::mocking::MockCluster;

fn start(bootstrap: &str, schema: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_drift-detector"))
        .env("REDIS_URL", redis_url())
        .env("REDIS_PREFIX", format!("{schema}:"))
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("KAFKA_OFFSET_RESET", "earliest")
        // The mock cluster hands a killed member's partitions over only when its session expires.
        .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("TIMESCALE_URL", database_url())
        .env("TIMESCALE_SCHEMA", schema)
        .env("HTTP_PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn drift_detector_killed_mid_stream_loses_and_duplicates_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    for topic in ["scores", "drift-events", "alerts", "dead-letters"] {
        cluster.create_topic(topic, 2, 1).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let schema = unique("test_faults");

    let events: Vec<Output> = (0..20_000u32)
        .map(|i| {
            let event = common::scored_event(
                i,
                format!("card-{}", i % 97),
                if i < 10_000 { 0.3 } else { 0.8 },
            );
            Output {
                topic: "scores",
                key: Some(event.card_id.clone()),
                payload: serde_json::to_vec(&event).unwrap(),
            }
        })
        .collect();
    KafkaIo::connect(&bootstrap, "writer", &[], "earliest")
        .unwrap()
        .send_all(&events, Duration::from_secs(60))
        .unwrap();

    let mut db = PgEventStore::connect(&database_url(), &schema).unwrap();
    let port = free_port();
    let mut first = start(&bootstrap, &schema, port);
    wait_until("rows from the first run", Duration::from_secs(60), || {
        db.count(Table::ScoredEvents).unwrap() > 0
    });
    // Killed without warning, mid-stream.
    first.kill().unwrap();
    first.wait().unwrap();
    let after_kill = db.count(Table::ScoredEvents).unwrap();
    let from_committed: i64 = committed_and_end(&bootstrap, "drift-detector", "scores")
        .iter()
        .map(|(committed, end)| end - committed.max(&0))
        .sum();
    assert!(
        after_kill < events.len() as u64,
        "the kill came too late to test anything"
    );

    let port = free_port();
    let mut second = start(&bootstrap, &schema, port);
    wait_until(
        "every row after the restart",
        Duration::from_secs(120),
        || db.count(Table::ScoredEvents).unwrap() >= events.len() as u64,
    );
    wait_until(
        "the restarted service to be healthy",
        Duration::from_secs(30),
        || http_get(port, "/health").is_some_and(|r| r.starts_with("HTTP/1.1 200")),
    );
    // The restart resumed from the committed offsets, not from the start of the topic.
    assert_eq!(
        metric(port, "anomaly_events_in_total"),
        from_committed as u64
    );
    // The detectors resume in whichever instance takes the killed one's lease, apart from
    // the group that stores the rows.
    common::wait_for_drift_checkpoint(
        &format!("{schema}:"),
        events.len() as u64,
        Duration::from_secs(60),
    );
    // SIGTERM: a clean exit within a few seconds.
    let status = terminate(&mut second, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");

    assert_eq!(
        db.count(Table::ScoredEvents).unwrap(),
        events.len() as u64,
        "lost or doubled rows"
    );
    assert!(
        db.count(Table::DriftEvents).unwrap() >= 1,
        "the score shift was not detected"
    );
    drop_schema(&schema);
    delete_redis_prefix(&format!("{schema}:"));
}

/// A counter from a service's `/metrics` (0 if it does not answer).
const RAW: &str = "raw-transactions";

fn start_feature_engineer(bootstrap: &str, prefix: &str, reset: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_feature-engineer"))
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("KAFKA_OFFSET_RESET", reset)
        .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("KAFKA_BATCH_SIZE", "200")
        .env("REDIS_URL", redis_url())
        .env("REDIS_PREFIX", prefix)
        .env("HTTP_PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// feature-engineer SIGKILLed mid-stream and restarted:
/// - the restart consumes exactly from the offsets the group committed (read from the
///   cluster), not from the start of the topic;
/// - the records it consumes again that the card states already held (their positions read
///   from Redis at the kill) are skipped, no more and no fewer: none counts twice in a window
///   and none is dead-lettered as late;
/// - feature vectors and card windows equal a run without the crash; the only duplicates on
///   `features` are the batch in flight at the kill (its vectors went out, its states did not);
/// - after SIGTERM the committed offsets are the end of the topic.
fn feature_engineer_killed_and_restarted(reset: &str) {
    let cluster = MockCluster::new(3).unwrap();
    for topic in [RAW, "features"] {
        cluster.create_topic(topic, 4, 1).unwrap();
    }
    cluster.create_topic("dead-letters", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let prefix = unique("test:fe-kill") + ":";
    let transactions: Vec<RawTransaction> = Generator::new(GeneratorParams {
        events: 20_000,
        cards: 200,
        ..GeneratorParams::default()
    })
    .collect();

    let port = free_port();
    let mut first = start_feature_engineer(&bootstrap, &prefix, reset, port);
    // The group's partitions are pinned (committed) at assignment: with `latest`, what is
    // sent from now on is this group's to process, across crashes.
    wait_until(
        "the partitions to be pinned",
        Duration::from_secs(60),
        || {
            committed_and_end(&bootstrap, "feature-engineer", RAW)
                .iter()
                .all(|(c, _)| *c >= 0)
        },
    );
    // The stream arrives over about three seconds, while the service runs, is killed and
    // comes back.
    let outputs: Vec<Output> = transactions
        .iter()
        .map(|tx| Output {
            topic: RAW,
            key: Some(tx.card_id.clone()),
            payload: serde_json::to_vec(tx).unwrap(),
        })
        .collect();
    let sender = {
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            let writer = KafkaIo::connect(&bootstrap, "writer", &[], "earliest").unwrap();
            for chunk in outputs.chunks(1_000) {
                writer.send_all(chunk, Duration::from_secs(30)).unwrap();
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    // Killed once it has committed part of the stream, while it is still consuming.
    wait_until(
        "a committed quarter of the stream",
        Duration::from_secs(60),
        || {
            committed_and_end(&bootstrap, "feature-engineer", RAW)
                .iter()
                .map(|(c, _)| c)
                .sum::<i64>()
                >= 5_000
        },
    );
    first.kill().unwrap();
    first.wait().unwrap();

    let at_kill = committed_and_end(&bootstrap, "feature-engineer", RAW);
    let states = card_states(&mut redis_connection(), &prefix);
    // Per partition, the first record the stored states do not hold.
    let mut applied_end = [0i64; 4];
    for state in states.values() {
        if let Some(at) = state.applied {
            let slot = &mut applied_end[at.partition as usize];
            *slot = (*slot).max(at.offset + 1);
        }
    }
    let uncommitted: i64 = at_kill
        .iter()
        .zip(applied_end)
        .map(|((committed, _), applied)| (applied - committed).max(0))
        .sum();
    sender.join().unwrap();
    let from_committed = transactions.len() as i64 - at_kill.iter().map(|(c, _)| c).sum::<i64>();

    let port = free_port();
    let mut second = start_feature_engineer(&bootstrap, &prefix, reset, port);
    wait_until("the rest of the stream", Duration::from_secs(120), || {
        metric(port, "anomaly_events_in_total") >= from_committed as u64
    });
    let consumed_again = metric(port, "anomaly_events_in_total");
    let skipped = metric(port, "anomaly_replays_skipped_total");
    let dead_letters = metric(port, "anomaly_dead_letters_total");
    let status = terminate(&mut second, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");

    assert_eq!(
        consumed_again, from_committed as u64,
        "resumed from the committed offsets"
    );
    assert_eq!(
        skipped, uncommitted as u64,
        "skipped exactly what the states held"
    );
    assert_eq!(dead_letters, 0);
    for (committed, end) in committed_and_end(&bootstrap, "feature-engineer", RAW) {
        assert_eq!(committed, end, "committed to the end at SIGTERM");
    }

    // What a run without the crash computes.
    let mut reference = FeatureEngineer::new(InMemoryStore::new(CardState::default()));
    let expected: std::collections::HashMap<String, FeatureVector> = transactions
        .iter()
        .map(|tx| (tx.event_id.clone(), reference.process(tx).unwrap()))
        .collect();
    let reader = KafkaIo::connect(
        &bootstrap,
        "test-reader",
        &["features", "dead-letters"],
        "earliest",
    )
    .unwrap();
    let mut vectors: Vec<FeatureVector> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut idle = std::time::Instant::now();
    // Everything, then two quiet seconds for duplicates still on their way.
    while vectors.len() < transactions.len() || idle.elapsed() < Duration::from_secs(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} vectors",
            vectors.len()
        );
        let polled = reader.poll_batch(5_000, Duration::from_millis(200)).records;
        if !polled.is_empty() {
            idle = std::time::Instant::now();
        }
        for record in polled {
            assert_eq!(
                record.topic,
                "features",
                "a dead letter: {:?}",
                String::from_utf8_lossy(&record.payload)
            );
            vectors.push(serde_json::from_slice(&record.payload).unwrap());
        }
    }
    let distinct: std::collections::HashSet<&str> =
        vectors.iter().map(|v| v.event_id.as_str()).collect();
    assert_eq!(
        distinct.len(),
        transactions.len(),
        "every transaction has its vector"
    );
    assert!(
        vectors.len() - transactions.len() <= 200,
        "{} vectors sent twice: more than the batch in flight",
        vectors.len() - transactions.len()
    );
    for vector in &vectors {
        assert_eq!(vector, &expected[&vector.event_id]);
    }
    let states = card_states(&mut redis_connection(), &prefix);
    assert_eq!(states.len(), 200);
    for (card, state) in states {
        assert_eq!(
            Some(&state.card),
            reference.store_mut().load(&card).unwrap().as_ref(),
            "{card}"
        );
    }
    delete_redis_prefix(&prefix);
}

#[test]
fn feature_engineer_killed_mid_stream_on_earliest_counts_every_transaction_once() {
    feature_engineer_killed_and_restarted("earliest");
}

#[test]
fn feature_engineer_killed_mid_stream_on_latest_loses_nothing() {
    feature_engineer_killed_and_restarted("latest");
}
