//! Scored events -> drift events: ADWIN on the score stream, DDM on the error stream.

use anomaly_core::drift::{Adwin, Ddm, DriftDetector, DriftStatus, Outcome};

use crate::ids::name_uuid;
use crate::messages::{Alert, AlertKind, DriftEvent, DriftSource, ScoredEvent, Severity};

/// Watches the scores and the prediction errors for drift.
///
/// ```
/// use anomaly_services::messages::ScoredEvent;
/// use anomaly_services::stages::drift_monitor::DriftMonitor;
///
/// let mut monitor = DriftMonitor::new(0);
/// let event = |i: i64, score: f64| ScoredEvent {
///     schema_version: anomaly_services::messages::SCHEMA_VERSION,
///     event_id: format!("e{i}"), card_id: "c".into(), timestamp_ms: i, score,
///     is_anomaly: false, is_fraud: false, model_version: 1, amount: 1.0, phase: "p".into(),
///     merchant: String::new(),
///     features: vec![],
/// };
/// let drifts: usize = (0..4000)
///     .map(|i| monitor.process(&event(i, if i < 2000 { 0.3 } else { 0.8 })).len())
///     .sum();
/// assert!(drifts >= 1);
/// ```
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DriftMonitor {
    adwin: Adwin,
    ddm: Ddm,
    seen: u64,
    warm_up: u64,
}

impl DriftMonitor {
    /// Detectors with River's default parameters; the first `warm_up` events (the model's
    /// own warm-up, when its scores mean nothing yet) are counted but not watched.
    pub fn new(warm_up: u64) -> Self {
        Self {
            adwin: Adwin::default(),
            ddm: Ddm::default(),
            seen: 0,
            warm_up,
        }
    }

    /// Scored events seen so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Feeds one scored event; returns the drifts it revealed (none, one or both detectors).
    pub fn process(&mut self, event: &ScoredEvent) -> Vec<DriftEvent> {
        self.seen += 1;
        let mut drifts = Vec::new();
        if self.seen <= self.warm_up {
            return drifts;
        }
        // Scores are in [0, 1] (checked upstream), so ADWIN cannot reject them.
        if let Ok(DriftStatus::Drift) = self.adwin.update(event.score) {
            let detail = format!(
                "score mean {:.4} over the last {} events",
                self.adwin.estimation(),
                self.adwin.width()
            );
            drifts.push(self.drift(DriftSource::Adwin, event, detail));
        }
        let outcome = Outcome::from_prediction(event.is_anomaly, event.is_fraud);
        if let Ok(DriftStatus::Drift) = self.ddm.update(outcome) {
            let detail = format!("error rate {:.4}", self.ddm.error_rate());
            drifts.push(self.drift(DriftSource::Ddm, event, detail));
        }
        drifts
    }

    fn drift(&self, detector: DriftSource, event: &ScoredEvent, detail: String) -> DriftEvent {
        DriftEvent {
            schema_version: crate::messages::SCHEMA_VERSION,
            // One drift per detector and event at most: replays give the same id.
            drift_id: name_uuid("drift", &format!("{}/{}", event.event_id, detector.name())),
            detector,
            timestamp_ms: event.timestamp_ms,
            event_id: event.event_id.clone(),
            sequence: self.seen,
            model_version: event.model_version,
            detail,
        }
    }
}

/// Severity of a drift alert: errors drifting (DDM) matter more than scores drifting (ADWIN).
pub fn drift_severity(source: DriftSource) -> Severity {
    match source {
        DriftSource::Adwin => Severity::Medium,
        DriftSource::Ddm => Severity::High,
    }
}

/// The alert announcing `drift` (its id derived from the drift's).
pub fn drift_alert(drift: &DriftEvent) -> Alert {
    Alert {
        schema_version: crate::messages::SCHEMA_VERSION,
        alert_id: name_uuid("drift-alert", &drift.drift_id),
        kind: AlertKind::Drift,
        severity: drift_severity(drift.detector),
        timestamp_ms: drift.timestamp_ms,
        event_id: drift.event_id.clone(),
        card_id: None,
        score: None,
        message: format!(
            "{}: drift after {} events ({})",
            drift.detector.name(),
            drift.sequence,
            drift.detail
        ),
        top_features: Vec::new(),
    }
}
