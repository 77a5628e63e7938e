//! Each Kafka service's record handler: decoding, the stage, encoding.

pub mod alert_router;
pub mod applied_card;
pub mod drift_detector;
pub mod feature_engineer;
pub mod main;
pub mod ml_inference;
pub mod producer;
pub mod retraining_worker;
