//! Streaming features: running statistics, event-time sliding windows, a keyed state store
//! and the transaction feature set.
//!
//! | type | what it computes |
//! | --- | --- |
//! | [`RunningStats`] | count, mean, variance, min, max of a whole stream (Welford) |
//! | [`EwmStats`] | exponentially weighted mean and variance |
//! | [`MinMaxScaler`] | River's online min-max scaling of dense rows |
//! | [`SlidingWindow`] | count, sum, mean, variance, min, max over the last N ms or N events |
//! | [`CardState`] | the per-card [transaction feature set](transaction) |
//!
//! Everything runs on **event time**: timestamps come with the events and the wall clock is
//! never read, so replaying a stream gives identical features. Per-key state lives in a
//! [`FeatureStore`] ([`InMemoryStore`] here; external stores implement the same trait),
//! travels as compact bytes ([`Compact`]) and also implements serde.
//!
//! ```
//! use anomaly_core::features::{FeatureStore, InMemoryStore, SlidingWindow, WindowParams, WindowSpan};
//!
//! // Per-key "last 10 events" windows.
//! let params = WindowParams { span: WindowSpan::Events { count: 10 }, ..Default::default() };
//! let mut store = InMemoryStore::new(SlidingWindow::new(params)?);
//! for (i, key) in ["a", "b", "a"].into_iter().enumerate() {
//!     store.update(key, |w| w.push(i as i64, 1.0 + i as f64))??;
//! }
//! let a = store.get("a").map(|w| w.summary().sum());
//! assert_eq!(a, Some(4.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// Whether `x` is an acceptable input value: finite with magnitude at most
/// [`MAX_INPUT_MAGNITUDE`](crate::MAX_INPUT_MAGNITUDE) (false for NaN).
#[inline]
pub(crate) fn is_valid_value(x: f64) -> bool {
    x.abs() <= crate::MAX_INPUT_MAGNITUDE
}

mod codec;
mod ewm;
mod log_scale;
mod moments;
mod running;
mod scaler;
mod store;
mod summary;
pub mod transaction;
mod window;

pub use codec::{Compact, DecodeError, FORMAT_VERSION};
pub use ewm::{EwmParams, EwmStats};
pub use running::RunningStats;
pub use scaler::{MinMaxScaler, ScalerError};
pub use store::{FeatureStore, InMemoryStore, update_encoded};
pub use summary::Summary;
pub use transaction::{
    CardState, Transaction, TransactionError, TransactionFeatures, TransactionParams,
};
pub use window::{Ingest, SlidingWindow, WindowParams, WindowSpan};
