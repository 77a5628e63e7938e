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

#[test]
fn every_remaining_anomaly_detector_reproduces_river() {
    let dir = golden_dir();
    let names = ["GaussianScorer", "LOF", "OneClassSVM", "LODA", "PAD"];
    let only: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let report = run_folder(&dir, Some(&only)).unwrap();
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!(
        report.passed, 30,
        "6 GaussianScorer, 4 LOF, 9 OneClassSVM, 6 LODA, 5 PAD"
    );
}

/// The default comparison is exact: on glibc (where River was run) every value is
/// bit-identical, including those through C's `pow` and `erf`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_whole_set_is_bit_identical_on_glibc() {
    let report = run_folder(&golden_dir(), None).unwrap();
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!(report.passed, 133);
}

/// A value one part in 1e13 off fails the default run and passes only with the tolerance
/// asked for explicitly.
#[test]
fn the_comparison_is_exact_unless_a_tolerance_is_asked_for() {
    let dir = tempfile_dir("exactness");
    copy_dir(&golden_dir(), &dir);
    let trace = dir.join("traces/LOF__p1__mv_late.csv");
    let text = std::fs::read_to_string(&trace).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let (step, value) = lines[5].split_once(',').unwrap();
    let nudged = value.parse::<f64>().unwrap() * (1.0 + 1e-13);
    lines[5] = format!("{step},{nudged:?}");
    std::fs::write(&trace, lines.join("\n") + "\n").unwrap();
    let only = vec!["LOF".to_string()];
    let exact = run_folder(&dir, Some(&only)).unwrap();
    assert_eq!(exact.failures.len(), 1, "{:#?}", exact.failures);
    assert!(
        exact.failures[0].reason.starts_with("step 4: score"),
        "{}",
        exact.failures[0].reason
    );
    let tolerant = run_folder_with_tolerance(&dir, Some(&only), 1e-12).unwrap();
    assert!(tolerant.failures.is_empty(), "{:#?}", tolerant.failures);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A trace that lost a row, or a case whose `n` disagrees with its stream, fails the case.
#[test]
fn missing_trace_rows_and_wrong_lengths_fail() {
    let dir = tempfile_dir("missing-rows");
    copy_dir(&golden_dir(), &dir);
    let trace = dir.join("traces/OneClassSVM__p1__mv_late.csv");
    let text = std::fs::read_to_string(&trace).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 100)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&trace, kept.join("\n") + "\n").unwrap();
    let cases = std::fs::read_to_string(dir.join("cases.jsonl")).unwrap();
    let cases = cases.replace(
        r#""stream": "r_abrupt", "n": 2000"#,
        r#""stream": "r_abrupt", "n": 1999"#,
    );
    std::fs::write(dir.join("cases.jsonl"), cases).unwrap();
    let report = run_folder(&dir, None).unwrap();
    let failed: Vec<&str> = report.failures.iter().map(|f| f.case.as_str()).collect();
    assert!(failed.contains(&"OneClassSVM__p1__mv_late"), "{failed:?}");
    assert!(failed.contains(&"ADWIN__default__r_abrupt"), "{failed:?}");
    assert!(
        report
            .failures
            .iter()
            .all(|f| f.reason.contains("rows") || f.reason.contains("n =")),
        "{:#?}",
        report.failures
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempfile_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("anomaly-golden-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
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
