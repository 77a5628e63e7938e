//! Inputs and snapshots a reviewer built to break the new detectors: each must give a finite
//! score or a clear error, never NaN, a panic or an unbounded allocation.

use anomaly_core::anomaly::*;
use anomaly_core::snapshot::Model;
use serde_json::Value;

fn json_of(model: &Model) -> Value {
    serde_json::to_value(model).unwrap()
}

fn load(value: Value) -> Result<Model, serde_json::Error> {
    serde_json::from_value(value)
}

#[test]
fn rcf_scores_values_near_the_f32_limit_without_nan() {
    let params = RcfParams {
        seed: Some(1),
        output_after: Some(1),
        ..RcfParams::default()
    };
    let mut forest = RandomCutForest::with_features(params, &["x"]).unwrap();
    for i in 0..100 {
        let x = if i % 2 == 0 { -3e38 } else { -2.9e38 };
        forest.score(&[x][..]).unwrap().learn();
    }
    let scored = forest.score(&[3e38][..]).unwrap();
    assert!(scored.score().is_finite(), "{}", scored.score());
    assert!(scored.attribution().total().is_finite());
}

#[test]
fn lof_bounds_its_neighbour_count_and_memory() {
    let huge = LofParams {
        n_neighbors: 1 << 60,
        window_size: 10,
    };
    assert!(LocalOutlierFactor::with_features(huge, &["x"]).is_err());
    // More neighbours than the window holds: lists stay the window's size.
    let wide = LofParams {
        n_neighbors: 5_000,
        window_size: 10,
    };
    let mut lof = LocalOutlierFactor::with_features(wide, &["x"]).unwrap();
    for i in 0..50 {
        let s = lof.score(&[f64::from(i % 7)][..]).unwrap();
        assert!(s.score().is_finite());
        s.learn();
    }
}

#[test]
fn rcf_snapshots_with_points_on_the_wrong_side_of_a_cut_are_refused() {
    let params = RcfParams {
        number_of_trees: 1,
        sample_size: 8,
        seed: Some(3),
        ..RcfParams::default()
    };
    let mut forest = RandomCutForest::with_features(params, &["x"]).unwrap();
    for i in 0..8 {
        forest.score(&[f64::from(i)][..]).unwrap().learn();
    }
    let mut value = json_of(&Model::Rcf(forest));
    assert!(load(value.clone()).is_ok());
    let tree = &mut value["Rcf"]["trees"][0]["tree"];
    let root = tree["root"].as_u64().unwrap() as usize;
    assert!(root < 1 << 31, "the root is an internal node");
    tree["nodes"][root]["cut_value"] = Value::from(1e30);
    let err = load(value).unwrap_err().to_string();
    assert!(err.contains("wrong side of a cut"), "{err}");
}

#[test]
fn rcf_snapshots_with_absurd_shapes_are_refused_before_anything_is_built() {
    let params = RcfParams {
        number_of_trees: 2,
        sample_size: 8,
        seed: Some(3),
        ..RcfParams::default()
    };
    let forest = RandomCutForest::with_features(params, &["x"]).unwrap();
    let mut value = json_of(&Model::Rcf(forest));
    value["Rcf"]["params"]["number_of_trees"] = Value::from(10_000);
    value["Rcf"]["params"]["sample_size"] = Value::from(65_536);
    value["Rcf"]["params"]["shingle_size"] = Value::from(1_000);
    value["Rcf"]["trees"] = Value::Array(Vec::new());
    assert!(load(value).is_err());
}

/// An HST + SAD ensemble over features `a` and `b` with `member` at half weight, after
/// `events` ordinary events.
fn ensemble_after(member: MemberKind, sad_grace_period: u32, events: u32) -> Ensemble {
    let params = EnsembleParams {
        hst: HstParams {
            seed: Some(1),
            window_size: 20,
            ..HstParams::default()
        },
        sad_feature: "a".into(),
        sad_grace_period,
        members: vec![MemberParams {
            detector: member,
            weight: 0.5,
        }],
        ..EnsembleParams::default()
    };
    let mut model = Ensemble::with_features(params, &["a", "b"]).unwrap();
    for i in 0..events {
        model
            .score(&[f64::from(i % 10) / 10.0, 0.5][..])
            .unwrap()
            .learn();
    }
    model
}

fn ensemble_with(member: MemberKind) -> Ensemble {
    ensemble_after(member, EnsembleParams::default().sad_grace_period, 100)
}

#[test]
fn ensemble_snapshots_with_bad_member_statistics_or_weights_are_refused() {
    let model = ensemble_with(MemberKind::Lof(LofParams::default()));
    let value = json_of(&Model::Ensemble(model));
    assert!(load(value.clone()).is_ok());
    let mut negative = value.clone();
    negative["Ensemble"]["members"][0]["scores"]["sum_sq"] = Value::from(-1.0);
    assert!(load(negative).is_err());
    let mut huge = value.clone();
    huge["Ensemble"]["params"]["hst_weight"] = Value::from(1e308);
    huge["Ensemble"]["params"]["members"][0]["weight"] = Value::from(1e308);
    assert!(load(huge).is_err());
}

#[test]
fn a_gaussian_snapshot_with_an_extreme_mean_is_refused() {
    let mut scorer = GaussianScorer::new(GaussianScorerParams {
        window_size: Some(2),
        grace_period: 0,
    })
    .unwrap();
    scorer.score(&0.0).unwrap().learn();
    scorer.score(&0.0).unwrap().learn();
    let mut value = json_of(&Model::Gaussian(scorer));
    value["Gaussian"]["gaussian"]["mean"]["mean"] = Value::from(1e308);
    assert!(load(value).is_err());
}

#[test]
fn a_pad_snapshot_with_a_bad_learning_rate_is_refused() {
    let regression = LinearRegression::new(LinearRegressionParams::default()).unwrap();
    let pad = PredictiveAnomalyDetection::with_features(
        PadParams {
            target: "y".into(),
            ..PadParams::default()
        },
        regression,
        &["x", "y"],
    )
    .unwrap();
    let mut value = json_of(&Model::PadLinear(pad));
    value["PadLinear"]["model"]["params"]["learning_rate"] = Value::from(-1.0);
    let bytes = serde_json::to_vec(&value).unwrap();
    let model: Model = serde_json::from_slice(&bytes).unwrap();
    // serde accepts the shape; the snapshot loader's validation refuses it.
    let snapshot = anomaly_core::snapshot::Snapshot::new(1, model).to_bytes();
    assert!(anomaly_core::snapshot::Snapshot::from_bytes(&snapshot).is_err());
}

#[test]
fn an_rcf_member_does_not_learn_the_zeros_of_its_warm_up() {
    let rcf = MemberKind::Rcf(RcfParams {
        seed: Some(2),
        ..RcfParams::default()
    });
    // The forest scores 0 until 65 points are learned (output_after = 1 + 256 / 4); ten events
    // after that, an ordinary event must not stand out against those zeros.
    let mut model = ensemble_after(rcf, 5, 75);
    let scored = model.score(&[0.3, 0.5][..]).unwrap();
    assert!(
        scored.member_scores()[0] < 0.5,
        "{:?}",
        scored.member_scores()
    );
}

#[test]
#[should_panic(expected = "feature ids must be below MAX_FEATURES")]
fn rows_with_absurd_feature_ids_are_refused() {
    let _ = Row::new(&[u32::MAX], &[1.0]);
}
