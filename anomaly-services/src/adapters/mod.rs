//! Real-world adapters behind the stages: Kafka (transport), PostgreSQL/TimescaleDB (event
//! store) and Redis (feature store, model store, checkpoints, the shared labelled history).

pub mod checkpoints;
pub mod kafka;
pub mod labelled_history;
pub mod learned_models;
pub mod outbox;
pub mod postgres;
pub mod postgres_link;
pub mod producer_progress;
pub mod redis;
pub mod redis_link;
