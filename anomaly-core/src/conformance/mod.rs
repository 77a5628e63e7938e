//! Runs River golden-vector folders against this crate.
//!
//! A golden folder holds `cases.jsonl` (one case per line: detector, River keyword arguments,
//! input stream, expected drift steps and warning runs, optional per-step trace),
//! `streams/<name>.csv` (the inputs) and `traces/<case>.csv`. [`run_folder`] replays every
//! case and reports, for each failure, the first step where this crate differs from River.
//! Values are compared exactly; [`run_folder_with_tolerance`] allows a relative tolerance,
//! for a platform whose C math library is not the one River ran on.
//!
//! This module reads files, so it is behind the `conformance` cargo feature.
//!
//! ```no_run
//! use anomaly_core::conformance::run_folder;
//!
//! let report = run_folder("tests/fixtures/golden".as_ref(), None)?;
//! for failure in &report.failures {
//!     println!("{}: {}", failure.case, failure.reason);
//! }
//! println!("golden: {} passed, {} failed", report.passed, report.failures.len());
//! # Ok::<(), anomaly_core::conformance::GoldenError>(())
//! ```

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::anomaly::{HalfSpaceTrees, HstParams, Sad, SadCentre, SadParams, TreeRng, TreeSpec};
use crate::drift::{
    Adwin, Ddm, DriftDetector, Eddm, Fhddm, HddmA, HddmW, Kswin, Outcome, PageHinkley,
};

mod anomaly;

/// The relative tolerance the golden set allows for values that go through a C math function
/// (`pow`, `erf`) on a platform other than the one River ran on; used only when asked for.
pub const RELATIVE_TOLERANCE: f64 = 1e-12;

/// Detector names the golden format uses, in the order the runner knows them.
pub const DETECTOR_NAMES: [&str; 15] = [
    "ADWIN",
    "DDM",
    "EDDM",
    "HDDM_A",
    "HDDM_W",
    "FHDDM",
    "PageHinkley",
    "KSWIN",
    "HST",
    "SAD",
    "GaussianScorer",
    "LOF",
    "OneClassSVM",
    "LODA",
    "PAD",
];

/// The folder itself could not be read (a single broken case is a failure, not this error).
#[derive(Debug, Error)]
pub enum GoldenError {
    /// `cases.jsonl` is missing or unreadable.
    #[error("cannot read {path}: {source}; pass a folder that holds cases.jsonl")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of `cases.jsonl` is not a case object.
    #[error("{path} line {line}: {message}")]
    BadCaseLine {
        /// The cases file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parser's complaint.
        message: String,
    },
}

/// One line of `cases.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    /// Unique case name, e.g. `ADWIN__default__r_abrupt`.
    pub case: String,
    /// Detector name (see [`DETECTOR_NAMES`]).
    pub detector: String,
    /// River keyword arguments.
    #[serde(default)]
    pub params: serde_json::Value,
    /// Stream name: inputs are in `streams/<stream>.csv`.
    pub stream: String,
    /// Steps in the stream (checked against the stream and the trace when given).
    #[serde(default)]
    pub n: Option<usize>,
    /// Exception type -> steps where River's `score_one` raised.
    #[serde(default)]
    pub raised: HashMap<String, Vec<usize>>,
    /// Steps where River's score was NaN.
    #[serde(default)]
    pub n_nan: Option<usize>,
    /// State after the last step (OneClassSVM: intercept, weights, n_iterations).
    #[serde(default)]
    pub final_state: Option<serde_json::Value>,
    /// Relative path of LODA's dumped projections and histograms.
    #[serde(default)]
    pub loda_params: Option<String>,
    /// Steps (0-based) where River reported a drift.
    #[serde(default)]
    pub drifts: Vec<usize>,
    /// Inclusive runs of steps with a warning; `None` for detectors without warnings.
    #[serde(default)]
    pub warnings: Option<Vec<[usize; 2]>>,
    /// Relative path of the per-step trace, if any.
    #[serde(default)]
    pub trace: Option<String>,
    /// Relative path of the trees River grew (HST cases).
    #[serde(default)]
    pub trees: Option<String>,
}

/// A case that did not reproduce River.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The case name.
    pub case: String,
    /// Where and how it first differs.
    pub reason: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Cases that reproduced River.
    pub passed: usize,
    /// Cases that did not, or could not be run.
    pub failures: Vec<Failure>,
}

/// Reads the cases of a golden folder.
pub fn read_cases(dir: &Path) -> Result<Vec<Case>, GoldenError> {
    let path = dir.join("cases.jsonl");
    let text = fs::read_to_string(&path).map_err(|source| GoldenError::Io {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| GoldenError::BadCaseLine {
                path: path.clone(),
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// Runs every case of `dir` (only those whose detector is in `only`, when given), comparing
/// every value exactly.
pub fn run_folder(dir: &Path, only: Option<&[String]>) -> Result<Report, GoldenError> {
    run_folder_with_tolerance(dir, only, 0.0)
}

/// [`run_folder`] with a relative tolerance for real values (0 demands bit-identical values;
/// the golden set allows [`RELATIVE_TOLERANCE`] where a C math function is involved).
pub fn run_folder_with_tolerance(
    dir: &Path,
    only: Option<&[String]>,
    tolerance: f64,
) -> Result<Report, GoldenError> {
    let mut report = Report::default();
    for case in read_cases(dir)? {
        if only.is_some_and(|names| !names.contains(&case.detector)) {
            continue;
        }
        match run_case_with_tolerance(dir, &case, tolerance) {
            Ok(()) => report.passed += 1,
            Err(reason) => report.failures.push(Failure {
                case: case.case.clone(),
                reason,
            }),
        }
    }
    Ok(report)
}

/// Runs one case exactly; `Err` says where it first differs from River (or why it could not
/// run).
pub fn run_case(dir: &Path, case: &Case) -> Result<(), String> {
    run_case_with_tolerance(dir, case, 0.0)
}

thread_local! {
    static TOLERANCE: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

fn run_case_with_tolerance(dir: &Path, case: &Case, tolerance: f64) -> Result<(), String> {
    TOLERANCE.with(|t| t.set(tolerance));
    let result = run_case_inner(dir, case);
    TOLERANCE.with(|t| t.set(0.0));
    result
}

fn run_case_inner(dir: &Path, case: &Case) -> Result<(), String> {
    match case.detector.as_str() {
        "HST" => return run_hst(dir, case),
        "SAD" => return run_sad(dir, case),
        "GaussianScorer" | "LOF" | "OneClassSVM" | "LODA" | "PAD" => {
            return anomaly::run(dir, case);
        }
        _ => {}
    }
    let inputs = read_stream(&dir.join("streams").join(format!("{}.csv", case.stream)))?;
    if let Some(n) = case.n
        && n != inputs.len()
    {
        return Err(format!(
            "the stream has {} rows, the case says n = {n}",
            inputs.len()
        ));
    }
    let trace = match &case.trace {
        Some(rel) => {
            let trace = read_trace(&dir.join(rel))?;
            if let Some(i) = trace.keys().find(|&&i| i >= inputs.len()) {
                return Err(format!(
                    "the trace has a row for step {i}, past the stream's end"
                ));
            }
            Some(trace)
        }
        None => None,
    };
    let observed = match case.detector.as_str() {
        "ADWIN" => {
            let mut adwin = Adwin::new(params(case)?).map_err(|e| e.to_string())?;
            let reals = reals(&inputs)?;
            run_detector(&mut adwin, &reals, |a, i| {
                check_adwin_row(a, i, trace.as_ref())
            })?
        }
        "PageHinkley" => {
            let mut ph = PageHinkley::new(params(case)?).map_err(|e| e.to_string())?;
            run_detector(&mut ph, &reals(&inputs)?, no_trace)?
        }
        "KSWIN" => {
            let mut kswin = Kswin::new(params(case)?).map_err(|e| e.to_string())?;
            run_detector(&mut kswin, &reals(&inputs)?, |k, i| {
                check_kswin_row(k, i, trace.as_ref())
            })?
        }
        "DDM" => run_outcomes(&mut Ddm::new(params(case)?), &inputs, Outcome::Error)?,
        "EDDM" => run_outcomes(&mut Eddm::new(params(case)?), &inputs, Outcome::Error)?,
        "HDDM_A" => run_outcomes(&mut HddmA::new(params(case)?), &inputs, Outcome::Error)?,
        "HDDM_W" => run_outcomes(&mut HddmW::new(params(case)?), &inputs, Outcome::Error)?,
        // River's FHDDM treats its input 1 as a correct prediction (see `Fhddm`).
        "FHDDM" => run_outcomes(&mut Fhddm::new(params(case)?), &inputs, Outcome::Correct)?,
        other => {
            return Err(format!(
                "detector `{other}` is not supported by this runner"
            ));
        }
    };
    compare_flags(case, &observed)
}

/// Per-step flags observed while replaying a stream.
struct Observed {
    drifts: Vec<usize>,
    warnings: Vec<bool>,
}

fn params<P: DeserializeOwned>(case: &Case) -> Result<P, String> {
    let value = if case.params.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        case.params.clone()
    };
    serde_json::from_value(value).map_err(|e| format!("cannot use params {}: {e}", case.params))
}

fn run_outcomes<D: DriftDetector<Input = Outcome>>(
    detector: &mut Result<D, crate::ParameterError>,
    inputs: &[String],
    one_means: Outcome,
) -> Result<Observed, String> {
    let detector = detector.as_mut().map_err(|e| e.to_string())?;
    let zero_means = match one_means {
        Outcome::Error => Outcome::Correct,
        Outcome::Correct => Outcome::Error,
    };
    let outcomes = inputs
        .iter()
        .map(|t| match t.as_str() {
            "1" => Ok(one_means),
            "0" => Ok(zero_means),
            other => Err(format!("binary stream holds `{other}`, expected 0 or 1")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    run_detector(detector, &outcomes, no_trace)
}

fn no_trace<D>(_: &D, _: usize) -> Result<(), String> {
    Ok(())
}

fn run_detector<D, F>(
    detector: &mut D,
    inputs: &[D::Input],
    mut check: F,
) -> Result<Observed, String>
where
    D: DriftDetector,
    F: FnMut(&D, usize) -> Result<(), String>,
{
    let mut observed = Observed {
        drifts: Vec::new(),
        warnings: Vec::with_capacity(inputs.len()),
    };
    for (i, &x) in inputs.iter().enumerate() {
        detector
            .update(x)
            .map_err(|e| format!("step {i}: update failed: {e}"))?;
        if detector.drift_detected() {
            observed.drifts.push(i);
        }
        observed.warnings.push(detector.warning_detected());
        check(detector, i)?;
    }
    Ok(observed)
}

type Trace = HashMap<usize, HashMap<String, String>>;

fn check_adwin_row(adwin: &Adwin, i: usize, trace: Option<&Trace>) -> Result<(), String> {
    let Some(row) = trace.and_then(|t| t.get(&i)) else {
        return Ok(());
    };
    expect_int(i, "drift", u64::from(adwin.drift_detected()), row)?;
    expect_int(i, "width", adwin.width(), row)?;
    expect_int(i, "n_detections", adwin.n_detections(), row)?;
    expect_real(i, "estimation", adwin.estimation(), row)?;
    expect_real(i, "variance", adwin.variance(), row)
}

fn check_kswin_row(kswin: &Kswin, i: usize, trace: Option<&Trace>) -> Result<(), String> {
    let Some(row) = trace.and_then(|t| t.get(&i)) else {
        return Ok(());
    };
    expect_int(i, "drift", u64::from(kswin.drift_detected()), row)?;
    expect_real(i, "p_value", kswin.p_value(), row)
}

fn field<'a>(i: usize, name: &str, row: &'a HashMap<String, String>) -> Result<&'a str, String> {
    row.get(name)
        .map(String::as_str)
        .ok_or_else(|| format!("step {i}: trace has no `{name}` column"))
}

fn expect_int(i: usize, name: &str, got: u64, row: &HashMap<String, String>) -> Result<(), String> {
    let text = field(i, name, row)?;
    let want: u64 = text
        .parse()
        .map_err(|_| format!("step {i}: trace `{name}` = `{text}` is not an integer"))?;
    if got == want {
        Ok(())
    } else {
        Err(format!("step {i}: {name} = {got}, River {want}"))
    }
}

fn expect_real(
    i: usize,
    name: &str,
    got: f64,
    row: &HashMap<String, String>,
) -> Result<(), String> {
    let text = field(i, name, row)?;
    let want: f64 = text
        .parse()
        .map_err(|_| format!("step {i}: trace `{name}` = `{text}` is not a number"))?;
    if within_tolerance(got, want) {
        Ok(())
    } else {
        Err(format!("step {i}: {name} = {got:?}, River {want:?}"))
    }
}

/// Equal, or within the run's relative tolerance of the larger magnitude.
fn within_tolerance(got: f64, want: f64) -> bool {
    let tolerance = TOLERANCE.with(|t| t.get());
    got == want || (got - want).abs() <= tolerance * got.abs().max(want.abs())
}

fn compare_flags(case: &Case, observed: &Observed) -> Result<(), String> {
    if let Some(i) = first_difference(&observed.drifts, &case.drifts) {
        let has = |v: &[usize]| v.contains(&i);
        return Err(format!(
            "step {i}: drift = {}, River {} (drifts: ours {:?}, River {:?})",
            has(&observed.drifts),
            has(&case.drifts),
            head(&observed.drifts),
            head(&case.drifts)
        ));
    }
    if let Some(runs) = &case.warnings {
        let mut expected = vec![false; observed.warnings.len()];
        for &[start, end] in runs {
            for flag in expected.iter_mut().take(end + 1).skip(start) {
                *flag = true;
            }
        }
        if let Some(i) = (0..expected.len()).find(|&i| expected[i] != observed.warnings[i]) {
            return Err(format!(
                "step {i}: warning = {}, River {}",
                observed.warnings[i], expected[i]
            ));
        }
    } else if let Some(i) = observed.warnings.iter().position(|w| *w) {
        return Err(format!(
            "step {i}: warning raised by a detector River never warns with"
        ));
    }
    Ok(())
}

/// The first step listed in one of two sorted step lists but not the other.
fn first_difference(ours: &[usize], river: &[usize]) -> Option<usize> {
    let (mut a, mut b) = (ours.iter().peekable(), river.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x == y => {
                a.next();
                b.next();
            }
            (Some(&&x), Some(&&y)) => return Some(x.min(y)),
            (Some(&&x), None) | (None, Some(&&x)) => return Some(x),
            (None, None) => return None,
        }
    }
}

fn head(v: &[usize]) -> &[usize] {
    &v[..v.len().min(8)]
}

fn read_stream(path: &Path) -> Result<Vec<String>, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.lines().skip(1).map(|l| l.trim().to_owned()).collect())
}

fn reals(inputs: &[String]) -> Result<Vec<f64>, String> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.parse()
                .map_err(|_| format!("stream line {}: `{t}` is not a number", i + 2))
        })
        .collect()
}

/// A CSV file's header and rows; every row must have a cell per column.
// Split by hand rather than with a CSV crate: the golden files are numbers and names without
// quotes, and the core keeps to its few named dependencies.
fn read_table(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| format!("{} is empty", path.display()))?
        .split(',')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .enumerate()
        .map(|(n, line)| {
            let cells: Vec<String> = line.split(',').map(str::to_owned).collect();
            if cells.len() == header.len() {
                Ok(cells)
            } else {
                Err(format!(
                    "{} line {}: wrong number of cells",
                    path.display(),
                    n + 2
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok((header, rows))
}

fn read_trace(path: &Path) -> Result<Trace, String> {
    let (header, rows) = read_table(path)?;
    let mut trace = Trace::new();
    for (n, cells) in rows.into_iter().enumerate() {
        let row: HashMap<String, String> = header.iter().cloned().zip(cells).collect();
        let i = row
            .get("i")
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| format!("{} line {}: no step index", path.display(), n + 2))?;
        if trace.insert(i, row).is_some() {
            return Err(format!("{} has two rows for step {i}", path.display()));
        }
    }
    Ok(trace)
}

/// One multivariate event as River's dict: the non-empty feature cells, in column order.
type Event = Vec<(String, f64)>;

/// A `f..,[y,]is_outlier` stream: the events and, if present, the `y` column (`is_outlier` is
/// a label, never fed).
fn read_events(dir: &Path, case: &Case) -> Result<(Vec<Event>, Vec<f64>), String> {
    let (header, rows) = read_table(&dir.join("streams").join(format!("{}.csv", case.stream)))?;
    let (mut events, mut ys) = (Vec::new(), Vec::new());
    for (n, cells) in rows.iter().enumerate() {
        let mut event = Vec::new();
        for (name, cell) in header.iter().zip(cells) {
            let number = || {
                cell.parse::<f64>()
                    .map_err(|_| format!("row {}: `{cell}` is not a number", n + 2))
            };
            match name.as_str() {
                "is_outlier" => {}
                "y" => ys.push(number()?),
                _ if cell.is_empty() => {}
                _ => event.push((name.clone(), number()?)),
            }
        }
        events.push(event);
    }
    Ok((events, ys))
}

/// Scores from a `i,score` trace; `None` where River raised (empty cell).
fn read_scores(dir: &Path, case: &Case) -> Result<Vec<Option<f64>>, String> {
    let rel = case
        .trace
        .as_ref()
        .ok_or_else(|| format!("{} case without a trace", case.detector))?;
    let trace = read_trace(&dir.join(rel))?;
    let n = case.n.unwrap_or(trace.len());
    if let Some(i) = (0..n).find(|i| !trace.contains_key(i)) {
        return Err(format!("the trace has no row for step {i}"));
    }
    let mut scores = vec![None; n];
    for (i, row) in trace {
        let cell = field(i, "score", &row)?;
        let slot = scores
            .get_mut(i)
            .ok_or_else(|| format!("trace step {i} out of range"))?;
        if !cell.is_empty() {
            *slot = Some(
                cell.parse()
                    .map_err(|_| format!("step {i}: score `{cell}` is not a number"))?,
            );
        }
    }
    Ok(scores)
}

fn expect_score(i: usize, got: Option<f64>, want: Option<f64>) -> Result<(), String> {
    match (got, want) {
        (Some(g), Some(w)) if within_tolerance(g, w) => Ok(()),
        (None, None) => Ok(()),
        _ => Err(format!("step {i}: score {got:?}, River {want:?}")),
    }
}

fn run_sad(dir: &Path, case: &Case) -> Result<(), String> {
    let sub_stat = case
        .params
        .get("sub_stat")
        .and_then(|v| v.as_str())
        .unwrap_or("Mean");
    let centre = parse_sub_stat(sub_stat)?;
    let mut sad = Sad::new(SadParams { sub_stat: centre }).map_err(|e| e.to_string())?;
    let inputs = reals(&read_stream(
        &dir.join("streams").join(format!("{}.csv", case.stream)),
    )?)?;
    let expected = read_scores(dir, case)?;
    if expected.len() != inputs.len() {
        return Err(format!(
            "trace has {} steps, stream {}",
            expected.len(),
            inputs.len()
        ));
    }
    for (i, (&y, &want)) in inputs.iter().zip(&expected).enumerate() {
        use crate::anomaly::AnomalyDetector as _;
        let outcome = sad.score(&y).map(|scored| {
            let score = scored.score();
            scored.learn();
            score
        });
        let got = match outcome {
            Ok(score) => Some(score),
            Err(crate::anomaly::AnomalyError::NotReady { .. }) => {
                // River raised while scoring; it still learns the value.
                sad = learn_unscored(sad, y)?;
                None
            }
            Err(e) => return Err(format!("step {i}: {e}")),
        };
        expect_score(i, got, want)?;
    }
    Ok(())
}

/// River's SAD with a quantile centre cannot score its first value but learns it; our API only
/// learns through scores, so the runner rebuilds the detector from the values seen.
fn learn_unscored(sad: Sad, y: f64) -> Result<Sad, String> {
    if sad.n() > 0 {
        return Err("SAD refused to score after learning".into());
    }
    Sad::train_fresh(*sad.params(), &[y]).map_err(|e| e.to_string())
}

fn parse_sub_stat(name: &str) -> Result<SadCentre, String> {
    let arg = |prefix: &str| -> Option<Result<f64, String>> {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .map(|v| v.parse().map_err(|_| format!("bad sub_stat `{name}`")))
    };
    if name == "Mean" {
        Ok(SadCentre::Mean)
    } else if let Some(alpha) = arg("EWMean(") {
        Ok(SadCentre::EwMean(alpha?))
    } else if let Some(q) = arg("Quantile(") {
        Ok(SadCentre::Quantile(q?))
    } else {
        Err(format!("unsupported sub_stat `{name}`"))
    }
}

fn run_hst(dir: &Path, case: &Case) -> Result<(), String> {
    let mut params: HstParams = params(case)?;
    params.tree_rng = TreeRng::River;
    let (events, _) = read_events(dir, case)?;
    let expected = read_scores(dir, case)?;
    if events.len() != expected.len() {
        return Err(format!(
            "stream has {} rows, trace {}",
            events.len(),
            expected.len()
        ));
    }
    // Trees grown from the seed with Python's generator, lazily from the first event.
    let grown = HalfSpaceTrees::new(params.clone()).map_err(|e| e.to_string())?;
    let grown = replay_hst(grown, &events, &expected).map_err(|e| format!("seeded: {e}"))?;
    let Some(rel) = &case.trees else {
        return Ok(());
    };
    let text = fs::read_to_string(dir.join(rel)).map_err(|e| format!("cannot read {rel}: {e}"))?;
    let river: TreeSpec = serde_json::from_str(&text).map_err(|e| format!("{rel}: {e}"))?;
    same_trees(&grown, &river)?;
    // River's trees loaded explicitly, as a port without Python's generator would.
    let loaded = HalfSpaceTrees::from_trees(params, &river).map_err(|e| e.to_string())?;
    replay_hst(loaded, &events, &expected).map_err(|e| format!("from trees: {e}"))?;
    Ok(())
}

fn replay_hst(
    mut model: HalfSpaceTrees,
    events: &[Event],
    expected: &[Option<f64>],
) -> Result<HalfSpaceTrees, String> {
    for (i, (event, want)) in events.iter().zip(expected).enumerate() {
        let scored = model
            .score_named(event.iter().map(|(k, v)| (k.as_str(), *v)))
            .map_err(|e| format!("step {i}: {e}"))?;
        let score = scored.score();
        scored.learn();
        expect_score(i, Some(score), *want)?;
    }
    Ok(model)
}

/// The trees grown from the seed must be River's, split for split.
fn same_trees(model: &HalfSpaceTrees, river: &TreeSpec) -> Result<(), String> {
    let ours = model.tree_spec().ok_or("no trees after learning")?;
    if ours.feature_order != river.feature_order {
        return Err(format!(
            "feature order {:?}, River {:?}",
            ours.feature_order, river.feature_order
        ));
    }
    if ours.trees_preorder_branches.len() != river.trees_preorder_branches.len() {
        return Err("tree count differs from River's".into());
    }
    for (t, (a, b)) in ours
        .trees_preorder_branches
        .iter()
        .zip(&river.trees_preorder_branches)
        .enumerate()
    {
        if let Some(k) = (0..a.len().max(b.len())).find(|&k| a.get(k) != b.get(k)) {
            return Err(format!(
                "tree {t} split {k}: {:?}, River {:?}",
                a.get(k),
                b.get(k)
            ));
        }
    }
    Ok(())
}
