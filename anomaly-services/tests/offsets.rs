//! Committed offsets, read back from the cluster (a three-broker librdkafka mock cluster), not
//! from the client's own bookkeeping: one position per partition, equal to the next offset to
//! process after every batch and to the end of the topic after shutdown; a new group's
//! partitions are pinned at assignment, so `latest` skips nothing across a crash.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::wait_until;

use anomaly_services::adapters::kafka::{KafkaIo, KafkaTuning, Output, Record};
use anomaly_services::service::{self, Failure, Handler};
use anomaly_services::telemetry::http::Status;
use rdkafka::mocking::MockCluster;

const PARTITIONS: i32 = 4;

fn cluster(topics: &[&str]) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(3).unwrap();
    for topic in topics {
        cluster.create_topic(topic, PARTITIONS, 1).unwrap();
    }
    cluster
}

fn send(bootstrap: &str, topic: &'static str, from: usize, count: usize) {
    let outputs: Vec<Output> = (from..from + count)
        .map(|i| Output {
            topic,
            key: Some(format!("key-{}", i % 37)),
            payload: i.to_string().into_bytes(),
        })
        .collect();
    KafkaIo::connect(bootstrap, "writer", &[], "earliest")
        .unwrap()
        .send_all(&outputs, Duration::from_secs(30))
        .unwrap();
}

/// The end offset of every partition of `topic`.
fn ends(bootstrap: &str, topic: &str) -> BTreeMap<(String, i32), Option<i64>> {
    let reader: rdkafka::consumer::BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    (0..PARTITIONS)
        .map(|p| {
            use rdkafka::consumer::Consumer;
            let (_, high) = reader
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            ((topic.to_owned(), p), Some(high))
        })
        .collect()
}

/// The group's committed offsets as the cluster has them, read by a client that is not a
/// member of the group.
fn committed(bootstrap: &str, group: &str, topic: &str) -> BTreeMap<(String, i32), Option<i64>> {
    KafkaIo::connect(bootstrap, group, &[], "earliest")
        .unwrap()
        .committed(&[topic], Duration::from_secs(10))
        .unwrap()
}

/// A member that vanished is replaced after 6 s, not 30 (the mock cluster waits for a closed
/// member's session to expire before it rebalances).
fn quick_session() -> KafkaTuning {
    KafkaTuning {
        session_timeout: Duration::from_secs(6),
        ..KafkaTuning::default()
    }
}

fn poll_until(io: &KafkaIo, count: usize) -> Vec<Record> {
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while records.len() < count {
        assert!(Instant::now() < deadline, "only {} records", records.len());
        records.extend(
            io.poll_batch(count - records.len(), Duration::from_millis(200))
                .records,
        );
    }
    records
}

/// After each batch (many records per partition), the committed offset of every partition is
/// the batch's highest offset there + 1; partitions the batch did not touch keep theirs.
#[test]
fn after_each_batch_the_committed_offset_is_the_next_to_process_on_every_partition() {
    let cluster = cluster(&["in"]);
    let bootstrap = cluster.bootstrap_servers();
    send(&bootstrap, "in", 0, 1_000);
    let io = KafkaIo::connect(&bootstrap, "batches", &["in"], "earliest").unwrap();
    let mut expected: BTreeMap<(String, i32), Option<i64>> = (0..PARTITIONS)
        .map(|p| (("in".to_owned(), p), Some(0)))
        .collect();
    let mut seen = 0;
    while seen < 1_000 {
        let batch = poll_until(&io, 150.min(1_000 - seen));
        seen += batch.len();
        io.mark_processed(&batch).unwrap();
        io.commit_processed().unwrap();
        for r in &batch {
            let slot = expected.get_mut(&(r.topic.clone(), r.partition)).unwrap();
            *slot = Some(slot.unwrap().max(r.offset + 1));
        }
        assert_eq!(committed(&bootstrap, "batches", "in"), expected);
    }
    assert_eq!(expected, ends(&bootstrap, "in"));
}

/// Copies records to `out`.
struct Echo;

impl Handler for Echo {
    fn handle(&mut self, record: &Record, out: &mut Vec<Output>) -> Result<(), Failure> {
        out.push(Output {
            topic: "out",
            key: None,
            payload: record.payload.clone(),
        });
        Ok(())
    }
}

fn run_echo(
    bootstrap: &str,
    group: &str,
    reset: &str,
) -> (Arc<AtomicBool>, Arc<Status>, std::thread::JoinHandle<()>) {
    let shutdown = Arc::new(AtomicBool::new(false));
    let status = Status::new("echo");
    let thread = {
        let (bootstrap, group, reset) = (bootstrap.to_owned(), group.to_owned(), reset.to_owned());
        let (shutdown, status) = (Arc::clone(&shutdown), Arc::clone(&status));
        std::thread::spawn(move || {
            let tuning = KafkaTuning {
                batch_size: 100,
                commit_interval: Duration::from_millis(200),
                ..quick_session()
            };
            let io = KafkaIo::connect_tuned(&bootstrap, &group, &["in"], &reset, tuning).unwrap();
            service::run(&io, &mut Echo, &status, &shutdown).unwrap();
        })
    };
    (shutdown, status, thread)
}

/// The service loop commits on its interval while running (the positions reach the end of
/// the topic without a shutdown), and once more at shutdown.
#[test]
fn the_service_loop_commits_on_its_interval_and_at_shutdown() {
    let cluster = cluster(&["in", "out"]);
    let bootstrap = cluster.bootstrap_servers();
    send(&bootstrap, "in", 0, 2_000);
    let (shutdown, status, thread) = run_echo(&bootstrap, "echo", "earliest");
    let end = ends(&bootstrap, "in");
    wait_until(
        "interval commits to reach the end",
        Duration::from_secs(60),
        || committed(&bootstrap, "echo", "in") == end,
    );
    assert_eq!(status.metrics.events_in.get(), 2_000);
    // Freshness: the newest processed record was produced moments ago.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let newest = status.metrics.last_event_time.get();
    assert!(
        (now - 120.0..=now + 1.0).contains(&newest),
        "{newest} vs {now}"
    );

    // More input, then a shutdown before the next interval would have passed: the final,
    // synchronous commit covers it.
    send(&bootstrap, "in", 2_000, 500);
    wait_until("the new records", Duration::from_secs(60), || {
        status.metrics.events_in.get() == 2_500
    });
    shutdown.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    assert_eq!(committed(&bootstrap, "echo", "in"), ends(&bootstrap, "in"));
}

/// With `latest`, a new group's partitions are pinned to their end at assignment and the
/// position is committed at once: records sent after that are consumed even if the first
/// member goes before it processed anything, and the next member resumes exactly there
/// (without the pin it would start at the end again and skip them).
#[test]
fn a_new_group_on_latest_loses_nothing_across_a_crash_before_its_first_commit() {
    let cluster = cluster(&["in", "out"]);
    let bootstrap = cluster.bootstrap_servers();
    send(&bootstrap, "in", 0, 300); // before the group exists: `latest` skips these
    let before = ends(&bootstrap, "in");
    {
        let io =
            KafkaIo::connect_tuned(&bootstrap, "live", &["in"], "latest", quick_session()).unwrap();
        wait_until("the pinned start", Duration::from_secs(60), || {
            io.poll_batch(10, Duration::from_millis(100));
            committed(&bootstrap, "live", "in") == before
        });
        send(&bootstrap, "in", 300, 400);
        // Consumed, never marked processed, then the member goes (its revocation commits
        // nothing: nothing was processed).
        poll_until(&io, 400);
    }
    let (shutdown, status, thread) = run_echo(&bootstrap, "live", "latest");
    wait_until(
        "the 400 records sent after the pin",
        Duration::from_secs(60),
        || status.metrics.events_in.get() >= 400,
    );
    shutdown.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    assert_eq!(status.metrics.events_in.get(), 400);
    assert_eq!(committed(&bootstrap, "live", "in"), ends(&bootstrap, "in"));
}

/// A partition leaving a member (here: the member leaves the group without `close`) is
/// committed in the revocation callback, long before the commit interval, so its next owner
/// starts where this one stopped.
///
/// The mock cluster rejects commits while a join is in progress (REBALANCE_IN_PROGRESS), so a
/// rebalance caused by a joining member cannot show this here; Apache Kafka accepts a commit
/// of the current generation while it prepares the rebalance.
#[test]
fn a_revoked_partition_is_committed_before_it_moves() {
    let cluster = cluster(&["in"]);
    let bootstrap = cluster.bootstrap_servers();
    send(&bootstrap, "in", 0, 1_000);
    let patient = KafkaTuning {
        commit_interval: Duration::from_secs(3_600),
        ..KafkaTuning::default()
    };
    let first = KafkaIo::connect_tuned(&bootstrap, "moving", &["in"], "earliest", patient).unwrap();
    let records = poll_until(&first, 1_000);
    first.mark_processed(&records).unwrap();
    assert!(!first.commit_due().unwrap(), "the interval has not passed");
    let pinned: BTreeMap<(String, i32), Option<i64>> = (0..PARTITIONS)
        .map(|p| (("in".to_owned(), p), Some(0)))
        .collect();
    assert_eq!(committed(&bootstrap, "moving", "in"), pinned);

    drop(first);
    assert_eq!(
        committed(&bootstrap, "moving", "in"),
        ends(&bootstrap, "in")
    );
}

/// Each partition's consumer lag (its end, from librdkafka's statistics, minus the next offset
/// to process) reaches the metrics: all 1,000 records while none is processed (consumed is
/// not enough), none after.
#[test]
fn consumer_lag_is_exported_per_partition() {
    let cluster = cluster(&["in"]);
    let bootstrap = cluster.bootstrap_servers();
    send(&bootstrap, "in", 0, 1_000);
    let tuning = KafkaTuning {
        statistics_interval: Duration::from_millis(200),
        ..KafkaTuning::default()
    };
    let io = KafkaIo::connect_tuned(&bootstrap, "lagging", &["in"], "earliest", tuning).unwrap();
    let metrics = anomaly_services::telemetry::metrics::Metrics::new("test");
    io.export_group_metrics(
        metrics.consumer_lag.clone(),
        metrics.partitions_revoked.clone(),
    );
    let lag = || -> i64 {
        (0..PARTITIONS)
            .map(|p| {
                metrics
                    .consumer_lag
                    .with_label_values(&["in", &p.to_string()])
                    .get()
            })
            .sum()
    };
    let records = poll_until(&io, 1_000);
    wait_until("the lag of everything", Duration::from_secs(30), || {
        io.poll_batch(10, Duration::from_millis(50));
        lag() == 1_000
    });
    io.mark_processed(&records).unwrap();
    wait_until("no lag", Duration::from_secs(30), || {
        io.poll_batch(10, Duration::from_millis(50));
        lag() == 0
    });
    let text = metrics.render();
    let exported: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("anomaly_consumer_lag{"))
        .collect();
    assert_eq!(exported.len(), PARTITIONS as usize, "{exported:?}");
    assert!(
        exported
            .iter()
            .all(|l| l.contains(r#"topic="in""#) && l.ends_with(" 0")),
        "{exported:?}"
    );
}
