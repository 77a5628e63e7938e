//! The pipeline's stages as plain logic over typed messages: no Kafka, Redis or SQL here, so
//! the services and the embedded pipeline run the very same code.

pub mod alert_routing;
pub mod drift_monitor;
pub mod feature_engineering;
pub mod inference;
pub mod retraining;
