//! What the integration tests share: where the servers are, names no earlier run used,
//! waiting, cleaning up.

// Each test file uses its own subset.
#![allow(dead_code)]

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
