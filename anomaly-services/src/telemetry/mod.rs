//! Everything a service reports about itself: JSON logs, Prometheus metrics, and the HTTP
//! endpoints that serve health and metrics.

pub mod http;
pub mod logging;
pub mod metrics;
