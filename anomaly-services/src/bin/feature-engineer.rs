//! feature-engineer: `raw-transactions` -> per-card windows in Redis -> `features`.

use std::process::ExitCode;

use anomaly_services::adapters::redis::RedisFeatureStore;
use anomaly_services::cli::FeatureEngineerCommand;
use anomaly_services::services::applied_card::AppliedCard;
use anomaly_services::services::feature_engineer::{FeatureEngineerService, SOURCE};
use anomaly_services::services::main::{connect_kafka, connect_redis, service_main};
use log::info;

/// A card unseen for a week starts afresh.
const CARD_TTL_SECONDS: u64 = 7 * 24 * 3600;

fn main() -> ExitCode {
    service_main::<FeatureEngineerCommand>(8001, |ctx| {
        let config = &ctx.config;
        let prefix = format!("{}card:", config.redis_prefix);
        let store = connect_redis(config, |url| {
            RedisFeatureStore::connect(url, &prefix, CARD_TTL_SECONDS, AppliedCard::default())
        })?
        .with_latency(
            ctx.status
                .metrics
                .latency(anomaly_services::failure::Dependency::Redis),
        );
        let io = connect_kafka(config, "feature-engineer", &[SOURCE])?;
        info!(topic = SOURCE; "Service started");
        let mut handler = FeatureEngineerService::new(store, ctx.status.clone());
        ctx.consume(&io, &mut handler)
    })
}
