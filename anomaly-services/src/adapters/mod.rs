//! Real-world adapters behind the stages: Kafka (transport), PostgreSQL/TimescaleDB (event
//! store) and Redis (feature store, model store).

pub mod kafka;
pub mod postgres;
pub mod redis;
