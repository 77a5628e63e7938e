//! What every service binary's `main` does: its command line, JSON logs, configuration, signals,
//! `/health` and `/metrics`, then the service's own work, then "Service shutdown complete".

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{ArgMatches, CommandFactory};
use log::{error, info};

use crate::config::ServiceConfig;
use crate::startup::shutdown_flag;
use crate::telemetry::http::{HttpServer, Status};
use crate::telemetry::logging::JsonLogger;

/// What a service's work gets.
pub struct Context {
    /// The configuration, read and checked.
    pub config: ServiceConfig,
    /// The command line and environment, for the settings only this service has
    /// ([`setting`](Self::setting)).
    pub matches: ArgMatches,
    /// Health and metrics.
    pub status: Arc<Status>,
    /// Set by SIGTERM or SIGINT.
    pub shutdown: Arc<AtomicBool>,
}

impl Context {
    /// The text of the setting of environment variable `variable` (flag, variable or
    /// default), `None` if this service has none.
    pub fn setting(&self, variable: &str) -> Option<String> {
        crate::cli::setting(&self.matches, variable)
    }
}

/// Runs a service binary whose command line is `C` ([`crate::cli`]): `--help`, `--version`
/// and flag errors are clap's; then JSON logs, the configuration, signals, `/health` and
/// `/metrics`; then `work`, which gets the context and returns when the service should exit.
pub fn service_main<C: CommandFactory>(
    default_http_port: u16,
    work: impl FnOnce(&Context) -> Result<(), String>,
) -> ExitCode {
    let command = C::command().mut_arg("HTTP_PORT", |port| {
        port.default_value(default_http_port.to_string())
    });
    // Leaked once: the logger and the metrics keep the name for the life of the process.
    let service: &'static str = command.get_name().to_owned().leak();
    // Exits on --help, --version and flags that do not parse, as every clap program does.
    let matches = command.get_matches();
    let log_filter = crate::cli::setting(&matches, "RUST_LOG").unwrap_or_default();
    JsonLogger::install(service, &log_filter);
    let outcome = (|| {
        let config = ServiceConfig::from_lookup(default_http_port, |name| {
            crate::cli::setting(&matches, name)
        })
        .map_err(|e| e.to_string())?;
        let shutdown = shutdown_flag().map_err(|e| format!("cannot handle signals: {e}"))?;
        let status = Status::new(service);
        let _http = HttpServer::start(Arc::clone(&status), &config.http_bind, config.http_port)
            .map_err(|e| format!("cannot serve /health on port {}: {e}", config.http_port))?;
        work(&Context {
            config,
            matches,
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

/// The event store at `TIMESCALE_URL`, in schema `TIMESCALE_SCHEMA`, with
/// the start-up retries (10 tries, 5 s apart).
pub fn connect_event_store(
    config: &ServiceConfig,
) -> Result<crate::adapters::postgres::PgEventStore, String> {
    let url = config.timescale_url.expose();
    crate::startup::retry_store("database", || {
        crate::adapters::postgres::PgEventStore::connect(url, &config.timescale_schema)
    })
    .map_err(|e| format!("database at {}: {e}", crate::config::redact_url(url)))
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
