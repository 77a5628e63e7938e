//! Snapshots: round trips continue identically; altered or hostile bytes are rejected
//! without panicking (the fuzz target in `fuzz/` explores the same loader much further).

use anomaly_core::anomaly::{AnomalyDetector, Ensemble, EnsembleParams, HalfSpaceTrees, HstParams};
use anomaly_core::snapshot::{Model, Snapshot, SnapshotError};
use proptest::prelude::*;

fn trained_ensemble(events: usize) -> Ensemble {
    let params = EnsembleParams {
        hst: HstParams {
            n_trees: 3,
            height: 4,
            window_size: 16,
            seed: Some(5),
            ..HstParams::default()
        },
        sad_feature: "amount".into(),
        ..EnsembleParams::default()
    };
    let mut model = Ensemble::with_features(params, &["amount", "hour"]).unwrap();
    for i in 0..events {
        let row = [(i % 11) as f64 / 11.0, (i % 5) as f64 / 5.0];
        model.score(&row[..]).unwrap().learn();
    }
    model
}

fn scores(model: &mut Ensemble, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let row = [(i % 7) as f64 / 7.0, (i % 3) as f64 / 3.0];
            let scored = model.score(&row[..]).unwrap();
            let s = scored.score();
            scored.learn();
            s
        })
        .collect()
}

#[test]
fn restored_models_continue_identically_from_both_forms() {
    let mut original = trained_ensemble(100);
    let snapshot = Snapshot::new(42, Model::Ensemble(original.clone()));
    for restored in [
        Snapshot::from_bytes(&snapshot.to_bytes()).unwrap(),
        Snapshot::from_json(&snapshot.to_json(false)).unwrap(),
        Snapshot::from_json(&snapshot.to_json(true)).unwrap(),
    ] {
        assert_eq!(restored.model_version, 42);
        let Model::Ensemble(mut copy) = restored.model else {
            panic!("wrong model kind");
        };
        let mut reference = original.clone();
        assert_eq!(scores(&mut copy, 300), scores(&mut reference, 300));
    }
    scores(&mut original, 1);
}

#[test]
fn header_problems_have_their_own_errors() {
    let bytes = Snapshot::new(1, Model::Ensemble(trained_ensemble(10))).to_bytes();
    assert!(matches!(
        Snapshot::from_bytes(b"not a snapshot"),
        Err(SnapshotError::BadMagic)
    ));
    assert!(matches!(
        Snapshot::from_bytes(&bytes[..bytes.len() - 1]),
        Err(SnapshotError::Truncated { .. })
    ));
    let mut newer = bytes.clone();
    newer[8] = 9;
    assert!(matches!(
        Snapshot::from_bytes(&newer),
        Err(SnapshotError::UnsupportedVersion { found: 9 })
    ));
    let mut flipped = bytes.clone();
    let middle = bytes.len() / 2;
    flipped[middle] ^= 1;
    assert!(matches!(
        Snapshot::from_bytes(&flipped),
        Err(SnapshotError::Checksum { .. })
    ));
    let mut huge = bytes.clone();
    huge[18..26].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        Snapshot::from_bytes(&huge),
        Err(SnapshotError::Truncated { .. })
    ));
}

#[test]
fn a_consistent_checksum_does_not_let_an_invalid_model_in() {
    // Re-checksummed after corrupting the trees: only model validation can catch it.
    let model = HalfSpaceTrees::train_fresh(
        HstParams {
            n_trees: 2,
            height: 3,
            window_size: 8,
            seed: Some(1),
            ..HstParams::default()
        },
        &["x"],
        &vec![vec![0.5]; 20],
    )
    .unwrap();
    let json = Snapshot::new(1, Model::Hst(model)).to_json(false);
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["model"]["Hst"]["counter"] = 99.into();
    let model_text = serde_json::to_string(&value["model"]).unwrap();
    value["checksum"] = format!(
        "crc32:{:08x}",
        anomaly_core::snapshot::crc32(model_text.as_bytes())
    )
    .into();
    let err = Snapshot::from_json(&value.to_string()).unwrap_err();
    assert!(err.to_string().contains("window counter"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Snapshot::from_bytes(&bytes);
        let mut with_magic = b"ANOMSNAP\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = Snapshot::from_bytes(&with_magic);
    }

    #[test]
    fn single_byte_changes_are_always_detected(position in 0usize..10_000, delta in 1u8..=255) {
        let bytes = Snapshot::new(3, Model::Ensemble(trained_ensemble(40))).to_bytes();
        let mut altered = bytes.clone();
        let i = position % bytes.len();
        altered[i] = altered[i].wrapping_add(delta);
        prop_assert!(Snapshot::from_bytes(&altered).is_err());
    }
}
