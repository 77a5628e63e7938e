//! Properties of the anomaly detectors for arbitrary event streams.

use std::collections::HashMap;

use anomaly_core::anomaly::*;
use proptest::prelude::*;

const FEATURES: [&str; 3] = ["amount", "distance", "hour"];

fn params(seed: u64) -> HstParams {
    HstParams {
        n_trees: 4,
        height: 5,
        window_size: 20,
        seed: Some(seed),
        ..HstParams::default()
    }
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        10 => -0.5..1.5f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(1e300),
    ]
}

fn row() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(value(), 3)
}

/// Scores and learns `rows`, returning the scores of accepted rows; a rejected row must leave
/// the model unchanged.
fn stream<D: AnomalyDetector<Input = [f64], Score = f64> + Clone + PartialEq + std::fmt::Debug>(
    model: &mut D,
    rows: &[Vec<f64>],
) -> Vec<f64> {
    let mut scores = Vec::new();
    for row in rows {
        let before = model.clone();
        let outcome = model.score(row).map(|scored| {
            let s = scored.score();
            scored.learn();
            s
        });
        match outcome {
            Ok(s) => {
                assert!((0.0..=1.0).contains(&s), "score {s} out of [0, 1]");
                scores.push(s);
            }
            Err(_) => assert_eq!(*model, before, "a rejected row changed the model"),
        }
    }
    scores
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hst_accepts_any_stream_and_round_trips(
        rows in prop::collection::vec(row(), 0..120),
        split in 0usize..120,
        seed in 0u64..1000,
    ) {
        let mut model = HalfSpaceTrees::with_features(params(seed), &FEATURES).unwrap();
        let split = split.min(rows.len());
        stream(&mut model, &rows[..split]);
        let json = serde_json::to_string(&model).unwrap();
        let mut restored: HalfSpaceTrees = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&restored, &model);
        let a = stream(&mut model, &rows[split..]);
        let b = stream(&mut restored, &rows[split..]);
        prop_assert_eq!(a, b);
        prop_assert_eq!(restored, model);
    }

    #[test]
    fn dropping_or_leaking_a_score_leaves_the_model_unchanged(
        rows in prop::collection::vec(prop::collection::vec(0.0..1.0f64, 3), 1..80),
        probe in prop::collection::vec(0.0..1.0f64, 3),
    ) {
        let mut model = HalfSpaceTrees::with_features(params(3), &FEATURES).unwrap();
        stream(&mut model, &rows);
        let before = model.clone();
        drop(model.score(&probe).unwrap());
        prop_assert_eq!(&model, &before);
        // A leaked score is taken back by the next call.
        std::mem::forget(model.score(&probe).unwrap());
        let mut twin = before.clone();
        let a = model.score(&probe).unwrap().score();
        let b = twin.score(&probe).unwrap().score();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn named_and_dense_events_score_alike(
        rows in prop::collection::vec(prop::collection::vec(0.0..1.0f64, 3), 1..80),
    ) {
        let mut dense = HalfSpaceTrees::with_features(params(5), &FEATURES).unwrap();
        let mut named = dense.clone();
        for row in &rows {
            let event: HashMap<&str, f64> = FEATURES.iter().copied().zip(row.iter().copied()).collect();
            let a = dense.score(row).unwrap();
            let b = named.score_named(&event).unwrap();
            prop_assert_eq!(a.score(), b.score());
            prop_assert_eq!(a.explain(), b.explain());
            a.learn();
            b.learn();
        }
    }

    #[test]
    fn explanations_are_shares_of_trees(
        rows in prop::collection::vec(prop::collection::vec(0.0..1.0f64, 3), 21..120),
        probe in prop::collection::vec(-0.5..1.5f64, 3),
    ) {
        let mut model = HalfSpaceTrees::with_features(params(8), &FEATURES).unwrap();
        stream(&mut model, &rows);
        let scored = model.score(&probe).unwrap();
        let explanation = scored.explain();
        let total: f64 = explanation.iter().map(|c| c.share).sum();
        prop_assert!(total <= 1.0 + 1e-12);
        prop_assert!(explanation.iter().all(|c| c.share > 0.0 && FEATURES.contains(&c.feature.as_str())));
        prop_assert!(explanation.windows(2).all(|w| w[0].share >= w[1].share));
    }

    #[test]
    fn ensemble_scores_are_rounded_probabilities(
        rows in prop::collection::vec(row(), 0..150),
    ) {
        let params = EnsembleParams {
            hst: params(2),
            sad_feature: "amount".into(),
            sad_grace_period: 5,
            ..EnsembleParams::default()
        };
        let mut model = Ensemble::with_features(params, &FEATURES).unwrap();
        for s in stream(&mut model, &rows) {
            prop_assert_eq!((s * 1e6).round() / 1e6, s);
        }
    }

    #[test]
    fn sad_round_trips_and_rejects_bad_values(
        values in prop::collection::vec(value(), 0..200),
        split in 0usize..200,
    ) {
        for centre in [SadCentre::Mean, SadCentre::EwMean(0.2), SadCentre::Quantile(0.5)] {
            let mut sad = Sad::new(SadParams { sub_stat: centre }).unwrap();
            let split = split.min(values.len());
            let feed = |sad: &mut Sad, values: &[f64]| -> Vec<Option<f64>> {
                values.iter().map(|y| {
                    let before = sad.clone();
                    let outcome = sad.score(y).map(|s| { let v = s.score(); s.learn(); v });
                    if outcome.is_err() {
                        assert_eq!(*sad, before);
                    }
                    outcome.ok()
                }).collect()
            };
            feed(&mut sad, &values[..split]);
            let mut restored: Sad = serde_json::from_str(&serde_json::to_string(&sad).unwrap()).unwrap();
            prop_assert_eq!(feed(&mut sad, &values[split..]), feed(&mut restored, &values[split..]));
        }
    }
}

#[test]
fn corrupted_masses_are_rejected_on_load() {
    let mut model = HalfSpaceTrees::with_features(params(1), &FEATURES).unwrap();
    for i in 0..50 {
        let x = (i % 10) as f64 / 10.0;
        model.score(&[x, 0.5, 0.5][..]).unwrap().learn();
    }
    let good: serde_json::Value = serde_json::to_value(&model).unwrap();
    assert!(serde_json::from_value::<HalfSpaceTrees>(good.clone()).is_ok());
    let load_error = |corrupt: &dyn Fn(&mut serde_json::Value)| {
        let mut json = good.clone();
        corrupt(&mut json);
        serde_json::from_value::<HalfSpaceTrees>(json)
            .unwrap_err()
            .to_string()
    };
    // The root has seen 10 events of the current window, not 7.
    let err = load_error(&|j| j["forest"]["branches"][0]["mass"]["latest"] = 7.into());
    assert!(err.contains("root masses"), "{err}");
    // A leaf count that does not add up to its parent's.
    let err = load_error(&|j| {
        let window = j["forest"]["window"].clone();
        j["forest"]["leaves"][0] =
            serde_json::json!({"latest": 7, "reference": 0, "window": window});
    });
    assert!(err.contains("not the sum"), "{err}");
    // A split on a feature that does not exist.
    let err = load_error(&|j| j["forest"]["branches"][0]["feature"] = 9.into());
    assert!(err.contains("split uses feature 9"), "{err}");
    // A window counter past the window.
    let err = load_error(&|j| j["counter"] = 20.into());
    assert!(err.contains("window counter"), "{err}");
    // Trees of the wrong size.
    let err = load_error(&|j| j["params"]["height"] = 6.into());
    assert!(err.contains("shape"), "{err}");
}

#[test]
fn non_finite_features_name_the_feature() {
    let mut model = HalfSpaceTrees::with_features(params(1), &FEATURES).unwrap();
    let err = model.score(&[0.1, f64::NAN, 0.3][..]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "feature `distance`: HST: input must be a finite number, got NaN; drop or impute it before updating"
    );
    let err = model.score(&[0.1, 0.2][..]).unwrap_err();
    assert!(matches!(
        err,
        AnomalyError::RowLength {
            expected: 3,
            got: 2
        }
    ));
}

#[test]
fn isolating_feature_is_named_first() {
    let mut model = HalfSpaceTrees::with_features(
        HstParams {
            seed: Some(11),
            ..HstParams::default()
        },
        &FEATURES,
    )
    .unwrap();
    for i in 0..1000 {
        let jitter = (i % 17) as f64 / 170.0;
        model
            .score(&[0.3 + jitter, 0.4 + jitter, 0.5][..])
            .unwrap()
            .learn();
    }
    let scored = model.score(&[0.3, 0.99, 0.5][..]).unwrap();
    let explanation = scored.explain();
    assert_eq!(explanation[0].feature, "distance", "{explanation:?}");
}

#[test]
fn train_fresh_equals_streaming_the_same_history() {
    let history: Vec<Vec<f64>> = (0..300)
        .map(|i| vec![(i % 13) as f64 / 13.0, (i % 7) as f64 / 7.0, 0.5])
        .collect();
    let trained = HalfSpaceTrees::train_fresh(params(4), &FEATURES, &history).unwrap();
    let mut streamed = HalfSpaceTrees::with_features(params(4), &FEATURES).unwrap();
    stream(&mut streamed, &history);
    assert_eq!(trained, streamed);
}
