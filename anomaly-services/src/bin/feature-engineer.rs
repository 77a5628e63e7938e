//! feature-engineer: `raw-transactions` -> per-card windows in Redis -> `features`.

use std::process::ExitCode;

use anomaly_services::adapters::redis::RedisFeatureStore;
use anomaly_services::cli::FeatureEngineerCommand;
use anomaly_services::config::redact_url;
use anomaly_services::services::applied_card::AppliedCard;
use anomaly_services::services::feature_engineer::{FeatureEngineerService, SOURCE};
use anomaly_services::services::main::{connect_kafka, service_main};
use anomaly_services::startup::retry_store;
use log::info;

/// A card unseen for a week starts afresh.
const CARD_TTL_SECONDS: u64 = 7 * 24 * 3600;

fn main() -> ExitCode {
    service_main::<FeatureEngineerCommand>(8001, |ctx| {
        let config = &ctx.config;
        let redis_url = config.redis_url.expose().to_owned();
        let prefix = format!("{}card:", config.redis_prefix);
        let store = retry_store("redis", || {
            RedisFeatureStore::connect(
                &redis_url,
                &prefix,
                CARD_TTL_SECONDS,
                AppliedCard::default(),
            )
        })
        .map_err(|e| format!("Redis at {}: {e}", redact_url(&redis_url)))?
        .with_latency(
            ctx.status
                .metrics
                .latency(anomaly_services::failure::Dependency::Redis),
        );
        let io = connect_kafka(config, "feature-engineer", &[SOURCE])?;
        info!(topic = SOURCE; "Service started");
        let mut handler = FeatureEngineerService::new(store, ctx.status.clone());
        anomaly_services::service::run(&io, &mut handler, &ctx.status, &ctx.shutdown)
            .map_err(|e| e.to_string())
    })
}
