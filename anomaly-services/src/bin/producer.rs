//! producer: synthetic card transactions with drift phases onto `raw-transactions`.

use std::process::ExitCode;

use anomaly_services::generator::{Generator, GeneratorParams};
use anomaly_services::services::main::{connect_kafka, service_main};
use anomaly_services::services::producer::{Shard, produce};
use log::info;

const HELP: &str = "\
producer: generates labelled card transactions (seeded, with named drift phases: normal,
spending_shift, fraud_wave, normal_again) and sends them to `raw-transactions`, keyed by card,
paced by REPLAY_SPEED (event time runs that many times faster than real time; 0 = as fast as
possible). Environment (docs/OPERATIONS.md): KAFKA_BOOTSTRAP_SERVERS, REPLAY_SPEED,
PRODUCER_EVENTS (default 1000000), PRODUCER_SEED (default 42), PRODUCER_CARDS (default 2000),
PRODUCER_INSTANCES (default 1) and PRODUCER_INSTANCE (this one, from 0): several instances
with the same seed send the stream once between them, each the cards that hash to it;
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
        let io = connect_kafka(&ctx.config, "producer", &[])?;
        info!(events = params.events, seed = params.seed; "Service started");
        let sent = produce(
            &io,
            Generator::new(params),
            shard,
            ctx.config.replay_speed,
            &ctx.status,
            &ctx.shutdown,
        );
        info!(sent = sent; "Stream finished");
        Ok(())
    })
}
