//! The Redis and PostgreSQL adapters against the real servers (`scripts/test` starts them).
//! Each test works in its own PostgreSQL schema or Redis key prefix and removes it after.

mod common;

use common::{database_url, delete_redis_prefix, drop_schema, redis_connection, redis_url, unique};

use anomaly_core::features::{CardState, FeatureStore, InMemoryStore};
use anomaly_services::adapters::postgres::{PgEventStore, Table};
use anomaly_services::adapters::redis::{RedisFeatureStore, RedisModelStore, RedisStoreError};
use anomaly_services::generator::{Generator, GeneratorParams};
use anomaly_services::messages::{Alert, AlertKind, ModelUpdate, ScoredEvent, Severity};
use anomaly_services::stages::feature_engineering::FeatureEngineer;

fn scored(i: u32) -> ScoredEvent {
    ScoredEvent {
        schema_version: anomaly_services::messages::SCHEMA_VERSION,
        event_id: format!("event-{i}"),
        card_id: format!("card-{}", i % 7),
        timestamp_ms: 1_767_225_600_000 + i64::from(i) * 250,
        score: f64::from(i % 100) / 100.0,
        is_anomaly: i % 50 == 0,
        is_fraud: i % 60 == 0,
        model_version: 1,
        amount: 10.0 + f64::from(i),
        phase: "normal".into(),
        merchant: "merchant-1".into(),
        features: Vec::new(),
    }
}

#[test]
fn postgres_writes_are_idempotent_and_the_schema_reapplies() {
    let schema = unique("test_events");
    let mut store = PgEventStore::connect(&database_url(), &schema).unwrap();
    // The decoders' time bounds are timestamps PostgreSQL can store (written, then removed
    // so the counts below are the batch's).
    for ms in [
        anomaly_services::messages::EARLIEST_EVENT_MS,
        anomaly_services::messages::LATEST_EVENT_MS,
    ] {
        let mut edge = scored(9_999);
        edge.event_id = format!("edge-{ms}");
        edge.timestamp_ms = ms;
        assert_eq!(store.write_scored(&[edge]).unwrap().new, 1);
    }
    let mut admin = postgres::Client::connect(&database_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "DELETE FROM \"{schema}\".scored_events WHERE event_id LIKE 'edge-%'"
        ))
        .unwrap();
    // Start-up applies the schema again: nothing fails, nothing changes.
    let mut again = PgEventStore::connect(&database_url(), &schema).unwrap();

    let batch: Vec<ScoredEvent> = (0..500).map(scored).collect();
    assert_eq!(store.write_scored(&batch).unwrap().new, 500);
    // A replay after a crash (overlapping the first batch) adds only the new rows.
    let replay: Vec<ScoredEvent> = (400..600).map(scored).collect();
    assert_eq!(again.write_scored(&replay).unwrap().new, 100);
    assert_eq!(store.count(Table::ScoredEvents).unwrap(), 600);

    let alert = Alert {
        schema_version: anomaly_services::messages::SCHEMA_VERSION,
        alert_id: "alert-1".into(),
        kind: AlertKind::Anomaly,
        severity: Severity::Critical,
        timestamp_ms: 1_767_225_600_000,
        event_id: "event-0".into(),
        card_id: Some("card-0".into()),
        score: Some(0.99),
        message: "CRITICAL anomaly".into(),
        top_features: vec![("amount_log".into(), 0.6)],
    };
    assert_eq!(
        store
            .write_alerts(&[(alert.clone(), true), (alert.clone(), true)])
            .unwrap()
            .new,
        1
    );
    assert_eq!(store.count(Table::Alerts).unwrap(), 1);
    // Its notification was queued once, with the alert.
    let queued: Vec<(String, String, String)> = admin
        .query(
            &format!("SELECT alert_id, state, text FROM \"{schema}\".notifications"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        queued,
        [(
            "alert-1".to_owned(),
            "pending".to_owned(),
            "[CRITICAL] CRITICAL anomaly".to_owned()
        )]
    );

    let update = ModelUpdate {
        schema_version: anomaly_services::messages::SCHEMA_VERSION,
        model_version: 2,
        timestamp_ms: 1_767_225_700_000,
        reason: "ADWIN drift".into(),
        previous_auc: Some(0.95),
        auc: Some(0.97),
    };
    assert!(store.write_model_version(&update).unwrap());
    assert!(!store.write_model_version(&update).unwrap());
    assert_eq!(store.count(Table::ModelVersions).unwrap(), 1);
    assert_eq!(store.count(Table::DriftEvents).unwrap(), 0);

    let job = anomaly_services::stages::retraining::JobOutcome {
        job: anomaly_services::stages::retraining::RetrainingJob {
            job_id: "job-1".into(),
            reason: "DDM drift".into(),
            sequence: 10,
            timestamp_ms: 1_767_225_600_000,
        },
        previous_version: 1,
        candidate_version: Some(2),
        previous_auc: Some(0.9),
        candidate_auc: Some(0.8),
        published: false,
        decision: "kept version 1".into(),
    };
    assert!(store.write_job(&job).unwrap());
    assert!(!store.write_job(&job).unwrap());
    assert_eq!(store.count(Table::RetrainingJobs).unwrap(), 1);

    drop_schema(&schema);
}

/// Tables made by earlier versions (locale-collated ids, a redundant index) are converted
/// once at start-up, rows kept; the schema then reapplies without touching them again.
#[test]
fn tables_of_earlier_versions_get_byte_collated_ids_and_lose_the_redundant_index() {
    let schema = unique("test_upgrade");
    let mut admin = postgres::Client::connect(&database_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\";
             CREATE TABLE scored_events (event_id TEXT NOT NULL, ts TIMESTAMPTZ NOT NULL,
                 card_id TEXT NOT NULL, score DOUBLE PRECISION NOT NULL, is_anomaly BOOLEAN NOT NULL,
                 is_fraud BOOLEAN NOT NULL, model_version BIGINT NOT NULL,
                 amount DOUBLE PRECISION NOT NULL, phase TEXT NOT NULL, UNIQUE (event_id, ts));
             CREATE INDEX scored_events_event_id_ts ON scored_events (event_id, ts DESC);
             INSERT INTO scored_events VALUES ('old', now(), 'c', 0.5, false, false, 1, 1.0, 'p');"
        ))
        .unwrap();
    let columns = |admin: &mut postgres::Client| -> Vec<(String, String)> {
        admin
            .query(
                "SELECT a.attname::TEXT, co.collname::TEXT FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_collation co ON co.oid = a.attcollation
                 WHERE n.nspname = $1 AND c.relname = 'scored_events'
                   AND a.attname IN ('event_id', 'card_id') ORDER BY 1",
                &[&schema],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let mut store = PgEventStore::connect(&database_url(), &schema).unwrap();
    let expected = vec![
        ("card_id".to_owned(), "C".to_owned()),
        ("event_id".into(), "C".into()),
    ];
    assert_eq!(columns(&mut admin), expected);
    let indexes: i64 = admin
        .query_one(
            "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'scored_events_event_id_ts'",
            &[&schema],
        )
        .unwrap()
        .get(0);
    assert_eq!(indexes, 0);
    assert_eq!(store.count(Table::ScoredEvents).unwrap(), 1);
    assert_eq!(store.write_scored(&[scored(1)]).unwrap().new, 1);
    PgEventStore::connect(&database_url(), &schema).unwrap();
    assert_eq!(columns(&mut admin), expected);
    drop_schema(&schema);
}

#[test]
fn redis_card_states_match_the_in_memory_store() {
    let prefix = unique("test:cards") + ":";
    let store =
        RedisFeatureStore::connect(&redis_url(), &prefix, 3600, CardState::default()).unwrap();
    let mut in_redis = FeatureEngineer::new(store);
    let mut in_memory = FeatureEngineer::new(InMemoryStore::new(CardState::default()));
    let params = GeneratorParams {
        events: 400,
        cards: 20,
        ..GeneratorParams::default()
    };
    for tx in Generator::new(params) {
        let a = in_redis.process(&tx).unwrap();
        let b = in_memory.process(&tx).unwrap();
        assert_eq!(a, b);
    }
    // A state restored from Redis is the in-memory one.
    let mut engineer = in_redis;
    let mut memory = in_memory;
    let card = "card-000003";
    let from_redis = feature_store(&mut engineer).load(card).unwrap();
    let from_memory = memory_store(&mut memory).load(card).unwrap();
    assert_eq!(from_redis, from_memory);

    // Keys expire.
    let mut connection = redis_connection();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}{card}"))
        .query(&mut connection)
        .unwrap();
    assert!(ttl > 0 && ttl <= 3600, "ttl {ttl}");

    // Corrupt bytes are an error naming the key, not a panic.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}card-broken"))
        .arg(b"\x00garbage".as_slice())
        .query(&mut connection)
        .unwrap();
    let err = feature_store(&mut engineer)
        .load("card-broken")
        .unwrap_err();
    assert!(matches!(err, RedisStoreError::Corrupt { .. }), "{err}");
    delete_redis_prefix(&prefix);
}

fn feature_store(
    engineer: &mut FeatureEngineer<RedisFeatureStore<CardState>>,
) -> &mut RedisFeatureStore<CardState> {
    engineer.store_mut()
}

fn memory_store(
    engineer: &mut FeatureEngineer<InMemoryStore<CardState>>,
) -> &mut InMemoryStore<CardState> {
    engineer.store_mut()
}

#[test]
fn a_concurrent_writer_makes_the_update_retry_not_lose_data() {
    let prefix = unique("test:race") + ":";
    let mut store = RedisFeatureStore::connect(
        &redis_url(),
        &prefix,
        60,
        anomaly_core::features::SlidingWindow::default(),
    )
    .unwrap();
    let mut other = RedisFeatureStore::connect(
        &redis_url(),
        &prefix,
        60,
        anomaly_core::features::SlidingWindow::default(),
    )
    .unwrap();
    store.update("k", |s| s.push(1, 1.0)).unwrap().unwrap();
    let mut interfered = false;
    let mut calls = 0;
    store
        .update("k", |s| {
            calls += 1;
            if !interfered {
                interfered = true;
                // Another writer changes the key between our read and our write.
                other.update("k", |t| t.push(2, 100.0)).unwrap().unwrap();
            }
            s.push(3, 2.0)
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        calls, 2,
        "the conflicting write must force a second attempt"
    );
    let stats = store.load("k").unwrap().unwrap();
    assert_eq!(stats.summary().count(), 3);
    assert_eq!(stats.summary().sum(), 103.0);
    delete_redis_prefix(&prefix);
}

#[test]
fn the_model_store_round_trips_snapshots() {
    let prefix = unique("test:model") + ":";
    let mut models = RedisModelStore::connect(&redis_url(), &prefix).unwrap();
    assert_eq!(models.load().unwrap(), None);
    assert_eq!(models.active_version().unwrap(), None);
    // Versions are allocated above the fresh model's (1), one per call.
    assert_eq!(models.allocate_version().unwrap(), 2);
    assert_eq!(models.allocate_version().unwrap(), 3);
    assert!(models.publish(3, b"version 3").unwrap());
    // Never backwards: an older or equal version is not published.
    assert!(!models.publish(2, b"version 2").unwrap());
    assert!(!models.publish(3, b"another 3").unwrap());
    assert_eq!(models.load().unwrap().as_deref(), Some(&b"version 3"[..]));
    assert_eq!(models.active_version().unwrap(), Some(3));
    assert_eq!(models.allocate_version().unwrap(), 4);

    // A model published before versions were stored beside it: its snapshot's version is
    // recorded, and allocation continues above it.
    let legacy = unique("test:legacy-model") + ":";
    let mut old = RedisModelStore::connect(&redis_url(), &legacy).unwrap();
    let mut redis = redis_connection();
    let v7 = anomaly_core::snapshot::Snapshot::new(
        7,
        anomaly_core::snapshot::Model::Ensemble(
            anomaly_core::anomaly::Ensemble::with_features(
                anomaly_services::pipeline::default_model(),
                &anomaly_core::features::TransactionFeatures::NAMES,
            )
            .unwrap(),
        ),
    )
    .to_bytes();
    let () = redis::cmd("SET")
        .arg(format!("{legacy}active_model"))
        .arg(v7)
        .query(&mut redis)
        .unwrap();
    assert_eq!(old.adopt_unversioned_model().unwrap(), Some(7));
    assert_eq!(old.adopt_unversioned_model().unwrap(), None, "once");
    assert_eq!(old.allocate_version().unwrap(), 8);
    delete_redis_prefix(&legacy);
    delete_redis_prefix(&prefix);
}

#[test]
fn redis_batches_match_record_by_record_updates() {
    use anomaly_services::services::applied_card::AppliedCard;
    use anomaly_services::services::feature_engineer::BatchCardStore;

    let prefix = unique("test:batch") + ":";
    let mut redis_store =
        RedisFeatureStore::connect(&redis_url(), &prefix, 600, AppliedCard::default()).unwrap();
    let mut memory = InMemoryStore::new(AppliedCard::default());
    let transactions = transactions(600, 8);
    // Batches of 100 with every card several times per batch.
    for batch in transactions.chunks(100) {
        let keys: Vec<&str> = batch.iter().map(|t| t.card_id.as_str()).collect();
        let from_redis = redis_store
            .update_batch(&keys, |i, state| state.card.update(&batch[i]))
            .unwrap();
        let (from_memory, prepared) = memory
            .prepare(&keys, |i, state| state.card.update(&batch[i]))
            .unwrap();
        assert!(memory.commit(prepared).unwrap());
        assert_eq!(from_redis, from_memory);
    }
    for card in ["card-000001", "card-000005"] {
        assert_eq!(redis_store.load(card).unwrap(), memory.load(card).unwrap());
    }
    delete_redis_prefix(&prefix);
}

/// A corrupt card state cannot stop the feature-engineer's batches: a batch update replaces
/// it with a fresh state, overwrites the key, and hands back the old bytes for the dead letter.
#[test]
fn a_corrupt_card_state_is_replaced_and_reported_by_batch_updates() {
    let prefix = unique("test:corrupt") + ":";
    let mut store = card_store(&prefix);
    let mut connection = redis_connection();
    let garbage = b"\x00garbage".as_slice();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}card-broken"))
        .arg(garbage)
        .query(&mut connection)
        .unwrap();
    let transactions = transactions(2, 1);
    let keys = ["card-broken", "card-fine"];
    let results = store
        .update_batch(&keys, |i, card| card.update(&transactions[i]))
        .unwrap();
    let mut fresh = CardState::default();
    assert_eq!(results[0], fresh.update(&transactions[0]));
    let discarded = store.take_discarded();
    assert_eq!(discarded.len(), 1);
    assert_eq!(discarded[0].key, format!("{prefix}card-broken"));
    assert_eq!(discarded[0].bytes, garbage);
    assert!(store.take_discarded().is_empty());
    // The key now holds a valid state: the next batch reads it without complaint.
    assert_eq!(store.load("card-broken").unwrap(), Some(fresh));
    delete_redis_prefix(&prefix);
}

/// A prepared batch is written only by its commit, and not at all if another writer changed
/// one of its cards in between (the batch is then computed again from the new state).
#[test]
fn prepared_batches_are_written_on_commit_unless_a_card_changed() {
    let prefix = unique("test:prepared") + ":";
    let mut store = card_store(&prefix);
    let mut other = card_store(&prefix);
    let transactions = transactions(3, 1);
    let card = transactions[0].card_id.clone();
    let keys = [card.as_str()];

    // Prepared and given up: nothing stored.
    let (_, prepared) = store
        .prepare_batch(&keys, |_, state: &mut CardState| {
            state.update(&transactions[0])
        })
        .unwrap();
    assert_eq!(prepared.discarded().len(), 0);
    store.abort_batch().unwrap();
    assert_eq!(store.load(&card).unwrap(), None);

    // Prepared, then another writer changes the card: the commit writes nothing.
    let (_, prepared) = store
        .prepare_batch(&keys, |_, state: &mut CardState| {
            state.update(&transactions[0])
        })
        .unwrap();
    other
        .update(&card, |state| state.update(&transactions[1]))
        .unwrap()
        .unwrap();
    assert!(!store.commit_batch(prepared).unwrap());
    let mut expected = CardState::default();
    expected.update(&transactions[1]).unwrap();
    assert_eq!(store.load(&card).unwrap(), Some(expected.clone()));

    // Prepared and committed: written.
    let (_, prepared) = store
        .prepare_batch(&keys, |_, state: &mut CardState| {
            state.update(&transactions[2])
        })
        .unwrap();
    assert!(store.commit_batch(prepared).unwrap());
    expected.update(&transactions[2]).unwrap();
    assert_eq!(store.load(&card).unwrap(), Some(expected));
    delete_redis_prefix(&prefix);
}

/// A card-state store under `prefix`, keys kept 10 minutes.
fn card_store(prefix: &str) -> RedisFeatureStore<CardState> {
    RedisFeatureStore::connect(&redis_url(), prefix, 600, CardState::default()).unwrap()
}

/// `events` synthetic transactions over `cards` cards.
fn transactions(events: u64, cards: u32) -> Vec<anomaly_core::features::Transaction> {
    Generator::new(GeneratorParams {
        events,
        cards,
        ..GeneratorParams::default()
    })
    .map(|tx| tx.transaction())
    .collect()
}

/// Rows PostgreSQL refuses as data (a NUL byte in an id: SQLSTATE 22021; a CHECK constraint
/// the test adds: 23514) are reported by index and the rest of the batch is stored, instead of
/// the whole batch failing for ever.
#[test]
fn rows_refused_as_data_are_reported_and_the_others_stored() {
    let schema = unique("test_refused");
    let mut store = PgEventStore::connect(&database_url(), &schema).unwrap();
    let mut admin = postgres::Client::connect(&database_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "ALTER TABLE \"{schema}\".scored_events ADD CONSTRAINT no_poison CHECK (card_id <> 'poison')"
        ))
        .unwrap();
    let mut batch: Vec<ScoredEvent> = (0..6).map(scored).collect();
    batch[1].event_id = "nul\0id".into();
    batch[4].card_id = "poison".into();
    let inserted = store.write_scored(&batch).unwrap();
    assert_eq!(inserted.new, 4);
    let refused: Vec<usize> = inserted.rejected.iter().map(|r| r.index).collect();
    assert_eq!(refused, [1, 4]);
    assert!(
        inserted.rejected[0].error.contains("SQLSTATE 22021"),
        "{}",
        inserted.rejected[0].error
    );
    assert!(
        inserted.rejected[1].error.contains("SQLSTATE 23514"),
        "{}",
        inserted.rejected[1].error
    );
    let stored: Vec<String> = admin
        .query(
            &format!("SELECT event_id FROM \"{schema}\".scored_events ORDER BY event_id"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<String> = [0, 2, 3, 5].iter().map(|&i| scored(i).event_id).collect();
    assert_eq!(stored, expected);
    // The connection survived the refusals: the next batch goes through it.
    assert_eq!(store.write_scored(&[scored(7)]).unwrap().new, 1);
    drop_schema(&schema);
}

/// The checkpoint of an owned state: written only by the lease holder, the previous one kept;
/// a newest checkpoint that does not decode falls back to the previous with the reason; none
/// at all restores nothing.
#[test]
fn checkpoints_are_fenced_by_the_lease_and_fall_back_when_corrupt() {
    use anomaly_services::adapters::checkpoints::{Lease, Ownership};
    use std::time::Duration;
    let prefix = unique("test:ownership") + ":";
    let lease = Duration::from_secs(30);
    let mut a = Ownership::connect(&redis_url(), &prefix, "state", "a", lease).unwrap();
    let mut b = Ownership::connect(&redis_url(), &prefix, "state", "b", lease).unwrap();
    // Missing: nothing restored, nothing to fall back from.
    let restored = a.load::<Vec<u64>>().unwrap();
    assert_eq!((restored.state, restored.fell_back), (None, None));
    assert_eq!(a.acquire().unwrap(), Lease::Taken);
    assert_eq!(
        b.acquire().unwrap(),
        Lease::HeldElsewhere,
        "one holder at a time"
    );
    assert_eq!(a.acquire().unwrap(), Lease::Renewed, "the holder renews");
    assert!(a.save(&vec![1u64]).unwrap());
    assert!(a.save(&vec![1u64, 2]).unwrap());
    assert!(!b.save(&vec![9u64]).unwrap(), "only the holder writes");
    assert_eq!(b.load::<Vec<u64>>().unwrap().state, Some(vec![1, 2]));
    // The newest is corrupted: the one before is restored, and the reason given.
    let mut redis = redis_connection();
    let () = redis::cmd("SET")
        .arg(format!("{prefix}state:checkpoint"))
        .arg("{not json")
        .query(&mut redis)
        .unwrap();
    let restored = b.load::<Vec<u64>>().unwrap();
    assert_eq!(restored.state, Some(vec![1]));
    assert!(
        restored
            .fell_back
            .as_deref()
            .unwrap()
            .contains("does not decode"),
        "{:?}",
        restored.fell_back
    );
    // Released, the lease goes to the next one at once.
    a.release().unwrap();
    assert_eq!(b.acquire().unwrap(), Lease::Taken);
    assert!(
        !a.save(&vec![3u64]).unwrap(),
        "the former holder is fenced off"
    );
    // An expired lease is taken afresh, not renewed: its former holder learns that its state
    // may be stale.
    let mut brief = Ownership::connect(
        &redis_url(),
        &prefix,
        "brief",
        "a",
        Duration::from_millis(100),
    )
    .unwrap();
    assert_eq!(brief.acquire().unwrap(), Lease::Taken);
    assert_eq!(brief.acquire().unwrap(), Lease::Renewed);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(brief.acquire().unwrap(), Lease::Taken);
    delete_redis_prefix(&prefix);
}

/// Two workers append their partitions' events to one history: it keeps the newest events of
/// both, once each (a replayed batch appended twice), oldest first by event time, and skips
/// events without features.
#[test]
fn the_labelled_history_is_shared_capped_and_free_of_replays() {
    use anomaly_services::adapters::labelled_history::RedisLabelledHistory;
    let prefix = unique("test:history") + ":";
    let labelled = |i: u32| ScoredEvent {
        features: vec![f64::from(i % 10) / 10.0; 11],
        ..scored(i)
    };
    let mut first = RedisLabelledHistory::connect(&redis_url(), &prefix, 6).unwrap();
    let mut second = RedisLabelledHistory::connect(&redis_url(), &prefix, 6).unwrap();
    assert!(first.is_empty().unwrap());
    // Worker one holds the even events, worker two the odd ones, and arrives late.
    first
        .append(&[labelled(0), labelled(2), scored(4)])
        .unwrap();
    second.append(&[labelled(1), labelled(3)]).unwrap();
    first.append(&[labelled(0), labelled(2)]).unwrap(); // the replay of a failed batch
    assert_eq!(second.len().unwrap(), 6);
    let ids = |history: &mut RedisLabelledHistory| -> Vec<String> {
        let events = history.load().unwrap();
        events.into_iter().map(|(v, _)| v.event_id).collect()
    };
    assert_eq!(
        ids(&mut second),
        ["event-0", "event-1", "event-2", "event-3"]
    );
    // The oldest entries go when the list is full.
    second
        .append(&(5..9).map(labelled).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(first.len().unwrap(), 6);
    assert_eq!(
        ids(&mut first),
        [
            "event-0", "event-2", "event-5", "event-6", "event-7", "event-8"
        ]
    );
    let (vector, score) = first.load().unwrap().pop().unwrap();
    assert_eq!((vector.features[0], score), (0.8, labelled(8).score));
    delete_redis_prefix(&prefix);
}
