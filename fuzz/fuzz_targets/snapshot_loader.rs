//! Feeds arbitrary bytes to the snapshot loaders: they must return an error or a valid model,
//! never panic, hang or allocate without bound.
#![no_main]

use anomaly_core::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = Snapshot::from_bytes(data) {
        // Whatever loads must survive a round trip unchanged.
        let again = Snapshot::from_bytes(&snapshot.to_bytes()).expect("re-encoded snapshot loads");
        assert_eq!(again, snapshot);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Snapshot::from_json(text);
    }
});
