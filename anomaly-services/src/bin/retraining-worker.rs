//! retraining-worker: drift events -> Redis job queue -> retrained, judged, published models.

use anomaly_services::failure::Dependency::{Postgres, Redis};
use std::process::ExitCode;

use anomaly_core::features::TransactionFeatures;
use anomaly_services::adapters::labelled_history::RedisLabelledHistory;
use anomaly_services::adapters::redis::RedisModelStore;
use anomaly_services::cli::RetrainingWorkerCommand;
use anomaly_services::failure::Unavailable;
use anomaly_services::pipeline::default_model;
use anomaly_services::services::main::{
    connect_event_store, connect_kafka, connect_redis, service_main,
};
use anomaly_services::services::retraining_worker::{
    JobQueue, RedisJobQueue, RetrainingService, SOURCES, StorePublisher,
};
use anomaly_services::stages::retraining::{Retrainer, RetrainingParams};
use log::info;

/// A worker's jobs are put back this long after its last sign of life (a job takes seconds).
const LEASE_SECONDS: u64 = 600;
/// After a job ran, drifts start no other job for this long (drift storms make one job).
const DEBOUNCE_SECONDS: u64 = 600;

fn main() -> ExitCode {
    service_main::<RetrainingWorkerCommand>(8004, |ctx| {
        let config = &ctx.config;
        // Unique among running workers even where every container's process id is 1.
        let worker = format!("worker-{:016x}", rand::random::<u64>());
        let mut queue = connect_redis(config, |url| {
            RedisJobQueue::connect(
                url,
                &config.redis_prefix,
                &worker,
                LEASE_SECONDS,
                DEBOUNCE_SECONDS,
            )
        })?
        .with_latency(ctx.status.metrics.latency(Redis));
        let recovered = queue.adopt_unlisted()? + queue.recover()?;
        info!(recovered = recovered; "Jobs of crashed workers put back");
        let mut models = connect_redis(config, |url| {
            RedisModelStore::connect(url, &config.redis_prefix)
        })?
        .with_latency(ctx.status.metrics.latency(Redis));
        // A model published by a version before `active_version` existed: count from it.
        if let Some(version) = models
            .adopt_unversioned_model()
            .map_err(Unavailable::redis)?
        {
            info!(version = version; "Recorded the active model's version");
        }
        let publisher = StorePublisher {
            models,
            events: connect_event_store(config)?.with_latency(ctx.status.metrics.latency(Postgres)),
        };
        let io = connect_kafka(config, "retraining-worker", &SOURCES)?;
        let names: Vec<String> = TransactionFeatures::NAMES
            .iter()
            .map(|s| s.to_string())
            .collect();
        let retrainer = Retrainer::new(RetrainingParams::default(), default_model(), names);
        let history = connect_redis(config, |url| {
            RedisLabelledHistory::connect(url, &config.redis_prefix, retrainer.capacity())
        })?
        .with_latency(ctx.status.metrics.latency(Redis));
        info!("Service started");
        let mut handler =
            RetrainingService::new(retrainer, queue, publisher, history, ctx.status.clone());
        ctx.consume(&io, &mut handler)
    })
}
