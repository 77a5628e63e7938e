//! The ensemble with River's other detectors as members, and snapshots written before members
//! existed (format version 1, by the previous release of this crate).

use std::path::Path;

use anomaly_core::anomaly::*;
use anomaly_core::snapshot::{FORMAT_VERSION, Model, Snapshot};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/snapshots")
            .join(name),
    )
    .unwrap()
}

/// The model `ensemble_v1.*` holds, rebuilt by this version from the same events.
fn v1_model_rebuilt() -> Ensemble {
    let params = EnsembleParams {
        hst: HstParams {
            n_trees: 5,
            height: 6,
            window_size: 50,
            seed: Some(7),
            ..HstParams::default()
        },
        sad_feature: "amount".into(),
        ..EnsembleParams::default()
    };
    let mut model = Ensemble::with_features(params, &["amount", "hour"]).unwrap();
    for i in 0..300u32 {
        let row = [
            ((i * 37) % 100) as f64 / 100.0,
            ((i * 11) % 24) as f64 / 24.0,
        ];
        model.score(&row[..]).unwrap().learn();
    }
    model
}

#[test]
fn version_1_snapshots_still_load_and_continue_identically() {
    assert_eq!(FORMAT_VERSION, 2);
    let rebuilt = v1_model_rebuilt();
    let from_bytes = Snapshot::from_bytes(&fixture("ensemble_v1.bin")).unwrap();
    let json = String::from_utf8(fixture("ensemble_v1.json")).unwrap();
    let from_json = Snapshot::from_json(&json).unwrap();
    for snapshot in [from_bytes, from_json] {
        assert_eq!(snapshot.model_version, 41);
        let Model::Ensemble(mut loaded) = snapshot.model else {
            panic!("not an ensemble");
        };
        assert_eq!(loaded, rebuilt);
        let mut ours = rebuilt.clone();
        for i in 0..100u32 {
            let row = [((i * 53) % 100) as f64 / 90.0, ((i * 7) % 24) as f64 / 24.0];
            let a = loaded.score(&row[..]).unwrap();
            let b = ours.score(&row[..]).unwrap();
            assert_eq!(a.score().to_bits(), b.score().to_bits());
            a.learn();
            b.learn();
        }
    }
    let sad = Snapshot::from_bytes(&fixture("sad_v1.bin")).unwrap();
    let Model::Sad(sad) = sad.model else {
        panic!("not SAD");
    };
    assert_eq!(sad.n(), 50);
    // A version-1 JSON snapshot whose model was altered still fails its checksum.
    let altered = json.replacen("\"sad_weight\": 0.3", "\"sad_weight\": 0.4", 1);
    assert_ne!(altered, json);
    assert!(Snapshot::from_json(&altered).is_err());
}

fn every_member() -> Vec<MemberParams> {
    vec![
        MemberParams {
            detector: MemberKind::Gaussian {
                feature: "amount".into(),
                params: GaussianScorerParams {
                    grace_period: 10,
                    ..Default::default()
                },
            },
            weight: 0.2,
        },
        MemberParams {
            detector: MemberKind::Lof(LofParams {
                window_size: 100,
                ..LofParams::default()
            }),
            weight: 0.3,
        },
        MemberParams {
            detector: MemberKind::OneClassSvm(OneClassSvmParams::default()),
            weight: 0.1,
        },
        MemberParams {
            detector: MemberKind::Loda(LodaParams {
                seed: Some(3),
                n_random_cuts: 20,
                ..LodaParams::default()
            }),
            weight: 0.3,
        },
        MemberParams {
            detector: MemberKind::Rcf(RcfParams {
                number_of_trees: 20,
                sample_size: 64,
                seed: Some(9),
                ..RcfParams::default()
            }),
            weight: 0.3,
        },
        MemberParams {
            detector: MemberKind::Pad {
                params: PadParams {
                    target: "amount".into(),
                    warmup_period: 20,
                    ..PadParams::default()
                },
                regression: LinearRegressionParams::default(),
            },
            weight: 0.2,
        },
    ]
}

fn with_members() -> Ensemble {
    let params = EnsembleParams {
        hst: HstParams {
            seed: Some(5),
            window_size: 50,
            ..HstParams::default()
        },
        sad_feature: "amount".into(),
        members: every_member(),
        ..EnsembleParams::default()
    };
    Ensemble::with_features(params, &["amount", "hour", "distance"]).unwrap()
}

fn row(i: u32) -> [f64; 3] {
    let amount = 0.2 + ((i * 37) % 10) as f64 / 100.0;
    [amount, ((i * 11) % 24) as f64 / 24.0, 2.0 * amount]
}

#[test]
fn every_detector_can_join_and_the_score_stays_in_the_unit_interval() {
    let mut model = with_members();
    for i in 0..400 {
        let scored = model.score(&row(i)[..]).unwrap();
        assert!((0.0..=1.0).contains(&scored.score()));
        let shares = scored.member_scores();
        assert_eq!(shares.len(), 6);
        assert!(shares.iter().all(|s| (0.0..=1.0).contains(s)), "{shares:?}");
        scored.learn();
    }
    let usual = model.score(&row(7)[..]).unwrap();
    let (usual_score, usual_shares) = (usual.score(), usual.member_scores());
    drop(usual);
    // Large in every feature: OneClassSVM, a linear detector, flags magnitude along its weights.
    let odd = model.score(&[0.95, 0.99, 3.0][..]).unwrap();
    assert!(
        odd.score() > usual_score + 0.3,
        "{} vs {usual_score}",
        odd.score()
    );
    let odd_shares = odd.member_scores();
    for (i, (u, o)) in usual_shares.iter().zip(&odd_shares).enumerate() {
        assert!(o > u, "member {i}: odd {o} <= usual {u}");
    }
}

#[test]
fn an_ensemble_with_members_snapshots_and_continues_bit_for_bit() {
    let mut model = with_members();
    for i in 0..150 {
        model.score(&row(i)[..]).unwrap().learn();
    }
    let bytes = Snapshot::new(2, Model::Ensemble(model.clone())).to_bytes();
    let json = Snapshot::new(2, Model::Ensemble(model.clone())).to_json(false);
    let mut restored = Vec::new();
    for snapshot in [
        Snapshot::from_bytes(&bytes).unwrap(),
        Snapshot::from_json(&json).unwrap(),
    ] {
        let Model::Ensemble(m) = snapshot.model else {
            panic!("not an ensemble");
        };
        assert_eq!(m, model);
        restored.push(m);
    }
    for i in 150..300 {
        let expected = {
            let s = model.score(&row(i)[..]).unwrap();
            let v = s.score();
            s.learn();
            v
        };
        for m in &mut restored {
            let s = m.score(&row(i)[..]).unwrap();
            assert_eq!(s.score().to_bits(), expected.to_bits());
            s.learn();
        }
    }
}

#[test]
fn a_rejected_row_leaves_every_member_unchanged() {
    let mut model = with_members();
    for i in 0..60 {
        model.score(&row(i)[..]).unwrap().learn();
    }
    let before = model.clone();
    assert!(model.score(&[0.3, f64::NAN, 0.6][..]).is_err());
    drop(model.score(&row(99)[..]).unwrap()); // scored, not learned
    assert_eq!(model, before);
}

#[test]
fn member_parameters_are_checked() {
    let params = EnsembleParams {
        sad_feature: "amount".into(),
        members: vec![MemberParams {
            detector: MemberKind::Gaussian {
                feature: "missing".into(),
                params: GaussianScorerParams::default(),
            },
            weight: 1.0,
        }],
        ..EnsembleParams::default()
    };
    let err = Ensemble::with_features(params, &["amount"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Ensemble: parameter `members.Gaussian.feature` must be one of the features, got missing"
    );

    // Construction and loading share one weight check: each finite and >= 0, the sum finite
    // and above 0.
    let weighted = |hst_weight: f64, member_weight: f64| EnsembleParams {
        sad_feature: "amount".into(),
        hst_weight,
        members: vec![MemberParams {
            detector: MemberKind::Lof(LofParams::default()),
            weight: member_weight,
        }],
        ..EnsembleParams::default()
    };
    let negative = Ensemble::with_features(weighted(0.7, -1.0), &["amount"]).unwrap_err();
    assert!(
        negative.to_string().contains("`members.weight`"),
        "{negative}"
    );
    let overflow = Ensemble::with_features(weighted(1e308, 1e308), &["amount"]).unwrap_err();
    assert!(overflow.to_string().contains("finite sum"), "{overflow}");
    assert!(Ensemble::with_features(weighted(0.7, 0.5), &["amount"]).is_ok());
}
