//! feature-engineer over Kafka (librdkafka's mock cluster): every transaction in gives one
//! feature vector out, every bad message lands in dead-letters with its origin, and the service
//! keeps going.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{http_get, redis_url, terminate};

use anomaly_core::features::InMemoryStore;
use anomaly_services::adapters::kafka::{KafkaIo, Output};
use anomaly_services::generator::{Generator, GeneratorParams};
use anomaly_services::messages::{DeadLetter, FeatureVector, MAX_MESSAGE_BYTES};
use anomaly_services::service::{self, DEAD_LETTERS};
use anomaly_services::services::applied_card::AppliedCard;
use anomaly_services::services::feature_engineer::{FeatureEngineerService, SINK, SOURCE};
use anomaly_services::telemetry::http::Status;
use rdkafka::mocking::MockCluster;

#[test]
fn transactions_become_features_and_bad_input_becomes_dead_letters() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(SOURCE, 3, 1).unwrap();
    cluster.create_topic(SINK, 3, 1).unwrap();
    cluster.create_topic(DEAD_LETTERS, 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();

    // The input: 300 transactions and 5 bad messages of every kind.
    let transactions: Vec<_> = Generator::new(GeneratorParams {
        events: 300,
        cards: 25,
        ..GeneratorParams::default()
    })
    .collect();
    let mut inputs: Vec<Output> = transactions
        .iter()
        .map(|tx| Output {
            topic: SOURCE,
            key: Some(tx.card_id.clone()),
            payload: serde_json::to_vec(tx).unwrap(),
        })
        .collect();
    let mut negative = serde_json::to_value(&transactions[0]).unwrap();
    negative["amount"] = (-5.0).into();
    let mut missing = serde_json::to_value(&transactions[1]).unwrap();
    missing.as_object_mut().unwrap().remove("card_id");
    let bad: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        negative.to_string().into_bytes(),
        missing.to_string().into_bytes(),
        r#"{"amount": "NaN"}"#.as_bytes().to_vec(),
        vec![b'x'; MAX_MESSAGE_BYTES + 10],
    ];
    for payload in &bad {
        inputs.push(Output {
            topic: SOURCE,
            key: Some("card-bad".into()),
            payload: payload.clone(),
        });
    }
    let writer = KafkaIo::connect(&bootstrap, "writer", &[], "earliest").unwrap();
    writer.send_all(&inputs, Duration::from_secs(30)).unwrap();

    // The service, in its own thread, until told to stop.
    let status = Status::new("feature-engineer");
    let shutdown = Arc::new(AtomicBool::new(false));
    let service = {
        let (bootstrap, status, shutdown) = (
            bootstrap.clone(),
            Arc::clone(&status),
            Arc::clone(&shutdown),
        );
        std::thread::spawn(move || {
            let io =
                KafkaIo::connect(&bootstrap, "feature-engineer", &[SOURCE], "earliest").unwrap();
            let mut handler = FeatureEngineerService::new(
                InMemoryStore::new(AppliedCard::default()),
                Arc::clone(&status),
            );
            service::run(&io, &mut handler, &status, &shutdown).unwrap();
        })
    };

    // Read everything it produced.
    let reader =
        KafkaIo::connect(&bootstrap, "test-reader", &[SINK, DEAD_LETTERS], "earliest").unwrap();
    let (mut features, mut letters) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while (features.len() < transactions.len() || letters.len() < bad.len())
        && Instant::now() < deadline
    {
        for record in reader.poll_batch(100, Duration::from_millis(500)).records {
            if record.topic == SINK {
                features.push(serde_json::from_slice::<FeatureVector>(&record.payload).unwrap());
            } else {
                letters.push(serde_json::from_slice::<DeadLetter>(&record.payload).unwrap());
            }
        }
    }
    shutdown.store(true, Ordering::Relaxed);
    service.join().unwrap();

    let sent: HashSet<&str> = transactions.iter().map(|t| t.event_id.as_str()).collect();
    let got: HashSet<&str> = features.iter().map(|f| f.event_id.as_str()).collect();
    assert_eq!(
        features.len(),
        transactions.len(),
        "one vector per transaction"
    );
    assert_eq!(got, sent);
    assert!(
        features
            .iter()
            .all(|f| f.features.len() == 11 && f.features.iter().all(|v| (0.0..=1.0).contains(v)))
    );

    assert_eq!(letters.len(), bad.len());
    assert!(
        letters
            .iter()
            .all(|l| l.source_topic == SOURCE && l.offset >= 0 && (0..3).contains(&l.partition))
    );
    assert!(
        letters
            .iter()
            .any(|l| l.error.contains("amount must be a finite number >= 0"))
    );
    assert!(letters.iter().any(|l| l.error.contains("exceeds")));
    assert!(letters.iter().all(|l| l.payload.len() <= 4096));
    assert_eq!(status.metrics.dead_letters.get(), bad.len() as u64);
    assert_eq!(
        status.metrics.events_in.get(),
        (transactions.len() + bad.len()) as u64
    );
    assert!(status.metrics.render().contains(r#"kind="bad_json""#));
}

/// The real binary: starts against Kafka and Redis, serves /health, and on SIGTERM commits,
/// closes and exits 0 within a few seconds.
#[test]
fn the_binary_stops_cleanly_on_sigterm() {
    use std::io::Read;

    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(SOURCE, 1, 1).unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let redis = redis_url();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_feature-engineer"))
        .env("KAFKA_BOOTSTRAP_SERVERS", cluster.bootstrap_servers())
        .env("REDIS_URL", redis)
        .env(
            "REDIS_PREFIX",
            format!("test:sigterm:{}:", std::process::id()),
        )
        .env("HTTP_PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let healthy = loop {
        match http_get(port, "/health") {
            Some(r) if r.starts_with("HTTP/1.1 200") => break true,
            _ if started.elapsed() > Duration::from_secs(30) => break false,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(healthy, "the service never answered /health");
    let status = terminate(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let mut logs = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let last: serde_json::Value = serde_json::from_str(logs.lines().last().unwrap()).unwrap();
    assert_eq!(last["message"], "Service shutdown complete");
    assert_eq!(last["service"], "feature-engineer");
}

/// Records of a partition the consumer does not own (it moved to another member of the
/// group mid-batch) are neither stored nor rewound: the new owner consumes them from the last
/// committed offset. Owned partitions are rewound.
#[test]
fn partitions_the_consumer_does_not_own_are_left_to_their_owner() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("owned", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let writer = KafkaIo::connect(&bootstrap, "writer", &[], "earliest").unwrap();
    let message = |i: u8| Output {
        topic: "owned",
        key: None,
        payload: vec![i],
    };
    writer
        .send_all(&[message(1), message(2)], Duration::from_secs(30))
        .unwrap();
    let io = KafkaIo::connect(&bootstrap, "g", &["owned"], "earliest").unwrap();
    let mut first = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while first.len() < 2 && Instant::now() < deadline {
        first.extend(io.poll_batch(10, Duration::from_millis(200)).records);
    }
    assert_eq!(first.len(), 2);
    let elsewhere = anomaly_services::adapters::kafka::Record {
        topic: "not-assigned".into(),
        partition: 0,
        offset: 0,
        key: None,
        payload: Vec::new(),
        timestamp_ms: None,
    };
    let mut batch = first.clone();
    batch.push(elsewhere);
    io.mark_processed(&batch).unwrap();
    // Only the owned partition's position is committed.
    assert_eq!(io.commit_processed().unwrap(), "owned/0@2");
    // Only the owned partition is moved back, and said to be: the other's records go to
    // whoever owns it.
    assert_eq!(io.rewind(&batch).unwrap(), vec![("owned".to_owned(), 0)]);
    assert!(io.owns_any(&[("owned".to_owned(), 0)]));
    assert!(!io.owns_any(&[("not-assigned".to_owned(), 0)]));
    // The owned partition was moved back to the batch's first record.
    let mut again = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while again.len() < 2 && Instant::now() < deadline {
        again.extend(io.poll_batch(10, Duration::from_millis(200)).records);
    }
    assert_eq!(again, first);
}
