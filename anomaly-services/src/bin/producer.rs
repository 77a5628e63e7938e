//! producer: synthetic card transactions with drift phases onto `raw-transactions`.

use std::process::ExitCode;

use anomaly_services::adapters::producer_progress::RedisProducerProgress;
use anomaly_services::config::redact_url;
use anomaly_services::generator::{Generator, GeneratorParams};
use anomaly_services::services::main::{connect_kafka, service_main};
use anomaly_services::services::producer::{Shard, produce};
use anomaly_services::startup::retry_store;
use log::info;

const HELP: &str = "\
producer: generates labelled card transactions (seeded, with named drift phases: normal,
spending_shift, fraud_wave, normal_again) and sends them to `raw-transactions`, keyed by card,
paced by REPLAY_SPEED (event time runs that many times faster than real time; 0 = as fast as
possible). Environment (docs/OPERATIONS.md): KAFKA_BOOTSTRAP_SERVERS, REPLAY_SPEED,
PRODUCER_EVENTS (default 1000000), PRODUCER_SEED (default 42), PRODUCER_CARDS (default 2000),
PRODUCER_INSTANCES (default 1) and PRODUCER_INSTANCE (this one, from 0): several instances
with the same seed send the stream once between them, each the cards that hash to it.
After each acknowledged batch it records in Redis (REDIS_URL, REDIS_PREFIX) how far it got on
this stream (PRODUCER_RUN, default 1, with the seed, events and cards): a restarted instance
goes on from there (a crash between a batch's acknowledgement and its record sends that batch
again), and a finished stream is not sent twice; another PRODUCER_RUN sends it again.
HTTP_PORT (default 8000), HTTP_BIND, RUST_LOG. Stops cleanly on SIGTERM or SIGINT.";

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("invalid {name}={text}: expected a positive integer")),
        Err(_) => Ok(default),
    }
}

fn main() -> ExitCode {
    service_main("producer", 8000, HELP, |ctx| {
        let params = GeneratorParams {
            events: env_number("PRODUCER_EVENTS", 1_000_000)?,
            seed: env_number("PRODUCER_SEED", 42)?,
            cards: env_number("PRODUCER_CARDS", 2_000)?,
            ..GeneratorParams::default()
        };
        let shard = Shard::new(
            env_number("PRODUCER_INSTANCE", 0)?,
            env_number("PRODUCER_INSTANCES", 1)?,
        )?;
        let run: String = env_number("PRODUCER_RUN", 1u64)?.to_string();
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
