//! What the integration tests share: where the servers are, names no earlier run used,
//! waiting, cleaning up.

// Each test file uses its own subset.
#![allow(dead_code)]

pub mod instances;

use std::io::{Read, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// PostgreSQL for the tests (`TEST_DATABASE_URL`, default the local server as `postgres`).
pub fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into())
}

/// Redis for the tests (`TEST_REDIS_URL`, default the local server).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A plain connection to the test Redis, for setting up and inspecting keys.
pub fn redis_connection() -> redis::Connection {
    redis::Client::open(redis_url())
        .and_then(|client| client.get_connection())
        .unwrap_or_else(|e| panic!("test Redis at {}: {e}", redis_url()))
}

/// A name (schema, key prefix) that no earlier or concurrent run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// Polls `done` until it holds; fails the test after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deletes every Redis key starting with `prefix`.
pub fn delete_redis_prefix(prefix: &str) {
    let mut connection = redis_connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut connection)
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query(&mut connection).unwrap();
    }
}

/// Waits until the drift detectors' checkpoint under `prefix` covers `events` records of
/// `scores`, each read once (the positions) and counted once by the detectors (`seen`). The
/// owner writes a batch's drift rows before its checkpoint, so every drift of those records
/// is stored by then; the group's committed offsets say nothing of the owner, which reads
/// outside the group and may lag behind it after an outage.
pub fn wait_for_drift_checkpoint(prefix: &str, events: u64, limit: Duration) {
    let mut redis = redis_connection();
    wait_until("the drift checkpoint to reach the end", limit, || {
        let bytes: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("{prefix}drift-detectors:checkpoint"))
            .query(&mut redis)
            .unwrap();
        bytes.is_some_and(|bytes| {
            let checkpoint: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let positions = checkpoint["positions"].as_object().unwrap();
            positions.values().map(|v| v.as_u64().unwrap()).sum::<u64>() == events
                && checkpoint["monitor"]["seen"].as_u64() == Some(events)
        })
    });
}

/// Drops a test's PostgreSQL schema.
pub fn drop_schema(schema: &str) {
    let mut admin = postgres::Client::connect(&database_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .unwrap();
}

/// `GET path` on the local port; the whole reply, or `None` if nothing answered.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    Some(reply)
}

/// Sends SIGTERM to `child` and waits for its exit; fails after `limit`.
pub fn terminate(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let stopping = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            stopping.elapsed() < limit,
            "no exit {limit:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback TCP port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of the first sample of metric `name` served on `port` (0 if absent).
pub fn metric(port: u16, name: &str) -> u64 {
    http_get(port, "/metrics")
        .and_then(|reply| {
            reply
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0, |v| v as u64)
}

/// The HTTP status code `/health` answers on `port`, if anything answers.
pub fn health(port: u16) -> Option<u16> {
    http_get(port, "/health")
        .and_then(|reply| reply.split(' ').nth(1).and_then(|code| code.parse().ok()))
}

/// Per partition of `topic`: (the group's committed offset read from the cluster, -1 if none;
/// the end offset).
pub fn committed_and_end(bootstrap: &str, group: &str, topic: &str) -> Vec<(i64, i64)> {
    use rdkafka::consumer::Consumer;
    let committed =
        anomaly_services::adapters::kafka::KafkaIo::connect(bootstrap, group, &[], "earliest")
            .unwrap()
            .committed(&[topic], Duration::from_secs(10))
            .unwrap();
    let reader: rdkafka::consumer::BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    committed
        .iter()
        .map(|((_, p), committed)| {
            let (_, end) = reader
                .fetch_watermarks(topic, *p, Duration::from_secs(10))
                .unwrap();
            (committed.unwrap_or(-1), end)
        })
        .collect()
}

/// Every card state under `prefix` (+ `card:`), decoded.
pub fn card_states(
    connection: &mut redis::Connection,
    prefix: &str,
) -> std::collections::HashMap<String, anomaly_services::services::applied_card::AppliedCard> {
    use anomaly_core::features::Compact;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}card:*"))
        .query(connection)
        .unwrap();
    keys.into_iter()
        .map(|key| {
            let bytes: Vec<u8> = redis::cmd("GET").arg(&key).query(connection).unwrap();
            let card = key.trim_start_matches(&format!("{prefix}card:")).to_owned();
            let state =
                anomaly_services::services::applied_card::AppliedCard::decode(&bytes).unwrap();
            (card, state)
        })
        .collect()
}

/// A child process killed when dropped, so that a failing test leaves no service running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body of the HTTP request on `stream` (read up to its Content-Length), or `None` if the
/// client went away first: what the tests' stand-ins for Slack receive.
pub fn read_http_body(stream: &mut std::net::TcpStream) -> Option<String> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return Some(body.to_owned());
            }
        }
    }
}

/// A valid scored event number `i` of card `card`, 50 ms of event time after the previous.
pub fn scored_event(i: u32, card: String, score: f64) -> anomaly_services::messages::ScoredEvent {
    anomaly_services::messages::ScoredEvent {
        schema_version: anomaly_services::messages::SCHEMA_VERSION,
        event_id: format!("event-{i}"),
        card_id: card,
        timestamp_ms: 1_767_225_600_000 + i64::from(i) * 50,
        score,
        is_anomaly: false,
        is_fraud: false,
        model_version: 1,
        amount: 10.0,
        phase: "normal".into(),
        merchant: "merchant-1".into(),
        features: Vec::new(),
    }
}

/// A service binary's command as the tests run it: on `bootstrap`, reading topics from their
/// start, serving `/health` and `/metrics` on `port`, logging only errors, its output dropped.
/// The caller adds the service's own settings.
pub fn service_command(binary: &str, bootstrap: &str, port: u16) -> std::process::Command {
    let mut command = std::process::Command::new(binary);
    command
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("KAFKA_OFFSET_RESET", "earliest")
        .env("HTTP_PORT", port.to_string())
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null());
    command
}

/// The command of a consuming service of the end-to-end runs (`feature-engineer`,
/// `ml-inference`, `drift-detector`, `retraining-worker` or `alert-router`), with what every
/// one of them needs: the cluster, the test's PostgreSQL schema and Redis prefix, Slack off, a
/// short Kafka session (the mock cluster hands a killed member's partitions over when it
/// ends). The caller adds the run's own settings.
pub fn pipeline_service(
    name: &str,
    bootstrap: &str,
    schema: &str,
    prefix: &str,
    port: u16,
) -> std::process::Command {
    let binary = match name {
        "feature-engineer" => env!("CARGO_BIN_EXE_feature-engineer"),
        "ml-inference" => env!("CARGO_BIN_EXE_ml-inference"),
        "drift-detector" => env!("CARGO_BIN_EXE_drift-detector"),
        "retraining-worker" => env!("CARGO_BIN_EXE_retraining-worker"),
        "alert-router" => env!("CARGO_BIN_EXE_alert-router"),
        other => panic!("{other} is not a consuming service"),
    };
    let mut command = service_command(binary, bootstrap, port);
    command
        .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("TIMESCALE_URL", database_url())
        .env("TIMESCALE_SCHEMA", schema)
        .env("REDIS_URL", redis_url())
        .env("REDIS_PREFIX", prefix)
        .env("SLACK_WEBHOOK_URL", "");
    command
}
