//! The transaction anomaly pipeline around `anomaly-core`.
//!
//! ```text
//! producer --raw-transactions--> feature-engineer --features--> ml-inference --scores-->
//!   drift-detector --drift-events--> retraining-worker --model-updates--> ml-inference
//!   ml-inference / drift-detector --alerts--> alert-router --> notifier + alerts table
//! ```
//!
//! * [`messages`]: what flows between stages, with validation and dead letters.
//! * [`generator`]: the producer's synthetic, labelled transactions with drift phases.
//! * [`stages`]: each stage's logic, free of any transport or storage.
//! * [`pipeline`]: all stages in one process with in-memory adapters (the main job).
//! * [`report`]: figures, CSV/JSON and the HTML report of a run.
//! * [`failure`]: why a record or a batch was not processed (dead-letter it, or retry).
//! * [`service`], [`services`]: the Kafka consume-process-produce loop and each service's
//!   record handler.
//! * [`adapters`]: PostgreSQL/TimescaleDB and Redis behind the stages.
//! * [`allocation`]: the global allocator (mimalloc) and the main job's choice of page size.
//! * [`cli`], [`config`], [`telemetry`]: what every service shares: settings as flags and
//!   environment variables, checked into a typed configuration; JSON logs, metrics, `/health`
//!   and `/metrics`.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod adapters;
pub mod allocation;
pub mod cli;
pub mod config;
pub mod failure;
pub mod generator;
pub mod ids;
pub mod input;
pub mod messages;
pub mod pipeline;
pub mod report;
pub mod service;
pub mod services;
pub mod stages;
pub mod startup;
pub mod telemetry;
pub mod timestamps;
