//! What a pipeline run achieved: figures, raw results (CSV and JSON) and a self-contained
//! HTML report.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::messages::{DriftSource, Severity};
use crate::pipeline::PipelineRun;

/// How quickly each detector noticed one phase boundary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoundaryDetection {
    /// The phase that starts here.
    pub phase: String,
    /// Index of its first event.
    pub index: u64,
    /// Events from the boundary to ADWIN's first drift in this phase (`None`: not detected).
    pub adwin_delay: Option<u64>,
    /// Same for DDM.
    pub ddm_delay: Option<u64>,
}

/// The run's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Events generated.
    pub events: u64,
    /// Events scored.
    pub scored: u64,
    /// Events dead-lettered.
    pub dead_letters: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Scored events per second of wall time.
    pub throughput: f64,
    /// Decisions (`is_anomaly`) against the labels (`is_fraud`).
    pub true_positives: u64,
    /// See `true_positives`.
    pub false_positives: u64,
    /// See `true_positives`.
    pub false_negatives: u64,
    /// See `true_positives`.
    pub true_negatives: u64,
    /// Share of flagged events that were fraud.
    pub precision: f64,
    /// Share of fraud that was flagged.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Exact ROC AUC of the scores against the labels.
    pub roc_auc: Option<f64>,
    /// Detection delays per phase boundary (the first phase has none).
    pub boundaries: Vec<BoundaryDetection>,
    /// ADWIN drifts that were not the first of their phase.
    pub adwin_false_alarms: u64,
    /// DDM drifts that were not the first of their phase.
    pub ddm_false_alarms: u64,
    /// Retraining jobs run.
    pub retraining_jobs: u64,
    /// Model versions published by them.
    pub models_published: u64,
    /// Alerts per severity, lowest first: `[LOW, MEDIUM, HIGH, CRITICAL]`.
    pub alerts_by_severity: [u64; 4],
    /// Alerts sent to the notifier.
    pub alerts_notified: u64,
    /// Whether the input had labels; without them precision, recall and ROC AUC mean
    /// nothing (they are 0 and `None`).
    #[serde(default = "labelled", skip_serializing_if = "is_true")]
    pub labelled: bool,
}

fn labelled() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// Computes the figures of a run.
pub fn summarize(run: &PipelineRun) -> Summary {
    let stats = &run.stats;
    let confusion = stats.confusion;
    let drift_index = |source: DriftSource| -> Vec<u64> {
        run.drifts
            .iter()
            .filter(|d| d.detector == source)
            .map(|d| d.sequence - 1)
            .collect()
    };
    let (adwin, ddm) = (
        drift_index(DriftSource::Adwin),
        drift_index(DriftSource::Ddm),
    );
    let mut boundaries = Vec::new();
    let mut first_of_phase = (0u64, 0u64);
    for (i, b) in run.boundaries.iter().enumerate() {
        let end = run
            .boundaries
            .get(i + 1)
            .map_or(u64::MAX, |next| next.index);
        let first = |drifts: &[u64]| drifts.iter().find(|&&d| d >= b.index && d < end).copied();
        let (a, d) = (first(&adwin), first(&ddm));
        first_of_phase.0 += u64::from(a.is_some());
        first_of_phase.1 += u64::from(d.is_some());
        if i > 0 {
            boundaries.push(BoundaryDetection {
                phase: b.name.clone(),
                index: b.index,
                adwin_delay: a.map(|x| x - b.index),
                ddm_delay: d.map(|x| x - b.index),
            });
        }
    }
    let scored = stats.scored;
    let dead_letters = run.dead_letters.len() as u64 + run.unlisted_dead_letters;
    Summary {
        events: scored + dead_letters,
        scored,
        dead_letters,
        seconds: run.seconds,
        throughput: if run.seconds > 0.0 {
            scored as f64 / run.seconds
        } else {
            0.0
        },
        true_positives: confusion.true_positives,
        false_positives: confusion.false_positives,
        false_negatives: confusion.false_negatives,
        true_negatives: confusion.true_negatives,
        precision: confusion.precision(),
        recall: confusion.recall(),
        f1: confusion.f1(),
        roc_auc: stats.auc.roc_auc(),
        boundaries,
        adwin_false_alarms: adwin.len() as u64 - first_of_phase.0,
        ddm_false_alarms: ddm.len() as u64 - first_of_phase.1,
        retraining_jobs: run.jobs.len() as u64,
        models_published: run.model_updates.len() as u64,
        alerts_by_severity: stats.alerts_by_severity,
        alerts_notified: run.notified.len() as u64 + run.unlisted_notified,
        labelled: run.labelled,
    }
}

/// The summary as the terminal shows it.
pub fn render_text(summary: &Summary, run: &PipelineRun) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "throughput: {:.0} events/s", summary.throughput);
    let _ = writeln!(
        s,
        "events: {} scored, {} dead-lettered, in {:.2} s",
        summary.scored, summary.dead_letters, summary.seconds
    );
    if summary.labelled {
        let _ = writeln!(
            s,
            "anomalies vs fraud labels: precision {:.3}, recall {:.3}, F1 {:.3}, ROC AUC {}",
            summary.precision,
            summary.recall,
            summary.f1,
            summary.roc_auc.map_or("n/a".into(), |a| format!("{a:.4}"))
        );
    } else {
        let _ = writeln!(
            s,
            "anomalies: {} flagged (the input has no label column: no precision or recall)",
            summary.true_positives + summary.false_positives
        );
    }
    let _ = writeln!(
        s,
        "drift detection delay (events after each phase boundary):"
    );
    for b in &summary.boundaries {
        let delay = |d: Option<u64>| d.map_or("not detected".into(), |d| d.to_string());
        let _ = writeln!(
            s,
            "  {:<16} at {:>8}: ADWIN {:>12}, DDM {:>12}",
            b.phase,
            b.index,
            delay(b.adwin_delay),
            delay(b.ddm_delay)
        );
    }
    let _ = writeln!(
        s,
        "  false alarms: ADWIN {}, DDM {}",
        summary.adwin_false_alarms, summary.ddm_false_alarms
    );
    let _ = writeln!(s, "retraining jobs: {}", summary.retraining_jobs);
    for job in &run.jobs {
        let auc = |a: Option<f64>| a.map_or("n/a".into(), |a| format!("{a:.4}"));
        let _ = writeln!(
            s,
            "  after event {:>8}: version {} -> {}: AUC {} vs {}: {}",
            job.job.sequence,
            job.previous_version,
            if job.published {
                job.candidate_version.unwrap_or(job.previous_version)
            } else {
                job.previous_version
            },
            auc(job.previous_auc),
            auc(job.candidate_auc),
            job.decision
        );
    }
    let counts: Vec<String> = Severity::ALL
        .iter()
        .map(|sev| {
            format!(
                "{} {}",
                sev.name(),
                summary.alerts_by_severity[*sev as usize]
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "alerts: {} ({} notified, {} repeats suppressed)",
        counts.join(", "),
        summary.alerts_notified,
        run.duplicates_suppressed
    );
    s
}

/// Writes `summary.json`, `run.json` (drifts, jobs, model updates, notified alerts),
/// `scored_events.csv`, `alerts.csv` and `report.html` into `dir`, from a run that kept its
/// events in memory ([`pipeline::run`](crate::pipeline::run)).
pub fn write(dir: &Path, summary: &Summary, run: &PipelineRun) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tables = CsvTables::create(dir)?;
    for e in &run.scored {
        tables.scored(e)?;
    }
    for a in &run.alerts {
        tables.alert(a)?;
    }
    tables.finish()?;
    write_summaries(dir, summary, run)
}

/// Writes `summary.json`, `run.json` and `report.html` into `dir` (the CSV tables are written
/// as the run goes, by [`CsvTables`]).
pub fn write_summaries(dir: &Path, summary: &Summary, run: &PipelineRun) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(summary).unwrap_or_default(),
    )?;
    let details = serde_json::json!({
        "boundaries": run.boundaries,
        "drifts": run.drifts,
        "retraining_jobs": run.jobs,
        "model_updates": run.model_updates,
        "notified_alerts": run.notified,
        "dead_letters": run.dead_letters,
        "config": run.config,
    });
    std::fs::write(
        dir.join("run.json"),
        serde_json::to_string_pretty(&details).unwrap_or_default(),
    )?;
    std::fs::write(dir.join("report.html"), html::render(summary, run))
}

mod csv;
mod stats;

pub use csv::CsvTables;
pub use stats::{ExactRocAuc, RunStats};

mod html;
