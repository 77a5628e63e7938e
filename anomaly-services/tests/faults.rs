//! Faults with the real binaries: a service killed (SIGKILL) mid-stream and restarted loses
//! nothing and duplicates nothing in the database; SIGTERM stops it cleanly.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::{database_url, drop_schema, http_get, terminate, unique, wait_until};

use anomaly_services::adapters::kafka::{KafkaIo, Output};
use anomaly_services::adapters::postgres::{PgEventStore, Table};
use anomaly_services::messages::ScoredEvent;
use rdkafka::mocking::MockCluster;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(bootstrap: &str, schema: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_drift-detector"))
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
            let event = ScoredEvent {
                event_id: format!("event-{i}"),
                card_id: format!("card-{}", i % 97),
                timestamp_ms: 1_767_225_600_000 + i64::from(i) * 50,
                score: if i < 10_000 { 0.3 } else { 0.8 },
                is_anomaly: false,
                is_fraud: false,
                model_version: 1,
                amount: 10.0,
                phase: "normal".into(),
            };
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
}
