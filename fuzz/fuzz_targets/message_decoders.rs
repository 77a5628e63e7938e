//! Feeds arbitrary bytes to every message decoder of the services: each must return a value or
//! an error, never panic, whatever the input's size or shape; and whatever a decoder accepts
//! must pass the validation rules (ids, times, amounts, scores, features) and survive a round
//! trip through its encoding unchanged.
//!
//! The input is used twice: as a whole message, and as a field value spliced into a valid
//! transaction (first byte: which field; the rest: its JSON text), which reaches the
//! validation of each field instead of stopping at the JSON parser.
#![no_main]

use anomaly_services::messages::{
    EARLIEST_EVENT_MS, FeatureVector, LATEST_EVENT_MS, MAX_AMOUNT,
    MAX_TEXT_BYTES, ModelUpdate, RawTransaction, ScoredEvent, decode, decode_alert, decode_drift, decode_features,
    decode_scored, decode_transaction,
};
use libfuzzer_sys::fuzz_target;

const FIELDS: [&str; 11] = [
    "schema_version",
    "event_id",
    "card_id",
    "timestamp_ms",
    "amount",
    "merchant",
    "category",
    "latitude",
    "longitude",
    "is_fraud",
    "phase",
];

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_TEXT_BYTES && !id.chars().any(char::is_control)
}

fn valid_time(ms: i64) -> bool {
    (EARLIEST_EVENT_MS..=LATEST_EVENT_MS).contains(&ms)
}

fn check_transaction(tx: &RawTransaction) {
    assert!(valid_id(&tx.event_id) && valid_id(&tx.card_id), "{tx:?}");
    assert!(valid_time(tx.timestamp_ms), "{tx:?}");
    assert!(tx.amount.is_finite() && (0.0..=MAX_AMOUNT).contains(&tx.amount), "{tx:?}");
    assert!(tx.latitude.is_finite() && tx.longitude.is_finite(), "{tx:?}");
    let again = serde_json::to_vec(tx).expect("plain data");
    assert_eq!(decode_transaction(&again).as_ref(), Ok(tx));
}

fn check_features(vector: &FeatureVector) {
    assert!(valid_id(&vector.event_id) && valid_id(&vector.card_id), "{vector:?}");
    assert!(valid_time(vector.timestamp_ms), "{vector:?}");
    assert!(vector.features.iter().all(|v| (0.0..=1.0).contains(v)), "{vector:?}");
    let again = serde_json::to_vec(vector).expect("plain data");
    assert_eq!(decode_features(&again).as_ref(), Ok(vector));
}

fn check_scored(event: &ScoredEvent) {
    assert!(valid_id(&event.event_id) && valid_id(&event.card_id), "{event:?}");
    assert!(valid_time(event.timestamp_ms), "{event:?}");
    assert!((0.0..=1.0).contains(&event.score), "{event:?}");
    let again = serde_json::to_vec(event).expect("plain data");
    assert_eq!(decode_scored(&again).as_ref(), Ok(event));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = decode_transaction(data) {
        check_transaction(&tx);
    }
    if let Ok(vector) = decode_features(data) {
        check_features(&vector);
    }
    if let Ok(event) = decode_scored(data) {
        check_scored(&event);
    }
    let _ = decode_alert(data);
    let _ = decode_drift(data);
    let _ = decode::<ModelUpdate>(data);

    // One field of a valid transaction replaced by the input's text.
    if let Some((&selector, value)) = data.split_first() {
        let field = FIELDS[usize::from(selector) % FIELDS.len()];
        let value = String::from_utf8_lossy(value);
        let mut fields: Vec<String> = vec![
            r#""schema_version":1"#.into(),
            r#""event_id":"e-1""#.into(),
            r#""card_id":"c-1""#.into(),
            r#""timestamp_ms":1767225600000"#.into(),
            r#""amount":12.5"#.into(),
            r#""merchant":"m""#.into(),
            r#""category":"grocery""#.into(),
            r#""latitude":48.8"#.into(),
            r#""longitude":2.3"#.into(),
            r#""is_fraud":false"#.into(),
            r#""phase":"normal""#.into(),
        ];
        for f in &mut fields {
            if f.starts_with(&format!("\"{field}\"")) {
                *f = format!("\"{field}\":{value}");
            }
        }
        let message = format!("{{{}}}", fields.join(","));
        if let Ok(tx) = decode_transaction(message.as_bytes()) {
            check_transaction(&tx);
        }
    }
});
