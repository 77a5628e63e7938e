//! Faults with the real binaries: a service killed (SIGKILL) mid-stream and restarted loses
//! nothing and duplicates nothing in the database; SIGTERM stops it cleanly.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anomaly_services::adapters::kafka::{KafkaIo, Output};
use anomaly_services::adapters::postgres::{PgEventStore, Table};
use anomaly_services::messages::ScoredEvent;
use rdkafka::mocking::MockCluster;

fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into())
}

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
        .env("TIMESCALE_URL", database_url())
        .env("TIMESCALE_SCHEMA", schema)
        .env("HTTP_PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn healthy(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port))
        .ok()
        .and_then(|mut s| {
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .ok()?;
            let mut reply = String::new();
            s.read_to_string(&mut reply).ok()?;
            Some(reply.starts_with("HTTP/1.1 200"))
        })
        .unwrap_or(false)
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn drift_detector_killed_mid_stream_loses_and_duplicates_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    for topic in ["scores", "drift-events", "alerts", "dead-letters"] {
        cluster.create_topic(topic, 2, 1).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let schema = format!("test_faults_{}_{nanos}", std::process::id());

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
        || healthy(port),
    );
    // SIGTERM: a clean exit within a few seconds.
    let stopping = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &second.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "no exit 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
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
    let mut admin = postgres::Client::connect(&database_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .unwrap();
}
