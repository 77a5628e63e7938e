//! Properties of GaussianScorer, LOF, OneClassSVM, LODA and PAD on arbitrary streams: scores
//! are never NaN and stay in their documented range, scoring does not change the model (so a
//! learned event cannot change a score already returned), a rejected event changes nothing, and
//! a snapshot taken mid-stream continues bit for bit.

use anomaly_core::anomaly::*;
use anomaly_core::snapshot::{Model, Snapshot};
use proptest::prelude::*;

const FEATURES: [&str; 3] = ["amount", "distance", "hour"];

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        20 => -2.0..2.0f64,
        2 => Just(0.5), // repeats: ties, zero distances, single-value bins
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(1e300),
    ]
}

fn row() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(value(), 3)
}

/// A score as a number, or `None` when the detector says it is undefined.
trait ScoreValue: Copy {
    fn value(self) -> Option<f64>;
}

impl ScoreValue for f64 {
    fn value(self) -> Option<f64> {
        Some(self)
    }
}

impl ScoreValue for Result<f64, UndefinedScore> {
    fn value(self) -> Option<f64> {
        self.ok()
    }
}

/// Scores and learns every row, checking on the way that scoring is pure and that a rejected
/// row leaves the model as it was; returns the scores' bits (`None` = undefined or rejected).
fn stream<D>(model: &mut D, rows: &[Vec<f64>], range: (f64, f64)) -> Vec<Option<u64>>
where
    D: AnomalyDetector<Input = [f64]> + Clone + PartialEq + std::fmt::Debug,
    D::Score: ScoreValue,
{
    let mut out = Vec::new();
    for row in rows {
        let before = model.clone();
        // Scored and dropped: not learned.
        let outcome = model.score(row).map(|scored| scored.score().value());
        let first = match outcome {
            Ok(first) => first,
            Err(_) => {
                assert_eq!(*model, before, "a rejected row changed the model");
                out.push(None);
                continue;
            }
        };
        assert_eq!(*model, before, "scoring without learning changed the model");
        let scored = model.score(row).expect("accepted once, accepted again");
        let again = scored.score().value();
        scored.learn();
        assert_eq!(
            first.map(f64::to_bits),
            again.map(f64::to_bits),
            "the same event scored twice differs"
        );
        if let Some(s) = again {
            assert!(!s.is_nan(), "NaN score");
            assert!(s >= range.0 && s <= range.1, "score {s} outside {range:?}");
        }
        out.push(again.map(f64::to_bits));
    }
    out
}

/// Streams `rows[..split]`, snapshots (binary and JSON), and checks that the restored models
/// continue exactly as the original.
fn round_trip<D>(
    mut model: D,
    wrap: fn(D) -> Model,
    unwrap: fn(Model) -> Option<D>,
    rows: &[Vec<f64>],
    split: usize,
    range: (f64, f64),
) -> Result<(), TestCaseError>
where
    D: AnomalyDetector<Input = [f64]> + Clone + PartialEq + std::fmt::Debug,
    D::Score: ScoreValue,
{
    let split = split.min(rows.len());
    stream(&mut model, &rows[..split], range);
    let snapshot = Snapshot::new(1, wrap(model.clone()));
    let from_bytes = Snapshot::from_bytes(&snapshot.to_bytes()).expect("binary snapshot loads");
    let from_json = Snapshot::from_json(&snapshot.to_json(false)).expect("JSON snapshot loads");
    let mut restored = unwrap(from_bytes.model).expect("same kind of model");
    let mut restored_json = unwrap(from_json.model).expect("same kind of model");
    prop_assert_eq!(&restored, &model);
    prop_assert_eq!(&restored_json, &model);
    let a = stream(&mut model, &rows[split..], range);
    let b = stream(&mut restored, &rows[split..], range);
    let c = stream(&mut restored_json, &rows[split..], range);
    prop_assert_eq!(&a, &b);
    prop_assert_eq!(&a, &c);
    prop_assert_eq!(restored, model);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn gaussian_scorer(
        values in prop::collection::vec(value(), 0..150),
        split in 0usize..150,
        window in prop::option::of(1usize..40),
        grace in 0u64..20,
    ) {
        let params = GaussianScorerParams { window_size: window, grace_period: grace };
        let mut model = GaussianScorer::new(params).unwrap();
        let split = split.min(values.len());
        let mut scores = Vec::new();
        for y in &values {
            let before = model.clone();
            let outcome = model.score(y).map(|scored| {
                let s = scored.score();
                scored.learn();
                s
            });
            match outcome {
                Ok(s) => {
                    if let Ok(s) = s {
                        prop_assert!((0.0..=1.0).contains(&s), "{}", s);
                    }
                    scores.push(s.ok().map(f64::to_bits));
                }
                Err(_) => prop_assert_eq!(&model, &before),
            }
        }
        // Snapshot round trip from the split point.
        let mut model = GaussianScorer::new(params).unwrap();
        for y in &values[..split] {
            if let Ok(scored) = model.score(y) {
                scored.learn();
            }
        }
        let bytes = Snapshot::new(1, Model::Gaussian(model.clone())).to_bytes();
        let Model::Gaussian(mut restored) = Snapshot::from_bytes(&bytes).unwrap().model else {
            panic!("wrong model kind");
        };
        prop_assert_eq!(&restored, &model);
        for y in &values[split..] {
            let a = model.score(y).map(|s| { let v = s.score(); s.learn(); v });
            let b = restored.score(y).map(|s| { let v = s.score(); s.learn(); v });
            // (Errors are compared as text: a NaN input is not equal to itself.)
            let a = a.map(|v| v.map(f64::to_bits)).map_err(|e| e.to_string());
            let b = b.map(|v| v.map(f64::to_bits)).map_err(|e| e.to_string());
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn local_outlier_factor(
        rows in prop::collection::vec(row(), 0..80),
        split in 0usize..80,
        k in 1usize..6,
        window in 1usize..30,
    ) {
        let params = LofParams { n_neighbors: k, window_size: window };
        let model = LocalOutlierFactor::with_features(params, &FEATURES).unwrap();
        round_trip(model, Model::Lof, |m| match m { Model::Lof(x) => Some(x), _ => None },
            &rows, split, (0.0, f64::MAX))?;
    }

    #[test]
    fn one_class_svm(
        rows in prop::collection::vec(row(), 0..120),
        split in 0usize..120,
        nu in 0.01f64..1.0,
    ) {
        let params = OneClassSvmParams { nu, ..OneClassSvmParams::default() };
        let model = OneClassSvm::with_features(params, &FEATURES).unwrap();
        round_trip(model, Model::OneClassSvm, |m| match m { Model::OneClassSvm(x) => Some(x), _ => None },
            &rows, split, (f64::MIN, f64::MAX))?;
    }

    #[test]
    fn loda(
        rows in prop::collection::vec(row(), 0..120),
        split in 0usize..120,
        bins in 1usize..12,
        seed in 0u64..1000,
    ) {
        let params = LodaParams { n_bins: bins, n_random_cuts: 16, seed: Some(seed) };
        let model = Loda::with_features(params, &FEATURES).unwrap();
        // -ln(1e-12) is the most one projection adds.
        round_trip(model, Model::Loda, |m| match m { Model::Loda(x) => Some(x), _ => None },
            &rows, split, (f64::MIN, 27.7))?;
    }

    #[test]
    fn predictive_anomaly_detection(
        rows in prop::collection::vec(row(), 0..120),
        split in 0usize..120,
        warmup in 0u64..10,
    ) {
        let params = PadParams { target: "amount".into(), warmup_period: warmup, ..PadParams::default() };
        let scaled = MinMaxScaled::new(LinearRegression::new(Default::default()).unwrap());
        let model = PredictiveAnomalyDetection::with_features(params.clone(), scaled, &FEATURES).unwrap();
        round_trip(model, Model::Pad, |m| match m { Model::Pad(x) => Some(x), _ => None },
            &rows, split, (0.0, 1.0))?;
        let plain = LinearRegression::new(Default::default()).unwrap();
        let model = PredictiveAnomalyDetection::with_features(params, plain, &FEATURES).unwrap();
        round_trip(model, Model::PadLinear, |m| match m { Model::PadLinear(x) => Some(x), _ => None },
            &rows, split, (0.0, 1.0))?;
    }
}

/// The incremental neighbour lists give the scores of a search from scratch at every step.
#[test]
fn lof_matches_a_from_scratch_search_while_the_window_slides() {
    let mut rng = 7u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((rng >> 33) % 7) as f64 / 2.0 // few distinct values: many ties
    };
    let params = LofParams {
        n_neighbors: 3,
        window_size: 12,
    };
    let mut lof = LocalOutlierFactor::with_features(params, &["a", "b"]).unwrap();
    for _ in 0..300 {
        let row = [next(), next()];
        // A model rebuilt from a snapshot recomputes every neighbour list from scratch.
        let bytes = Snapshot::new(1, Model::Lof(lof.clone())).to_bytes();
        let Model::Lof(mut fresh) = Snapshot::from_bytes(&bytes).unwrap().model else {
            panic!("wrong model kind");
        };
        let incremental = lof.score(&row[..]).unwrap();
        let from_scratch = fresh.score(&row[..]).unwrap();
        assert_eq!(
            incremental.score().to_bits(),
            from_scratch.score().to_bits()
        );
        drop(from_scratch);
        incremental.learn();
    }
}

#[test]
fn named_events_may_lack_features_and_add_new_ones() {
    let mut lof = LocalOutlierFactor::new(LofParams::default()).unwrap();
    lof.score_named([("a", 1.0)]).unwrap().learn();
    let scored = lof.score_named([("a", 1.0), ("b", 2.0)]).unwrap();
    scored.learn();
    assert_eq!(lof.features(), ["a", "b"]);
    // A name seen only in a dropped score is not learned.
    drop(lof.score_named([("c", 3.0)]).unwrap());
    assert_eq!(lof.features(), ["a", "b"]);
}

#[test]
fn bad_values_name_the_feature_and_model() {
    let mut svm = OneClassSvm::with_features(OneClassSvmParams::default(), &FEATURES).unwrap();
    let err = svm.score(&[0.1, f64::NAN, 0.2][..]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("feature `distance`: OneClassSVM:"),
        "{err}"
    );
    let err = svm.score(&[0.1][..]).unwrap_err();
    assert!(matches!(
        err,
        AnomalyError::RowLength {
            expected: 3,
            got: 1
        }
    ));
    let mut pad = PredictiveAnomalyDetection::new(
        PadParams::default(),
        LinearRegression::new(Default::default()).unwrap(),
    )
    .unwrap();
    let err = pad.score_named([("x", 1.0)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "PAD: the event has no value for the target feature `y`"
    );
}

#[test]
fn river_default_pad_is_undefined_from_the_first_event_on() {
    let scaled = MinMaxScaled::new(LinearRegression::new(Default::default()).unwrap());
    let mut pad = PredictiveAnomalyDetection::new(PadParams::default(), scaled).unwrap();
    for i in 0..20 {
        let scored = pad
            .score_named([("x", i as f64), ("y", 2.0 * i as f64)])
            .unwrap();
        let err = scored.score().unwrap_err();
        assert_eq!(err.model, "PAD");
        scored.learn();
    }
}

#[test]
fn a_constant_window_makes_the_gaussian_score_undefined_until_it_moves() {
    let params = GaussianScorerParams {
        window_size: Some(50),
        grace_period: 10,
    };
    let mut scorer = GaussianScorer::new(params).unwrap();
    let mut undefined = 0;
    for i in 0..300 {
        let y = if i < 200 {
            1.0 + (i % 3) as f64 * 0.1
        } else {
            1.8
        };
        let scored = scorer.score(&y).unwrap();
        undefined += usize::from(scored.score().is_err());
        scored.learn();
    }
    assert!(undefined > 0, "River raises here; so must the port");
    let scored = scorer.score(&5.0).unwrap();
    scored.learn();
    // Learning gets the scorer out: the window is no longer constant.
    assert!(scorer.score(&1.8).unwrap().score().is_ok());
}

/// Weights and values whose products overflow with opposite signs would make River's score
/// NaN; here the event is refused with a typed error and the model is untouched.
#[test]
fn an_overflowing_one_class_svm_score_is_an_error_not_nan() {
    let params = OneClassSvmParams {
        learning_rate: 1e150,
        ..OneClassSvmParams::default()
    };
    let mut svm = OneClassSvm::with_features(params, &["a", "b"]).unwrap();
    svm.score(&[1e100, -1e100][..]).unwrap().learn();
    let before = svm.clone();
    let err = svm.score(&[1e100, 1e100][..]).unwrap_err();
    assert!(
        matches!(
            err,
            AnomalyError::Overflow {
                model: "OneClassSVM"
            }
        ),
        "{err}"
    );
    assert_eq!(svm, before);
}
