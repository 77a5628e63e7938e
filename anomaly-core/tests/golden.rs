//! The public River 0.26.1 golden set, replayed exactly (fixtures copied from the shared set).

use std::path::{Path, PathBuf};

use anomaly_core::conformance::{read_cases, run_folder, run_folder_with_tolerance};
use anomaly_core::rng::PyRandom;
use serde_json::Value;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

const DRIFT_DETECTORS: [&str; 8] = [
    "ADWIN",
    "DDM",
    "EDDM",
    "HDDM_A",
    "HDDM_W",
    "FHDDM",
    "PageHinkley",
    "KSWIN",
];

#[test]
fn every_drift_case_reproduces_river() {
    let dir = golden_dir();
    let expected = read_cases(&dir)
        .unwrap()
        .iter()
        .filter(|c| DRIFT_DETECTORS.contains(&c.detector.as_str()))
        .count();
    assert_eq!(expected, 96, "the public set has 96 drift-detector cases");
    let only: Vec<String> = DRIFT_DETECTORS.iter().map(|s| s.to_string()).collect();
    let report = run_folder(&dir, Some(&only)).unwrap();
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!(report.passed, expected);
}

#[test]
fn every_hst_and_sad_case_reproduces_river() {
    let dir = golden_dir();
    let only = vec!["HST".to_string(), "SAD".to_string()];
    let report = run_folder(&dir, Some(&only)).unwrap();
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!(report.passed, 7, "4 HST and 3 SAD cases");
}

/// On glibc (where River was run) every value is bit-identical, not merely within 1e-12.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_whole_set_is_bit_identical_on_glibc() {
    let report = run_folder_with_tolerance(&golden_dir(), None, 0.0).unwrap();
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!(report.passed, 103);
}

#[test]
fn each_detector_has_cases() {
    let cases = read_cases(&golden_dir()).unwrap();
    for name in DRIFT_DETECTORS {
        assert!(
            cases.iter().filter(|c| c.detector == name).count() >= 8,
            "{name} has too few golden cases"
        );
    }
}

fn rng_check() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(golden_dir().join("rng_check.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn python_random_matches_cpython() {
    let mut checked = 0;
    for (key, value) in rng_check() {
        let Some(seed) = key
            .strip_prefix("random.Random(")
            .and_then(|rest| rest.strip_suffix(").random()x5"))
        else {
            continue;
        };
        let mut rng = PyRandom::new(seed.parse().unwrap());
        for expected in value.as_array().unwrap() {
            let expected: f64 = expected.as_str().unwrap().parse().unwrap();
            assert_eq!(rng.random(), expected, "seed {seed}");
        }
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn python_sample_matches_kswin_draws() {
    let mut checked = 0;
    for (key, value) in rng_check() {
        if !key.starts_with("KSWIN__") {
            continue;
        }
        let seed = value["seed"].as_u64().unwrap();
        let population = value["population"].as_u64().unwrap() as u32;
        let k = value["k"].as_u64().unwrap() as u32;
        let mut rng = PyRandom::new(seed);
        let mut drawn = Vec::new();
        for expected in value["first_3_samples"].as_array().unwrap() {
            let expected: Vec<u32> = expected
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            rng.sample_range(population, k, &mut drawn);
            assert_eq!(drawn, expected, "{key}");
        }
        checked += 1;
    }
    assert_eq!(checked, 2);
}
