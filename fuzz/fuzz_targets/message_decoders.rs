//! Feeds arbitrary bytes to every message decoder of the services: each must return a value or
//! an error, never panic, whatever the input's size or shape.
#![no_main]

use anomaly_services::messages::{
    Alert, DriftEvent, ModelUpdate, decode, decode_features, decode_scored, decode_transaction,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_transaction(data);
    let _ = decode_features(data);
    let _ = decode_scored(data);
    let _ = decode::<Alert>(data);
    let _ = decode::<DriftEvent>(data);
    let _ = decode::<ModelUpdate>(data);
});
