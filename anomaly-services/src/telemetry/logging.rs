//! One JSON object per log line, on the `log` facade:
//! `{"timestamp": ISO-8601 UTC, "service", "level", "message", "extra": {key-values}}`.

use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};
use serde_json::{Map, Value};

use crate::timestamps::iso8601;

/// Formats one log line (without the trailing newline).
///
/// ```
/// use anomaly_services::telemetry::logging::format_line;
///
/// let line = format_line(0, "ml-inference", log::Level::Info, "Service started", Default::default());
/// assert_eq!(
///     line,
///     r#"{"timestamp":"1970-01-01T00:00:00.000Z","service":"ml-inference","level":"INFO","message":"Service started","extra":{}}"#
/// );
/// ```
pub fn format_line(
    unix_ms: i64,
    service: &str,
    level: Level,
    message: &str,
    extra: Map<String, Value>,
) -> String {
    // Built by hand to keep the documented field order.
    let mut line = String::with_capacity(128 + message.len());
    line.push_str("{\"timestamp\":");
    line.push_str(&Value::String(iso8601(unix_ms)).to_string());
    line.push_str(",\"service\":");
    line.push_str(&Value::String(service.to_owned()).to_string());
    line.push_str(",\"level\":");
    line.push_str(&Value::String(level.as_str().to_owned()).to_string());
    line.push_str(",\"message\":");
    line.push_str(&Value::String(message.to_owned()).to_string());
    line.push_str(",\"extra\":");
    line.push_str(&Value::Object(extra).to_string());
    line.push('}');
    line
}

/// A `log` implementation that writes JSON lines to a writer (stdout by default).
pub struct JsonLogger {
    service: &'static str,
    filter: env_filter::Filter,
    out: Mutex<Box<dyn Write + Send>>,
}

impl JsonLogger {
    /// A logger for `service` writing to `out` the records that `filter` lets through: the
    /// standard `RUST_LOG` syntax (`info`, `warn,anomaly_services=debug`, `rdkafka=off`...;
    /// the `env_filter` crate, the one `env_logger` uses).
    ///
    /// ```
    /// use anomaly_services::telemetry::logging::JsonLogger;
    /// use log::{Level, Log};
    ///
    /// let logger = JsonLogger::new("ml-inference", "warn,anomaly_services=debug", Box::new(std::io::sink()));
    /// let at = |target, level| log::Metadata::builder().target(target).level(level).build();
    /// assert!(logger.enabled(&at("anomaly_services::service", Level::Debug)));
    /// assert!(!logger.enabled(&at("rdkafka::consumer", Level::Info)));
    /// ```
    /// A filter that does not parse logs at `info` (see [`install`](Self::install), which says
    /// so in the log).
    pub fn new(service: &'static str, filter: &str, out: Box<dyn Write + Send>) -> Self {
        let filter = parse_filter(filter).unwrap_or_else(|_| {
            env_filter::Builder::new()
                .filter_level(LevelFilter::Info)
                .build()
        });
        Self {
            service,
            filter,
            out: Mutex::new(out),
        }
    }

    /// The most detailed level any directive lets through.
    pub fn max_level(&self) -> LevelFilter {
        self.filter.filter()
    }

    /// Installs a stdout logger as the global one, filtered by `filter` (`RUST_LOG`'s syntax;
    /// empty means `info`). Only the first call in a process takes effect.
    pub fn install(service: &'static str, filter: &str) {
        let spec = if filter.trim().is_empty() {
            "info"
        } else {
            filter.trim()
        };
        let logger = Self::new(service, spec, Box::new(std::io::stdout()));
        let level = logger.max_level();
        if log::set_boxed_logger(Box::new(logger)).is_ok() {
            log::set_max_level(level);
            if let Err(e) = parse_filter(spec) {
                log::warn!(error = e.as_str(); "RUST_LOG is not a valid filter; logging at info");
            }
        }
    }
}

/// Parses `RUST_LOG`'s syntax.
fn parse_filter(spec: &str) -> Result<env_filter::Filter, String> {
    env_filter::Builder::new()
        .try_parse(spec)
        .map(|builder| builder.build())
        .map_err(|e| e.to_string())
}

struct Collect(Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Collect {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let json = if let Some(n) = value.to_i64() {
            Value::from(n)
        } else if let Some(n) = value.to_f64() {
            Value::from(n)
        } else if let Some(b) = value.to_bool() {
            Value::from(b)
        } else {
            Value::String(value.to_string())
        };
        self.0.insert(key.to_string(), json);
        Ok(())
    }
}

impl Log for JsonLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        let mut extra = Collect(Map::new());
        let _ = record.key_values().visit(&mut extra);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let line = format_line(
            now,
            self.service,
            record.level(),
            &record.args().to_string(),
            extra.0,
        );
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }

    fn flush(&self) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_or(Ok(0), |mut b| {
                b.extend_from_slice(data);
                Ok(data.len())
            })
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn key_values_land_in_extra_and_levels_filter() {
        let buffer = Buffer::default();
        let logger = JsonLogger::new("producer", "info", Box::new(buffer.clone()));
        logger.log(
            &Record::builder()
                .level(Level::Info)
                .args(format_args!("Phase transition"))
                .key_values(&[("phase", "fraud_wave"), ("event", "110000")])
                .build(),
        );
        logger.log(
            &Record::builder()
                .level(Level::Debug)
                .args(format_args!("hidden"))
                .build(),
        );
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1);
        let line: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["service"], "producer");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "Phase transition");
        assert_eq!(line["extra"]["phase"], "fraud_wave");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    /// `RUST_LOG`'s per-module syntax: a default level, a more detailed one for a module, a
    /// library silenced.
    #[test]
    fn rust_log_filters_by_module() {
        let buffer = Buffer::default();
        let logger = JsonLogger::new(
            "feature-engineer",
            "warn,anomaly_services::adapters=debug,rdkafka=off",
            Box::new(buffer.clone()),
        );
        for (target, level, message) in [
            (
                "anomaly_services::adapters::kafka",
                Level::Debug,
                "kept: module at debug",
            ),
            (
                "anomaly_services::service",
                Level::Info,
                "dropped: default is warn",
            ),
            ("anomaly_services::service", Level::Warn, "kept: warn"),
            ("rdkafka::consumer", Level::Error, "dropped: rdkafka is off"),
        ] {
            logger.log(
                &Record::builder()
                    .target(target)
                    .level(level)
                    .args(format_args!("{message}"))
                    .build(),
            );
        }
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let messages: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["message"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(messages, ["kept: module at debug", "kept: warn"]);
        assert_eq!(logger.max_level(), LevelFilter::Debug);
    }

    #[test]
    fn messages_with_quotes_stay_valid_json() {
        let line = format_line(1, "s", Level::Warn, "bad \"payload\"\n", Map::new());
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["message"], "bad \"payload\"\n");
    }
}
