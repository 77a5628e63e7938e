//! Every message decoder accepts or rejects arbitrary bytes without panicking (a quick version
//! of the `message_decoders` fuzz target), and rejects over-long messages outright.

use anomaly_services::messages::{
    Alert, DriftEvent, EARLIEST_EVENT_MS, LATEST_EVENT_MS, MAX_AMOUNT, MAX_MESSAGE_BYTES,
    MAX_TEXT_BYTES, MessageError, ModelUpdate, decode, decode_alert, decode_drift, decode_features,
    decode_scored, decode_transaction,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_transaction(&bytes);
        let _ = decode_features(&bytes);
        let _ = decode_scored(&bytes);
        let _ = decode::<Alert>(&bytes);
        let _ = decode::<DriftEvent>(&bytes);
        let _ = decode_alert(&bytes);
        let _ = decode_drift(&bytes);
        let _ = decode::<ModelUpdate>(&bytes);
    }

    #[test]
    fn json_shaped_noise_is_rejected_not_fatal(
        amount in any::<f64>(), score in any::<f64>(), n in 0usize..20, v in any::<f64>(),
        ts in prop_oneof![
            any::<i64>(),
            EARLIEST_EVENT_MS - 5..EARLIEST_EVENT_MS + 5,
            LATEST_EVENT_MS - 5..LATEST_EVENT_MS + 5
        ],
        card in "\\PC{0,140}|[\\x00-\\x1f]{1,3}",
    ) {
        let card_json = serde_json::to_string(&card).unwrap();
        let card_ok = !card.is_empty()
            && card.len() <= MAX_TEXT_BYTES
            && !card.chars().any(char::is_control);
        let ts_ok = (EARLIEST_EVENT_MS..=LATEST_EVENT_MS).contains(&ts);
        let tx = format!(r#"{{"event_id":"e","card_id":{card_json},"timestamp_ms":{ts},"amount":{amount:e},"merchant":"m","category":"x","latitude":0,"longitude":0,"is_fraud":false,"phase":"p"}}"#);
        let ok = amount.is_finite() && (0.0..=MAX_AMOUNT).contains(&amount);
        prop_assert_eq!(decode_transaction(tx.as_bytes()).is_ok(), ok && card_ok && ts_ok);
        let scored = format!(r#"{{"event_id":"e","card_id":"c","timestamp_ms":1767225600000,"score":{score:e},"is_anomaly":false,"is_fraud":false,"model_version":1,"amount":1,"phase":"p"}}"#);
        prop_assert_eq!(decode_scored(scored.as_bytes()).is_ok(), (0.0..=1.0).contains(&score));
        let features = format!(r#"{{"event_id":"e","card_id":"c","timestamp_ms":1767225600000,"features":[{}],"amount":1,"is_fraud":false,"phase":"p"}}"#,
            vec![format!("{v:e}"); n].join(","));
        prop_assert_eq!(decode_features(features.as_bytes()).is_ok(), n == 11 && (0.0..=1.0).contains(&v));
    }
}

#[test]
fn oversized_messages_are_rejected_before_parsing() {
    let huge = vec![b'{'; MAX_MESSAGE_BYTES + 1];
    assert!(matches!(
        decode_scored(&huge),
        Err(MessageError::TooLarge { .. })
    ));
    assert!(matches!(
        decode::<Alert>(&huge),
        Err(MessageError::TooLarge { .. })
    ));
}
