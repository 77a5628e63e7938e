//! Alerts -> the alerts table and, at or above a minimum severity, a notifier; repeats are
//! de-duplicated.

use std::collections::HashMap;

use crate::messages::{Alert, AlertKind, Severity};

/// What happened to an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// Stored only (below the notification severity).
    Stored,
    /// Stored and sent to the notifier.
    Notify,
    /// Stored; a repeat of an alert notified within the de-duplication window, not resent.
    Duplicate,
}

/// Decides which alerts reach the notifier.
///
/// ```
/// use anomaly_services::messages::{Alert, AlertKind, Severity};
/// use anomaly_services::stages::alert_routing::{AlertRouter, Routing};
///
/// let mut router = AlertRouter::new(Severity::High, 60_000);
/// let alert = |t: i64, severity| Alert {
///     alert_id: format!("a{t}"), kind: AlertKind::Anomaly, severity, timestamp_ms: t,
///     event_id: "e".into(), card_id: Some("card-1".into()), score: Some(0.97),
///     message: String::new(), top_features: vec![],
/// };
/// assert_eq!(router.route(&alert(0, Severity::Low)), Routing::Stored);
/// assert_eq!(router.route(&alert(1_000, Severity::Critical)), Routing::Notify);
/// assert_eq!(router.route(&alert(2_000, Severity::Critical)), Routing::Duplicate);
/// assert_eq!(router.route(&alert(90_000, Severity::Critical)), Routing::Notify);
/// ```
pub struct AlertRouter {
    min_severity: Severity,
    dedupe_window_ms: i64,
    last_notified: HashMap<(AlertKind, String, Severity), i64>,
}

impl AlertRouter {
    /// Notifies alerts at or above `min_severity`; the same kind of alert for the same card
    /// (or the same drift detector) at the same severity is sent at most once per
    /// `dedupe_window_ms` of event time.
    pub fn new(min_severity: Severity, dedupe_window_ms: i64) -> Self {
        Self {
            min_severity,
            dedupe_window_ms,
            last_notified: HashMap::new(),
        }
    }

    /// Routes one alert.
    pub fn route(&mut self, alert: &Alert) -> Routing {
        if alert.severity < self.min_severity {
            return Routing::Stored;
        }
        let subject = alert
            .card_id
            .clone()
            .unwrap_or_else(|| alert.message.split(':').next().unwrap_or("").to_owned());
        let key = (alert.kind, subject, alert.severity);
        match self.last_notified.get(&key) {
            Some(&last) if alert.timestamp_ms - last < self.dedupe_window_ms => Routing::Duplicate,
            _ => {
                self.last_notified.insert(key, alert.timestamp_ms);
                Routing::Notify
            }
        }
    }
}
