//! Streaming anomaly and concept-drift detection for real-time systems.
//!
//! `anomaly-core` gives the same answers as the Python library
//! [River](https://riverml.xyz) 0.26.1 (checked bit for bit against golden vectors produced by
//! River), much faster, with typed inputs, typed errors and serializable state.
//!
//! * [`drift`]: ADWIN, DDM, EDDM, HDDM_A, HDDM_W, FHDDM, PageHinkley and KSWIN behind one
//!   [`drift::DriftDetector`] trait.
//! * [`anomaly`]: HalfSpaceTrees, StandardAbsoluteDeviation, GaussianScorer,
//!   LocalOutlierFactor, OneClassSVM, LODA and PredictiveAnomalyDetection (River's whole anomaly
//!   module), an ensemble and filters, with score-before-learn enforced by the type system.
//! * [`features`]: running and exponentially weighted statistics, River's min-max scaler,
//!   event-time sliding windows, a keyed feature store and the transaction feature set.
//! * [`rng`]: a bit-exact port of Python's `random.Random`, used where River compatibility
//!   needs the very same random draws.
//! * [`metrics`]: exact ROC AUC, precision, recall and F1.
//! * [`snapshot`]: versioned, checksummed, validated model snapshots (JSON or binary).
//! * `conformance` (cargo feature `conformance`): a runner for River golden-vector folders;
//!   without it the library does no file I/O.
//!
//! ```
//! use anomaly_core::drift::{Adwin, DriftDetector, DriftStatus};
//!
//! let mut adwin = Adwin::default();
//! let mut drifts = Vec::new();
//! for i in 0..2_000 {
//!     let x = if i < 1_000 { 0.0 } else { 1.0 };
//!     if adwin.update(x)? == DriftStatus::Drift {
//!         drifts.push(i);
//!     }
//! }
//! assert!(!drifts.is_empty() && drifts[0] >= 1_000);
//! # Ok::<(), anomaly_core::InputError>(())
//! ```

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod anomaly;
mod cache_hint;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod drift;
mod error;
pub mod features;
pub mod metrics;
mod quantile;
pub mod rng;
pub mod snapshot;
mod stats;

pub use error::{InputError, MAX_INPUT_MAGNITUDE, ParameterError};

/// The README's example, compiled and run as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
