//! What every service binary's `main` does: its command line, JSON logs, configuration, signals,
//! `/health` and `/metrics`, then the service's own work, then "Service shutdown complete".

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{ArgMatches, CommandFactory};
use log::{error, info};

use crate::config::{ConfigError, ServiceConfig, redact_url};
use crate::failure::Unavailable;
use crate::service::LoopError;
use crate::startup::shutdown_flag;
use crate::telemetry::http::{HttpServer, Status};
use crate::telemetry::logging::JsonLogger;

/// Why a service binary stopped with an error: logged as its last line, exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A dependency could not be reached at start-up, after the retries.
    #[error("{what} at {address}: {detail}")]
    Connect {
        /// `Redis`, `database` or `Kafka`.
        what: &'static str,
        /// Where (a URL's password redacted).
        address: String,
        /// The last attempt's error.
        detail: String,
    },
    /// A dependency failed where the service cannot go on without it.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The consume loop stopped on an error.
    #[error(transparent)]
    Loop(#[from] LoopError),
    /// Part of the process could not start: signal handling, the HTTP endpoints, a thread.
    #[error("cannot {what}: {source}")]
    Start {
        /// What could not start.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A thread of the service panicked.
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
    /// The initial model cannot be built.
    #[error("the initial model: {0}")]
    Model(String),
}

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
    /// Runs the consume loop ([`crate::service::run`]) with `handler` until shutdown.
    pub fn consume(
        &self,
        io: &crate::adapters::kafka::KafkaIo,
        handler: &mut impl crate::service::Handler,
    ) -> Result<(), ServiceError> {
        Ok(crate::service::run(
            io,
            handler,
            &self.status,
            &self.shutdown,
        )?)
    }

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
    work: impl FnOnce(&Context) -> Result<(), ServiceError>,
) -> ExitCode {
    // Negative numbers are values (`--kafka-batch-size -1` gets the configuration's
    // message, not clap's "unexpected argument").
    let command = C::command()
        .allow_negative_numbers(true)
        .mut_arg("HTTP_PORT", |port| {
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
                // Not a setting: the host name that the default INSTANCE_ID is made of.
                .or_else(|| {
                    (name == "HOSTNAME")
                        .then(|| std::env::var(name).ok())
                        .flatten()
                })
        })?;
        let shutdown = shutdown_flag().map_err(|e| ServiceError::Start {
            what: "handle signals".into(),
            source: e.into(),
        })?;
        let status = Status::new(service);
        let _http = HttpServer::start(Arc::clone(&status), &config.http_bind, config.http_port)
            .map_err(|source| ServiceError::Start {
                what: format!("serve /health on port {}", config.http_port),
                source,
            })?;
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
) -> Result<crate::adapters::postgres::PgEventStore, ServiceError> {
    let url = config.timescale_url.expose();
    crate::startup::retry_store("database", || {
        crate::adapters::postgres::PgEventStore::connect(url, &config.timescale_schema)
    })
    .map_err(|e| ServiceError::Connect {
        what: "database",
        address: redact_url(url),
        detail: e.to_string(),
    })
}

/// `connect` to the Redis at `REDIS_URL`, with the start-up retries (10 tries, 5 s apart).
pub fn connect_redis<T, E: std::fmt::Display>(
    config: &ServiceConfig,
    connect: impl FnMut(&str) -> Result<T, E>,
) -> Result<T, ServiceError> {
    let url = config.redis_url.expose();
    let mut connect = connect;
    crate::startup::retry_store("redis", || connect(url)).map_err(|e| ServiceError::Connect {
        what: "Redis",
        address: redact_url(url),
        detail: e.to_string(),
    })
}

/// The service's Kafka client in consumer group `group`, subscribed to `topics` (none for a
/// producer), with the configured tuning and the start-up retries.
pub fn connect_kafka(
    config: &ServiceConfig,
    group: &str,
    topics: &[&str],
) -> Result<crate::adapters::kafka::KafkaIo, ServiceError> {
    crate::startup::retry_kafka(|| {
        crate::adapters::kafka::KafkaIo::connect_tuned(
            &config.kafka_bootstrap_servers,
            group,
            topics,
            &config.kafka_offset_reset,
            config.kafka_tuning.clone(),
        )
    })
    .map_err(|e| ServiceError::Connect {
        what: "Kafka",
        address: config.kafka_bootstrap_servers.clone(),
        detail: e.to_string(),
    })
}
