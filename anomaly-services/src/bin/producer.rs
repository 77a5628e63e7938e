//! producer: synthetic card transactions with drift phases onto `raw-transactions`.

use std::process::ExitCode;

use anomaly_services::adapters::producer_progress::RedisProducerProgress;
use anomaly_services::cli::ProducerCommand;
use anomaly_services::config::ConfigError;
use anomaly_services::generator::{Generator, GeneratorParams};
use anomaly_services::services::main::{Context, connect_kafka, connect_redis, service_main};
use anomaly_services::services::producer::{Shard, produce};
use log::info;

/// The producer's setting `variable` as a whole number.
fn number<T: std::str::FromStr>(ctx: &Context, variable: &'static str) -> Result<T, ConfigError> {
    let text = ctx.setting(variable).unwrap_or_default();
    text.trim().parse().map_err(|_| ConfigError {
        variable,
        value: text,
        expected: "a whole number >= 0",
    })
}

fn main() -> ExitCode {
    service_main::<ProducerCommand>(8000, |ctx| {
        let params = GeneratorParams {
            events: number(ctx, "PRODUCER_EVENTS")?,
            seed: number(ctx, "PRODUCER_SEED")?,
            cards: number(ctx, "PRODUCER_CARDS")?,
            ..GeneratorParams::default()
        };
        let shard = Shard::new(
            number(ctx, "PRODUCER_INSTANCE")?,
            number(ctx, "PRODUCER_INSTANCES")?,
        )?;
        let run = number::<u64>(ctx, "PRODUCER_RUN")?.to_string();
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
