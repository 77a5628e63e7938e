//! `raw-transactions` -> `features`, one feature-store transaction per poll batch.

use std::sync::Arc;

use anomaly_core::features::{CardState, FeatureStore, InMemoryStore};

use crate::adapters::kafka::{Output, Record};
use crate::adapters::redis::RedisFeatureStore;
use crate::messages::{RawTransaction, decode_transaction};
use crate::service::{Failure, Handler, dead_letter_output, json_output, reject};
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
}

impl BatchCardStore for RedisFeatureStore<CardState> {
    fn update_batch<R>(
        &mut self,
        keys: &[&str],
        f: impl FnMut(usize, &mut CardState) -> R,
    ) -> Result<Vec<R>, Self::Error> {
        RedisFeatureStore::update_batch(self, keys, f)
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
