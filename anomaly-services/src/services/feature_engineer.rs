//! `raw-transactions` -> `features`.

use anomaly_core::features::{CardState, FeatureStore};

use crate::adapters::kafka::{Output, Record};
use crate::messages::decode_transaction;
use crate::service::{Failure, Handler, json_output, reject};
use crate::stages::feature_engineering::{FeatureEngineer, FeatureError};

/// Topic it reads.
pub const SOURCE: &str = "raw-transactions";
/// Topic it writes.
pub const SINK: &str = "features";

/// Decodes transactions, computes their features with per-card state in `S`, publishes them.
pub struct FeatureEngineerService<S> {
    stage: FeatureEngineer<S>,
}

impl<S: FeatureStore<State = CardState>> FeatureEngineerService<S> {
    /// A handler over the feature store `store`.
    pub fn new(store: S) -> Self {
        Self {
            stage: FeatureEngineer::new(store),
        }
    }
}

impl<S: FeatureStore<State = CardState>> Handler for FeatureEngineerService<S> {
    fn handle(&mut self, record: &Record, out: &mut Vec<Output>) -> Result<(), Failure> {
        let tx = decode_transaction(&record.payload).map_err(reject)?;
        let vector = self.stage.process(&tx).map_err(|e| match e {
            FeatureError::Transaction(e) => Failure::Reject {
                kind: "invalid",
                error: e.to_string(),
            },
            FeatureError::Store(e) => Failure::Retry(format!("feature store: {e}")),
        })?;
        out.push(json_output(SINK, Some(vector.card_id.clone()), &vector));
        Ok(())
    }
}
