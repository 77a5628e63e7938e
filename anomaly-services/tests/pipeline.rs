//! The main job end to end: a short run completes, its report is complete and consistent with
//! its raw results, and the same seed gives the same run.

use std::path::{Path, PathBuf};

use anomaly_core::metrics::{Confusion, roc_auc};
use anomaly_services::pipeline::{PipelineConfig, PipelineRun, run};
use anomaly_services::report::{self, Summary};

fn config(seed: u64) -> PipelineConfig {
    let mut config = PipelineConfig::default();
    config.generator.events = 20_000;
    config.generator.cards = 300;
    config.generator.seed = seed;
    config.retraining.debounce_events = 2_000;
    config.retraining.history = 2_000;
    config.retraining.holdout = 1_000;
    config
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "anomaly-pipeline-test-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run_and_write(seed: u64, dir: &Path) -> (PipelineRun, Summary) {
    let result = run(&config(seed), |_, _| {}).unwrap();
    let summary = report::summarize(&result);
    report::write(dir, &summary, &result).unwrap();
    (result, summary)
}

#[test]
fn a_short_run_produces_a_complete_consistent_report() {
    let dir = out_dir("report");
    let (result, summary) = run_and_write(7, &dir);

    // Every event is accounted for.
    assert_eq!(summary.events, 20_000);
    assert_eq!(summary.scored + summary.dead_letters, 20_000);
    assert!(summary.throughput > 0.0);

    // The drift phases are seen, retraining runs, alerts are raised and routed.
    assert!(
        !result.drifts.is_empty(),
        "no drift detected across the phases"
    );
    assert!(summary.retraining_jobs > 0);
    assert!(summary.alerts_by_severity.iter().sum::<u64>() > 0);
    assert!(
        summary.alerts_notified <= summary.alerts_by_severity[2] + summary.alerts_by_severity[3]
    );

    // The report parses and has every section, with nothing to fetch.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for section in [
        "summary",
        "scores",
        "quality",
        "drift",
        "retraining",
        "alerts",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{section}\">")),
            "missing {section}"
        );
    }
    assert!(html.contains("class=\"threshold\"") && html.contains("class=\"phase\""));
    assert!(html.contains("class=\"drift-adwin\"") || html.contains("class=\"drift-ddm\""));
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    let parsed: Summary =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(parsed, summary);
    let details: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        details["drifts"].as_array().map(Vec::len),
        Some(result.drifts.len())
    );

    // The summary's figures follow from the CSV.
    let csv = std::fs::read_to_string(dir.join("scored_events.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (score, flagged, fraud) = (column("score"), column("is_anomaly"), column("is_fraud"));
    let mut confusion = Confusion::default();
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        confusion.add(cells[flagged] == "1", cells[fraud] == "1");
        scores.push(cells[score].parse::<f64>().unwrap());
        labels.push(cells[fraud] == "1");
    }
    assert_eq!(scores.len() as u64, summary.scored);
    assert_eq!(confusion.true_positives, summary.true_positives);
    assert_eq!(confusion.false_positives, summary.false_positives);
    assert_eq!(confusion.false_negatives, summary.false_negatives);
    assert_eq!(confusion.precision(), summary.precision);
    assert_eq!(confusion.recall(), summary.recall);
    assert_eq!(roc_auc(&scores, &labels), summary.roc_auc);
    let alerts = std::fs::read_to_string(dir.join("alerts.csv")).unwrap();
    assert_eq!(
        alerts.lines().count() as u64 - 1,
        summary.alerts_by_severity.iter().sum::<u64>()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let (a_dir, b_dir) = (out_dir("seed-a"), out_dir("seed-b"));
    let (a, mut a_summary) = run_and_write(11, &a_dir);
    let (b, mut b_summary) = run_and_write(11, &b_dir);
    for file in ["scored_events.csv", "alerts.csv", "run.json"] {
        let read = |dir: &Path| std::fs::read(dir.join(file)).unwrap();
        assert!(
            read(&a_dir) == read(&b_dir),
            "{file} differs between two runs"
        );
    }
    assert_eq!(a.jobs, b.jobs);
    // Only the wall-clock figures may differ.
    for s in [&mut a_summary, &mut b_summary] {
        s.seconds = 0.0;
        s.throughput = 0.0;
    }
    assert_eq!(a_summary, b_summary);
    let c_dir = out_dir("seed-c");
    let (_, other) = run_and_write(12, &c_dir);
    assert_ne!(other.true_positives + other.false_positives, 0);
    for dir in [a_dir, b_dir, c_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn the_command_line_runs_and_explains_itself() {
    let binary = env!("CARGO_BIN_EXE_anomaly-pipeline");
    let help = std::process::Command::new(binary)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for option in ["--events", "--seed", "--out", "--replay-speed", "--n-trees"] {
        assert!(text.contains(option), "--help does not mention {option}");
    }
    // Every binary of the package says which version it is.
    for name in [
        binary,
        env!("CARGO_BIN_EXE_producer"),
        env!("CARGO_BIN_EXE_feature-engineer"),
        env!("CARGO_BIN_EXE_ml-inference"),
        env!("CARGO_BIN_EXE_drift-detector"),
        env!("CARGO_BIN_EXE_retraining-worker"),
        env!("CARGO_BIN_EXE_alert-router"),
    ] {
        let version = std::process::Command::new(name)
            .arg("--version")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&version.stdout);
        assert!(version.status.success(), "{name} --version");
        assert!(
            text.trim_end().ends_with(env!("CARGO_PKG_VERSION")),
            "{name}: {text}"
        );
    }
    let bad = std::process::Command::new(binary)
        .args(["--events", "many"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let dir = out_dir("cli");
    let ok = std::process::Command::new(binary)
        .args(["--events", "3000", "--quiet", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("throughput: ") && l.ends_with(" events/s"))
    );
    assert!(dir.join("report.html").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The main job with a Random Cut Forest in the ensemble (`--model rcf`): the run completes,
/// the forest's share is in every score, and the scores still separate fraud from the rest.
#[test]
fn the_main_job_runs_with_a_random_cut_forest() {
    let mut config = config(11);
    config.model = anomaly_services::pipeline::with_random_cut_forest(config.model, 11);
    let with_rcf = run(&config, |_, _| {}).unwrap();
    let scores: Vec<f64> = with_rcf.scored.iter().map(|s| s.score).collect();
    let labels: Vec<bool> = with_rcf.scored.iter().map(|s| s.is_fraud).collect();
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    let auc = roc_auc(&scores, &labels).unwrap();
    assert!(auc > 0.8, "ROC AUC with the forest: {auc}");
    // The forest changes the scores: it is really in the ensemble.
    let without = run(&self::config(11), |_, _| {}).unwrap();
    let differ = without
        .scored
        .iter()
        .zip(&with_rcf.scored)
        .filter(|(a, b)| a.score != b.score)
        .count();
    assert!(differ > with_rcf.scored.len() / 2, "{differ} scores differ");

    let binary = env!("CARGO_BIN_EXE_anomaly-pipeline");
    let dir = out_dir("cli-rcf");
    let ok = std::process::Command::new(binary)
        .args(["--events", "3000", "--model", "rcf", "--quiet", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let bad = std::process::Command::new(binary)
        .args(["--model", "forest"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
