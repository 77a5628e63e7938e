//! drift-detector: `scores` -> the scored_events table (every instance, its partitions) and
//! ADWIN (scores) and DDM (errors) -> `drift-events`, drift `alerts`, drift_events (one
//! elected instance, the whole stream).

use std::process::ExitCode;
use std::time::Duration;

use anomaly_services::adapters::checkpoints::Ownership;
use anomaly_services::adapters::kafka::{KafkaIo, KafkaTuning, StartFrom};
use anomaly_services::cli::DriftDetectorCommand;
use anomaly_services::failure::Dependency::{self, Postgres};
use anomaly_services::failure::Unavailable;
use anomaly_services::pipeline::default_model;
use anomaly_services::services::drift_detector::{DriftService, SCORES};
use anomaly_services::services::drift_leader::{LeaderSettings, run_drift_leader};
use anomaly_services::services::main::{
    ServiceError, connect_event_store, connect_kafka, connect_redis, service_main,
};
use log::info;

/// How long the drift detectors' lease lasts unrenewed: a crashed owner's standby takes over
/// after at most this.
const LEASE: Duration = Duration::from_secs(10);

/// The owner's client: the services' tuning, and partition ends reported (its event-time
/// merge needs them).
fn owner_tuning(config: &anomaly_services::config::ServiceConfig) -> KafkaTuning {
    KafkaTuning {
        report_partition_ends: true,
        ..config.kafka_tuning.clone()
    }
}

fn main() -> ExitCode {
    service_main::<DriftDetectorCommand>(8003, |ctx| {
        let config = &ctx.config;
        let latency = || ctx.status.metrics.latency(Postgres);
        let store = connect_event_store(config)?.with_latency(latency());
        let mut drift_store = connect_event_store(config)?.with_latency(latency());
        // Unique among running instances even where every container's process id is 1.
        let instance = format!("drift-detector-{:016x}", rand::random::<u64>());
        let mut ownership = connect_redis(config, |url| {
            Ownership::connect(
                url,
                &config.redis_prefix,
                "drift-detectors",
                &instance,
                LEASE,
            )
        })?;
        let io = connect_kafka(config, "drift-detector", &[SCORES])?;
        let model = default_model();
        let settings = LeaderSettings {
            lease: LEASE,
            start: StartFrom::parse(&config.kafka_offset_reset).unwrap_or(StartFrom::Latest),
            warm_up: u64::from(model.hst.window_size) + u64::from(model.sad_grace_period),
            batch_size: config.kafka_tuning.batch_size,
        };
        let source = {
            let (bootstrap, reset, tuning) = (
                config.kafka_bootstrap_servers.clone(),
                config.kafka_offset_reset.clone(),
                owner_tuning(config),
            );
            // Read outside any group (nothing subscribed, nothing committed): the position
            // is the checkpoint's.
            move || {
                KafkaIo::connect_tuned(
                    &bootstrap,
                    "drift-detector-owner",
                    &[],
                    &reset,
                    tuning.clone(),
                )
                .map_err(|e| Unavailable::new(Dependency::Kafka, e))
            }
        };
        let leader = {
            let (status, shutdown) = (ctx.status.clone(), ctx.shutdown.clone());
            std::thread::Builder::new()
                .name("drift-owner".into())
                .spawn(move || {
                    run_drift_leader(
                        &mut ownership,
                        &source,
                        &mut drift_store,
                        &settings,
                        &status,
                        &shutdown,
                    );
                })
                .map_err(|e| ServiceError::Start {
                    what: "start the drift detectors' thread".into(),
                    source: e.into(),
                })?
        };
        info!(instance = instance.as_str(); "Service started");
        let mut handler = DriftService::rows_only(store, ctx.status.clone());
        let outcome = ctx.consume(&io, &mut handler);
        ctx.shutdown
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if leader.join().is_err() {
            return Err(ServiceError::Panicked("drift detectors'"));
        }
        outcome
    })
}
