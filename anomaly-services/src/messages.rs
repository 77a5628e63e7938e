//! The messages that flow between the stages (JSON on Kafka topics; plain values in the
//! embedded pipeline). `docs/MESSAGES.md` describes every topic.

use anomaly_core::features::Transaction;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Major version of the message schemas this build writes and reads. Readers ignore fields
/// they do not know (a minor change: a new field), and dead-letter messages of a newer major
/// version (a change they cannot read correctly), so services can be upgraded one at a time.
pub const SCHEMA_VERSION: u32 = 1;

fn first_schema() -> u32 {
    1
}

/// A message that travels on a topic: it says which schema version wrote it.
pub trait Message: serde::de::DeserializeOwned {
    /// The major schema version it was written with.
    fn schema_version(&self) -> u32;
}

macro_rules! messages {
    ($($t:ty),*) => {$(
        impl Message for $t {
            fn schema_version(&self) -> u32 {
                self.schema_version
            }
        }
    )*};
}

messages!(
    RawTransaction,
    FeatureVector,
    ScoredEvent,
    DriftEvent,
    Alert,
    ModelUpdate,
    DeadLetter
);

/// Largest message a stage accepts, in bytes; larger ones are dead-lettered.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest id or label accepted (event, card, merchant, category, phase), in bytes.
pub const MAX_TEXT_BYTES: usize = 128;
/// Longest free text accepted (a drift's detail, an alert's message), in bytes.
pub const MAX_FREE_TEXT_BYTES: usize = 4096;
/// Earliest event time accepted, Unix milliseconds: 2000-01-01T00:00:00Z.
pub const EARLIEST_EVENT_MS: i64 = 946_684_800_000;
/// Latest event time accepted, Unix milliseconds: 9999-12-31T23:59:59.999Z. Every accepted
/// time is then a valid PostgreSQL timestamp (a row out of its range fails the whole batch).
pub const LATEST_EVENT_MS: i64 = 253_402_300_799_999;
/// Largest amount accepted.
pub const MAX_AMOUNT: f64 = 1e12;

/// A card transaction from the producer (`raw-transactions`), with its ground-truth label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RawTransaction {
    /// Major version of the message's schema ([`SCHEMA_VERSION`] when written by this
    /// build); messages written before it existed have none and read as 1.
    #[serde(default = "first_schema")]
    pub schema_version: u32,
    /// Unique id (UUID).
    pub event_id: String,
    /// The card; also the Kafka key, so one card's events stay in order on one partition.
    pub card_id: String,
    /// Event time, Unix milliseconds (UTC).
    pub timestamp_ms: i64,
    /// Amount, >= 0.
    pub amount: f64,
    /// Merchant id.
    pub merchant: String,
    /// Merchant category.
    pub category: String,
    /// Latitude, degrees.
    pub latitude: f64,
    /// Longitude, degrees.
    pub longitude: f64,
    /// Ground truth: whether the transaction is fraudulent.
    pub is_fraud: bool,
    /// The generator phase it was drawn in (for reports).
    pub phase: String,
}

impl RawTransaction {
    /// The part the feature set reads, the label and the phase, without copying.
    pub fn into_parts(self) -> (Transaction, bool, String) {
        let transaction = Transaction {
            event_id: self.event_id,
            card_id: self.card_id,
            timestamp_ms: self.timestamp_ms,
            amount: self.amount,
            merchant: self.merchant,
            category: self.category,
            latitude: self.latitude,
            longitude: self.longitude,
        };
        (transaction, self.is_fraud, self.phase)
    }

    /// The inverse of [`into_parts`](Self::into_parts).
    ///
    /// ```
    /// # use anomaly_services::generator::{Generator, GeneratorParams};
    /// use anomaly_services::messages::RawTransaction;
    ///
    /// # let tx = Generator::new(GeneratorParams::default()).next().unwrap();
    /// let (transaction, is_fraud, phase) = tx.clone().into_parts();
    /// assert_eq!(RawTransaction::from_parts(transaction, is_fraud, phase), tx);
    /// ```
    pub fn from_parts(transaction: Transaction, is_fraud: bool, phase: String) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            event_id: transaction.event_id,
            card_id: transaction.card_id,
            timestamp_ms: transaction.timestamp_ms,
            amount: transaction.amount,
            merchant: transaction.merchant,
            category: transaction.category,
            latitude: transaction.latitude,
            longitude: transaction.longitude,
            is_fraud,
            phase,
        }
    }

    /// The part the feature set reads.
    pub fn transaction(&self) -> Transaction {
        Transaction {
            event_id: self.event_id.clone(),
            card_id: self.card_id.clone(),
            timestamp_ms: self.timestamp_ms,
            amount: self.amount,
            merchant: self.merchant.clone(),
            category: self.category.clone(),
            latitude: self.latitude,
            longitude: self.longitude,
        }
    }
}

/// A transaction's features (`features`): [`anomaly_core::features::TransactionFeatures::NAMES`]
/// order, each in [0, 1], rounded to 4 decimals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureVector {
    /// Major version of the message's schema ([`SCHEMA_VERSION`] when written by this
    /// build); messages written before it existed have none and read as 1.
    #[serde(default = "first_schema")]
    pub schema_version: u32,
    /// The transaction's id.
    pub event_id: String,
    /// The card.
    pub card_id: String,
    /// Event time, Unix milliseconds.
    pub timestamp_ms: i64,
    /// The feature values.
    pub features: Vec<f64>,
    /// The raw amount (for reports and alerts).
    pub amount: f64,
    /// Ground truth, carried along for the error stream and reports.
    pub is_fraud: bool,
    /// Generator phase.
    pub phase: String,
    /// The merchant (for the fraud dashboards); empty in messages written before it was added.
    #[serde(default)]
    pub merchant: String,
}

/// A scored transaction (`scores`), also a row of the `scored_events` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoredEvent {
    /// Major version of the message's schema ([`SCHEMA_VERSION`] when written by this
    /// build); messages written before it existed have none and read as 1.
    #[serde(default = "first_schema")]
    pub schema_version: u32,
    /// The transaction's id.
    pub event_id: String,
    /// The card.
    pub card_id: String,
    /// Event time, Unix milliseconds.
    pub timestamp_ms: i64,
    /// Ensemble score in [0, 1], rounded to 6 decimals.
    pub score: f64,
    /// `score >= ANOMALY_THRESHOLD`.
    pub is_anomaly: bool,
    /// Ground truth.
    pub is_fraud: bool,
    /// Version of the model that scored it.
    pub model_version: u64,
    /// The raw amount.
    pub amount: f64,
    /// Generator phase.
    pub phase: String,
    /// The merchant; empty in messages written before it was added.
    #[serde(default)]
    pub merchant: String,
    /// The feature vector it was scored on: what retraining trains on, so that the scored
    /// event alone is a labelled example (no join with `features`, whatever the partitions
    /// and their assignment). Empty in messages written before it was added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<f64>,
}

impl ScoredEvent {
    /// The labelled feature vector it carries, with the score the live model gave it; `None`
    /// for a message written without its features.
    ///
    /// ```
    /// # use anomaly_services::messages::*;
    /// let event = ScoredEvent {
    ///     schema_version: SCHEMA_VERSION,
    ///     event_id: "e1".into(),
    ///     card_id: "card".into(),
    ///     timestamp_ms: 1_767_225_600_000,
    ///     score: 0.42,
    ///     is_anomaly: false,
    ///     is_fraud: true,
    ///     model_version: 3,
    ///     amount: 12.5,
    ///     phase: "normal".into(),
    ///     merchant: "m-1".into(),
    ///     features: vec![0.5; 11],
    /// };
    /// let (vector, score) = event.labelled_vector().unwrap();
    /// assert!(vector.is_fraud);
    /// assert_eq!(score, 0.42);
    /// ```
    pub fn labelled_vector(&self) -> Option<(FeatureVector, f64)> {
        if self.features.is_empty() {
            return None;
        }
        let vector = FeatureVector {
            schema_version: self.schema_version,
            event_id: self.event_id.clone(),
            card_id: self.card_id.clone(),
            timestamp_ms: self.timestamp_ms,
            features: self.features.clone(),
            amount: self.amount,
            is_fraud: self.is_fraud,
            phase: self.phase.clone(),
            merchant: self.merchant.clone(),
        };
        Some((vector, self.score))
    }
}

/// Which detector saw a drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DriftSource {
    /// ADWIN on the score stream.
    #[serde(rename = "ADWIN")]
    Adwin,
    /// DDM on the error stream (prediction vs label).
    #[serde(rename = "DDM")]
    Ddm,
}

impl DriftSource {
    /// The detector's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Adwin => "ADWIN",
            Self::Ddm => "DDM",
        }
    }
}

/// A detected drift (`drift-events`), also a row of `drift_events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftEvent {
    /// Major version of the message's schema ([`SCHEMA_VERSION`] when written by this
    /// build); messages written before it existed have none and read as 1.
    #[serde(default = "first_schema")]
    pub schema_version: u32,
    /// Unique id.
    pub drift_id: String,
    /// The detector.
    pub detector: DriftSource,
    /// Event time of the transaction that revealed it.
    pub timestamp_ms: i64,
    /// That transaction's id.
    pub event_id: String,
    /// Scored events the drift detector had seen, this one included.
    pub sequence: u64,
    /// Model version in use.
    pub model_version: u64,
    /// What the detector reported (ADWIN: window width and mean score; DDM: error rate).
    pub detail: String,
}

/// Alert severity, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Likely a problem.
    Medium,
    /// Act soon.
    High,
    /// Act now.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    /// The upper-case name (`LOW`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    /// Case-insensitive, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, String> {
        let name = s.trim().to_ascii_uppercase();
        Self::ALL
            .into_iter()
            .find(|sev| sev.name() == name)
            .ok_or_else(|| format!("`{s}` is not a severity; use LOW, MEDIUM, HIGH or CRITICAL"))
    }
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// An anomalous transaction.
    Anomaly,
    /// A drift in the score or error stream.
    Drift,
}

impl AlertKind {
    /// Its name in messages and in the `alerts` table (`anomaly`, `drift`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Anomaly => "anomaly",
            Self::Drift => "drift",
        }
    }
}

/// An alert (`alerts`), also a row of the `alerts` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Major version of the message's schema ([`SCHEMA_VERSION`] when written by this
    /// build); messages written before it existed have none and read as 1.
    #[serde(default = "first_schema")]
    pub schema_version: u32,
    /// Unique id.
    pub alert_id: String,
    /// Anomaly or drift.
    pub kind: AlertKind,
    /// Severity.
    pub severity: Severity,
    /// Event time.
    pub timestamp_ms: i64,
    /// The transaction concerned (anomalies) or that revealed the drift.
    pub event_id: String,
    /// The card (anomalies).
    pub card_id: Option<String>,
    /// The score (anomalies).
    pub score: Option<f64>,
    /// One line for humans.
    pub message: String,
    /// Features that isolated the transaction, most important first (anomalies).
    pub top_features: Vec<(String, f64)>,
}

/// A published model (`model-updates`), also a row of `model_versions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelUpdate {
    /// Major version of the message's schema ([`SCHEMA_VERSION`] when written by this
    /// build); messages written before it existed have none and read as 1.
    #[serde(default = "first_schema")]
    pub schema_version: u32,
    /// The new version.
    pub model_version: u64,
    /// Event time of the drift that triggered the retraining.
    pub timestamp_ms: i64,
    /// Why it was trained.
    pub reason: String,
    /// ROC AUC of the previous model on the evaluation events.
    pub previous_auc: Option<f64>,
    /// ROC AUC of this model on the same events.
    pub auc: Option<f64>,
}

/// A message that could not be processed (`dead-letters`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Major version of the message's schema ([`SCHEMA_VERSION`] when written by this
    /// build); messages written before it existed have none and read as 1.
    #[serde(default = "first_schema")]
    pub schema_version: u32,
    /// What was wrong with it (cut to 1 KiB).
    pub error: String,
    /// Where it came from.
    pub source_topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
    /// The payload, lossily decoded and cut to 4 KiB.
    pub payload: String,
}

/// Why a message was rejected.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum MessageError {
    /// Too large to be a message of ours.
    #[error("message of {size} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Not JSON of the expected shape (missing or unknown field, wrong type...).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Well-formed but with impossible values.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// Written with a newer major schema version than this build reads.
    #[error(
        "message schema version {found} is newer than this service reads ({SCHEMA_VERSION}); upgrade the service"
    )]
    NewerSchema {
        /// The version the message carries.
        found: u32,
    },
}

/// Decodes any message: size limit, JSON of the expected shape (fields it does not know are
/// ignored), then a schema version this build reads.
pub fn decode<T: Message>(bytes: &[u8]) -> Result<T, MessageError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(MessageError::TooLarge { size: bytes.len() });
    }
    let message: T =
        serde_json::from_slice(bytes).map_err(|e| MessageError::Malformed(e.to_string()))?;
    if message.schema_version() > SCHEMA_VERSION {
        return Err(MessageError::NewerSchema {
            found: message.schema_version(),
        });
    }
    Ok(message)
}

/// Checks an id or label: `required` ones not empty, none longer than [`MAX_TEXT_BYTES`],
/// none with a control character (a NUL makes PostgreSQL refuse the row, so the whole batch).
fn check_text(field: &str, value: &str, required: bool) -> Result<(), MessageError> {
    if (required && value.is_empty())
        || value.len() > MAX_TEXT_BYTES
        || value.chars().any(char::is_control)
    {
        let shown: String = value.chars().take(40).collect();
        return Err(MessageError::Invalid(format!(
            "{field} must be {}at most {MAX_TEXT_BYTES} bytes without control characters, got {shown:?}",
            if required { "non-empty, " } else { "" }
        )));
    }
    Ok(())
}

/// Checks an event time: from [`EARLIEST_EVENT_MS`] to [`LATEST_EVENT_MS`]. (How far ahead
/// of its clock a service accepts is the service's rule: see `services::feature_engineer`.)
fn check_time(timestamp_ms: i64) -> Result<(), MessageError> {
    if !(EARLIEST_EVENT_MS..=LATEST_EVENT_MS).contains(&timestamp_ms) {
        return Err(MessageError::Invalid(format!(
            "timestamp_ms {timestamp_ms} is outside 2000-01-01 to 9999-12-31 ({EARLIEST_EVENT_MS} to {LATEST_EVENT_MS})"
        )));
    }
    Ok(())
}

/// Checks an amount: finite, at least 0, at most [`MAX_AMOUNT`].
fn check_amount(amount: f64) -> Result<(), MessageError> {
    if !(amount.is_finite() && (0.0..=MAX_AMOUNT).contains(&amount)) {
        return Err(MessageError::Invalid(format!(
            "amount must be a finite number >= 0 and <= {MAX_AMOUNT}, got {amount}"
        )));
    }
    Ok(())
}

/// The checks every message about one event shares.
fn check_event(
    event_id: &str,
    card_id: &str,
    timestamp_ms: i64,
    amount: f64,
    phase: &str,
) -> Result<(), MessageError> {
    check_text("event_id", event_id, true)?;
    check_text("card_id", card_id, true)?;
    check_text("phase", phase, false)?;
    check_time(timestamp_ms)?;
    check_amount(amount)
}

/// Decodes a `features` message and checks its values: the event's ids, time and amount, and
/// 11 features, each in [0, 1].
pub fn decode_features(bytes: &[u8]) -> Result<FeatureVector, MessageError> {
    let vector: FeatureVector = decode(bytes)?;
    check_event(
        &vector.event_id,
        &vector.card_id,
        vector.timestamp_ms,
        vector.amount,
        &vector.phase,
    )?;
    check_features(&vector.features)?;
    check_free_text("merchant", &vector.merchant)?;
    Ok(vector)
}

/// One value per pipeline feature, each in [0, 1].
fn check_features(features: &[f64]) -> Result<(), MessageError> {
    let expected = anomaly_core::features::TransactionFeatures::NAMES.len();
    if features.len() != expected {
        return Err(MessageError::Invalid(format!(
            "{} features, expected {expected}",
            features.len()
        )));
    }
    if let Some(bad) = features.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        return Err(MessageError::Invalid(format!(
            "feature value {bad} outside [0, 1]"
        )));
    }
    Ok(())
}

/// Decodes a `scores` message and checks the event's ids, time and amount, that its score
/// is in [0, 1], and its features (when it carries them) as [`decode_features`] does.
pub fn decode_scored(bytes: &[u8]) -> Result<ScoredEvent, MessageError> {
    let event: ScoredEvent = decode(bytes)?;
    check_event(
        &event.event_id,
        &event.card_id,
        event.timestamp_ms,
        event.amount,
        &event.phase,
    )?;
    if !(0.0..=1.0).contains(&event.score) {
        return Err(MessageError::Invalid(format!(
            "score {} outside [0, 1]",
            event.score
        )));
    }
    if !event.features.is_empty() {
        check_features(&event.features)?;
    }
    check_free_text("merchant", &event.merchant)?;
    Ok(event)
}

/// Checks free text stored as is (a drift's detail, an alert's message): at most
/// [`MAX_FREE_TEXT_BYTES`] and no NUL, which PostgreSQL text cannot hold.
fn check_free_text(field: &str, value: &str) -> Result<(), MessageError> {
    if value.len() > MAX_FREE_TEXT_BYTES || value.contains('\0') {
        return Err(MessageError::Invalid(format!(
            "{field} must be at most {MAX_FREE_TEXT_BYTES} bytes without NUL characters"
        )));
    }
    Ok(())
}

/// Decodes a `drift-events` message and checks its ids, event time and detail.
///
/// ```
/// use anomaly_services::messages::decode_drift;
///
/// let ok = br#"{"drift_id":"d1","detector":"ADWIN","timestamp_ms":1767225600000,
///   "event_id":"e1","sequence":10,"model_version":1,"detail":"width 4000"}"#;
/// assert!(decode_drift(ok).is_ok());
/// let nul = String::from_utf8_lossy(ok).replace("width", "wi\\u0000dth");
/// assert!(decode_drift(nul.as_bytes()).is_err());
/// ```
pub fn decode_drift(bytes: &[u8]) -> Result<DriftEvent, MessageError> {
    let drift: DriftEvent = decode(bytes)?;
    check_text("drift_id", &drift.drift_id, true)?;
    check_text("event_id", &drift.event_id, true)?;
    check_time(drift.timestamp_ms)?;
    check_free_text("detail", &drift.detail)?;
    Ok(drift)
}

/// Decodes an `alerts` message and checks its ids, event time, score, message and top
/// features.
pub fn decode_alert(bytes: &[u8]) -> Result<Alert, MessageError> {
    let alert: Alert = decode(bytes)?;
    check_text("alert_id", &alert.alert_id, true)?;
    check_text("event_id", &alert.event_id, true)?;
    if let Some(card) = &alert.card_id {
        check_text("card_id", card, true)?;
    }
    check_time(alert.timestamp_ms)?;
    if let Some(score) = alert.score
        && !(0.0..=1.0).contains(&score)
    {
        return Err(MessageError::Invalid(format!(
            "score {score} outside [0, 1]"
        )));
    }
    check_free_text("message", &alert.message)?;
    for (name, value) in &alert.top_features {
        check_text("top_features name", name, true)?;
        if !value.is_finite() {
            return Err(MessageError::Invalid(format!(
                "top_features value {value} of {name} is not finite"
            )));
        }
    }
    Ok(alert)
}

/// The metric label of a decoding error.
pub fn error_kind(error: &MessageError) -> &'static str {
    match error {
        MessageError::TooLarge { .. } => "too_large",
        MessageError::Malformed(_) => "bad_json",
        MessageError::Invalid(_) => "invalid",
        MessageError::NewerSchema { .. } => "newer_schema",
    }
}

/// Decodes a `raw-transactions` message and checks its values: ids and labels (non-empty
/// ids, at most [`MAX_TEXT_BYTES`], no control characters), the event time (years 2000 to
/// 9999), the amount (finite, 0 to [`MAX_AMOUNT`]) and the location.
///
/// ```
/// use anomaly_services::messages::decode_transaction;
///
/// let ok = br#"{"event_id":"e1","card_id":"c1","timestamp_ms":1767225600000,"amount":9.5,
///   "merchant":"m","category":"grocery","latitude":48.8,"longitude":2.3,"is_fraud":false,
///   "phase":"normal"}"#;
/// assert!(decode_transaction(ok).is_ok());
/// assert!(decode_transaction(b"{not json").is_err());
/// let nul = String::from_utf8_lossy(ok).replace("\"c1\"", "\"c\\u00001\"");
/// assert!(decode_transaction(nul.as_bytes()).is_err());
/// ```
pub fn decode_transaction(bytes: &[u8]) -> Result<RawTransaction, MessageError> {
    let tx: RawTransaction = decode(bytes)?;
    check_event(
        &tx.event_id,
        &tx.card_id,
        tx.timestamp_ms,
        tx.amount,
        &tx.phase,
    )?;
    check_text("merchant", &tx.merchant, false)?;
    check_text("category", &tx.category, false)?;
    if !(-90.0..=90.0).contains(&tx.latitude) || !(-180.0..=180.0).contains(&tx.longitude) {
        return Err(MessageError::Invalid(format!(
            "location ({}, {}) is not a latitude/longitude",
            tx.latitude, tx.longitude
        )));
    }
    Ok(tx)
}

/// Builds the dead-letter record for a rejected message.
pub fn dead_letter(
    error: &dyn std::fmt::Display,
    source_topic: &str,
    partition: i32,
    offset: i64,
    payload: &[u8],
) -> DeadLetter {
    let shown = &payload[..payload.len().min(4096)];
    let mut error = error.to_string();
    // A message can quote the input (an id of any length): kept to 1 KiB like the payload's 4.
    if error.len() > 1024 {
        let mut cut = 1024;
        while !error.is_char_boundary(cut) {
            cut -= 1;
        }
        error.truncate(cut);
        error.push_str("...");
    }
    DeadLetter {
        schema_version: SCHEMA_VERSION,
        error,
        source_topic: source_topic.to_owned(),
        partition,
        offset,
        payload: String::from_utf8_lossy(shown).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> serde_json::Value {
        serde_json::json!({"event_id":"e1","card_id":"c1","timestamp_ms":1_767_225_600_000_i64,"amount":9.5,
            "merchant":"m","category":"grocery","latitude":48.8,"longitude":2.3,
            "is_fraud":false,"phase":"normal"})
    }

    fn decode(v: &serde_json::Value) -> Result<RawTransaction, MessageError> {
        decode_transaction(v.to_string().as_bytes())
    }

    #[test]
    fn every_kind_of_bad_input_is_rejected_with_its_reason() {
        assert!(decode(&valid()).is_ok());
        let mut missing = valid();
        missing.as_object_mut().map(|o| o.remove("amount"));
        assert!(
            matches!(decode(&missing), Err(MessageError::Malformed(m)) if m.contains("amount"))
        );
        let mut negative = valid();
        negative["amount"] = (-5.0).into();
        assert!(matches!(decode(&negative), Err(MessageError::Invalid(_))));
        // JSON has no NaN; a string in its place is malformed.
        let mut nan = valid();
        nan["amount"] = "NaN".into();
        assert!(matches!(decode(&nan), Err(MessageError::Malformed(_))));
        let mut far = valid();
        far["latitude"] = 123.0.into();
        assert!(matches!(decode(&far), Err(MessageError::Invalid(_))));
        for (field, value) in [
            ("card_id", serde_json::json!("c\u{0}1")),
            ("event_id", serde_json::json!("")),
            (
                "event_id",
                serde_json::json!("e".repeat(MAX_TEXT_BYTES + 1)),
            ),
            ("merchant", serde_json::json!("m\n")),
            ("timestamp_ms", serde_json::json!(i64::MIN)),
            ("timestamp_ms", serde_json::json!(0)),
            ("amount", serde_json::json!(1e308)),
        ] {
            let mut bad = valid();
            bad[field] = value;
            assert!(
                matches!(decode(&bad), Err(MessageError::Invalid(ref m)) if m.contains(field)),
                "{field}: {:?}",
                decode(&bad)
            );
        }
        let mut latest = valid();
        latest["timestamp_ms"] = LATEST_EVENT_MS.into();
        assert!(
            decode(&latest).is_ok(),
            "how far ahead is the service's rule"
        );
        latest["timestamp_ms"] = i64::MAX.into();
        assert!(
            matches!(decode(&latest), Err(MessageError::Invalid(ref m)) if m.contains("timestamp_ms"))
        );
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            decode_transaction(&huge),
            Err(MessageError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_transaction(b"\xff\xfe"),
            Err(MessageError::Malformed(_))
        ));
    }

    /// Tolerant reading: a field this build does not know is ignored (a rolling upgrade that
    /// adds one), a message without a version reads as version 1, and a newer major version
    /// is refused with a clear error.
    #[test]
    fn unknown_fields_are_ignored_and_newer_major_versions_refused() {
        let mut extra = valid();
        extra["loyalty_tier"] = "gold".into();
        assert!(decode(&extra).is_ok());
        let unversioned = valid();
        assert_eq!(decode(&unversioned).map(|t| t.schema_version), Ok(1));
        let mut newer = valid();
        newer["schema_version"] = (SCHEMA_VERSION + 1).into();
        let error = decode(&newer).unwrap_err();
        assert_eq!(error_kind(&error), "newer_schema");
        assert!(error.to_string().contains("upgrade the service"), "{error}");
        let written = serde_json::to_value(decode(&valid()).unwrap()).unwrap();
        assert_eq!(written["schema_version"], SCHEMA_VERSION);
    }

    #[test]
    fn severities_parse_loosely_and_order() {
        assert_eq!(" high\n".parse::<Severity>(), Ok(Severity::High));
        assert!("urgent".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::High && Severity::Medium > Severity::Low);
    }

    #[test]
    fn dead_letters_keep_their_origin() {
        let dl = dead_letter(&"bad", "raw-transactions", 3, 42, b"{oops");
        assert_eq!(
            (dl.partition, dl.offset, dl.payload.as_str()),
            (3, 42, "{oops")
        );
    }
}
