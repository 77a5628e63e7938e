//! Golden cases of GaussianScorer, LOF, OneClassSVM, LODA and PAD: a score for every step,
//! plus the state River dumped (OneClassSVM's weights, LODA's projections and histograms,
//! PAD's predictions).

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde_json::Value;

use super::{Case, Event, field, read_trace, within_tolerance};
use crate::anomaly::{
    AnomalyError, GaussianScorer, GaussianScorerParams, LinearRegression, LinearRegressionParams,
    LocalOutlierFactor, Loda, LodaParams, LofParams, MinMaxScaled, OneClassSvm, OneClassSvmParams,
    PadParams, PredictiveAnomalyDetection, Predictor, UndefinedScore,
};

/// What River printed for one step.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expected {
    Score(f64),
    /// An empty cell: River raised.
    Raised,
    /// `nan`: River returned NaN (this crate answers with an error instead).
    NotANumber,
}

pub(super) fn run(dir: &Path, case: &Case) -> Result<(), String> {
    let n = case.n.ok_or("the case has no `n`")?;
    let expected = read_expected(dir, case, n)?;
    match case.detector.as_str() {
        "GaussianScorer" => {
            let params: GaussianScorerParams = super::params(case)?;
            let mut scorer = GaussianScorer::new(params).map_err(|e| e.to_string())?;
            let values = super::reals(&super::read_stream(&stream_path(dir, case))?)?;
            check_len(&values, n)?;
            for (i, y) in values.iter().enumerate() {
                let scored = scorer
                    .score_value(*y)
                    .map_err(|e| format!("step {i}: {e}"))?;
                let got = scored.score().map_err(drop);
                scored.learn();
                compare(i, got, expected[i])?;
            }
            Ok(())
        }
        "LOF" => {
            let params: LofParams = super::params(case)?;
            let mut lof = LocalOutlierFactor::new(params).map_err(|e| e.to_string())?;
            let (events, _) = read_events(dir, case, n)?;
            for (i, event) in events.iter().enumerate() {
                let scored = lof.score_named(named(event)).map_err(|e| step(i, e))?;
                let got = scored.score();
                scored.learn();
                compare(i, Ok(got), expected[i])?;
            }
            Ok(())
        }
        "OneClassSVM" => run_svm(dir, case, n, &expected),
        "LODA" => run_loda(dir, case, n, &expected),
        "PAD" => run_pad(dir, case, n, &expected),
        other => Err(format!(
            "detector `{other}` is not supported by this runner"
        )),
    }
}

fn step(i: usize, e: AnomalyError) -> String {
    format!("step {i}: {e}")
}

fn named(event: &Event) -> impl Iterator<Item = (&str, f64)> {
    event.iter().map(|(k, v)| (k.as_str(), *v))
}

fn stream_path(dir: &Path, case: &Case) -> std::path::PathBuf {
    dir.join("streams").join(format!("{}.csv", case.stream))
}

fn check_len<T>(rows: &[T], n: usize) -> Result<(), String> {
    if rows.len() == n {
        Ok(())
    } else {
        Err(format!(
            "the stream has {} rows, the case says n = {n}",
            rows.len()
        ))
    }
}

fn compare(i: usize, got: Result<f64, ()>, want: Expected) -> Result<(), String> {
    let ok = match (got, want) {
        (Ok(g), Expected::Score(w)) => within_tolerance(g, w),
        (Err(()), Expected::Raised | Expected::NotANumber) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("step {i}: score {got:?}, River {want:?}"))
    }
}

/// Every step's expected score; each of the `n` steps must have its row, and the empty and
/// `nan` cells must agree with the case's `raised` and `n_nan`.
fn read_expected(dir: &Path, case: &Case, n: usize) -> Result<Vec<Expected>, String> {
    let rel = case.trace.as_ref().ok_or("the case has no trace")?;
    let trace = read_trace(&dir.join(rel))?;
    if trace.len() != n {
        return Err(format!(
            "the trace has {} rows, the case says n = {n}",
            trace.len()
        ));
    }
    let mut raised_steps: Vec<usize> = case.raised.values().flatten().copied().collect();
    raised_steps.sort_unstable();
    let mut expected = Vec::with_capacity(n);
    let (mut empty, mut nan) = (Vec::new(), 0);
    for i in 0..n {
        let row = trace
            .get(&i)
            .ok_or_else(|| format!("the trace has no row for step {i}"))?;
        let cell = field(i, "score", row)?;
        expected.push(match cell {
            "" => {
                empty.push(i);
                Expected::Raised
            }
            "nan" => {
                nan += 1;
                Expected::NotANumber
            }
            text => Expected::Score(
                text.parse()
                    .map_err(|_| format!("step {i}: score `{text}` is not a number"))?,
            ),
        });
    }
    if empty != raised_steps {
        return Err("the trace's empty cells differ from the case's `raised` steps".into());
    }
    if Some(nan) != case.n_nan {
        return Err(format!(
            "the trace has {nan} nan cells, the case says {:?}",
            case.n_nan
        ));
    }
    Ok(expected)
}

/// The case's multivariate stream, which must have `n` rows.
fn read_events(dir: &Path, case: &Case, n: usize) -> Result<(Vec<Event>, Vec<f64>), String> {
    let (events, ys) = super::read_events(dir, case)?;
    check_len(&events, n)?;
    Ok((events, ys))
}

fn param_f64(params: &Value, key: &str, default: f64) -> Result<f64, String> {
    match params.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| format!("param `{key}` is not a number")),
    }
}

fn only_keys(params: &Value, known: &[&str]) -> Result<(), String> {
    if let Some(map) = params.as_object()
        && let Some(k) = map.keys().find(|k| !known.contains(&k.as_str()))
    {
        return Err(format!("unsupported param `{k}`"));
    }
    Ok(())
}

fn run_svm(dir: &Path, case: &Case, n: usize, expected: &[Expected]) -> Result<(), String> {
    let p = &case.params;
    only_keys(
        p,
        &[
            "nu",
            "sgd_lr",
            "intercept_lr",
            "clip_gradient",
            "init_constant",
        ],
    )?;
    let d = OneClassSvmParams::default();
    let params = OneClassSvmParams {
        nu: param_f64(p, "nu", d.nu)?,
        learning_rate: param_f64(p, "sgd_lr", d.learning_rate)?,
        intercept_lr: param_f64(p, "intercept_lr", d.intercept_lr)?,
        clip_gradient: param_f64(p, "clip_gradient", d.clip_gradient)?,
        initial_weight: param_f64(p, "init_constant", d.initial_weight)?,
    };
    let mut svm = OneClassSvm::new(params).map_err(|e| e.to_string())?;
    let (events, _) = read_events(dir, case, n)?;
    for (i, event) in events.iter().enumerate() {
        let scored = svm.score_named(named(event)).map_err(|e| step(i, e))?;
        let got = scored.score();
        scored.learn();
        compare(i, Ok(got), expected[i])?;
    }
    let Some(state) = &case.final_state else {
        return Ok(());
    };
    let want = |key: &str| {
        state
            .get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("final_state has no `{key}`"))
    };
    if !within_tolerance(svm.intercept(), want("intercept")?) {
        return Err(format!(
            "final intercept {}, River {}",
            svm.intercept(),
            want("intercept")?
        ));
    }
    if svm.n_iterations() as f64 != want("n_iterations")? {
        return Err("final n_iterations differs".into());
    }
    let river = state
        .get("weights")
        .and_then(Value::as_object)
        .ok_or("final_state has no weights")?;
    let ours = svm.weights();
    if ours.len() != river.len() {
        return Err(format!(
            "{} final weights, River {}",
            ours.len(),
            river.len()
        ));
    }
    for (name, w) in ours {
        let theirs = river.get(name).and_then(Value::as_f64);
        if !theirs.is_some_and(|t| within_tolerance(w, t)) {
            return Err(format!("final weight {name} = {w:?}, River {theirs:?}"));
        }
    }
    Ok(())
}

type Bins = Vec<(f64, f64, u64)>;

fn parse_bins(value: &Value) -> Result<Vec<Bins>, String> {
    let bad = || "histograms are not lists of [left, right, count]".to_string();
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|hist| {
            hist.as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|bin| match bin.as_array().map(Vec::as_slice) {
                    Some([l, r, c]) => match (l.as_f64(), r.as_f64(), c.as_u64()) {
                        (Some(l), Some(r), Some(c)) => Ok((l, r, c)),
                        _ => Err(bad()),
                    },
                    _ => Err(bad()),
                })
                .collect()
        })
        .collect()
}

fn run_loda(dir: &Path, case: &Case, n: usize, expected: &[Expected]) -> Result<(), String> {
    let params: LodaParams = super::params(case)?;
    if params.seed.is_none() {
        return Err("a LODA case needs a seed".into());
    }
    let mut loda = Loda::new(params).map_err(|e| e.to_string())?;
    let rel = case
        .loda_params
        .as_ref()
        .ok_or("the case has no loda_params")?;
    let text = fs::read_to_string(dir.join(rel)).map_err(|e| format!("cannot read {rel}: {e}"))?;
    let dumped: Value = serde_json::from_str(&text).map_err(|e| format!("{rel}: {e}"))?;
    let mut checkpoints: HashMap<usize, Vec<Bins>> = HashMap::new();
    if let Some(map) = dumped
        .get("histograms_before_step")
        .and_then(Value::as_object)
    {
        for (at, bins) in map {
            let at: usize = at.parse().map_err(|_| format!("{rel}: bad step `{at}`"))?;
            checkpoints.insert(at, parse_bins(bins)?);
        }
    }
    let (events, _) = read_events(dir, case, n)?;
    for (i, event) in events.iter().enumerate() {
        if let Some(bins) = checkpoints.get(&i) {
            same_histograms(&loda.histograms(), bins)
                .map_err(|e| format!("before step {i}: {e}"))?;
        }
        let scored = loda.score_named(named(event)).map_err(|e| step(i, e))?;
        let got = scored.score();
        scored.learn();
        if i == 0 {
            same_projections(&loda, &dumped).map_err(|e| format!("{rel}: {e}"))?;
        }
        compare(i, Ok(got), expected[i])?;
    }
    let final_bins = parse_bins(
        dumped
            .get("histograms_final")
            .ok_or("no histograms_final")?,
    )?;
    same_histograms(&loda.histograms(), &final_bins)
        .map_err(|e| format!("after the last step: {e}"))
}

/// The projections drawn from the seed must be River's, weight for weight.
fn same_projections(loda: &Loda, dumped: &Value) -> Result<(), String> {
    let river = dumped
        .get("projections")
        .and_then(Value::as_array)
        .ok_or("no projections")?;
    let ours = loda.projections();
    if ours.len() != river.len() {
        return Err(format!("{} projections, River {}", ours.len(), river.len()));
    }
    for (c, (mine, theirs)) in ours.iter().zip(river).enumerate() {
        let theirs: Vec<(&str, f64)> = theirs
            .as_array()
            .ok_or("a projection is not a list")?
            .iter()
            .filter_map(|pair| Some((pair.get(0)?.as_str()?, pair.get(1)?.as_f64()?)))
            .collect();
        if *mine != theirs {
            return Err(format!("projection {c}: {mine:?}, River {theirs:?}"));
        }
    }
    Ok(())
}

fn same_histograms(ours: &[Bins], river: &[Bins]) -> Result<(), String> {
    if ours.len() != river.len() {
        return Err(format!("{} histograms, River {}", ours.len(), river.len()));
    }
    for (c, (a, b)) in ours.iter().zip(river).enumerate() {
        let same = a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                within_tolerance(x.0, y.0) && within_tolerance(x.1, y.1) && x.2 == y.2
            });
        if !same {
            return Err(format!("histogram {c}: {a:?}, River {b:?}"));
        }
    }
    Ok(())
}

fn run_pad(dir: &Path, case: &Case, n: usize, expected: &[Expected]) -> Result<(), String> {
    let p = &case.params;
    only_keys(
        p,
        &["model", "sgd_lr", "intercept_lr", "n_std", "warmup_period"],
    )?;
    let d = LinearRegressionParams::default();
    let regression = LinearRegression::new(LinearRegressionParams {
        learning_rate: param_f64(p, "sgd_lr", d.learning_rate)?,
        intercept_lr: param_f64(p, "intercept_lr", d.intercept_lr)?,
        ..d
    })
    .map_err(|e| e.to_string())?;
    let params = PadParams {
        target: "y".into(),
        n_std: param_f64(p, "n_std", PadParams::default().n_std)?,
        warmup_period: p.get("warmup_period").and_then(Value::as_u64).unwrap_or(0),
    };
    let predictions = read_predictions(dir, case, n)?;
    let (events, ys) = read_events(dir, case, n)?;
    check_len(&ys, n)?;
    let events: Vec<Event> = events
        .into_iter()
        .zip(ys)
        .map(|(mut x, y)| {
            x.push(("y".to_owned(), y));
            x
        })
        .collect();
    match p.get("model").and_then(Value::as_str) {
        None | Some("MinMaxScaler|LinearRegression") => {
            let pad = PredictiveAnomalyDetection::new(params, MinMaxScaled::new(regression));
            replay_pad(
                pad.map_err(|e| e.to_string())?,
                &events,
                expected,
                &predictions,
            )
        }
        Some("LinearRegression") => {
            let pad = PredictiveAnomalyDetection::new(params, regression);
            replay_pad(
                pad.map_err(|e| e.to_string())?,
                &events,
                expected,
                &predictions,
            )
        }
        Some(other) => Err(format!("unsupported PAD model `{other}`")),
    }
}

fn replay_pad<P: Predictor>(
    mut pad: PredictiveAnomalyDetection<P>,
    events: &[Event],
    expected: &[Expected],
    predictions: &[Option<f64>],
) -> Result<(), String> {
    for (i, event) in events.iter().enumerate() {
        let scored = pad.score_named(named(event)).map_err(|e| step(i, e))?;
        let got = scored.score().map_err(|_: UndefinedScore| ());
        let predicted = scored.detector().last_prediction();
        scored.learn();
        let same_prediction = match predictions[i] {
            Some(want) => within_tolerance(predicted, want),
            None => predicted.is_nan(),
        };
        if !same_prediction {
            return Err(format!(
                "step {i}: y_pred {predicted:?}, River {:?}",
                predictions[i]
            ));
        }
        compare(i, got, expected[i])?;
    }
    Ok(())
}

/// PAD's `y_pred` column (`None` = nan).
fn read_predictions(dir: &Path, case: &Case, n: usize) -> Result<Vec<Option<f64>>, String> {
    let rel = case.trace.as_ref().ok_or("the case has no trace")?;
    let trace = read_trace(&dir.join(rel))?;
    (0..n)
        .map(|i| {
            let row = trace
                .get(&i)
                .ok_or_else(|| format!("the trace has no row for step {i}"))?;
            match field(i, "y_pred", row)? {
                "nan" => Ok(None),
                text => text
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("step {i}: y_pred `{text}` is not a number")),
            }
        })
        .collect()
}
