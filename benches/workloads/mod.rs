//! The benchmark workloads, shared by the criterion benches, the `throughput` example and
//! `scripts/bench-vs-river` (which feeds River and us the very same inputs).
//!
//! A workload is a model plus the kind of input it consumes. Inputs are generated from a
//! seeded ChaCha generator, or read from files written by the River comparison script:
//! `<workload>.f64` (little-endian doubles; rows of 8 for `hst_*` and `minmax`) or
//! `<workload>.u8` (one 0/1 byte per outcome, 1 = error).

#![allow(dead_code)]

use std::path::Path;

use anomaly_core::anomaly::{
    AnomalyDetector, GaussianScorer, HalfSpaceTrees, HstParams, LocalOutlierFactor, Loda,
    LodaParams, LofParams, OneClassSvm, OneClassSvmParams, RandomCutForest, RcfParams, Sad,
};
use anomaly_core::drift::{
    Adwin, Ddm, DriftDetector, Eddm, HddmA, HddmW, Kswin, KswinParams, Outcome, PageHinkley,
};
use anomaly_core::features::MinMaxScaler;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Features per row in the multivariate workloads.
pub const WIDTH: usize = 8;

/// Every workload, by the name the River comparison uses.
pub const WORKLOADS: [&str; 16] = [
    "hst_10_8",
    "hst_25_15",
    "sad",
    "gaussian",
    "lof",
    "one_class_svm",
    "loda",
    "rcf",
    "adwin",
    "ddm",
    "eddm",
    "hddm_a",
    "hddm_w",
    "page_hinkley",
    "kswin",
    "minmax",
];

/// The drift-detector workloads.
pub const DRIFT_WORKLOADS: [&str; 7] = [
    "adwin",
    "ddm",
    "eddm",
    "hddm_a",
    "hddm_w",
    "page_hinkley",
    "kswin",
];

/// What a workload consumes.
pub enum Input {
    /// One value per event.
    Values(Vec<f64>),
    /// One prediction outcome per event.
    Outcomes(Vec<Outcome>),
    /// `WIDTH` values per event, flattened.
    Rows(Vec<f64>),
}

impl Input {
    pub fn events(&self) -> usize {
        match self {
            Input::Values(v) => v.len(),
            Input::Outcomes(o) => o.len(),
            Input::Rows(r) => r.len() / WIDTH,
        }
    }
}

enum Kind {
    Uniform,
    Normal,
    Errors,
    Rows,
}

fn kind(name: &str) -> Option<Kind> {
    Some(match name {
        "hst_10_8" | "hst_25_15" | "minmax" | "lof" | "one_class_svm" | "loda" | "rcf" => {
            Kind::Rows
        }
        "sad" | "gaussian" | "page_hinkley" | "kswin" => Kind::Normal,
        "adwin" => Kind::Uniform,
        "ddm" | "eddm" | "hddm_a" | "hddm_w" => Kind::Errors,
        _ => return None,
    })
}

fn seed_of(name: &str) -> u64 {
    name.bytes()
        .fold(17, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

/// `events` generated inputs for workload `name` (`None` for an unknown name).
pub fn generate(name: &str, events: usize) -> Option<Input> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed_of(name));
    Some(match kind(name)? {
        Kind::Uniform => Input::Values((0..events).map(|_| rng.random::<f64>()).collect()),
        Kind::Normal => Input::Values((0..events).map(|_| normal(&mut rng)).collect()),
        Kind::Errors => Input::Outcomes(
            (0..events)
                .map(|_| Outcome::from_error_flag(rng.random::<f64>() < 0.1))
                .collect(),
        ),
        Kind::Rows => Input::Rows((0..events * WIDTH).map(|_| rng.random::<f64>()).collect()),
    })
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Reads workload `name`'s inputs from `dir` (see the module docs for the file format).
pub fn load(name: &str, dir: &Path) -> Result<Input, String> {
    let kind = kind(name).ok_or_else(|| format!("unknown workload `{name}`"))?;
    let extension = if matches!(kind, Kind::Errors) {
        "u8"
    } else {
        "f64"
    };
    let path = dir.join(format!("{name}.{extension}"));
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if let Kind::Errors = kind {
        return Ok(Input::Outcomes(
            bytes
                .iter()
                .map(|&b| Outcome::from_error_flag(b == 1))
                .collect(),
        ));
    }
    if bytes.len() % 8 != 0 {
        return Err(format!(
            "{} is not a whole number of doubles",
            path.display()
        ));
    }
    let values: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    Ok(match kind {
        Kind::Rows if values.len() % WIDTH != 0 => {
            return Err(format!("{} does not hold rows of {WIDTH}", path.display()));
        }
        Kind::Rows => Input::Rows(values),
        _ => Input::Values(values),
    })
}

/// A workload ready to run: its model freshly built, its first event already processed (so
/// one-off set-up such as River's lazy tree building stays out of the timing, on both sides).
pub struct Prepared<'a> {
    name: &'a str,
    input: &'a Input,
    state: State,
}

#[derive(Clone)]
enum State {
    Hst(HalfSpaceTrees),
    Sad(Sad),
    Gaussian(GaussianScorer),
    Lof(LocalOutlierFactor),
    OneClassSvm(OneClassSvm),
    Loda(Loda),
    Rcf(RandomCutForest),
    Adwin(Adwin),
    Ddm(Ddm),
    Eddm(Eddm),
    HddmA(HddmA),
    HddmW(HddmW),
    PageHinkley(PageHinkley),
    Kswin(Kswin),
    MinMax(MinMaxScaler),
}

/// HalfSpaceTrees with `n_trees` trees of `height`, window 250, over `WIDTH` features.
pub fn hst(n_trees: u32, height: u32) -> HalfSpaceTrees {
    let params = HstParams {
        n_trees,
        height,
        window_size: 250,
        seed: Some(42),
        ..HstParams::default()
    };
    let names: Vec<String> = (0..WIDTH).map(|i| format!("f{i}")).collect();
    match HalfSpaceTrees::with_features(params, &names) {
        Ok(model) => model,
        Err(e) => panic!("benchmark HST parameters rejected: {e}"),
    }
}

fn feature_names() -> Vec<String> {
    (0..WIDTH).map(|i| format!("f{i}")).collect()
}

fn built<M, E: std::fmt::Display>(model: Result<M, E>) -> M {
    match model {
        Ok(model) => model,
        Err(e) => panic!("benchmark parameters rejected: {e}"),
    }
}

fn kswin() -> Kswin {
    let params = KswinParams {
        seed: Some(42),
        ..KswinParams::default()
    };
    match Kswin::new(params) {
        Ok(k) => k,
        Err(e) => panic!("default KSWIN parameters rejected: {e}"),
    }
}

impl<'a> Prepared<'a> {
    pub fn new(name: &'a str, input: &'a Input) -> Option<Self> {
        let state = match name {
            "hst_10_8" => State::Hst(hst(10, 8)),
            "hst_25_15" => State::Hst(hst(25, 15)),
            "sad" => State::Sad(Sad::default()),
            "gaussian" => State::Gaussian(GaussianScorer::default()),
            "lof" => State::Lof(built(LocalOutlierFactor::with_features(
                LofParams::default(),
                &feature_names(),
            ))),
            "one_class_svm" => State::OneClassSvm(built(OneClassSvm::with_features(
                OneClassSvmParams::default(),
                &feature_names(),
            ))),
            "loda" => State::Loda(built(Loda::with_features(
                LodaParams {
                    seed: Some(42),
                    ..LodaParams::default()
                },
                &feature_names(),
            ))),
            "rcf" => State::Rcf(built(RandomCutForest::with_features(
                RcfParams {
                    seed: Some(42),
                    ..RcfParams::default()
                },
                &feature_names(),
            ))),
            "adwin" => State::Adwin(Adwin::default()),
            "ddm" => State::Ddm(Ddm::default()),
            "eddm" => State::Eddm(Eddm::default()),
            "hddm_a" => State::HddmA(HddmA::default()),
            "hddm_w" => State::HddmW(HddmW::default()),
            "page_hinkley" => State::PageHinkley(PageHinkley::default()),
            "kswin" => State::Kswin(kswin()),
            "minmax" => match MinMaxScaler::new(WIDTH) {
                Ok(scaler) => State::MinMax(scaler),
                Err(e) => panic!("scaler rejected: {e}"),
            },
            _ => return None,
        };
        let mut prepared = Self { name, input, state };
        prepared.state = prepared.fresh_after_first_event();
        Some(prepared)
    }

    pub fn name(&self) -> &str {
        self.name
    }

    /// Events one run processes (all but the first).
    pub fn events(&self) -> usize {
        self.input.events().saturating_sub(1)
    }

    fn fresh_after_first_event(&self) -> State {
        let mut state = self.state.clone();
        run_state(&mut state, self.input, 0, 1);
        state
    }

    /// A copy of the prepared state, for one timed run.
    pub fn fresh(&self) -> Runner<'a> {
        Runner {
            input: self.input,
            state: self.state.clone(),
        }
    }
}

/// One run's worth of state.
pub struct Runner<'a> {
    input: &'a Input,
    state: State,
}

impl Runner<'_> {
    /// Bytes of model storage, for the tree workloads.
    pub fn model_bytes(&self) -> Option<usize> {
        match &self.state {
            State::Hst(model) => Some(model.node_memory_bytes()),
            _ => None,
        }
    }

    /// Processes events 1.. of the input; returns a checksum so nothing is optimised away.
    pub fn run(&mut self) -> f64 {
        let n = self.input.events();
        run_state(&mut self.state, self.input, 1, n)
    }
}

fn run_state(state: &mut State, input: &Input, from: usize, to: usize) -> f64 {
    match (state, input) {
        (State::Hst(model), Input::Rows(rows)) => {
            score_learn(model, &rows[from * WIDTH..to * WIDTH])
        }
        (State::Sad(model), Input::Values(values)) => {
            let mut total = 0.0;
            for y in &values[from..to] {
                if let Ok(scored) = model.score(y) {
                    total += scored.score();
                    scored.learn();
                }
            }
            total
        }
        (State::Gaussian(model), Input::Values(values)) => {
            let mut total = 0.0;
            for y in &values[from..to] {
                if let Ok(scored) = model.score(y) {
                    total += scored.score().unwrap_or(0.0);
                    scored.learn();
                }
            }
            total
        }
        (State::Lof(model), Input::Rows(rows)) => {
            score_learn(model, &rows[from * WIDTH..to * WIDTH])
        }
        (State::OneClassSvm(model), Input::Rows(rows)) => {
            score_learn(model, &rows[from * WIDTH..to * WIDTH])
        }
        (State::Loda(model), Input::Rows(rows)) => {
            score_learn(model, &rows[from * WIDTH..to * WIDTH])
        }
        (State::Rcf(model), Input::Rows(rows)) => {
            score_learn(model, &rows[from * WIDTH..to * WIDTH])
        }
        (State::Adwin(d), Input::Values(v)) => drifts(d, &v[from..to]),
        (State::PageHinkley(d), Input::Values(v)) => drifts(d, &v[from..to]),
        (State::Kswin(d), Input::Values(v)) => drifts(d, &v[from..to]),
        (State::Ddm(d), Input::Outcomes(o)) => drifts(d, &o[from..to]),
        (State::Eddm(d), Input::Outcomes(o)) => drifts(d, &o[from..to]),
        (State::HddmA(d), Input::Outcomes(o)) => drifts(d, &o[from..to]),
        (State::HddmW(d), Input::Outcomes(o)) => drifts(d, &o[from..to]),
        (State::MinMax(scaler), Input::Rows(rows)) => {
            minmax(scaler, &rows[from * WIDTH..to * WIDTH])
        }
        _ => f64::NAN,
    }
}

/// Scores then learns every row (`WIDTH` values each); returns the sum of scores.
pub fn score_learn<D: AnomalyDetector<Input = [f64], Score = f64>>(
    model: &mut D,
    rows: &[f64],
) -> f64 {
    let mut total = 0.0;
    for row in rows.chunks_exact(WIDTH) {
        if let Ok(scored) = model.score(row) {
            total += scored.score();
            scored.learn();
        }
    }
    total
}

/// Feeds every input; returns the number of drifts.
fn drifts<D: DriftDetector>(detector: &mut D, inputs: &[D::Input]) -> f64 {
    let mut drifts = 0.0;
    for &x in inputs {
        if let Ok(status) = detector.update(x) {
            drifts += f64::from(u8::from(status.is_drift()));
        }
    }
    drifts
}

/// River's `MinMaxScaler` order, learn then transform, per row; returns the sum of scaled
/// values.
fn minmax(scaler: &mut MinMaxScaler, rows: &[f64]) -> f64 {
    let mut out = [0.0; WIDTH];
    let mut total = 0.0;
    for row in rows.chunks_exact(WIDTH) {
        if scaler.learn_transform(row, &mut out).is_ok() {
            total += out.iter().sum::<f64>();
        }
    }
    total
}
