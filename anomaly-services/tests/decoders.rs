//! Every message decoder accepts or rejects arbitrary bytes without panicking (a quick version
//! of the `message_decoders` fuzz target), and rejects over-long messages outright.

use anomaly_services::messages::{
    Alert, DriftEvent, MAX_MESSAGE_BYTES, MessageError, ModelUpdate, decode, decode_features,
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
        let _ = decode::<ModelUpdate>(&bytes);
    }

    #[test]
    fn json_shaped_noise_is_rejected_not_fatal(
        amount in any::<f64>(), score in any::<f64>(), n in 0usize..20, v in any::<f64>(),
    ) {
        let tx = format!(r#"{{"event_id":"e","card_id":"c","timestamp_ms":1,"amount":{amount:e},"merchant":"m","category":"x","latitude":0,"longitude":0,"is_fraud":false,"phase":"p"}}"#);
        let ok = amount.is_finite() && amount >= 0.0;
        prop_assert_eq!(decode_transaction(tx.as_bytes()).is_ok(), ok);
        let scored = format!(r#"{{"event_id":"e","card_id":"c","timestamp_ms":1,"score":{score:e},"is_anomaly":false,"is_fraud":false,"model_version":1,"amount":1,"phase":"p"}}"#);
        prop_assert_eq!(decode_scored(scored.as_bytes()).is_ok(), (0.0..=1.0).contains(&score));
        let features = format!(r#"{{"event_id":"e","card_id":"c","timestamp_ms":1,"features":[{}],"amount":1,"is_fraud":false,"phase":"p"}}"#,
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
