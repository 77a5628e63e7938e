//! `raw-transactions` -> `features`, one feature-store transaction per poll batch.

use std::sync::Arc;

use anomaly_core::features::{CardState, FeatureStore, InMemoryStore};

use crate::adapters::kafka::{Output, Record};
use crate::adapters::redis::{DiscardedState, RedisFeatureStore};
use crate::messages::{DeadLetter, RawTransaction, decode_transaction};
use crate::service::{DEAD_LETTERS, Failure, Handler, dead_letter_output, json_output, reject};
use crate::stages::feature_engineering::feature_vector;
use crate::telemetry::http::Status;

/// Topic it reads.
pub const SOURCE: &str = "raw-transactions";
/// Topic it writes.
pub const SINK: &str = "features";

/// Card-state stores that can update a whole poll batch at once.
pub trait BatchCardStore: FeatureStore<State = CardState> {
    /// Runs `f(i, state of keys[i])` for every key in order, atomically for the batch.
    fn update_batch<R>(
        &mut self,
        keys: &[&str],
        f: impl FnMut(usize, &mut CardState) -> R,
    ) -> Result<Vec<R>, Self::Error>;

    /// Stored states that did not decode and were replaced by fresh ones since the last call.
    fn take_discarded(&mut self) -> Vec<DiscardedState> {
        Vec::new()
    }
}

impl BatchCardStore for RedisFeatureStore<CardState> {
    fn update_batch<R>(
        &mut self,
        keys: &[&str],
        f: impl FnMut(usize, &mut CardState) -> R,
    ) -> Result<Vec<R>, Self::Error> {
        RedisFeatureStore::update_batch(self, keys, f)
    }

    fn take_discarded(&mut self) -> Vec<DiscardedState> {
        RedisFeatureStore::take_discarded(self)
    }
}

impl BatchCardStore for InMemoryStore<CardState> {
    fn update_batch<R>(
        &mut self,
        keys: &[&str],
        mut f: impl FnMut(usize, &mut CardState) -> R,
    ) -> Result<Vec<R>, Self::Error> {
        keys.iter()
            .enumerate()
            .map(|(i, key)| self.update(key, |state| f(i, state)))
            .collect()
    }
}

/// Decodes transactions as they come, then computes a batch's features with one store
/// transaction (Redis round trips are per batch, not per record) and publishes them.
pub struct FeatureEngineerService<S> {
    store: S,
    pending: Vec<(Record, RawTransaction)>,
    status: Arc<Status>,
}

impl<S: BatchCardStore> FeatureEngineerService<S> {
    /// A handler over the card-state store `store`.
    pub fn new(store: S, status: Arc<Status>) -> Self {
        Self {
            store,
            pending: Vec::new(),
            status,
        }
    }
}

impl<S: BatchCardStore> Handler for FeatureEngineerService<S> {
    fn handle(&mut self, record: &Record, _: &mut Vec<Output>) -> Result<(), Failure> {
        let tx = decode_transaction(&record.payload).map_err(reject)?;
        self.pending.push((record.clone(), tx));
        Ok(())
    }

    fn end_batch(&mut self, out: &mut Vec<Output>) -> Result<(), Failure> {
        let pending = std::mem::take(&mut self.pending);
        let transactions: Vec<_> = pending.iter().map(|(_, tx)| tx.transaction()).collect();
        let keys: Vec<&str> = pending.iter().map(|(_, tx)| tx.card_id.as_str()).collect();
        let results = self
            .store
            .update_batch(&keys, |i, card| card.update(&transactions[i]))
            .map_err(|e| Failure::Retry(format!("feature store: {e}")))?;
        for discarded in self.store.take_discarded() {
            // The card's windows restart empty; the old bytes are kept in the dead letter.
            let metrics = &self.status.metrics;
            metrics.errors.with_label_values(&["corrupt_state"]).inc();
            metrics.dead_letters.inc();
            log::warn!(key = discarded.key.as_str(), error = discarded.error.as_str(); "Corrupt card state replaced");
            out.push(json_output(
                DEAD_LETTERS,
                None,
                &discarded_letter(&discarded),
            ));
        }
        for ((record, tx), result) in pending.iter().zip(results) {
            match result {
                Ok(features) => {
                    out.push(json_output(
                        SINK,
                        Some(tx.card_id.clone()),
                        &feature_vector(tx, &features),
                    ));
                }
                Err(e) => {
                    // Rejected values (or too late): the card's state is unchanged.
                    let metrics = &self.status.metrics;
                    metrics.errors.with_label_values(&["invalid"]).inc();
                    metrics.dead_letters.inc();
                    out.push(dead_letter_output(record, &e));
                }
            }
        }
        Ok(())
    }
}

/// The dead letter keeping a corrupt card state that was replaced: its key as the source,
/// its bytes in hexadecimal (they are binary).
fn discarded_letter(discarded: &DiscardedState) -> DeadLetter {
    let hex: String = discarded.bytes.iter().map(|b| format!("{b:02x}")).collect();
    DeadLetter {
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
        inner: InMemoryStore<CardState>,
        discarded: Vec<DiscardedState>,
    }

    impl FeatureStore for OneCorrupt {
        type State = CardState;
        type Error = std::convert::Infallible;
        fn update<R>(
            &mut self,
            key: &str,
            f: impl FnMut(&mut CardState) -> R,
        ) -> Result<R, Self::Error> {
            self.inner.update(key, f)
        }
        fn load(&mut self, key: &str) -> Result<Option<CardState>, Self::Error> {
            self.inner.load(key)
        }
    }

    impl BatchCardStore for OneCorrupt {
        fn update_batch<R>(
            &mut self,
            keys: &[&str],
            f: impl FnMut(usize, &mut CardState) -> R,
        ) -> Result<Vec<R>, Self::Error> {
            self.inner.update_batch(keys, f)
        }
        fn take_discarded(&mut self) -> Vec<DiscardedState> {
            std::mem::take(&mut self.discarded)
        }
    }

    #[test]
    fn a_replaced_corrupt_state_becomes_a_dead_letter_and_a_metric() {
        let status = Status::new("feature-engineer");
        let store = OneCorrupt {
            inner: InMemoryStore::new(CardState::default()),
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
        };
        let mut out = Vec::new();
        service.handle(&record, &mut out).unwrap();
        service.end_batch(&mut out).unwrap();
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
