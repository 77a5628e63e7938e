//! What ml-inference's learned-model checkpoint costs.
//!
//! ```text
//! cargo run --release -p anomaly-services --example bench-checkpoint [-- redis://127.0.0.1:6379]
//! ```
//! For the production ensemble (HalfSpaceTrees of 10 trees of height 8, + SAD) and a large one
//! (25 trees of height 15): trains it on 50,000 vectors, then times, ten times each, the steps
//! of a checkpoint and of a restore against the Redis at the given URL (keys under a prefix of
//! this run, removed after), and prints a table of medians with the share of a 60 s interval
//! the checkpoint blocks the consumer.

use std::time::{Duration, Instant};

use anomaly_core::anomaly::Ensemble;
use anomaly_core::features::TransactionFeatures;
use anomaly_services::adapters::learned_models::RedisLearnedModels;
use anomaly_services::messages::{FeatureVector, SCHEMA_VERSION};
use anomaly_services::pipeline::default_model;
use anomaly_services::stages::inference::Inference;

type Error = Box<dyn std::error::Error>;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(runs: usize, mut step: impl FnMut() -> Result<T, Error>) -> Result<Duration, Error> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        step()?;
        samples.push(started.elapsed());
    }
    Ok(median(samples))
}

/// Where to write the checkpoints.
#[derive(clap::Parser)]
#[command(name = "bench-checkpoint")]
struct Args {
    /// The Redis to measure against.
    #[arg(default_value = "redis://127.0.0.1:6379")]
    url: String,
}

fn main() -> Result<(), Error> {
    let Args { url } = clap::Parser::parse();
    println!(
        "| model | size | encode (clone + snapshot) | write to Redis (keeping the previous) | read from Redis | decode + validate + install | checkpoint: share of a 60 s interval | checkpoint: events not processed meanwhile |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (trees, height) in [(10, 8), (25, 15)] {
        measure(&url, trees, height)?;
    }
    Ok(())
}

fn measure(url: &str, trees: u32, height: u32) -> Result<(), Error> {
    let names = TransactionFeatures::NAMES;
    let mut params = default_model();
    params.hst.n_trees = trees;
    params.hst.height = height;
    let mut stage = Inference::new(Ensemble::with_features(params, &names)?, 1, 0.85);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let started = Instant::now();
    let events = 50_000;
    for i in 0..events {
        let features = (0..names.len())
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 10_000) as f64 / 10_000.0
            })
            .collect();
        stage.process(&FeatureVector {
            schema_version: SCHEMA_VERSION,
            event_id: format!("e{i}"),
            card_id: format!("c{}", i % 1000),
            timestamp_ms: 1_767_225_600_000 + i as i64,
            features,
            amount: 10.0,
            is_fraud: false,
            phase: "normal".into(),
            merchant: "m".into(),
        })?;
    }
    let per_event = started.elapsed() / events;

    let prefix = format!("bench:checkpoint:{}:", std::process::id());
    let mut store = RedisLearnedModels::connect(url, &prefix, "bench", Duration::from_secs(3600))?;
    let bytes = stage.checkpoint();
    let encode = time(10, || Ok(stage.checkpoint()))?;
    let write = time(10, || Ok(store.save(&bytes)?))?;
    let key = format!("{prefix}learned_model:bench");
    let read = time(10, || Ok(store.fetch(&key)?))?;
    let mut restored = stage.clone();
    let decode = time(10, || Ok(restored.restore(&bytes)?))?;
    let mut connection = redis::Client::open(url)?.get_connection()?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut connection)?;
    let () = redis::cmd("DEL").arg(keys).query(&mut connection)?;

    let checkpoint = encode + write;
    println!(
        "| HST {trees} trees, height {height} | {:.2} MB | {encode:.1?} | {write:.1?} | {read:.1?} | {decode:.1?} | {:.3}% | {:.0} (at {per_event:.1?} per event) |",
        bytes.len() as f64 / 1e6,
        checkpoint.as_secs_f64() / 60.0 * 100.0,
        checkpoint.as_secs_f64() / per_event.as_secs_f64()
    );
    Ok(())
}
