//! Slack through the outbox. The alert-router binary against a webhook that answers 429 with
//! `Retry-After`, then hangs, then fails with 500, then recovers: the consumer stores every
//! alert and commits to the end while the webhook is still hanging (Slack is off the consumer
//! thread), is never thrown out of its group, and every notification is delivered exactly
//! once. In process: notifications the webhook refuses, or that outlive the maximum age, are
//! marked failed and counted.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::{
    committed_and_end, database_url, drop_schema, free_port, health, metric, terminate, unique,
    wait_until,
};

use anomaly_services::adapters::kafka::{KafkaIo, Output};
use anomaly_services::adapters::outbox::{OutboxCounts, PgOutbox};
use anomaly_services::adapters::postgres::{PgEventStore, Table};
use anomaly_services::messages::{Alert, AlertKind, Severity};
use anomaly_services::services::notifier::{Notifier, NotifierSettings, SendError, run_notifier};
use anomaly_services::telemetry::http::Status;
use rdkafka::mocking::MockCluster;

fn alert(i: usize) -> Alert {
    Alert {
        schema_version: anomaly_services::messages::SCHEMA_VERSION,
        alert_id: format!("alert-{i}"),
        kind: AlertKind::Anomaly,
        severity: Severity::Critical,
        timestamp_ms: 1_767_225_600_000 + i as i64,
        event_id: format!("event-{i}"),
        // One card per alert: none is a repeat of another.
        card_id: Some(format!("card-{i}")),
        score: Some(0.99),
        message: format!("anomaly {i}"),
        top_features: vec![],
    }
}

/// How the fake webhook answers, set by the test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// 429 with `Retry-After: 1` to the first request, then no answer (held open).
    RateLimitThenHang,
    /// HTTP 500.
    Fail,
    /// HTTP 200, recording the message.
    Accept,
}

struct Webhook {
    url: String,
    mode: Mutex<Mode>,
    requests: AtomicUsize,
    /// When each request arrived.
    arrivals: Mutex<Vec<std::time::Instant>>,
    failures_served: AtomicUsize,
    delivered: Mutex<Vec<String>>,
}

impl Webhook {
    fn start() -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let webhook = Arc::new(Self {
            url: format!(
                "http://127.0.0.1:{}/services/T0/B0/secret",
                listener.local_addr().unwrap().port()
            ),
            mode: Mutex::new(Mode::RateLimitThenHang),
            requests: AtomicUsize::new(0),
            arrivals: Mutex::new(Vec::new()),
            failures_served: AtomicUsize::new(0),
            delivered: Mutex::new(Vec::new()),
        });
        let server = Arc::clone(&webhook);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let server = Arc::clone(&server);
                std::thread::spawn(move || server.answer(stream));
            }
        });
        webhook
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn answer(&self, mut stream: TcpStream) {
        let Some(body) = common::read_http_body(&mut stream) else {
            return;
        };
        self.arrivals
            .lock()
            .unwrap()
            .push(std::time::Instant::now());
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.lock().unwrap();
        let reply = match mode {
            Mode::RateLimitThenHang if n == 0 => {
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
            }
            Mode::RateLimitThenHang => {
                // Hang: hold the request unanswered until the test moves on.
                while *self.mode.lock().unwrap() == Mode::RateLimitThenHang {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            Mode::Fail => {
                self.failures_served.fetch_add(1, Ordering::SeqCst);
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
            }
            Mode::Accept => {
                let text: serde_json::Value = serde_json::from_str(&body).unwrap();
                self.delivered
                    .lock()
                    .unwrap()
                    .push(text["text"].as_str().unwrap().to_owned());
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            }
        };
        let _ = stream.write_all(reply.as_bytes());
    }
}

fn outbox_counts(schema: &str) -> OutboxCounts {
    PgOutbox::connect(&database_url(), schema)
        .unwrap()
        .counts()
        .unwrap()
}

#[test]
fn a_rate_limiting_hanging_failing_webhook_loses_no_alert_and_never_holds_the_consumer() {
    const ALERTS: usize = 2_000;
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("alerts", 2, 1).unwrap();
    cluster.create_topic("dead-letters", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let schema = unique("test_notify");
    let webhook = Webhook::start();
    let port = free_port();
    let mut router = common::service_command(env!("CARGO_BIN_EXE_alert-router"), &bootstrap, port)
        .env("TIMESCALE_URL", database_url())
        .env("TIMESCALE_SCHEMA", &schema)
        .env("SLACK_WEBHOOK_URL", &webhook.url)
        .env("MIN_SLACK_SEVERITY", "HIGH")
        // Waits between tries of at most a second, so the test does not wait minutes.
        .env("NOTIFY_RETRY_MAX_S", "1")
        .spawn()
        .unwrap();
    let outputs: Vec<Output> = (0..ALERTS)
        .map(|i| Output {
            topic: "alerts",
            key: Some(format!("card-{i}")),
            payload: serde_json::to_vec(&alert(i)).unwrap(),
        })
        .collect();
    KafkaIo::connect(&bootstrap, "writer", &[], "earliest")
        .unwrap()
        .send_all(&outputs, Duration::from_secs(30))
        .unwrap();

    // The webhook answered 429 and now holds every request: the consumer stores every alert
    // and commits to the end all the same.
    wait_until("the webhook to be hanging", Duration::from_secs(60), || {
        webhook.requests.load(Ordering::SeqCst) >= 2
    });
    let mut db = PgEventStore::connect(&database_url(), &schema).unwrap();
    wait_until(
        "every alert stored and committed while Slack hangs",
        Duration::from_secs(60),
        || {
            db.count(Table::Alerts).unwrap() == ALERTS as u64
                && committed_and_end(&bootstrap, "alert-router", "alerts")
                    .iter()
                    .all(|(committed, end)| committed == end)
        },
    );
    assert!(webhook.delivered.lock().unwrap().is_empty());
    assert_eq!(outbox_counts(&schema).pending, ALERTS as i64);
    // The 429's `Retry-After: 1` was honoured: nothing was sent for a second after it.
    let arrivals = webhook.arrivals.lock().unwrap().clone();
    assert!(
        arrivals[1] - arrivals[0] >= Duration::from_millis(950),
        "retried {:?} after the 429",
        arrivals[1] - arrivals[0]
    );

    // Then it fails for a while, then recovers.
    webhook.set(Mode::Fail);
    wait_until("five failed tries", Duration::from_secs(60), || {
        webhook.failures_served.load(Ordering::SeqCst) >= 5
    });
    webhook.set(Mode::Accept);
    wait_until("every notification", Duration::from_secs(120), || {
        outbox_counts(&schema).sent == ALERTS as i64
    });

    // Every alert announced exactly once, nothing given up, the consumer never evicted.
    let mut delivered = webhook.delivered.lock().unwrap().clone();
    delivered.sort();
    let mut expected: Vec<String> = (0..ALERTS)
        .map(|i| format!("[CRITICAL] anomaly {i}"))
        .collect();
    expected.sort();
    assert_eq!(delivered, expected);
    assert_eq!(outbox_counts(&schema).failed, 0);
    assert_eq!(metric(port, "anomaly_partitions_revoked_total"), 0);
    assert!(metric(port, "anomaly_notifications_total{outcome=\"retried\"") >= 7);
    assert_eq!(health(port), Some(200));
    let status = terminate(&mut router, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    drop_schema(&schema);
}

/// Fails every try: `Refused` or `RateLimited` for alerts whose message says so,
/// `Unavailable` for the others.
struct Broken;

impl Notifier for Broken {
    fn send(&mut self, text: &str) -> Result<(), SendError> {
        if text.contains("refused") {
            Err(SendError::Refused("Slack answered HTTP 400".into()))
        } else if text.contains("limited") {
            Err(SendError::RateLimited(
                Duration::from_secs(1),
                "rate limited (HTTP 429)".into(),
            ))
        } else {
            Err(SendError::Unavailable("Slack answered HTTP 503".into()))
        }
    }
}

#[test]
fn refused_and_expired_notifications_are_marked_failed_and_counted() {
    let schema = unique("test_notify_failed");
    let mut store = PgEventStore::connect(&database_url(), &schema).unwrap();
    let mut refused = alert(1);
    refused.message = "refused".into();
    let stale = alert(2);
    let mut limited = alert(4);
    limited.message = "limited".into();
    store
        .write_alerts(&[
            (refused, true),
            (stale, true),
            (alert(3), false),
            (limited, true),
        ])
        .unwrap();
    let status = Status::new("alert-router");
    let shutdown = Arc::new(AtomicBool::new(false));
    let notifier = {
        let (status, shutdown, schema) = (status.clone(), shutdown.clone(), schema.clone());
        std::thread::spawn(move || {
            let mut outbox = PgOutbox::connect(&database_url(), &schema).unwrap();
            let settings = NotifierSettings {
                // Anything undelivered is too old at once.
                max_age: Duration::ZERO,
                ..NotifierSettings::default()
            };
            run_notifier(&mut outbox, &mut Broken, &settings, &status, &shutdown);
        })
    };
    wait_until("all three marked failed", Duration::from_secs(30), || {
        outbox_counts(&schema).failed == 3
    });
    shutdown.store(true, Ordering::Relaxed);
    notifier.join().unwrap();
    let failed = status
        .metrics
        .notifications
        .with_label_values(&["failed"])
        .get();
    assert_eq!(failed, 3);
    let mut admin = postgres::Client::connect(&database_url(), postgres::NoTls).unwrap();
    let rows: Vec<(String, String)> = admin
        .query(
            &format!(
                "SELECT alert_id, last_error FROM \"{schema}\".notifications \
                 WHERE state = 'failed' ORDER BY alert_id"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows[0],
        ("alert-1".into(), "Slack answered HTTP 400".into())
    );
    assert_eq!(rows[1].0, "alert-2");
    assert!(
        rows[1].1.starts_with("undelivered after 1 tries"),
        "{}",
        rows[1].1
    );
    // Rate limited for longer than the maximum age: given up too, not retried for ever.
    assert_eq!(rows[2].0, "alert-4");
    assert!(rows[2].1.contains("rate limited"), "{}", rows[2].1);
    drop_schema(&schema);
}
