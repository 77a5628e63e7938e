//! Service configuration from environment variables: read once at start-up, typed at once, and
//! an invalid value is an error that names the variable and the bad value (secrets redacted).

use std::fmt;

use thiserror::Error;

use crate::messages::Severity;

/// A value that must never be logged: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL with its password, if any, replaced by `***`.
///
/// ```
/// use anomaly_services::config::redact_url;
///
/// assert_eq!(
///     redact_url("postgresql://anomaly:s3cret@timescaledb:5432/anomalydb"),
///     "postgresql://anomaly:***@timescaledb:5432/anomalydb"
/// );
/// assert_eq!(redact_url("redis://redis:6379"), "redis://redis:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// The default of every setting, as the text a variable would hold: [`ServiceConfig`] reads
/// them when a variable is unset, and `--help` shows them ([`crate::cli`]).
pub mod defaults {
    /// `KAFKA_BOOTSTRAP_SERVERS`.
    pub const KAFKA_BOOTSTRAP_SERVERS: &str = "kafka:29092";
    /// `KAFKA_OFFSET_RESET`.
    pub const KAFKA_OFFSET_RESET: &str = "latest";
    /// `KAFKA_BATCH_SIZE`.
    pub const KAFKA_BATCH_SIZE: &str = "1000";
    /// `KAFKA_LINGER_MS`.
    pub const KAFKA_LINGER_MS: &str = "2";
    /// `KAFKA_COMMIT_INTERVAL_MS`.
    pub const KAFKA_COMMIT_INTERVAL_MS: &str = "1000";
    /// `KAFKA_SESSION_TIMEOUT_MS`.
    pub const KAFKA_SESSION_TIMEOUT_MS: &str = "30000";
    /// `KAFKA_FETCH_WAIT_MS`.
    pub const KAFKA_FETCH_WAIT_MS: &str = "50";
    /// `REDIS_URL`.
    pub const REDIS_URL: &str = "redis://redis:6379";
    /// `REDIS_PREFIX`.
    pub const REDIS_PREFIX: &str = "";
    /// `TIMESCALE_URL`.
    pub const TIMESCALE_URL: &str = "postgresql://anomaly:anomaly@timescaledb:5432/anomalydb";
    /// `TIMESCALE_SCHEMA`.
    pub const TIMESCALE_SCHEMA: &str = "public";
    /// `ANOMALY_THRESHOLD`.
    pub const ANOMALY_THRESHOLD: &str = "0.85";
    /// `REPLAY_SPEED`.
    pub const REPLAY_SPEED: &str = "100";
    /// `SLACK_WEBHOOK_URL` (Slack off).
    pub const SLACK_WEBHOOK_URL: &str = "";
    /// `MIN_SLACK_SEVERITY`.
    pub const MIN_SLACK_SEVERITY: &str = "HIGH";
    /// `HTTP_BIND`.
    pub const HTTP_BIND: &str = "127.0.0.1";
    /// `NOTIFY_MAX_AGE_S`.
    pub const NOTIFY_MAX_AGE_S: &str = "86400";
    /// `NOTIFY_RETRY_MAX_S`.
    pub const NOTIFY_RETRY_MAX_S: &str = "300";
    /// `MODEL_CHECKPOINT_INTERVAL_S`.
    pub const MODEL_CHECKPOINT_INTERVAL_S: &str = "60";
    /// `RUST_LOG`.
    pub const RUST_LOG: &str = "info";
    /// `PRODUCER_EVENTS`.
    pub const PRODUCER_EVENTS: &str = "1000000";
    /// `PRODUCER_SEED`.
    pub const PRODUCER_SEED: &str = "42";
    /// `PRODUCER_CARDS`.
    pub const PRODUCER_CARDS: &str = "2000";
    /// `PRODUCER_INSTANCES`.
    pub const PRODUCER_INSTANCES: &str = "1";
    /// `PRODUCER_INSTANCE`.
    pub const PRODUCER_INSTANCE: &str = "0";
    /// `PRODUCER_RUN`.
    pub const PRODUCER_RUN: &str = "1";
}

/// A configuration value was rejected.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("invalid {variable}={value}: expected {expected}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// The rejected value (redacted when it is a secret).
    pub value: String,
    /// What it must be.
    pub expected: &'static str,
}

/// The services' shared configuration (see `docs/OPERATIONS.md`).
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceConfig {
    /// `KAFKA_BOOTSTRAP_SERVERS`, default `kafka:29092`.
    pub kafka_bootstrap_servers: String,
    /// `REDIS_URL`, default `redis://redis:6379`.
    pub redis_url: Secret,
    /// `TIMESCALE_URL`, default `postgresql://anomaly:anomaly@timescaledb:5432/anomalydb`.
    pub timescale_url: Secret,
    /// `TIMESCALE_SCHEMA`, the PostgreSQL schema of the tables, default `public`.
    pub timescale_schema: String,
    /// `ANOMALY_THRESHOLD`, in [0, 1], default 0.85.
    pub anomaly_threshold: f64,
    /// `REPLAY_SPEED`, >= 0 (0 = as fast as possible), default 100.
    pub replay_speed: f64,
    /// `SLACK_WEBHOOK_URL`, trimmed; empty or unset disables Slack.
    pub slack_webhook_url: Option<Secret>,
    /// `MIN_SLACK_SEVERITY`, trimmed and case-insensitive, default `HIGH`.
    pub min_slack_severity: Severity,
    /// `HTTP_PORT` for `/health` and `/metrics`, default per service.
    pub http_port: u16,
    /// `HTTP_BIND`, the address `/health` and `/metrics` listen on, default `127.0.0.1`.
    pub http_bind: String,
    /// `REDIS_PREFIX`, prepended to every Redis key (one deployment or test per prefix),
    /// default empty.
    pub redis_prefix: String,
    /// `KAFKA_OFFSET_RESET`: where a new consumer group starts, `latest` (default: live
    /// services) or `earliest` (replaying a topic from its start).
    pub kafka_offset_reset: String,
    /// `KAFKA_BATCH_SIZE` (records per poll batch, default 1000), `KAFKA_LINGER_MS` (default
    /// 2), `KAFKA_COMMIT_INTERVAL_MS` (default 1000), `KAFKA_SESSION_TIMEOUT_MS` (default
    /// 30000) and `KAFKA_FETCH_WAIT_MS` (default 50).
    pub kafka_tuning: crate::adapters::kafka::KafkaTuning,
    /// `NOTIFY_MAX_AGE_S`: a notification still undelivered this long after its alert was
    /// stored is marked failed, default 86400 (a day).
    pub notify_max_age: std::time::Duration,
    /// `NOTIFY_RETRY_MAX_S`: the longest wait between two tries of an undelivered
    /// notification (the wait doubles from 1 s up to it), default 300.
    pub notify_max_retry_wait: std::time::Duration,
    /// `MODEL_CHECKPOINT_INTERVAL_S`: how often ml-inference checkpoints what its model has
    /// learned, default 60; `0` (`None`) disables checkpoints.
    pub model_checkpoint_interval: Option<std::time::Duration>,
    /// `INSTANCE_ID`: this instance's name, stable across its restarts and unique among the
    /// running instances of the service (it names the instance's checkpoint); default the
    /// host name and the HTTP port, `<host>-<port>`.
    pub instance_id: String,
}

impl ServiceConfig {
    /// Reads the process environment.
    pub fn from_env(default_http_port: u16) -> Result<Self, ConfigError> {
        Self::from_lookup(default_http_port, |name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (the environment, or a map in tests).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use anomaly_services::config::ServiceConfig;
    ///
    /// let env = HashMap::from([("ANOMALY_THRESHOLD", "0.9"), ("MIN_SLACK_SEVERITY", " critical\n")]);
    /// let config = ServiceConfig::from_lookup(8001, |k| env.get(k).map(|v| v.to_string()))?;
    /// assert_eq!(config.anomaly_threshold, 0.9);
    /// assert_eq!(config.http_port, 8001);
    ///
    /// let env = HashMap::from([("REPLAY_SPEED", "fast")]);
    /// let err = ServiceConfig::from_lookup(8001, |k| env.get(k).map(|v| v.to_string())).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid REPLAY_SPEED=fast: expected a number >= 0");
    /// # Ok::<(), anomaly_services::config::ConfigError>(())
    /// ```
    pub fn from_lookup(
        default_http_port: u16,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = |name: &str, default: &str| lookup(name).unwrap_or_else(|| default.to_owned());
        let anomaly_threshold = number(
            "ANOMALY_THRESHOLD",
            &text("ANOMALY_THRESHOLD", defaults::ANOMALY_THRESHOLD),
            "a number in [0, 1]",
            |x| (0.0..=1.0).contains(&x),
        )?;
        let replay_speed = number(
            "REPLAY_SPEED",
            &text("REPLAY_SPEED", defaults::REPLAY_SPEED),
            "a number >= 0",
            |x| x >= 0.0 && x.is_finite(),
        )?;
        let webhook = text("SLACK_WEBHOOK_URL", defaults::SLACK_WEBHOOK_URL);
        let webhook = webhook.trim();
        let slack_webhook_url = if webhook.is_empty() {
            None
        } else if webhook.starts_with("https://") || webhook.starts_with("http://") {
            Some(Secret::new(webhook))
        } else {
            return Err(ConfigError {
                variable: "SLACK_WEBHOOK_URL",
                value: "***".into(),
                expected: "an http(s) URL, or empty to disable Slack",
            });
        };
        let severity_text = text("MIN_SLACK_SEVERITY", defaults::MIN_SLACK_SEVERITY);
        let min_slack_severity = severity_text.parse().map_err(|_| ConfigError {
            variable: "MIN_SLACK_SEVERITY",
            value: severity_text.clone(),
            expected: "LOW, MEDIUM, HIGH or CRITICAL",
        })?;
        let port_text = text("HTTP_PORT", &default_http_port.to_string());
        let http_port = port_text.trim().parse().map_err(|_| ConfigError {
            variable: "HTTP_PORT",
            value: port_text.clone(),
            expected: "a TCP port number",
        })?;
        let redis_url = text("REDIS_URL", defaults::REDIS_URL);
        let timescale_url = text("TIMESCALE_URL", defaults::TIMESCALE_URL);
        for (variable, url, schemes) in [
            ("REDIS_URL", &redis_url, &["redis://", "rediss://"][..]),
            (
                "TIMESCALE_URL",
                &timescale_url,
                &["postgresql://", "postgres://"][..],
            ),
        ] {
            if !schemes.iter().any(|s| url.starts_with(s)) {
                return Err(ConfigError {
                    variable,
                    value: redact_url(url),
                    expected: "a URL of the right scheme (redis:// or postgresql://)",
                });
            }
        }
        let setting = |variable: &'static str, default: &str, expected, range| {
            whole(variable, &text(variable, default), expected, range)
        };
        let kafka_tuning = crate::adapters::kafka::KafkaTuning {
            batch_size: setting(
                "KAFKA_BATCH_SIZE",
                defaults::KAFKA_BATCH_SIZE,
                "a whole number from 1 to 100000",
                1..=100_000,
            )? as usize,
            linger_ms: setting(
                "KAFKA_LINGER_MS",
                defaults::KAFKA_LINGER_MS,
                "a whole number of milliseconds from 0 to 1000",
                0..=1_000,
            )?,
            commit_interval: std::time::Duration::from_millis(setting(
                "KAFKA_COMMIT_INTERVAL_MS",
                defaults::KAFKA_COMMIT_INTERVAL_MS,
                "a whole number of milliseconds from 10 to 60000",
                10..=60_000,
            )?),
            session_timeout: std::time::Duration::from_millis(setting(
                "KAFKA_SESSION_TIMEOUT_MS",
                defaults::KAFKA_SESSION_TIMEOUT_MS,
                // Brokers refuse sessions under group.min.session.timeout.ms (6 s by default).
                "a whole number of milliseconds from 6000 to 1800000",
                6_000..=1_800_000,
            )?),
            fetch_wait_ms: setting(
                "KAFKA_FETCH_WAIT_MS",
                defaults::KAFKA_FETCH_WAIT_MS,
                "a whole number of milliseconds from 1 to 10000",
                1..=10_000,
            )?,
            ..crate::adapters::kafka::KafkaTuning::default()
        };
        let notify_max_age = std::time::Duration::from_secs(setting(
            "NOTIFY_MAX_AGE_S",
            defaults::NOTIFY_MAX_AGE_S,
            "a whole number of seconds from 1 to 2592000 (30 days)",
            1..=2_592_000,
        )?);
        let notify_max_retry_wait = std::time::Duration::from_secs(setting(
            "NOTIFY_RETRY_MAX_S",
            defaults::NOTIFY_RETRY_MAX_S,
            "a whole number of seconds from 1 to 3600",
            1..=3_600,
        )?);
        let checkpoint_seconds = setting(
            "MODEL_CHECKPOINT_INTERVAL_S",
            defaults::MODEL_CHECKPOINT_INTERVAL_S,
            "a whole number of seconds from 0 (no checkpoints) to 86400",
            0..=86_400,
        )?;
        let model_checkpoint_interval =
            (checkpoint_seconds > 0).then(|| std::time::Duration::from_secs(checkpoint_seconds));
        let instance_id = lookup("INSTANCE_ID")
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| {
                let host = lookup("HOSTNAME")
                    .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "localhost".into());
                format!("{host}-{http_port}")
            });
        Ok(Self {
            kafka_tuning,
            notify_max_age,
            notify_max_retry_wait,
            model_checkpoint_interval,
            instance_id,
            kafka_bootstrap_servers: text(
                "KAFKA_BOOTSTRAP_SERVERS",
                defaults::KAFKA_BOOTSTRAP_SERVERS,
            ),
            redis_url: Secret::new(redis_url),
            timescale_url: Secret::new(timescale_url),
            timescale_schema: text("TIMESCALE_SCHEMA", defaults::TIMESCALE_SCHEMA),
            anomaly_threshold,
            replay_speed,
            slack_webhook_url,
            min_slack_severity,
            http_port,
            http_bind: text("HTTP_BIND", defaults::HTTP_BIND),
            redis_prefix: text("REDIS_PREFIX", defaults::REDIS_PREFIX),
            kafka_offset_reset: match text("KAFKA_OFFSET_RESET", defaults::KAFKA_OFFSET_RESET)
                .trim()
            {
                reset @ ("latest" | "earliest") => reset.to_owned(),
                other => {
                    return Err(ConfigError {
                        variable: "KAFKA_OFFSET_RESET",
                        value: other.to_owned(),
                        expected: "latest or earliest",
                    });
                }
            },
        })
    }
}

/// `text`, the value of `variable`, as a whole number within `range`, or the error that says
/// what it must be (`expected`). The check of every whole-number setting, the producer's too.
///
/// ```
/// use anomaly_services::config::whole;
///
/// assert_eq!(whole("PRODUCER_CARDS", " 300 ", "a count", 1..=1000), Ok(300));
/// let err = whole("PRODUCER_CARDS", "0", "a count from 1 to 1000", 1..=1000).unwrap_err();
/// assert_eq!(err.to_string(), "invalid PRODUCER_CARDS=0: expected a count from 1 to 1000");
/// ```
pub fn whole(
    variable: &'static str,
    text: &str,
    expected: &'static str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|x| range.contains(x))
        .ok_or_else(|| ConfigError {
            variable,
            value: text.to_owned(),
            expected,
        })
}

fn number(
    variable: &'static str,
    text: &str,
    expected: &'static str,
    valid: impl Fn(f64) -> bool,
) -> Result<f64, ConfigError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| valid(*x))
        .ok_or_else(|| ConfigError {
            variable,
            value: text.to_owned(),
            expected,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<ServiceConfig, ConfigError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ServiceConfig::from_lookup(8000, |k| env.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = load(&[]).unwrap();
        assert_eq!(c.kafka_bootstrap_servers, "kafka:29092");
        assert_eq!(c.redis_url.expose(), "redis://redis:6379");
        assert_eq!(c.replay_speed, 100.0);
        assert_eq!(c.slack_webhook_url, None);
        assert_eq!(c.min_slack_severity, Severity::High);
        assert_eq!((c.http_port, c.http_bind.as_str()), (8000, "127.0.0.1"));
        assert_eq!(c.notify_max_age, std::time::Duration::from_secs(86_400));
        assert_eq!(c.notify_max_retry_wait, std::time::Duration::from_secs(300));
    }

    #[test]
    fn secrets_never_show() {
        let c = load(&[
            (
                "SLACK_WEBHOOK_URL",
                "  https://hooks.example/T000/B000/XXXX\n",
            ),
            ("TIMESCALE_URL", "postgresql://u:pw@db/x"),
        ])
        .unwrap();
        assert_eq!(
            c.slack_webhook_url.as_ref().map(Secret::expose),
            Some("https://hooks.example/T000/B000/XXXX")
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("XXXX") && !shown.contains("pw"), "{shown}");
        let err = load(&[("TIMESCALE_URL", "mysql://u:pw@db/x")]).unwrap_err();
        assert!(!err.to_string().contains("pw") && err.to_string().contains("TIMESCALE_URL"));
        let err = load(&[("SLACK_WEBHOOK_URL", "hooks.example/secret-token")]).unwrap_err();
        assert!(!err.to_string().contains("secret-token"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("ANOMALY_THRESHOLD", "1.5"),
            ("ANOMALY_THRESHOLD", "NaN"),
            ("REPLAY_SPEED", "-1"),
            ("MIN_SLACK_SEVERITY", "urgent"),
            ("HTTP_PORT", "70000"),
            ("REDIS_URL", "localhost:6379"),
            ("KAFKA_BATCH_SIZE", "0"),
            ("KAFKA_LINGER_MS", "soon"),
            ("KAFKA_COMMIT_INTERVAL_MS", "5"),
        ] {
            let err = load(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var);
            assert!(
                err.to_string().starts_with(&format!("invalid {var}=")),
                "{err}"
            );
        }
    }
}
