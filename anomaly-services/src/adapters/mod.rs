//! Real-world adapters behind the stages: PostgreSQL/TimescaleDB (event store) and Redis
//! (feature store, model store).

pub mod postgres;
pub mod redis;
