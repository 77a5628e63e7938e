//! The service binaries' command lines, derived with `clap`: every setting is a flag and an
//! environment variable at once (`--redis-url` or `REDIS_URL`; the flag wins), shown in
//! `--help` with its default and meaning. Each binary declares the groups it reads; the values
//! are checked by [`ServiceConfig`](crate::config::ServiceConfig), whose messages name the
//! variable (`invalid KAFKA_BATCH_SIZE=0: expected ...`), the same for a flag and a variable.
//!
//! ```
//! use anomaly_services::cli::{FeatureEngineerCommand, setting};
//! use clap::CommandFactory;
//!
//! let matches = FeatureEngineerCommand::command()
//!     .try_get_matches_from(["feature-engineer", "--kafka-batch-size", "200"])?;
//! assert_eq!(setting(&matches, "KAFKA_BATCH_SIZE").as_deref(), Some("200"));
//! // A setting the binary does not read is not there: the configuration uses its default.
//! assert_eq!(setting(&matches, "TIMESCALE_URL"), None);
//! # Ok::<(), clap::Error>(())
//! ```

use clap::{ArgMatches, Args, Parser};

use crate::config::defaults;

/// The value of the setting of environment variable `variable` (flag, variable or default),
/// `None` if the binary has no such setting. Every argument's id is its variable's name.
pub fn setting(matches: &ArgMatches, variable: &str) -> Option<String> {
    matches
        .try_get_one::<String>(variable)
        .ok()
        .flatten()
        .cloned()
}

/// Kafka: every service.
#[derive(Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaSettings {
    /// Kafka brokers, host:port[,host:port...].
    #[arg(id = "KAFKA_BOOTSTRAP_SERVERS", long = "kafka-bootstrap-servers", env = "KAFKA_BOOTSTRAP_SERVERS", value_name = "BROKERS", default_value = defaults::KAFKA_BOOTSTRAP_SERVERS)]
    pub kafka_bootstrap_servers: String,
    /// Where a new consumer group starts: latest or earliest.
    #[arg(id = "KAFKA_OFFSET_RESET", long = "kafka-offset-reset", env = "KAFKA_OFFSET_RESET", value_name = "WHERE", default_value = defaults::KAFKA_OFFSET_RESET)]
    pub kafka_offset_reset: String,
    /// Most records per poll batch (and per produced batch of the producer), 1 to 100000.
    #[arg(id = "KAFKA_BATCH_SIZE", long = "kafka-batch-size", env = "KAFKA_BATCH_SIZE", value_name = "RECORDS", default_value = defaults::KAFKA_BATCH_SIZE)]
    pub kafka_batch_size: String,
    /// How long a producer waits to fill a request, 0 to 1000 ms.
    #[arg(id = "KAFKA_LINGER_MS", long = "kafka-linger-ms", env = "KAFKA_LINGER_MS", value_name = "MS", default_value = defaults::KAFKA_LINGER_MS)]
    pub kafka_linger_ms: String,
    /// How often processed offsets are committed, 10 to 60000 ms: a crash replays at most
    /// this much.
    #[arg(id = "KAFKA_COMMIT_INTERVAL_MS", long = "kafka-commit-interval-ms", env = "KAFKA_COMMIT_INTERVAL_MS", value_name = "MS", default_value = defaults::KAFKA_COMMIT_INTERVAL_MS)]
    pub kafka_commit_interval_ms: String,
    /// How long the group waits for a silent instance before moving its partitions, 6000 to
    /// 1800000 ms.
    #[arg(id = "KAFKA_SESSION_TIMEOUT_MS", long = "kafka-session-timeout-ms", env = "KAFKA_SESSION_TIMEOUT_MS", value_name = "MS", default_value = defaults::KAFKA_SESSION_TIMEOUT_MS)]
    pub kafka_session_timeout_ms: String,
    /// Longest time a broker holds an empty fetch, 1 to 10000 ms.
    #[arg(id = "KAFKA_FETCH_WAIT_MS", long = "kafka-fetch-wait-ms", env = "KAFKA_FETCH_WAIT_MS", value_name = "MS", default_value = defaults::KAFKA_FETCH_WAIT_MS)]
    pub kafka_fetch_wait_ms: String,
}

/// `/health`, `/metrics` and logs: every service.
#[derive(Args)]
#[command(next_help_heading = "Endpoints and logs")]
pub struct HttpSettings {
    /// Port of /health and /metrics (the default is the service's).
    #[arg(
        id = "HTTP_PORT",
        long = "http-port",
        env = "HTTP_PORT",
        value_name = "PORT"
    )]
    pub http_port: Option<String>,
    /// Address /health and /metrics listen on (0.0.0.0 in containers scraped from outside).
    #[arg(id = "HTTP_BIND", long = "http-bind", env = "HTTP_BIND", value_name = "ADDRESS", default_value = defaults::HTTP_BIND)]
    pub http_bind: String,
    /// Log filter in the standard syntax: a level (error, warn, info, debug, trace, off), or
    /// per module, e.g. warn,anomaly_services=debug,rdkafka=off.
    #[arg(id = "RUST_LOG", long = "log", env = "RUST_LOG", value_name = "FILTER", default_value = defaults::RUST_LOG)]
    pub rust_log: String,
}

/// Redis: every service but alert-router.
#[derive(Args)]
#[command(next_help_heading = "Redis")]
pub struct RedisSettings {
    /// Redis: feature store, model store, checkpoints (the value set is never shown, nor its
    /// password logged).
    #[arg(id = "REDIS_URL", long = "redis-url", env = "REDIS_URL", value_name = "URL", hide_env_values = true, default_value = defaults::REDIS_URL)]
    pub redis_url: String,
    /// Prepended to every Redis key (separate deployments or test runs).
    #[arg(id = "REDIS_PREFIX", long = "redis-prefix", env = "REDIS_PREFIX", value_name = "PREFIX", default_value = defaults::REDIS_PREFIX)]
    pub redis_prefix: String,
}

/// PostgreSQL / TimescaleDB: drift-detector, retraining-worker, alert-router.
#[derive(Args)]
#[command(next_help_heading = "Event store")]
pub struct EventStoreSettings {
    /// PostgreSQL/TimescaleDB event store (the value set is never shown, nor its password
    /// logged).
    #[arg(id = "TIMESCALE_URL", long = "timescale-url", env = "TIMESCALE_URL", value_name = "URL", hide_env_values = true, default_value = defaults::TIMESCALE_URL)]
    pub timescale_url: String,
    /// PostgreSQL schema of the tables.
    #[arg(id = "TIMESCALE_SCHEMA", long = "timescale-schema", env = "TIMESCALE_SCHEMA", value_name = "SCHEMA", default_value = defaults::TIMESCALE_SCHEMA)]
    pub timescale_schema: String,
}

/// Scoring: ml-inference.
#[derive(Args)]
#[command(next_help_heading = "Scoring")]
pub struct ScoringSettings {
    /// Scores at or above it are anomalies, in [0, 1].
    #[arg(id = "ANOMALY_THRESHOLD", long = "anomaly-threshold", env = "ANOMALY_THRESHOLD", value_name = "SCORE", default_value = defaults::ANOMALY_THRESHOLD)]
    pub anomaly_threshold: String,
    /// How often the model's online learning is checkpointed to Redis (also at shutdown),
    /// 0 (none) to 86400 s.
    #[arg(id = "MODEL_CHECKPOINT_INTERVAL_S", long = "model-checkpoint-interval-s", env = "MODEL_CHECKPOINT_INTERVAL_S", value_name = "SECONDS", default_value = defaults::MODEL_CHECKPOINT_INTERVAL_S)]
    pub model_checkpoint_interval_s: String,
    /// This instance's name, stable across its restarts and unique among running instances
    /// (it names the checkpoint) [default: <host name>-<HTTP_PORT>].
    #[arg(
        id = "INSTANCE_ID",
        long = "instance-id",
        env = "INSTANCE_ID",
        value_name = "NAME"
    )]
    pub instance_id: Option<String>,
}

/// Notifications: alert-router.
#[derive(Args)]
#[command(next_help_heading = "Notifications")]
pub struct NotifySettings {
    /// Slack incoming webhook; empty disables Slack (never shown).
    #[arg(id = "SLACK_WEBHOOK_URL", long = "slack-webhook-url", env = "SLACK_WEBHOOK_URL", value_name = "URL", hide_env_values = true, default_value = defaults::SLACK_WEBHOOK_URL)]
    pub slack_webhook_url: String,
    /// Lowest severity sent to Slack: LOW, MEDIUM, HIGH or CRITICAL.
    #[arg(id = "MIN_SLACK_SEVERITY", long = "min-slack-severity", env = "MIN_SLACK_SEVERITY", value_name = "SEVERITY", default_value = defaults::MIN_SLACK_SEVERITY)]
    pub min_slack_severity: String,
    /// A notification still undelivered this long after it was queued is marked failed,
    /// 1 to 2592000 s.
    #[arg(id = "NOTIFY_MAX_AGE_S", long = "notify-max-age-s", env = "NOTIFY_MAX_AGE_S", value_name = "SECONDS", default_value = defaults::NOTIFY_MAX_AGE_S)]
    pub notify_max_age_s: String,
    /// Longest wait between two tries of an undelivered notification (it doubles from 1 s),
    /// 1 to 3600 s.
    #[arg(id = "NOTIFY_RETRY_MAX_S", long = "notify-retry-max-s", env = "NOTIFY_RETRY_MAX_S", value_name = "SECONDS", default_value = defaults::NOTIFY_RETRY_MAX_S)]
    pub notify_retry_max_s: String,
}

/// The stream: producer.
#[derive(Args)]
#[command(next_help_heading = "Stream")]
pub struct StreamSettings {
    /// Event time runs this many times faster than real time; 0 = as fast as possible.
    #[arg(id = "REPLAY_SPEED", long = "replay-speed", env = "REPLAY_SPEED", value_name = "FACTOR", default_value = defaults::REPLAY_SPEED)]
    pub replay_speed: String,
    /// Transactions in the stream.
    #[arg(id = "PRODUCER_EVENTS", long = "producer-events", env = "PRODUCER_EVENTS", value_name = "N", default_value = defaults::PRODUCER_EVENTS)]
    pub producer_events: String,
    /// Seed of the generator.
    #[arg(id = "PRODUCER_SEED", long = "producer-seed", env = "PRODUCER_SEED", value_name = "SEED", default_value = defaults::PRODUCER_SEED)]
    pub producer_seed: String,
    /// Distinct cards.
    #[arg(id = "PRODUCER_CARDS", long = "producer-cards", env = "PRODUCER_CARDS", value_name = "N", default_value = defaults::PRODUCER_CARDS)]
    pub producer_cards: String,
    /// How many instances send the stream between them (each the cards that hash to it).
    #[arg(id = "PRODUCER_INSTANCES", long = "producer-instances", env = "PRODUCER_INSTANCES", value_name = "N", default_value = defaults::PRODUCER_INSTANCES)]
    pub producer_instances: String,
    /// Which of them this one is, from 0.
    #[arg(id = "PRODUCER_INSTANCE", long = "producer-instance", env = "PRODUCER_INSTANCE", value_name = "I", default_value = defaults::PRODUCER_INSTANCE)]
    pub producer_instance: String,
    /// Names the run: progress is recorded in Redis per run, seed, length and cards, so a
    /// restarted producer goes on where it stopped and a finished stream is not sent again;
    /// another value sends it again.
    #[arg(id = "PRODUCER_RUN", long = "producer-run", env = "PRODUCER_RUN", value_name = "RUN", default_value = defaults::PRODUCER_RUN)]
    pub producer_run: String,
}

/// producer's command line.
// Its fields are the groups of settings it reads, named after them.
#[allow(missing_docs)]
#[derive(Parser)]
#[command(
    name = "producer",
    version,
    about = "\
Generates labelled card transactions (seeded, with named drift phases: normal, spending_shift,
fraud_wave, normal_again) and sends them to `raw-transactions`, keyed by card, paced by
REPLAY_SPEED. Several instances with the same seed send the stream once between them. After
each acknowledged batch it records in Redis how far it got on this stream: a restarted
instance goes on from there (a crash between a batch's acknowledgement and its record sends
that batch again), and a finished stream is not sent twice. Stops cleanly on SIGTERM or
SIGINT. Every setting is a flag or an environment variable (docs/OPERATIONS.md)."
)]
pub struct ProducerCommand {
    #[command(flatten)]
    pub stream: StreamSettings,
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub redis: RedisSettings,
    #[command(flatten)]
    pub http: HttpSettings,
}

/// feature-engineer's command line.
// Its fields are the groups of settings it reads, named after them.
#[allow(missing_docs)]
#[derive(Parser)]
#[command(
    name = "feature-engineer",
    version,
    about = "\
Consumes `raw-transactions`, keeps each card's sliding windows in Redis (atomic per card,
expiring after 7 days), publishes feature vectors to `features`; bad messages go to
`dead-letters`. Stops cleanly on SIGTERM or SIGINT. Every setting is a flag or an environment
variable (docs/OPERATIONS.md)."
)]
pub struct FeatureEngineerCommand {
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub redis: RedisSettings,
    #[command(flatten)]
    pub http: HttpSettings,
}

/// ml-inference's command line.
// Its fields are the groups of settings it reads, named after them.
#[allow(missing_docs)]
#[derive(Parser)]
#[command(
    name = "ml-inference",
    version,
    about = "\
Scores each feature vector from `features` with the HalfSpaceTrees + SAD ensemble, then
learns it; publishes scored events to `scores` and anomalies (score >= ANOMALY_THRESHOLD) to
`alerts` with a severity and the features that isolated them. Loads the active model from
Redis (5 tries, 5 s apart, then a fresh model, version 1) and switches to each newer valid
model announced on `model-updates` (and checks Redis for one every second). Checkpoints what
the model has learned to Redis under INSTANCE_ID; at start it resumes from its own checkpoint
(or the freshest of another instance) when that continues the active model. Stops cleanly on
SIGTERM or SIGINT. Every setting is a flag or an environment variable (docs/OPERATIONS.md)."
)]
pub struct MlInferenceCommand {
    #[command(flatten)]
    pub scoring: ScoringSettings,
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub redis: RedisSettings,
    #[command(flatten)]
    pub http: HttpSettings,
}

/// drift-detector's command line.
// Its fields are the groups of settings it reads, named after them.
#[allow(missing_docs)]
#[derive(Parser)]
#[command(
    name = "drift-detector",
    version,
    about = "\
Stores the scored events of its partitions of `scores` in PostgreSQL (idempotently, before
committing offsets). One instance at a time, the holder of a Redis lease (10 s, renewed),
also watches the whole score stream with ADWIN (scores) and DDM (error stream: anomaly flag
vs fraud label), publishes drifts to `drift-events` and drift alerts to `alerts`, writes drift
events to PostgreSQL and checkpoints the detectors with the offsets they cover to Redis after
every batch; the other instances stand by and take over from the checkpoint. Stops cleanly on
SIGTERM or SIGINT (giving the lease up). Every setting is a flag or an environment variable
(docs/OPERATIONS.md)."
)]
pub struct DriftDetectorCommand {
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub redis: RedisSettings,
    #[command(flatten)]
    pub store: EventStoreSettings,
    #[command(flatten)]
    pub http: HttpSettings,
}

/// retraining-worker's command line.
// Its fields are the groups of settings it reads, named after them.
#[allow(missing_docs)]
#[derive(Parser)]
#[command(
    name = "retraining-worker",
    version,
    about = "\
Appends each scored event (with its features, live score and label, from `scores`) to a
labelled history in Redis shared by every worker; each drift on `drift-events` requests a
retraining job in a Redis queue (one job per drift storm: debounced for 10 minutes); a job
survives a worker crash (its lease of 10 minutes expires and it is put back) and never runs on
two workers at once. A job trains a fresh ensemble on that history, compares it with the
running model on the most recent labelled events, and publishes it (Redis active_model,
`model-updates`, `model_versions`) only if it is not worse. Stops cleanly on SIGTERM or
SIGINT. Every setting is a flag or an environment variable (docs/OPERATIONS.md)."
)]
pub struct RetrainingWorkerCommand {
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub redis: RedisSettings,
    #[command(flatten)]
    pub store: EventStoreSettings,
    #[command(flatten)]
    pub http: HttpSettings,
}

/// alert-router's command line.
// Its fields are the groups of settings it reads, named after them.
#[allow(missing_docs)]
#[derive(Parser)]
#[command(
    name = "alert-router",
    version,
    about = "\
Stores every alert from `alerts` in PostgreSQL and queues those at or above MIN_SLACK_SEVERITY
(one per card/severity a minute) in the `notifications` outbox, in the same statement; a
notifier thread posts the outbox to SLACK_WEBHOOK_URL (5 s timeout, HTTP 429 Retry-After
honoured, retried with backoff until delivered or NOTIFY_MAX_AGE_S old, then marked failed).
The webhook URL is never logged. Stops cleanly on SIGTERM or SIGINT. Every setting is a flag
or an environment variable (docs/OPERATIONS.md)."
)]
pub struct AlertRouterCommand {
    #[command(flatten)]
    pub notify: NotifySettings,
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub store: EventStoreSettings,
    #[command(flatten)]
    pub http: HttpSettings,
}
