//! Raw transaction -> feature vector, with per-card state in a feature store.

use anomaly_core::features::{CardState, FeatureStore, TransactionError, TransactionFeatures};
use thiserror::Error;

use crate::messages::{FeatureVector, RawTransaction};

/// Why a transaction produced no features.
#[derive(Debug, Error)]
pub enum FeatureError<E: std::error::Error> {
    /// The transaction's values were rejected (the card's state is unchanged).
    #[error(transparent)]
    Transaction(#[from] TransactionError),
    /// The feature store failed.
    #[error("feature store: {0}")]
    Store(E),
}

/// Computes each transaction's features from its card's state, updating that state
/// atomically in the store.
///
/// ```
/// use anomaly_core::features::{CardState, InMemoryStore};
/// use anomaly_services::generator::{Generator, GeneratorParams};
/// use anomaly_services::stages::feature_engineering::FeatureEngineer;
///
/// let mut engineer = FeatureEngineer::new(InMemoryStore::new(CardState::default()));
/// for tx in Generator::new(GeneratorParams { events: 100, ..GeneratorParams::default() }) {
///     let vector = engineer.process(&tx)?;
///     assert!(vector.features.iter().all(|v| (0.0..=1.0).contains(v)));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FeatureEngineer<S> {
    store: S,
}

impl<S: FeatureStore<State = CardState>> FeatureEngineer<S> {
    /// A stage over `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably (to load a card's state, say).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The features of `tx`.
    pub fn process(
        &mut self,
        tx: &RawTransaction,
    ) -> Result<FeatureVector, FeatureError<S::Error>> {
        let transaction = tx.transaction();
        let features = self
            .store
            .update(&tx.card_id, |card| card.update(&transaction))
            .map_err(FeatureError::Store)??;
        Ok(feature_vector(tx, &features))
    }
}

/// A transaction [`FeatureEngineer::process_owned`] rejected, with the reason (boxed: rare,
/// and large next to a feature vector).
pub type Rejected<E> = Box<(FeatureError<E>, RawTransaction)>;

impl<S: FeatureStore<State = CardState>> FeatureEngineer<S> {
    /// [`process`](Self::process), moving the transaction's ids into the feature vector
    /// instead of copying them (the embedded pipeline's hot path); a rejected transaction
    /// comes back with the error, for its dead letter.
    pub fn process_owned(
        &mut self,
        tx: RawTransaction,
    ) -> Result<FeatureVector, Rejected<S::Error>> {
        let (transaction, is_fraud, phase) = tx.into_parts();
        let outcome = self
            .store
            .update(&transaction.card_id, |card| card.update(&transaction));
        let features = match outcome {
            Ok(Ok(features)) => features,
            Ok(Err(e)) => {
                let tx = RawTransaction::from_parts(transaction, is_fraud, phase);
                return Err(Box::new((FeatureError::Transaction(e), tx)));
            }
            Err(e) => {
                let tx = RawTransaction::from_parts(transaction, is_fraud, phase);
                return Err(Box::new((FeatureError::Store(e), tx)));
            }
        };
        Ok(FeatureVector {
            schema_version: crate::messages::SCHEMA_VERSION,
            event_id: transaction.event_id,
            card_id: transaction.card_id,
            timestamp_ms: transaction.timestamp_ms,
            features: features.values().to_vec(),
            amount: transaction.amount,
            is_fraud,
            phase,
            merchant: transaction.merchant,
        })
    }
}

/// The message for `tx` with its computed `features`.
pub fn feature_vector(tx: &RawTransaction, features: &TransactionFeatures) -> FeatureVector {
    FeatureVector {
        schema_version: crate::messages::SCHEMA_VERSION,
        event_id: tx.event_id.clone(),
        card_id: tx.card_id.clone(),
        timestamp_ms: tx.timestamp_ms,
        features: features.values().to_vec(),
        amount: tx.amount,
        is_fraud: tx.is_fraud,
        phase: tx.phase.clone(),
        merchant: tx.merchant.clone(),
    }
}
