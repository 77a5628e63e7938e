//! producer: synthetic card transactions with drift phases onto `raw-transactions`.

use std::process::ExitCode;

use anomaly_services::adapters::producer_progress::RedisProducerProgress;
use anomaly_services::cli::ProducerCommand;
use anomaly_services::config::redact_url;
use anomaly_services::generator::{Generator, GeneratorParams};
use anomaly_services::services::main::{Context, connect_kafka, service_main};
use anomaly_services::services::producer::{Shard, produce};
use anomaly_services::startup::retry_store;
use log::info;

/// The producer's setting `variable` as a number, with the configuration's message when it
/// is not one.
fn number<T: std::str::FromStr>(ctx: &Context, variable: &str) -> Result<T, String> {
    let text = ctx.setting(variable).unwrap_or_default();
    text.trim()
        .parse()
        .map_err(|_| format!("invalid {variable}={text}: expected a whole number >= 0"))
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
        let redis_url = ctx.config.redis_url.expose();
        let (instance, instances) = shard.position();
        let mut progress = retry_store("redis", || {
            RedisProducerProgress::connect(
                redis_url,
                &ctx.config.redis_prefix,
                &stream,
                instance,
                instances,
            )
        })
        .map_err(|e| format!("Redis at {}: {e}", redact_url(redis_url)))?;
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
