//! What every service binary's `main` does: `--help`, JSON logs, configuration, signals,
//! `/health` and `/metrics`, then the service's own work, then "Service shutdown complete".

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use log::{error, info};

use crate::config::ServiceConfig;
use crate::startup::shutdown_flag;
use crate::telemetry::http::{HttpServer, Status};
use crate::telemetry::logging::JsonLogger;

/// What a service's work gets.
pub struct Context {
    /// The configuration, read and checked.
    pub config: ServiceConfig,
    /// Health and metrics.
    pub status: Arc<Status>,
    /// Set by SIGTERM or SIGINT.
    pub shutdown: Arc<AtomicBool>,
}

/// Runs a service binary: `work` gets the context and returns when the service should exit.
pub fn service_main(
    service: &'static str,
    default_http_port: u16,
    help: &str,
    work: impl FnOnce(&Context) -> Result<(), String>,
) -> ExitCode {
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        println!("{help}");
        return ExitCode::SUCCESS;
    }
    if std::env::args().any(|a| a == "-V" || a == "--version") {
        println!("{service} {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    JsonLogger::install(service);
    let outcome = (|| {
        let config = ServiceConfig::from_env(default_http_port).map_err(|e| e.to_string())?;
        let shutdown = shutdown_flag().map_err(|e| format!("cannot handle signals: {e}"))?;
        let status = Status::new(service);
        let _http = HttpServer::start(Arc::clone(&status), &config.http_bind, config.http_port)
            .map_err(|e| format!("cannot serve /health on port {}: {e}", config.http_port))?;
        work(&Context {
            config,
            status,
            shutdown,
        })
    })();
    match outcome {
        Ok(()) => {
            info!("Service shutdown complete");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The event store at `TIMESCALE_URL`, in schema `TIMESCALE_SCHEMA` (default `public`), with
/// the start-up retries (10 tries, 5 s apart).
pub fn connect_event_store(
    config: &ServiceConfig,
) -> Result<crate::adapters::postgres::PgEventStore, String> {
    let url = config.timescale_url.expose();
    let schema = event_schema();
    crate::startup::retry_store("database", || {
        crate::adapters::postgres::PgEventStore::connect(url, &schema)
    })
    .map_err(|e| format!("database at {}: {e}", crate::config::redact_url(url)))
}

/// The schema of the event store: `TIMESCALE_SCHEMA`, default `public`.
pub fn event_schema() -> String {
    std::env::var("TIMESCALE_SCHEMA").unwrap_or_else(|_| "public".into())
}

/// The service's Kafka client in consumer group `group`, subscribed to `topics` (none for a
/// producer), with the configured tuning and the start-up retries.
pub fn connect_kafka(
    config: &ServiceConfig,
    group: &str,
    topics: &[&str],
) -> Result<crate::adapters::kafka::KafkaIo, String> {
    crate::startup::retry_kafka(|| {
        crate::adapters::kafka::KafkaIo::connect_tuned(
            &config.kafka_bootstrap_servers,
            group,
            topics,
            &config.kafka_offset_reset,
            config.kafka_tuning.clone(),
        )
    })
    .map_err(|e| format!("Kafka at {}: {e}", config.kafka_bootstrap_servers))
}
