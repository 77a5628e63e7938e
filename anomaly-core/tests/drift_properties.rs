//! Properties every drift detector must keep, for arbitrary input sequences.

use anomaly_core::InputError;
use anomaly_core::drift::*;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Real inputs including the awkward ones: NaN, infinities, huge and tiny magnitudes.
fn real_input() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -10.0..10.0f64,
        2 => (0u8..2).prop_map(f64::from),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => prop_oneof![Just(1e100), Just(-1e100), Just(1.5e100), Just(f64::MAX), Just(5e-324)],
    ]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![Just(Outcome::Correct), Just(Outcome::Error)]
}

fn real_detectors() -> Vec<RealDetector> {
    vec![
        RealDetector::Adwin(Adwin::default()),
        RealDetector::Adwin(
            Adwin::new(AdwinParams {
                delta: 0.05,
                clock: 1,
                max_buckets: 2,
                min_window_length: 2,
                grace_period: 4,
            })
            .unwrap(),
        ),
        RealDetector::PageHinkley(PageHinkley::default()),
        RealDetector::PageHinkley(
            PageHinkley::new(PageHinkleyParams {
                min_instances: 5,
                threshold: 3.0,
                mode: PageHinkleyMode::Down,
                ..Default::default()
            })
            .unwrap(),
        ),
        RealDetector::Kswin(
            Kswin::new(KswinParams {
                window_size: 20,
                stat_size: 6,
                alpha: 0.05,
                seed: Some(3),
                ..Default::default()
            })
            .unwrap(),
        ),
    ]
}

#[derive(Clone, Debug, PartialEq)]
enum RealDetector {
    Adwin(Adwin),
    PageHinkley(PageHinkley),
    Kswin(Kswin),
}

fn outcome_detectors() -> Vec<OutcomeDetector> {
    vec![
        OutcomeDetector::Ddm(Ddm::default()),
        OutcomeDetector::Ddm(
            Ddm::new(DdmParams {
                warm_start: 3,
                ..Default::default()
            })
            .unwrap(),
        ),
        OutcomeDetector::Eddm(
            Eddm::new(EddmParams {
                warm_start: 3,
                ..Default::default()
            })
            .unwrap(),
        ),
        OutcomeDetector::HddmA(HddmA::default()),
        OutcomeDetector::HddmA(
            HddmA::new(HddmAParams {
                two_sided_test: true,
                ..Default::default()
            })
            .unwrap(),
        ),
        OutcomeDetector::HddmW(
            HddmW::new(HddmWParams {
                two_sided_test: true,
                lambda_val: 0.2,
                ..Default::default()
            })
            .unwrap(),
        ),
        OutcomeDetector::Fhddm(
            Fhddm::new(FhddmParams {
                sliding_window_size: 10,
                short_window_size: Some(4),
                confidence_level: 0.1,
            })
            .unwrap(),
        ),
        OutcomeDetector::Fhddm(
            Fhddm::new(FhddmParams {
                sliding_window_size: 6,
                short_window_size: Some(6),
                confidence_level: 0.2,
            })
            .unwrap(),
        ),
    ]
}

#[derive(Clone, Debug, PartialEq)]
enum OutcomeDetector {
    Ddm(Ddm),
    Eddm(Eddm),
    HddmA(HddmA),
    HddmW(HddmW),
    Fhddm(Fhddm),
}

/// Dispatches a generic check over the enum's variants.
macro_rules! each {
    ($value:expr, $d:ident => $body:expr) => {
        match $value {
            RealDetector::Adwin($d) => $body,
            RealDetector::PageHinkley($d) => $body,
            RealDetector::Kswin($d) => $body,
        }
    };
    (outcome $value:expr, $d:ident => $body:expr) => {
        match $value {
            OutcomeDetector::Ddm($d) => $body,
            OutcomeDetector::Eddm($d) => $body,
            OutcomeDetector::HddmA($d) => $body,
            OutcomeDetector::HddmW($d) => $body,
            OutcomeDetector::Fhddm($d) => $body,
        }
    };
}

/// Feeds `inputs`; a rejected input must leave the detector untouched.
fn feed<D>(detector: &mut D, inputs: &[D::Input]) -> Vec<DriftStatus>
where
    D: DriftDetector + Clone + PartialEq + std::fmt::Debug,
{
    let mut statuses = Vec::new();
    for &x in inputs {
        let before = detector.clone();
        match detector.update(x) {
            Ok(status) => {
                assert_eq!(status, detector.status());
                assert_eq!(status == DriftStatus::Drift, detector.drift_detected());
                statuses.push(status);
            }
            Err(InputError::NotFinite { .. } | InputError::TooLarge { .. }) => {
                assert_eq!(*detector, before, "a rejected input changed the state");
            }
        }
    }
    statuses
}

fn reset_equals_fresh<D>(mut detector: D, fresh: &D, inputs: &[D::Input])
where
    D: DriftDetector + Clone + PartialEq + std::fmt::Debug,
{
    feed(&mut detector, inputs);
    detector.reset();
    assert_eq!(&detector, fresh);
}

fn snapshot_continues_identically<D>(mut detector: D, inputs: &[D::Input], split: usize)
where
    D: DriftDetector + Clone + PartialEq + std::fmt::Debug + Serialize + DeserializeOwned,
{
    let split = split.min(inputs.len());
    feed(&mut detector, &inputs[..split]);
    let json = serde_json::to_string(&detector).unwrap();
    let mut restored: D = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, detector);
    let a = feed(&mut detector, &inputs[split..]);
    let b = feed(&mut restored, &inputs[split..]);
    assert_eq!(a, b);
    assert_eq!(restored, detector);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn real_detectors_never_panic_and_reset_cleanly(
        inputs in prop::collection::vec(real_input(), 0..400),
        split in 0usize..400,
    ) {
        for detector in real_detectors() {
            each!(detector, d => {
                let fresh = d.clone();
                reset_equals_fresh(d.clone(), &fresh, &inputs);
                snapshot_continues_identically(d, &inputs, split);
            });
        }
    }

    #[test]
    fn outcome_detectors_never_panic_and_reset_cleanly(
        inputs in prop::collection::vec(outcome(), 0..600),
        split in 0usize..600,
    ) {
        for detector in outcome_detectors() {
            each!(outcome detector, d => {
                let fresh = d.clone();
                reset_equals_fresh(d.clone(), &fresh, &inputs);
                snapshot_continues_identically(d, &inputs, split);
            });
        }
    }

    #[test]
    fn adwin_window_and_estimation_stay_consistent(
        inputs in prop::collection::vec(-1e6..1e6f64, 1..2000),
        clock in 1u32..40,
    ) {
        let mut adwin = Adwin::new(AdwinParams { clock, ..Default::default() }).unwrap();
        let mut since_reset: Vec<f64> = Vec::new();
        for &x in &inputs {
            if adwin.drift_detected() {
                since_reset.clear();
            }
            since_reset.push(x);
            adwin.update(x).unwrap();
            let width = adwin.width() as usize;
            prop_assert!(width >= 1 && width <= since_reset.len());
            prop_assert!(adwin.n_detections() <= 1);
            // The window is always the newest `width` values since the reset.
            let window = &since_reset[since_reset.len() - width..];
            let lo = window.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = window.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let slack = 1e-9 * (lo.abs().max(hi.abs()) + 1.0);
            prop_assert!(adwin.estimation() >= lo - slack && adwin.estimation() <= hi + slack);
            let exact_mean = window.iter().sum::<f64>() / width as f64;
            prop_assert!((adwin.estimation() - exact_mean).abs() <= slack * 10.0);
            prop_assert!(adwin.variance() >= -slack * width as f64);
        }
    }

    #[test]
    fn kswin_p_value_is_a_probability(
        inputs in prop::collection::vec(-5.0..5.0f64, 0..500),
    ) {
        let mut kswin = Kswin::new(KswinParams { seed: Some(11), window_size: 30, stat_size: 10, ..Default::default() }).unwrap();
        for &x in &inputs {
            kswin.update(x).unwrap();
            prop_assert!((0.0..=1.0).contains(&kswin.p_value()));
            prop_assert!(kswin.window_len() <= 30);
            if kswin.drift_detected() {
                prop_assert!(kswin.p_value() <= 0.005 && kswin.statistic() > 0.1);
            }
        }
    }

    #[test]
    fn binary_detectors_track_error_rates(
        inputs in prop::collection::vec(outcome(), 1..800),
    ) {
        let mut ddm = Ddm::default();
        let mut eddm = Eddm::default();
        for &o in &inputs {
            ddm.update(o).unwrap();
            eddm.update(o).unwrap();
            prop_assert!((0.0..=1.0).contains(&ddm.error_rate()));
            prop_assert!(eddm.n_errors() <= eddm.n());
            prop_assert!(!(ddm.drift_detected() && ddm.warning_detected()));
        }
    }
}

#[test]
fn bad_parameters_are_typed_errors() {
    let adwin = Adwin::new(AdwinParams {
        delta: 0.0,
        ..Default::default()
    });
    assert_eq!(
        adwin.unwrap_err().to_string(),
        "ADWIN: parameter `delta` must be in (0, 1), got 0"
    );
    let kswin = Kswin::new(KswinParams {
        window_size: 30,
        stat_size: 30,
        ..Default::default()
    });
    assert_eq!(
        kswin.unwrap_err().to_string(),
        "KSWIN: parameter `window_size` must be greater than stat_size, got 30"
    );
    assert!(
        Eddm::new(EddmParams {
            alpha: 0.8,
            beta: 0.9,
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        PageHinkley::new(PageHinkleyParams {
            threshold: -1.0,
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        HddmW::new(HddmWParams {
            lambda_val: 0.0,
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        HddmA::new(HddmAParams {
            drift_confidence: 1.0,
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        Fhddm::new(FhddmParams {
            short_window_size: Some(200),
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        Ddm::new(DdmParams {
            drift_threshold: f64::NAN,
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        Kswin::new(KswinParams {
            window: vec![f64::NAN],
            ..Default::default()
        })
        .is_err()
    );
}

#[test]
fn unknown_or_mistyped_river_kwargs_are_rejected() {
    let err = serde_json::from_str::<AdwinParams>(r#"{"delt": 0.1}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `delt`"), "{err}");
    let params: PageHinkleyParams = serde_json::from_str(r#"{"mode": "up"}"#).unwrap();
    assert_eq!(params.mode, PageHinkleyMode::Up);
    assert_eq!(params.threshold, 50.0);
}

#[test]
fn kswin_without_seed_draws_one_and_keeps_it_across_resets() {
    let mut kswin = Kswin::new(KswinParams::default()).unwrap();
    let seed = kswin.seed();
    for i in 0..500 {
        kswin.update(if i < 250 { 0.0 } else { 10.0 }).unwrap();
    }
    kswin.reset();
    assert_eq!(kswin.seed(), seed);
}
