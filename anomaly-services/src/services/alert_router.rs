//! `alerts` -> the alerts table, and the notifier (Slack) for those at or above the minimum
//! severity, without repeats.

use std::time::Duration;

use log::warn;

use crate::adapters::kafka::{Output, Record};
use crate::messages::{Alert, decode};
use crate::service::{Failure, Handler, reject};
use crate::stages::alert_routing::{AlertRouter, Routing};
use crate::telemetry::http::Status;

/// Topic it reads.
pub const ALERTS: &str = "alerts";

/// Where every alert is stored (PostgreSQL in production).
pub trait AlertWriter {
    /// Inserts alerts, ignoring those already stored.
    fn write_alerts(&mut self, alerts: &[Alert]) -> Result<(), String>;
}

impl AlertWriter for crate::adapters::postgres::PgEventStore {
    fn write_alerts(&mut self, alerts: &[Alert]) -> Result<(), String> {
        self.write_alerts(alerts)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Sends an alert to people.
pub trait Notifier {
    /// Delivers `alert`; `Err` says why it could not be delivered (never containing secrets).
    fn notify(&mut self, alert: &Alert) -> Result<(), String>;
}

/// Posts alerts to a Slack incoming webhook: 5 s timeout, up to 4 attempts with exponential
/// backoff, honouring `Retry-After` on HTTP 429. The URL never appears in errors or logs.
pub struct SlackNotifier {
    agent: ureq::Agent,
    url: crate::config::Secret,
    attempts: u32,
    first_backoff: Duration,
}

impl SlackNotifier {
    /// A notifier posting to `url`.
    pub fn new(url: crate::config::Secret) -> Self {
        Self {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .build(),
            url,
            attempts: 4,
            first_backoff: Duration::from_millis(500),
        }
    }

    /// Shorter waits, for tests.
    pub fn with_backoff(mut self, first_backoff: Duration) -> Self {
        self.first_backoff = first_backoff;
        self
    }
}

impl Notifier for SlackNotifier {
    fn notify(&mut self, alert: &Alert) -> Result<(), String> {
        let body =
            serde_json::json!({ "text": format!("[{}] {}", alert.severity.name(), alert.message) });
        let mut backoff = self.first_backoff;
        let mut last = String::new();
        for _ in 0..self.attempts {
            let request = self
                .agent
                .post(self.url.expose())
                .set("Content-Type", "application/json");
            match request.send_string(&body.to_string()) {
                Ok(_) => return Ok(()),
                Err(ureq::Error::Status(429, response)) => {
                    let wait = response
                        .header("Retry-After")
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map_or(backoff, Duration::from_secs)
                        .min(Duration::from_secs(30));
                    last = "HTTP 429 (rate limited)".into();
                    std::thread::sleep(wait);
                }
                Err(ureq::Error::Status(code, _)) if code < 500 => {
                    // A client error will not improve with retries.
                    return Err(format!("Slack answered HTTP {code}"));
                }
                Err(ureq::Error::Status(code, _)) => {
                    last = format!("Slack answered HTTP {code}");
                    std::thread::sleep(backoff);
                }
                Err(ureq::Error::Transport(t)) => {
                    // The transport error's text may contain the URL: keep only its kind.
                    last = format!("transport error ({})", t.kind());
                    std::thread::sleep(backoff);
                }
            }
            backoff *= 2;
        }
        Err(format!("gave up after {} attempts: {last}", self.attempts))
    }
}

/// Stores every alert, notifies the important ones once.
pub struct AlertRouterService<W, N> {
    router: AlertRouter,
    writer: W,
    notifier: Option<N>,
    pending: Vec<Alert>,
    status: std::sync::Arc<Status>,
}

impl<W: AlertWriter, N: Notifier> AlertRouterService<W, N> {
    /// A handler storing into `writer` and notifying through `notifier` (none: Slack off).
    pub fn new(
        router: AlertRouter,
        writer: W,
        notifier: Option<N>,
        status: std::sync::Arc<Status>,
    ) -> Self {
        Self {
            router,
            writer,
            notifier,
            pending: Vec::new(),
            status,
        }
    }

    /// The notifier.
    pub fn notifier(&self) -> Option<&N> {
        self.notifier.as_ref()
    }
}

impl<W: AlertWriter, N: Notifier> Handler for AlertRouterService<W, N> {
    fn handle(&mut self, record: &Record, _: &mut Vec<Output>) -> Result<(), Failure> {
        let alert: Alert = decode(&record.payload).map_err(reject)?;
        if self.router.route(&alert) == Routing::Notify
            && let Some(notifier) = self.notifier.as_mut()
            && let Err(e) = notifier.notify(&alert)
        {
            // A notifier outage must not stop the pipeline: the alert is still stored.
            self.status
                .metrics
                .errors
                .with_label_values(&["notify"])
                .inc();
            warn!(error = e.as_str(), alert = alert.alert_id.as_str(); "Alert not delivered");
        }
        self.status
            .metrics
            .dedupe_keys
            .set(self.router.remembered_keys() as i64);
        self.pending.push(alert);
        Ok(())
    }

    fn end_batch(&mut self, _: &mut Vec<Output>) -> Result<(), Failure> {
        let written = self.writer.write_alerts(&self.pending);
        self.pending.clear();
        written.map_err(Failure::Retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{AlertKind, Severity};

    struct Discard;

    impl AlertWriter for Discard {
        fn write_alerts(&mut self, _: &[Alert]) -> Result<(), String> {
            Ok(())
        }
    }

    impl Notifier for Discard {
        fn notify(&mut self, _: &Alert) -> Result<(), String> {
            Ok(())
        }
    }

    /// Alerts for 200,000 distinct cards, 10 ms of event time apart: the gauge of remembered
    /// keys stays at about two minutes' worth, not one per card.
    #[test]
    fn the_remembered_keys_gauge_stays_bounded_over_many_cards() {
        let status = Status::new("alert-router");
        let mut service = AlertRouterService::new(
            AlertRouter::new(Severity::Low, 60_000),
            Discard,
            Some(Discard),
            std::sync::Arc::clone(&status),
        );
        let mut out = Vec::new();
        let mut most = 0;
        for i in 0..200_000i64 {
            let alert = Alert {
                schema_version: crate::messages::SCHEMA_VERSION,
                alert_id: format!("a{i}"),
                kind: AlertKind::Anomaly,
                severity: Severity::High,
                timestamp_ms: i * 10,
                event_id: format!("e{i}"),
                card_id: Some(format!("card-{i}")),
                score: Some(0.9),
                message: "m".into(),
                top_features: vec![],
            };
            let record = Record {
                topic: ALERTS.into(),
                partition: 0,
                offset: i,
                key: None,
                payload: serde_json::to_vec(&alert).unwrap(),
                timestamp_ms: None,
            };
            service.handle(&record, &mut out).unwrap();
            if i % 1_000 == 999 {
                service.end_batch(&mut out).unwrap();
            }
            most = most.max(status.metrics.dedupe_keys.get());
        }
        assert!((6_000..=12_002).contains(&most), "{most} keys remembered");
    }

    #[test]
    fn delivery_errors_never_show_the_webhook_url() {
        // Nothing listens on port 9 of the loopback: every attempt fails in transport.
        let url = "http://127.0.0.1:9/services/T000/B000/very-secret-token";
        let mut slack = SlackNotifier::new(crate::config::Secret::new(url))
            .with_backoff(Duration::from_millis(1));
        let alert = Alert {
            schema_version: crate::messages::SCHEMA_VERSION,
            alert_id: "a".into(),
            kind: AlertKind::Anomaly,
            severity: Severity::High,
            timestamp_ms: 0,
            event_id: "e".into(),
            card_id: None,
            score: None,
            message: "m".into(),
            top_features: vec![],
        };
        let error = slack.notify(&alert).unwrap_err();
        assert!(error.starts_with("gave up after 4 attempts"), "{error}");
        assert!(
            !error.contains("very-secret-token") && !error.contains("127.0.0.1"),
            "{error}"
        );
    }
}
