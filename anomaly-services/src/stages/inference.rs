//! Feature vector -> score, anomaly flag and alert; score then learn; model hot swap.

use anomaly_core::anomaly::{AnomalyDetector, AnomalyError, Ensemble};
use anomaly_core::snapshot::{Model, Snapshot, SnapshotError};
use thiserror::Error;

use crate::ids::name_uuid;
use crate::messages::{Alert, AlertKind, FeatureVector, ScoredEvent, Severity};

/// Severity of an anomaly alert from its score: below 0.93 LOW, then MEDIUM up to 0.96, HIGH
/// up to 0.98, CRITICAL from 0.98. (On the synthetic stream, half of the fraud scores above
/// 0.93 and a tenth above 0.97, while 99.9% of normal traffic scores below 0.92.)
///
/// ```
/// use anomaly_services::messages::Severity;
/// use anomaly_services::stages::inference::anomaly_severity;
///
/// assert_eq!(anomaly_severity(0.91), Severity::Low);
/// assert_eq!(anomaly_severity(0.97), Severity::High);
/// assert_eq!(anomaly_severity(0.99), Severity::Critical);
/// ```
pub fn anomaly_severity(score: f64) -> Severity {
    match score {
        s if s >= 0.98 => Severity::Critical,
        s if s >= 0.96 => Severity::High,
        s if s >= 0.93 => Severity::Medium,
        _ => Severity::Low,
    }
}

/// The alert of an anomalous `vector`, naming the (at most three) features that isolated it.
fn anomaly_alert(
    vector: &FeatureVector,
    score: f64,
    explanation: &[anomaly_core::anomaly::FeatureContribution],
) -> Alert {
    let top_features: Vec<(String, f64)> = explanation
        .iter()
        .take(3)
        .map(|c| (c.feature.clone(), c.share))
        .collect();
    let severity = anomaly_severity(score);
    let because = top_features
        .iter()
        .map(|(f, _)| f.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    Alert {
        schema_version: crate::messages::SCHEMA_VERSION,
        // One anomaly alert per event at most: replays give the same id.
        alert_id: name_uuid("anomaly-alert", &vector.event_id),
        kind: AlertKind::Anomaly,
        severity,
        timestamp_ms: vector.timestamp_ms,
        event_id: vector.event_id.clone(),
        card_id: Some(vector.card_id.clone()),
        score: Some(score),
        message: format!(
            "{} anomaly on {}: score {score:.3}, amount {:.2}{}",
            severity.name(),
            vector.card_id,
            vector.amount,
            if because.is_empty() {
                String::new()
            } else {
                format!(", isolated by {because}")
            }
        ),
        top_features,
    }
}

/// Why a model could not be swapped in. The running model stays.
#[derive(Debug, Error)]
pub enum SwapError {
    /// The snapshot did not load.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// It loaded, but is not an ensemble over this pipeline's features.
    #[error("model {version} is not an ensemble over the pipeline's {expected} features")]
    WrongModel {
        /// Its version.
        version: u64,
        /// Features expected.
        expected: usize,
    },
    /// Older than (or the same as) the running model.
    #[error("model {offered} is not newer than the running model {running}")]
    NotNewer {
        /// Offered version.
        offered: u64,
        /// Running version.
        running: u64,
    },
    /// A checkpoint of what was learned from another published model than the running one
    /// (a newer model was published since it was saved): the publication wins.
    #[error("the checkpoint continues model {checkpoint}, the running model is {running}")]
    OtherBase {
        /// The version the checkpoint learned from.
        checkpoint: u64,
        /// Running version.
        running: u64,
    },
}

/// Scores every vector with the active model, then learns it.
#[derive(Clone, Debug)]
pub struct Inference {
    model: Ensemble,
    version: u64,
    threshold: f64,
}

impl Inference {
    /// A stage running `model` as `version`; scores `>= threshold` are anomalies.
    pub fn new(model: Ensemble, version: u64, threshold: f64) -> Self {
        Self {
            model,
            version,
            threshold,
        }
    }

    /// The running model.
    pub fn model(&self) -> &Ensemble {
        &self.model
    }

    /// The running model's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Scores and learns `vector`; an anomaly also yields an alert naming the features that
    /// isolated it.
    pub fn process(
        &mut self,
        vector: &FeatureVector,
    ) -> Result<(ScoredEvent, Option<Alert>), AnomalyError> {
        // The scored event carries copies of the vector's ids and features.
        self.process_owned(vector.clone())
    }

    /// [`process`](Self::process), moving the vector's ids and features into the scored
    /// event instead of copying them (the embedded pipeline's hot path).
    pub fn process_owned(
        &mut self,
        vector: FeatureVector,
    ) -> Result<(ScoredEvent, Option<Alert>), AnomalyError> {
        let (score, is_anomaly, alert) = self.score_and_learn(&vector)?;
        Ok((
            ScoredEvent {
                schema_version: crate::messages::SCHEMA_VERSION,
                event_id: vector.event_id,
                card_id: vector.card_id,
                timestamp_ms: vector.timestamp_ms,
                score,
                is_anomaly,
                is_fraud: vector.is_fraud,
                model_version: self.version,
                amount: vector.amount,
                phase: vector.phase,
                merchant: vector.merchant,
                features: vector.features,
            },
            alert,
        ))
    }

    /// The score, the decision and the alert of an anomaly; the model learns the vector.
    fn score_and_learn(
        &mut self,
        vector: &FeatureVector,
    ) -> Result<(f64, bool, Option<Alert>), AnomalyError> {
        let scored = self.model.score(&vector.features)?;
        let score = scored.score();
        let is_anomaly = score >= self.threshold;
        let alert = is_anomaly.then(|| anomaly_alert(vector, score, &scored.explain()));
        scored.learn();
        Ok((score, is_anomaly, alert))
    }

    /// A checkpoint of the running model as it has learned so far (a snapshot under the
    /// version it started from).
    pub fn checkpoint(&self) -> Vec<u8> {
        Snapshot::new(self.version, Model::Ensemble(self.model.clone())).to_bytes()
    }

    /// Resumes from a [`checkpoint`](Self::checkpoint) of the same published version as the
    /// running model (what it learned since); on any error the running model stays.
    ///
    /// ```
    /// use anomaly_core::anomaly::Ensemble;
    /// use anomaly_core::features::TransactionFeatures;
    /// use anomaly_services::messages::{FeatureVector, SCHEMA_VERSION};
    /// use anomaly_services::pipeline::default_model;
    /// use anomaly_services::stages::inference::Inference;
    ///
    /// let fresh = || Ensemble::with_features(default_model(), &TransactionFeatures::NAMES);
    /// let mut learned = Inference::new(fresh()?, 1, 0.85);
    /// let vector = FeatureVector {
    ///     schema_version: SCHEMA_VERSION, event_id: "e1".into(), card_id: "c".into(),
    ///     timestamp_ms: 1_767_225_600_000, features: vec![0.5; TransactionFeatures::NAMES.len()],
    ///     amount: 10.0, is_fraud: false, phase: "normal".into(),
    ///     merchant: "m".into(),
    /// };
    /// learned.process(&vector)?;
    ///
    /// let mut restarted = Inference::new(fresh()?, 1, 0.85);
    /// restarted.restore(&learned.checkpoint())?;
    /// assert_eq!(restarted.model(), learned.model());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore(&mut self, checkpoint: &[u8]) -> Result<(), SwapError> {
        let snapshot = Snapshot::from_bytes(checkpoint)?;
        if snapshot.model_version != self.version {
            return Err(SwapError::OtherBase {
                checkpoint: snapshot.model_version,
                running: self.version,
            });
        }
        self.install(snapshot.model, snapshot.model_version)
    }

    /// Replaces the model with a published snapshot after validating it; on any error the
    /// running model stays in place.
    pub fn swap(&mut self, snapshot_bytes: &[u8]) -> Result<u64, SwapError> {
        let snapshot = Snapshot::from_bytes(snapshot_bytes)?;
        let version = snapshot.model_version;
        if version <= self.version {
            return Err(SwapError::NotNewer {
                offered: version,
                running: self.version,
            });
        }
        self.install(snapshot.model, version)?;
        Ok(version)
    }

    /// Runs `model` as `version` if it is an ensemble over the running model's features.
    fn install(&mut self, model: Model, version: u64) -> Result<(), SwapError> {
        let expected = self.model.hst().features().len();
        match model {
            Model::Ensemble(model) if model.hst().features() == self.model.hst().features() => {
                self.model = model;
                self.version = version;
                Ok(())
            }
            _ => Err(SwapError::WrongModel { version, expected }),
        }
    }
}
