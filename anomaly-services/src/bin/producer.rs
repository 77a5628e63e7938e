//! producer: synthetic card transactions with drift phases onto `raw-transactions`.

use std::process::ExitCode;

use anomaly_services::adapters::producer_progress::RedisProducerProgress;
use anomaly_services::cli::ProducerCommand;
use anomaly_services::config::{ConfigError, whole};
use anomaly_services::generator::{Generator, GeneratorParams};
use anomaly_services::services::main::{Context, connect_kafka, connect_redis, service_main};
use anomaly_services::services::producer::{Shard, produce};
use log::info;

/// The producer's setting `variable`, a whole number that fits 64 bits.
fn number(ctx: &Context, variable: &'static str) -> Result<u64, ConfigError> {
    let text = ctx.setting(variable).unwrap_or_default();
    whole(variable, &text, "a whole number >= 0", 0..=u64::MAX)
}

/// The producer's setting `variable`, a whole number that fits 32 bits.
fn small_number(ctx: &Context, variable: &'static str) -> Result<u32, ConfigError> {
    let text = ctx.setting(variable).unwrap_or_default();
    let value = whole(
        variable,
        &text,
        "a whole number from 0 to 4294967295",
        0..=u64::from(u32::MAX),
    )?;
    Ok(value as u32) // In range: checked above.
}

fn main() -> ExitCode {
    service_main::<ProducerCommand>(8000, |ctx| {
        let params = GeneratorParams {
            events: number(ctx, "PRODUCER_EVENTS")?,
            seed: number(ctx, "PRODUCER_SEED")?,
            cards: small_number(ctx, "PRODUCER_CARDS")?,
            ..GeneratorParams::default()
        };
        let shard = Shard::new(
            small_number(ctx, "PRODUCER_INSTANCE")?,
            small_number(ctx, "PRODUCER_INSTANCES")?,
        )?;
        let run = number(ctx, "PRODUCER_RUN")?.to_string();
        let stream = format!(
            "run{run}-seed{}-events{}-cards{}",
            params.seed, params.events, params.cards
        );
        let (instance, instances) = shard.position();
        let mut progress = connect_redis(&ctx.config, |url| {
            RedisProducerProgress::connect(
                url,
                &ctx.config.redis_prefix,
                &stream,
                instance,
                instances,
            )
        })?;
        let io = connect_kafka(&ctx.config, "producer", &[])?;
        info!(events = params.events, seed = params.seed, stream = stream.as_str(); "Service started");
        let sent = produce(
            &io,
            Generator::new(params),
            shard,
            ctx.config.replay_speed,
            &mut progress,
            &ctx.status,
            &ctx.shutdown,
        )?;
        info!(sent = sent; "Stream finished");
        Ok(())
    })
}
