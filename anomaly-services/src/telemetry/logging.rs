//! One JSON object per log line, on the `log` facade:
//! `{"timestamp": ISO-8601 UTC, "service", "level", "message", "extra": {key-values}}`.

use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};
use serde_json::{Map, Value};

use crate::ids::iso8601;

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
    level: LevelFilter,
    out: Mutex<Box<dyn Write + Send>>,
}

impl JsonLogger {
    /// A logger for `service` writing lines at `level` and above to `out`.
    pub fn new(service: &'static str, level: LevelFilter, out: Box<dyn Write + Send>) -> Self {
        Self {
            service,
            level,
            out: Mutex::new(out),
        }
    }

    /// Installs a stdout logger as the global one (level from `RUST_LOG`: error, warn, info,
    /// debug or trace; default info). Only the first call in a process takes effect.
    pub fn install(service: &'static str) {
        let level = std::env::var("RUST_LOG")
            .ok()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(LevelFilter::Info);
        let logger = Self::new(service, level, Box::new(std::io::stdout()));
        if log::set_boxed_logger(Box::new(logger)).is_ok() {
            log::set_max_level(level);
        }
    }
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
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
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
        let logger = JsonLogger::new("producer", LevelFilter::Info, Box::new(buffer.clone()));
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

    #[test]
    fn messages_with_quotes_stay_valid_json() {
        let line = format_line(1, "s", Level::Warn, "bad \"payload\"\n", Map::new());
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["message"], "bad \"payload\"\n");
    }
}
