//! The HTML report: one file, inline SVG charts, no scripts and nothing fetched.

use std::fmt::Write as _;

use super::Summary;
use crate::messages::{DriftSource, Severity};
use crate::pipeline::PipelineRun;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 260.0;
const MARGIN: f64 = 40.0;
/// Dead letters listed in the report (all are in `run.json`).
const LISTED_DEAD_LETTERS: usize = 100;
const PHASE_COLOURS: [&str; 6] = [
    "#eef3fb", "#fbf3e6", "#fbeaea", "#eaf7ee", "#f3eefb", "#f7f7e8",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Maps an event index to an x coordinate.
fn x_of(index: f64, events: f64) -> f64 {
    MARGIN + (WIDTH - 2.0 * MARGIN) * index / events.max(1.0)
}

/// Maps a value in [0, 1] to a y coordinate.
fn y_of(value: f64) -> f64 {
    HEIGHT - MARGIN - (HEIGHT - 2.0 * MARGIN) * value.clamp(0.0, 1.0)
}

fn frame(svg: &mut String, title: &str) {
    let _ = write!(
        svg,
        r##"<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="{t}"><title>{t}</title>"##,
        t = escape(title)
    );
}

fn axes(svg: &mut String, events: f64) {
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = y_of(tick);
        let _ = write!(
            svg,
            r##"<line x1="{MARGIN}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" font-size="10" text-anchor="end">{tick}</text>"##,
            WIDTH - MARGIN,
            MARGIN - 4.0,
            y + 3.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" font-size="10" text-anchor="end">{events:.0} events</text>"##,
        WIDTH - MARGIN,
        HEIGHT - 8.0
    );
}

fn phase_bands(svg: &mut String, run: &PipelineRun, events: f64) {
    for (i, b) in run.boundaries.iter().enumerate() {
        let end = run.boundaries.get(i + 1).map_or(events, |n| n.index as f64);
        let (x0, x1) = (x_of(b.index as f64, events), x_of(end, events));
        let _ = write!(
            svg,
            r##"<rect class="phase" x="{x0}" y="{MARGIN}" width="{}" height="{}" fill="{}"/><text x="{}" y="{}" font-size="11">{}</text>"##,
            (x1 - x0).max(0.0),
            HEIGHT - 2.0 * MARGIN,
            PHASE_COLOURS[i % PHASE_COLOURS.len()],
            x0 + 4.0,
            MARGIN - 6.0,
            escape(&b.name)
        );
    }
}

fn polyline(svg: &mut String, points: &[(f64, f64)], colour: &str, class: &str) {
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = write!(
        svg,
        r##"<polyline class="{class}" fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"##,
        path.join(" ")
    );
}

fn score_chart(run: &PipelineRun, threshold: f64) -> String {
    let stats = &run.stats;
    let events = stats.scored as f64;
    let mut svg = String::new();
    frame(&mut svg, "Score stream");
    phase_bands(&mut svg, run, events);
    axes(&mut svg, events);
    let per = stats.score_per;
    let (mut mean, mut max) = (Vec::new(), Vec::new());
    for (b, bucket) in stats.score_buckets.iter().enumerate() {
        let x = x_of((b as u64 * per) as f64 + bucket.events as f64 / 2.0, events);
        mean.push((x, y_of(bucket.sum / bucket.events as f64)));
        max.push((x, y_of(bucket.max)));
    }
    polyline(&mut svg, &max, "#f4a582", "score-max");
    polyline(&mut svg, &mean, "#2166ac", "score-mean");
    let ty = y_of(threshold);
    let _ = write!(
        svg,
        r##"<line class="threshold" x1="{MARGIN}" y1="{ty}" x2="{}" y2="{ty}" stroke="#b2182b" stroke-dasharray="6 3"/><text x="{}" y="{}" font-size="10" fill="#b2182b">threshold {threshold}</text>"##,
        WIDTH - MARGIN,
        WIDTH - MARGIN - 90.0,
        ty - 4.0
    );
    for d in &run.drifts {
        let x = x_of((d.sequence - 1) as f64, events);
        let (colour, class) = match d.detector {
            DriftSource::Adwin => ("#5e3c99", "drift-adwin"),
            DriftSource::Ddm => ("#e66101", "drift-ddm"),
        };
        let _ = write!(
            svg,
            r##"<line class="{class}" x1="{x}" y1="{MARGIN}" x2="{x}" y2="{}" stroke="{colour}" stroke-width="1.5"><title>{} drift at event {}</title></line>"##,
            HEIGHT - MARGIN,
            d.detector.name(),
            d.sequence
        );
    }
    for &(index, version) in &stats.version_changes {
        let x = x_of(index as f64, events);
        let _ = write!(
            svg,
            r##"<line class="model-version" x1="{x}" y1="{MARGIN}" x2="{x}" y2="{}" stroke="#1b7837" stroke-dasharray="2 2"/><text x="{}" y="{}" font-size="10" fill="#1b7837">v{version}</text>"##,
            HEIGHT - MARGIN,
            x + 2.0,
            HEIGHT - MARGIN - 4.0
        );
    }
    svg.push_str("</svg>");
    svg
}

fn quality_chart(run: &PipelineRun) -> String {
    let stats = &run.stats;
    let events = stats.scored as f64;
    let mut svg = String::new();
    frame(&mut svg, "Precision and recall over time");
    phase_bands(&mut svg, run, events);
    axes(&mut svg, events);
    let per = stats.quality_per;
    let (mut precision, mut recall) = (Vec::new(), Vec::new());
    for (b, c) in stats.quality_buckets.iter().enumerate() {
        let len = c.true_positives + c.false_positives + c.false_negatives + c.true_negatives;
        let x = x_of((b as u64 * per) as f64 + len as f64 / 2.0, events);
        precision.push((x, y_of(c.precision())));
        recall.push((x, y_of(c.recall())));
    }
    polyline(&mut svg, &precision, "#1b9e77", "precision");
    polyline(&mut svg, &recall, "#d95f02", "recall");
    svg.push_str("</svg>");
    svg
}

fn alert_chart(summary: &Summary) -> String {
    let mut svg = String::new();
    frame(&mut svg, "Alerts by severity");
    let top = summary
        .alerts_by_severity
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let colours = ["#91bfdb", "#fee090", "#fc8d59", "#d73027"];
    for (i, sev) in Severity::ALL.iter().enumerate() {
        let count = summary.alerts_by_severity[i];
        let h = (HEIGHT - 2.0 * MARGIN) * count as f64 / top;
        let x = MARGIN + i as f64 * 200.0;
        let _ = write!(
            svg,
            r##"<rect class="alerts" x="{x}" y="{}" width="150" height="{h}" fill="{}"/><text x="{}" y="{}" font-size="12" text-anchor="middle">{} ({count})</text>"##,
            HEIGHT - MARGIN - h,
            colours[i],
            x + 75.0,
            HEIGHT - MARGIN + 16.0,
            sev.name()
        );
    }
    svg.push_str("</svg>");
    svg
}

fn row(html: &mut String, key: &str, value: &str) {
    let _ = write!(
        html,
        "<tr><th>{}</th><td>{}</td></tr>",
        escape(key),
        escape(value)
    );
}

/// Where the rejected events were (a file's line numbers, or a topic's offsets) and why.
fn dead_letters(html: &mut String, summary: &Summary, run: &PipelineRun) {
    let listed = run.dead_letters.len().min(LISTED_DEAD_LETTERS);
    let _ = write!(
        html,
        "<section id=\"dead-letters\"><h2>Dead letters</h2><p>{} events were not scored; the first {listed} are listed here, {} in run.json.</p><table><tr><th>source</th><th>line / offset</th><th>error</th></tr>",
        summary.dead_letters,
        run.dead_letters.len()
    );
    for d in &run.dead_letters[..listed] {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&d.source_topic),
            d.offset,
            escape(&d.error)
        );
    }
    html.push_str("</table></section>");
}

/// The whole report.
pub(super) fn render(summary: &Summary, run: &PipelineRun) -> String {
    let threshold = run.config.as_ref().map_or(0.7, |c| c.threshold);
    let mut html = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Anomaly pipeline report</title><style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f4f4f4}h2{margin-top:1.6em}.legend span{margin-right:1.2em}</style></head><body>",
    );
    html.push_str("<h1>Anomaly pipeline report</h1>");
    html.push_str("<section id=\"summary\"><h2>Summary</h2><table>");
    row(&mut html, "events scored", &summary.scored.to_string());
    row(&mut html, "dead letters", &summary.dead_letters.to_string());
    row(
        &mut html,
        "throughput (events/s)",
        &format!("{:.0}", summary.throughput),
    );
    if summary.labelled {
        row(&mut html, "precision", &format!("{:.4}", summary.precision));
        row(&mut html, "recall", &format!("{:.4}", summary.recall));
        row(&mut html, "F1", &format!("{:.4}", summary.f1));
        row(
            &mut html,
            "ROC AUC",
            &summary.roc_auc.map_or("n/a".into(), |a| format!("{a:.4}")),
        );
    } else {
        let flagged = summary.true_positives + summary.false_positives;
        row(&mut html, "anomalies flagged", &flagged.to_string());
        row(
            &mut html,
            "precision, recall",
            "n/a: the input has no labels",
        );
    }
    row(
        &mut html,
        "retraining jobs",
        &summary.retraining_jobs.to_string(),
    );
    row(
        &mut html,
        "models published",
        &summary.models_published.to_string(),
    );
    row(
        &mut html,
        "alerts notified",
        &summary.alerts_notified.to_string(),
    );
    html.push_str("</table></section>");
    html.push_str("<section id=\"scores\"><h2>Score stream</h2><p class=\"legend\"><span style=\"color:#2166ac\">mean score</span><span style=\"color:#f4a582\">max score</span><span style=\"color:#b2182b\">threshold</span><span style=\"color:#5e3c99\">ADWIN drift</span><span style=\"color:#e66101\">DDM drift</span><span style=\"color:#1b7837\">model version</span></p>");
    html.push_str(&score_chart(run, threshold));
    html.push_str("</section><section id=\"quality\"><h2>Precision and recall over time</h2><p class=\"legend\"><span style=\"color:#1b9e77\">precision</span><span style=\"color:#d95f02\">recall</span></p>");
    if summary.labelled {
        html.push_str(&quality_chart(run));
    } else {
        html.push_str("<p>The input has no label column.</p>");
    }
    html.push_str("</section><section id=\"drift\"><h2>Drift detection</h2><table><tr><th>phase</th><th>starts at</th><th>ADWIN delay</th><th>DDM delay</th></tr>");
    for b in &summary.boundaries {
        let delay = |d: Option<u64>| d.map_or("not detected".into(), |d| d.to_string());
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&b.phase),
            b.index,
            delay(b.adwin_delay),
            delay(b.ddm_delay)
        );
    }
    let _ = write!(
        html,
        "</table><p>False alarms: ADWIN {}, DDM {}.</p></section>",
        summary.adwin_false_alarms, summary.ddm_false_alarms
    );
    html.push_str("<section id=\"retraining\"><h2>Retraining</h2><table><tr><th>after event</th><th>reason</th><th>running AUC</th><th>candidate AUC</th><th>decision</th></tr>");
    for job in &run.jobs {
        let auc = |a: Option<f64>| a.map_or("n/a".into(), |a| format!("{a:.4}"));
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            job.job.sequence,
            escape(&job.job.reason),
            auc(job.previous_auc),
            auc(job.candidate_auc),
            escape(&job.decision)
        );
    }
    html.push_str("</table></section><section id=\"alerts\"><h2>Alerts</h2>");
    html.push_str(&alert_chart(summary));
    html.push_str("</section>");
    if !run.dead_letters.is_empty() {
        dead_letters(&mut html, summary, run);
    }
    html.push_str("</body></html>\n");
    html
}
