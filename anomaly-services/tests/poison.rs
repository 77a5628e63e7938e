//! Poison records between good ones, over Kafka, through the feature-engineer binary: each bad
//! one is dead-lettered with an error that says what was wrong, every good one gets its
//! feature vector, the partition is committed to its end (no stall), and the card of the
//! future-dated transaction still accepts its next normal one.

use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::{
    committed_and_end, delete_redis_prefix, free_port, metric, redis_url, terminate, unique,
    wait_until,
};

use anomaly_core::features::{CardState, InMemoryStore};
use anomaly_services::adapters::kafka::KafkaIo;
use anomaly_services::messages::{DeadLetter, FeatureVector, RawTransaction};
use anomaly_services::stages::feature_engineering::FeatureEngineer;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A valid transaction of `card`, `seconds_ago` before now.
fn good(id: &str, card: &str, seconds_ago: i64) -> serde_json::Value {
    serde_json::json!({
        "schema_version": 1, "event_id": id, "card_id": card,
        "timestamp_ms": now_ms() - seconds_ago * 1000, "amount": 42.5,
        "merchant": "m-1", "category": "grocery", "latitude": 48.85, "longitude": 2.35,
        "is_fraud": false, "phase": "normal"
    })
}

fn with(mut tx: serde_json::Value, field: &str, value: serde_json::Value) -> Vec<u8> {
    tx[field] = value;
    serde_json::to_vec(&tx).unwrap()
}

#[test]
fn poison_records_are_dead_lettered_and_their_partition_and_card_go_on() {
    let cluster = MockCluster::new(1).unwrap();
    for topic in ["raw-transactions", "features", "dead-letters"] {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let three_years_ms = 3 * 365 * 24 * 3_600_000_i64;
    // (payload, what its dead letter must say; None: a good record).
    let mut records: Vec<(Vec<u8>, Option<&str>)> = vec![
        (
            serde_json::to_vec(&good("g-1", "card-p", 60)).unwrap(),
            None,
        ),
        (
            with(good("x", "card-a", 50), "event_id", "bad\u{0}id".into()),
            Some("control character"),
        ),
        (
            with(good("p-max", "card-a", 50), "timestamp_ms", i64::MAX.into()),
            Some("timestamp_ms"),
        ),
        (
            with(good("p-min", "card-a", 50), "timestamp_ms", i64::MIN.into()),
            Some("timestamp_ms"),
        ),
        (
            with(
                good("p-future", "card-p", 0),
                "timestamp_ms",
                (now_ms() + three_years_ms).into(),
            ),
            Some("ahead of this service's clock"),
        ),
        (
            serde_json::to_string(&good("p-nan", "card-a", 50))
                .unwrap()
                .replace("42.5", "NaN")
                .into_bytes(),
            Some("malformed message"),
        ),
        (
            with(good("p-huge", "card-a", 50), "amount", 1e308.into()),
            Some("amount"),
        ),
        (
            with(
                good("p-big", "card-a", 50),
                "merchant",
                "m".repeat(2 << 20).into(),
            ),
            Some("exceeds the 65536-byte limit"),
        ),
        (
            with(good("g-extra", "card-b", 40), "loyalty_tier", "gold".into()),
            None,
        ),
        (
            with(good("p-v2", "card-a", 50), "schema_version", 2.into()),
            Some("newer than this service reads"),
        ),
        // The card of the future-dated transaction takes its next normal one.
        (
            serde_json::to_vec(&good("g-2", "card-p", 30)).unwrap(),
            None,
        ),
    ];
    records.extend((0..100).map(|i| {
        (
            serde_json::to_vec(&good(&format!("g-more-{i}"), "card-c", 20)).unwrap(),
            None,
        )
    }));
    // One partition, in this order; a producer that allows the 2 MiB message.
    let producer: BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.max.bytes", "4000000")
        .create()
        .unwrap();
    for (payload, _) in &records {
        producer
            .send(
                BaseRecord::<(), [u8]>::to("raw-transactions")
                    .partition(0)
                    .payload(payload),
            )
            .unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let prefix = unique("test:poison") + ":";
    let port = free_port();
    let mut service =
        common::service_command(env!("CARGO_BIN_EXE_feature-engineer"), &bootstrap, port)
            .env("REDIS_URL", redis_url())
            .env("REDIS_PREFIX", &prefix)
            .spawn()
            .unwrap();
    wait_until(
        "the partition committed to its end",
        Duration::from_secs(60),
        || {
            committed_and_end(&bootstrap, "feature-engineer", "raw-transactions")
                == [(records.len() as i64, records.len() as i64)]
        },
    );
    let dead_letters = metric(port, "anomaly_dead_letters_total");
    let status = terminate(&mut service, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");

    let reader = KafkaIo::connect(
        &bootstrap,
        "test-reader",
        &["features", "dead-letters"],
        "earliest",
    )
    .unwrap();
    let bad = records.iter().filter(|(_, e)| e.is_some()).count();
    let mut letters: Vec<DeadLetter> = Vec::new();
    let mut vectors: Vec<FeatureVector> = Vec::new();
    wait_until("every output", Duration::from_secs(30), || {
        for record in reader.poll_batch(1_000, Duration::from_millis(200)).records {
            if record.topic == "features" {
                vectors.push(serde_json::from_slice(&record.payload).unwrap());
            } else {
                letters.push(serde_json::from_slice(&record.payload).unwrap());
            }
        }
        letters.len() + vectors.len() >= records.len()
    });
    assert_eq!(dead_letters, bad as u64);
    letters.sort_by_key(|l| l.offset);
    let expected_letters: Vec<(i64, &str)> = records
        .iter()
        .enumerate()
        .filter_map(|(offset, (_, error))| error.map(|e| (offset as i64, e)))
        .collect();
    assert_eq!(letters.len(), expected_letters.len());
    for (letter, (offset, says)) in letters.iter().zip(&expected_letters) {
        assert_eq!(letter.offset, *offset);
        assert!(
            letter.error.contains(says),
            "offset {offset}: `{}` should say `{says}`",
            letter.error
        );
        assert!(
            letter.payload.len() <= 4096,
            "dead letters carry at most 4 KiB"
        );
    }
    let ids: Vec<&str> = vectors.iter().map(|v| v.event_id.as_str()).collect();
    assert_eq!(ids.len(), records.len() - bad);
    assert_eq!(&ids[..3], ["g-1", "g-extra", "g-2"]);
    // card-p's vectors are those of its two good transactions alone: the future-dated one
    // between them was not counted and locked nothing.
    let mut reference = FeatureEngineer::new(InMemoryStore::new(CardState::default()));
    for (id, offset) in [("g-1", 0), ("g-2", 10)] {
        let tx: RawTransaction = serde_json::from_slice(&records[offset].0).unwrap();
        let got = vectors.iter().find(|v| v.event_id == id).unwrap();
        assert_eq!(got, &reference.process(&tx).unwrap());
    }
    delete_redis_prefix(&prefix);
}

/// A scored event PostgreSQL refuses as data (a CHECK constraint the test adds to its own
/// schema: SQLSTATE 23514), through Kafka and the drift-detector binary: it is dead-lettered
/// with the SQLSTATE, the other rows of its batch are stored, the partition commits to its
/// end.
#[test]
fn a_row_the_database_refuses_is_dead_lettered_and_its_batch_stored() {
    use anomaly_services::adapters::postgres::{PgEventStore, Table};
    let cluster = MockCluster::new(1).unwrap();
    for topic in ["scores", "drift-events", "alerts", "dead-letters"] {
        cluster.create_topic(topic, 1, 1).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let schema = unique("test_refused_row");
    let mut db = PgEventStore::connect(&common::database_url(), &schema).unwrap();
    let mut admin = postgres::Client::connect(&common::database_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "ALTER TABLE \"{schema}\".scored_events ADD CONSTRAINT no_poison CHECK (card_id <> 'poison')"
        ))
        .unwrap();
    let events: Vec<anomaly_services::adapters::kafka::Output> = (0..50)
        .map(|i| {
            let card = if i == 20 {
                "poison".to_owned()
            } else {
                format!("card-{i}")
            };
            let event = common::scored_event(i, card, 0.3);
            anomaly_services::adapters::kafka::Output {
                topic: "scores",
                key: None,
                payload: serde_json::to_vec(&event).unwrap(),
            }
        })
        .collect();
    KafkaIo::connect(&bootstrap, "writer", &[], "earliest")
        .unwrap()
        .send_all(&events, Duration::from_secs(30))
        .unwrap();
    let port = free_port();
    let mut service = Command::new(env!("CARGO_BIN_EXE_drift-detector"))
        .env("REDIS_URL", redis_url())
        .env("REDIS_PREFIX", format!("{schema}:"))
        .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
        .env("KAFKA_OFFSET_RESET", "earliest")
        .env("TIMESCALE_URL", common::database_url())
        .env("TIMESCALE_SCHEMA", &schema)
        .env("HTTP_PORT", port.to_string())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "the partition committed to its end",
        Duration::from_secs(60),
        || committed_and_end(&bootstrap, "drift-detector", "scores") == [(50, 50)],
    );
    let status = terminate(&mut service, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert_eq!(db.count(Table::ScoredEvents).unwrap(), 49);
    let reader =
        KafkaIo::connect(&bootstrap, "test-reader", &["dead-letters"], "earliest").unwrap();
    let mut letters: Vec<DeadLetter> = Vec::new();
    wait_until("the dead letter", Duration::from_secs(30), || {
        for record in reader.poll_batch(100, Duration::from_millis(200)).records {
            letters.push(serde_json::from_slice(&record.payload).unwrap());
        }
        !letters.is_empty()
    });
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].offset, 20);
    assert!(
        letters[0].error.contains("SQLSTATE 23514"),
        "{}",
        letters[0].error
    );
    common::drop_schema(&schema);
    delete_redis_prefix(&format!("{schema}:"));
}
