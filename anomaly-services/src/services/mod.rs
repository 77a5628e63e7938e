//! Each Kafka service's record handler: decoding, the stage, encoding.

pub mod alert_router;
pub mod applied_card;
pub mod drift_detector;
pub mod drift_leader;
pub mod feature_engineer;
pub mod main;
pub mod ml_inference;
pub mod notifier;
pub mod producer;
pub mod retraining_worker;

/// Every topic the services read or write (docs/MESSAGES.md), for tools that create them.
pub const TOPICS: [&str; 7] = [
    "raw-transactions",
    "features",
    "scores",
    "alerts",
    "model-updates",
    "drift-events",
    "dead-letters",
];
