//! `raw-transactions` -> `features`, one feature-store transaction per poll batch.

use std::sync::Arc;

use anomaly_core::features::{FeatureStore, InMemoryStore, TransactionError, TransactionFeatures};

use crate::adapters::kafka::{Output, Record};
use crate::adapters::redis::{DiscardedState, PreparedBatch, RedisFeatureStore};
use crate::failure::{Failure, Unavailable};
use crate::messages::{DeadLetter, RawTransaction, decode_transaction};
use crate::service::{DEAD_LETTERS, Handler, dead_letter_output, json_output, reject};
use crate::services::applied_card::{AppliedCard, SourcePosition};
use crate::stages::feature_engineering::feature_vector;
use crate::telemetry::http::Status;

/// Topic it reads.
pub const SOURCE: &str = "raw-transactions";
/// Topic it writes.
pub const SINK: &str = "features";

/// Card-state stores that update a whole poll batch at once, in two steps: the new states
/// are computed first and written only once the batch's features are acknowledged.
pub trait BatchCardStore: FeatureStore<State = AppliedCard> {
    /// The computed, unwritten states of a batch.
    type Prepared;

    /// Runs `f(i, state of keys[i])` for every key in order (items sharing a key see each
    /// other's updates) and keeps the new states for [`commit`](Self::commit), unwritten.
    fn prepare<R>(
        &mut self,
        keys: &[&str],
        f: impl FnMut(usize, &mut AppliedCard) -> R,
    ) -> Result<(Vec<R>, Self::Prepared), Self::Error>;

    /// Stored states the batch found corrupt and replaces with fresh ones.
    fn discarded(prepared: &Self::Prepared) -> &[DiscardedState];

    /// Writes the prepared states, all or none; `false` if another writer changed one of
    /// them since `prepare` (nothing is written then).
    fn commit(&mut self, prepared: Self::Prepared) -> Result<bool, Self::Error>;

    /// Gives up a prepared batch.
    fn abort(&mut self) -> Result<(), Self::Error>;
}

impl BatchCardStore for RedisFeatureStore<AppliedCard> {
    type Prepared = PreparedBatch;

    fn prepare<R>(
        &mut self,
        keys: &[&str],
        f: impl FnMut(usize, &mut AppliedCard) -> R,
    ) -> Result<(Vec<R>, PreparedBatch), Self::Error> {
        self.prepare_batch(keys, f)
    }

    fn discarded(prepared: &PreparedBatch) -> &[DiscardedState] {
        prepared.discarded()
    }

    fn commit(&mut self, prepared: PreparedBatch) -> Result<bool, Self::Error> {
        self.commit_batch(prepared)
    }

    fn abort(&mut self) -> Result<(), Self::Error> {
        self.abort_batch()
    }
}

impl BatchCardStore for InMemoryStore<AppliedCard> {
    type Prepared = Vec<(String, AppliedCard)>;

    fn prepare<R>(
        &mut self,
        keys: &[&str],
        mut f: impl FnMut(usize, &mut AppliedCard) -> R,
    ) -> Result<(Vec<R>, Self::Prepared), Self::Error> {
        let mut states: Vec<(String, AppliedCard)> = Vec::new();
        let mut results = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let slot = match states.iter().position(|(k, _)| k == key) {
                Some(slot) => slot,
                None => {
                    let state = self.get(key).unwrap_or(self.template()).clone();
                    states.push(((*key).to_owned(), state));
                    states.len() - 1
                }
            };
            results.push(f(i, &mut states[slot].1));
        }
        Ok((results, states))
    }

    fn discarded(_: &Self::Prepared) -> &[DiscardedState] {
        &[]
    }

    fn commit(&mut self, prepared: Self::Prepared) -> Result<bool, Self::Error> {
        for (key, state) in prepared {
            self.update(&key, |stored| *stored = state.clone())?;
        }
        Ok(true)
    }

    fn abort(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// How far ahead of the service's clock an event time may be (clock skew between systems).
pub const MAX_AHEAD_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What applying one record to its card gave.
enum Applied {
    /// The features after the transaction.
    Features(TransactionFeatures),
    /// The transaction's values were rejected (or it came too late): the windows are unchanged.
    Rejected(TransactionError),
    /// The card's state already holds this record: it was consumed again after a crash.
    AlreadyHeld,
}

/// Decodes transactions as they come, then computes a batch's features with one store
/// transaction (Redis round trips are per batch, not per record) and publishes them. The card
/// states are written only after the features are acknowledged (before the offsets are
/// committed): a batch whose features fail to go out is computed again from the same states.
/// Each state remembers the last record applied to it, so a record consumed again after a
/// crash (its offset not committed yet) is skipped: transactions count exactly once in the
/// windows, and replays are not mistaken for late transactions.
pub struct FeatureEngineerService<S: BatchCardStore> {
    store: S,
    pending: Vec<(Record, RawTransaction)>,
    prepared: Option<S::Prepared>,
    /// The clock, read once per batch.
    batch_clock_ms: i64,
    status: Arc<Status>,
}

impl<S: BatchCardStore> FeatureEngineerService<S> {
    /// A handler over the card-state store `store`.
    pub fn new(store: S, status: Arc<Status>) -> Self {
        Self {
            store,
            pending: Vec::new(),
            prepared: None,
            batch_clock_ms: now_ms(),
            status,
        }
    }
}

impl<S: BatchCardStore> Handler for FeatureEngineerService<S> {
    fn handle(&mut self, record: &Record, _: &mut Vec<Output>) -> Result<(), Failure> {
        let tx = decode_transaction(&record.payload).map_err(reject)?;
        if self.pending.is_empty() {
            self.batch_clock_ms = now_ms();
        }
        if tx.timestamp_ms > self.batch_clock_ms.saturating_add(MAX_AHEAD_MS) {
            // Accepted, it would make every later transaction of its card "too late" until
            // its time came.
            return Err(Failure::Reject {
                kind: "invalid",
                error: format!(
                    "timestamp_ms {} is more than {} s ahead of this service's clock ({})",
                    tx.timestamp_ms,
                    MAX_AHEAD_MS / 1000,
                    self.batch_clock_ms
                ),
            });
        }
        self.pending.push((record.clone(), tx));
        Ok(())
    }

    fn end_batch(&mut self, _: &[Record], out: &mut Vec<Output>) -> Result<(), Unavailable> {
        // Taken with its capacity, and given back cleared below: no regrowth per batch.
        let mut pending = std::mem::take(&mut self.pending);
        let transactions: Vec<_> = pending.iter().map(|(_, tx)| tx.transaction()).collect();
        let keys: Vec<&str> = pending.iter().map(|(_, tx)| tx.card_id.as_str()).collect();
        let positions: Vec<SourcePosition> = pending
            .iter()
            .map(|(record, _)| SourcePosition {
                partition: record.partition,
                offset: record.offset,
            })
            .collect();
        let (results, prepared) = self
            .store
            .prepare(&keys, |i, state| {
                if state.holds(positions[i]) {
                    return Applied::AlreadyHeld;
                }
                state.mark(positions[i]);
                match state.card.update(&transactions[i]) {
                    Ok(features) => Applied::Features(features),
                    Err(e) => Applied::Rejected(e),
                }
            })
            .map_err(Unavailable::redis)?;
        for discarded in S::discarded(&prepared) {
            // The card's windows restart empty; the old bytes are kept in the dead letter.
            let metrics = &self.status.metrics;
            metrics.errors.with_label_values(&["corrupt_state"]).inc();
            metrics.dead_letters.inc();
            log::warn!(key = discarded.key.as_str(), error = discarded.error.as_str(); "Corrupt card state replaced");
            out.push(json_output(
                DEAD_LETTERS,
                None,
                &discarded_letter(discarded),
            ));
        }
        self.prepared = Some(prepared);
        for ((record, tx), result) in pending.iter().zip(results) {
            match result {
                Applied::Features(features) => {
                    out.push(json_output(
                        SINK,
                        Some(tx.card_id.clone()),
                        &feature_vector(tx, &features),
                    ));
                }
                // Its features went out before the crash that made it come again.
                Applied::AlreadyHeld => self.status.metrics.replays_skipped.inc(),
                Applied::Rejected(e) => {
                    // Rejected values (or too late): the card's state is unchanged.
                    let metrics = &self.status.metrics;
                    metrics.errors.with_label_values(&["invalid"]).inc();
                    metrics.dead_letters.inc();
                    out.push(dead_letter_output(record, &e));
                }
            }
        }
        drop(keys);
        pending.clear();
        self.pending = pending;
        Ok(())
    }

    fn before_commit(&mut self) -> Result<(), Unavailable> {
        let Some(prepared) = self.prepared.take() else {
            return Ok(());
        };
        match self.store.commit(prepared) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Unavailable::redis(
                "card states changed while the batch was in flight",
            )),
            Err(e) => Err(Unavailable::redis(e)),
        }
    }

    fn batch_failed(&mut self) {
        self.pending.clear();
        self.prepared = None;
        // Also when preparing failed half-way: its keys may still be watched.
        if let Err(e) = self.store.abort() {
            log::warn!(error = e.to_string().as_str(); "Could not give up a prepared batch");
        }
    }
}

/// The dead letter keeping a corrupt card state that was replaced: its key as the source,
/// its bytes in hexadecimal (they are binary).
fn discarded_letter(discarded: &DiscardedState) -> DeadLetter {
    let hex: String = discarded.bytes.iter().map(|b| format!("{b:02x}")).collect();
    DeadLetter {
        schema_version: crate::messages::SCHEMA_VERSION,
        error: format!(
            "corrupt card state under `{}` replaced by an empty one: {}",
            discarded.key, discarded.error
        ),
        source_topic: format!("redis:{}", discarded.key),
        partition: -1,
        offset: -1,
        payload: hex,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{Generator, GeneratorParams};

    /// An in-memory store that reports one corrupt state on its first batch.
    struct OneCorrupt {
        inner: InMemoryStore<AppliedCard>,
        discarded: Vec<DiscardedState>,
    }

    impl FeatureStore for OneCorrupt {
        type State = AppliedCard;
        type Error = std::convert::Infallible;
        fn update<R>(
            &mut self,
            key: &str,
            f: impl FnMut(&mut AppliedCard) -> R,
        ) -> Result<R, Self::Error> {
            self.inner.update(key, f)
        }
        fn load(&mut self, key: &str) -> Result<Option<AppliedCard>, Self::Error> {
            self.inner.load(key)
        }
    }

    impl BatchCardStore for OneCorrupt {
        type Prepared = (Vec<(String, AppliedCard)>, Vec<DiscardedState>);

        fn prepare<R>(
            &mut self,
            keys: &[&str],
            f: impl FnMut(usize, &mut AppliedCard) -> R,
        ) -> Result<(Vec<R>, Self::Prepared), Self::Error> {
            let (results, states) = self.inner.prepare(keys, f)?;
            Ok((results, (states, std::mem::take(&mut self.discarded))))
        }
        fn discarded(prepared: &Self::Prepared) -> &[DiscardedState] {
            &prepared.1
        }
        fn commit(&mut self, prepared: Self::Prepared) -> Result<bool, Self::Error> {
            self.inner.commit(prepared.0)
        }
        fn abort(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    #[test]
    fn a_replaced_corrupt_state_becomes_a_dead_letter_and_a_metric() {
        let status = Status::new("feature-engineer");
        let store = OneCorrupt {
            inner: InMemoryStore::new(AppliedCard::default()),
            discarded: vec![DiscardedState {
                key: "cards:c1".into(),
                error: "truncated".into(),
                bytes: vec![0x00, 0xab],
            }],
        };
        let mut service = FeatureEngineerService::new(store, Arc::clone(&status));
        let tx = Generator::new(GeneratorParams {
            events: 1,
            ..GeneratorParams::default()
        })
        .next()
        .unwrap();
        let record = Record {
            topic: SOURCE.into(),
            partition: 0,
            offset: 7,
            key: None,
            payload: serde_json::to_vec(&tx).unwrap(),
            timestamp_ms: None,
        };
        let mut out = Vec::new();
        service.handle(&record, &mut out).unwrap();
        service.end_batch(&[], &mut out).unwrap();
        let topics: Vec<&str> = out.iter().map(|o| o.topic).collect();
        assert_eq!(topics, [DEAD_LETTERS, SINK]);
        let letter: DeadLetter = serde_json::from_slice(&out[0].payload).unwrap();
        assert_eq!(letter.source_topic, "redis:cards:c1");
        assert_eq!(letter.payload, "00ab");
        assert!(letter.error.contains("truncated"));
        let corrupt = status
            .metrics
            .errors
            .with_label_values(&["corrupt_state"])
            .get();
        assert_eq!(corrupt, 1);
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;
    use crate::generator::{Generator, GeneratorParams};

    fn records() -> Vec<Record> {
        Generator::new(GeneratorParams {
            events: 200,
            cards: 5,
            ..GeneratorParams::default()
        })
        .enumerate()
        .map(|(i, tx)| Record {
            topic: SOURCE.into(),
            partition: 0,
            offset: i as i64,
            key: Some(tx.card_id.clone().into_bytes()),
            payload: serde_json::to_vec(&tx).unwrap(),
            timestamp_ms: None,
        })
        .collect()
    }

    fn run(
        service: &mut FeatureEngineerService<InMemoryStore<AppliedCard>>,
        batch: &[Record],
    ) -> Vec<Output> {
        let mut out = Vec::new();
        for record in batch {
            service.handle(record, &mut out).unwrap();
        }
        service.end_batch(&[], &mut out).unwrap();
        out
    }

    /// Records consumed again after their states were written (a crash before the offsets
    /// were committed) are skipped: no second feature vector, no "too late" dead letter, the
    /// windows unchanged; a later record of the same card is applied as usual.
    #[test]
    fn records_the_states_already_hold_are_skipped_on_replay() {
        let status = Status::new("feature-engineer");
        let mut service = FeatureEngineerService::new(
            InMemoryStore::new(AppliedCard::default()),
            Arc::clone(&status),
        );
        let records = records();
        let (first, rest) = records.split_at(120);
        run(&mut service, first);
        service.before_commit().unwrap();
        service.batch_committed();
        let card = first[0]
            .key
            .clone()
            .map(String::from_utf8)
            .unwrap()
            .unwrap();
        let before = service.store.load(&card).unwrap();

        // The last 70 records of the first batch come again, with the next 80.
        let replay: Vec<Record> = first[50..].iter().chain(&rest[..80]).cloned().collect();
        let out = run(&mut service, &replay);
        service.before_commit().unwrap();
        assert_eq!(status.metrics.replays_skipped.get(), 70);
        assert_eq!(status.metrics.dead_letters.get(), 0);
        let fresh: Vec<String> = rest[..80]
            .iter()
            .map(|r| {
                serde_json::from_slice::<RawTransaction>(&r.payload)
                    .unwrap()
                    .event_id
            })
            .collect();
        let emitted: Vec<String> = out
            .iter()
            .map(|o| {
                serde_json::from_slice::<crate::messages::FeatureVector>(&o.payload)
                    .unwrap()
                    .event_id
            })
            .collect();
        assert_eq!(emitted, fresh);

        // The same sequence without the replay gives the same states.
        let mut once = FeatureEngineerService::new(
            InMemoryStore::new(AppliedCard::default()),
            Status::new("feature-engineer"),
        );
        run(&mut once, &records[..200]);
        once.before_commit().unwrap();
        for card in ["card-000000", "card-000003"] {
            assert_eq!(
                service.store.load(card).unwrap(),
                once.store.load(card).unwrap()
            );
        }
        assert_ne!(service.store.load(&card).unwrap(), before);
    }

    /// A transaction dated years ahead is dead-lettered; its card keeps accepting normal
    /// transactions instead of finding them all "too late".
    #[test]
    fn a_future_dated_transaction_cannot_lock_its_card() {
        let status = Status::new("feature-engineer");
        let mut service = FeatureEngineerService::new(
            InMemoryStore::new(AppliedCard::default()),
            Arc::clone(&status),
        );
        let mut records = records();
        let card = records[0].key.clone().unwrap();
        let mut same_card = records
            .iter()
            .filter(|r| r.key.as_ref() == Some(&card))
            .cloned();
        let (first, next) = (same_card.next().unwrap(), same_card.next().unwrap());
        let mut future: RawTransaction = serde_json::from_slice(&first.payload).unwrap();
        future.event_id = "from-the-future".into();
        future.timestamp_ms = now_ms() + 10 * 365 * 86_400_000;
        records = vec![
            first,
            Record {
                offset: 1_000,
                payload: serde_json::to_vec(&future).unwrap(),
                ..next.clone()
            },
            Record {
                offset: 1_001,
                ..next
            },
        ];
        let mut out = Vec::new();
        for record in &records {
            if let Err(Failure::Reject { error, .. }) = service.handle(record, &mut out) {
                out.push(dead_letter_output(record, &error));
            }
        }
        service.end_batch(&[], &mut out).unwrap();
        let topics: Vec<&str> = out.iter().map(|o| o.topic).collect();
        assert_eq!(topics, [DEAD_LETTERS, SINK, SINK]);
        let letter: DeadLetter = serde_json::from_slice(&out[0].payload).unwrap();
        assert!(
            letter.error.contains("ahead of this service's clock"),
            "{}",
            letter.error
        );
    }

    /// A batch whose features were not acknowledged leaves the card states as they were, so
    /// its replay computes the very same features.
    #[test]
    fn a_batch_that_failed_to_go_out_is_not_counted_twice() {
        let status = Status::new("feature-engineer");
        let new = || {
            FeatureEngineerService::new(
                InMemoryStore::new(AppliedCard::default()),
                Arc::clone(&status),
            )
        };
        let (mut once, mut replayed) = (new(), new());
        for batch in records().chunks(50) {
            let expected = run(&mut once, batch);
            once.before_commit().unwrap();
            once.batch_committed();
            // First attempt: produced nothing (the send failed).
            run(&mut replayed, batch);
            replayed.batch_failed();
            assert_eq!(run(&mut replayed, batch), expected);
            replayed.before_commit().unwrap();
            replayed.batch_committed();
        }
        for card in ["card-000000", "card-000003"] {
            assert_eq!(
                once.store.load(card).unwrap(),
                replayed.store.load(card).unwrap()
            );
        }
    }
}
