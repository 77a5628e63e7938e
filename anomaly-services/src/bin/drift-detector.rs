//! drift-detector: `scores` -> ADWIN (scores) and DDM (errors) -> `drift-events`, drift
//! `alerts`; scored events and drift events stored in PostgreSQL/TimescaleDB.

use std::process::ExitCode;

use anomaly_services::pipeline::default_model;
use anomaly_services::services::drift_detector::{DriftService, SCORES};
use anomaly_services::services::main::{connect_event_store, connect_kafka, service_main};
use log::info;

const HELP: &str = "\
drift-detector: watches `scores` with ADWIN (score stream) and DDM (error stream: anomaly
flag vs fraud label), publishes drifts to `drift-events` and drift alerts to `alerts`, and
writes scored events and drift events to PostgreSQL (idempotently, before committing offsets).
Environment (docs/OPERATIONS.md): KAFKA_BOOTSTRAP_SERVERS, TIMESCALE_URL, HTTP_PORT (default
8003), HTTP_BIND, RUST_LOG. Stops cleanly on SIGTERM or SIGINT.";

fn main() -> ExitCode {
    service_main("drift-detector", 8003, HELP, |ctx| {
        let config = &ctx.config;
        let store = connect_event_store(config)?.with_latency(
            ctx.status
                .metrics
                .latency(anomaly_services::failure::Dependency::Postgres),
        );
        let io = connect_kafka(config, "drift-detector", &[SCORES])?;
        let model = default_model();
        let warm_up = u64::from(model.hst.window_size) + u64::from(model.sad_grace_period);
        info!("Service started");
        let mut handler = DriftService::new(store, warm_up, ctx.status.clone());
        anomaly_services::service::run(&io, &mut handler, &ctx.status, &ctx.shutdown)
            .map_err(|e| e.to_string())
    })
}
