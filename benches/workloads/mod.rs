//! Inputs and per-workload drivers shared by the criterion benches and the `throughput`
//! example, so both measure exactly the same thing. Inputs come from a seeded ChaCha generator
//! and are generated once, before timing.

#![allow(dead_code)]

use anomaly_core::anomaly::{AnomalyDetector, HalfSpaceTrees, HstParams, Sad};
use anomaly_core::drift::{
    Adwin, Ddm, DriftDetector, Eddm, HddmA, HddmW, Kswin, KswinParams, Outcome, PageHinkley,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Uniform values in [0, 1).
pub fn uniform(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f64>()).collect()
}

/// Standard normal values (Box-Muller).
pub fn normal(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

/// Prediction outcomes with a 10% error rate.
pub fn outcomes(n: usize, seed: u64) -> Vec<Outcome> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| Outcome::from_error_flag(rng.random::<f64>() < 0.1))
        .collect()
}

/// Feeds every input; returns the number of drifts so the work cannot be optimised away.
pub fn run<D: DriftDetector>(mut detector: D, inputs: &[D::Input]) -> usize {
    let mut drifts = 0;
    for &x in inputs {
        if let Ok(status) = detector.update(x) {
            drifts += usize::from(status.is_drift());
        }
    }
    drifts
}

/// The drift workloads by name: `(name, what it runs)`.
pub struct DriftInputs {
    pub uniform: Vec<f64>,
    pub normal: Vec<f64>,
    pub outcomes: Vec<Outcome>,
}

impl DriftInputs {
    pub fn new(n: usize) -> Self {
        Self {
            uniform: uniform(n, 1),
            normal: normal(n, 2),
            outcomes: outcomes(n, 3),
        }
    }

    /// Runs workload `name` once over all inputs; `None` for an unknown name.
    pub fn run(&self, name: &str) -> Option<usize> {
        Some(match name {
            "adwin" => run(Adwin::default(), &self.uniform),
            "ddm" => run(Ddm::default(), &self.outcomes),
            "eddm" => run(Eddm::default(), &self.outcomes),
            "hddm_a" => run(HddmA::default(), &self.outcomes),
            "hddm_w" => run(HddmW::default(), &self.outcomes),
            "page_hinkley" => run(PageHinkley::default(), &self.normal),
            "kswin" => run(kswin(), &self.normal),
            _ => return None,
        })
    }
}

/// KSWIN with River's defaults (window 100, stat 30) and a fixed seed.
pub fn kswin() -> Kswin {
    let params = KswinParams {
        seed: Some(42),
        ..KswinParams::default()
    };
    match Kswin::new(params) {
        Ok(k) => k,
        Err(e) => panic!("default KSWIN parameters rejected: {e}"),
    }
}

pub const ANOMALY_WORKLOADS: [&str; 3] = ["hst_10_8", "hst_25_15", "sad"];

pub const DRIFT_WORKLOADS: [&str; 7] = [
    "adwin",
    "ddm",
    "eddm",
    "hddm_a",
    "hddm_w",
    "page_hinkley",
    "kswin",
];

/// Rows of 8 features uniform in [0, 1), flattened.
pub fn rows(n: usize, width: usize, seed: u64) -> Vec<f64> {
    uniform(n * width, seed)
}

/// HalfSpaceTrees with `n_trees`, `height`, window 250, over 8 features.
pub fn hst(n_trees: u32, height: u32) -> HalfSpaceTrees {
    let params = HstParams {
        n_trees,
        height,
        window_size: 250,
        seed: Some(42),
        ..HstParams::default()
    };
    let names = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"];
    match HalfSpaceTrees::with_features(params, &names) {
        Ok(model) => model,
        Err(e) => panic!("benchmark HST parameters rejected: {e}"),
    }
}

/// Scores then learns every row; returns the sum of scores.
pub fn score_learn<D: AnomalyDetector<Input = [f64]>>(
    model: &mut D,
    rows: &[f64],
    width: usize,
) -> f64 {
    let mut total = 0.0;
    for row in rows.chunks_exact(width) {
        if let Ok(scored) = model.score(row) {
            total += scored.score();
            scored.learn();
        }
    }
    total
}

/// SAD score-then-learn over `values`; returns the sum of scores.
pub fn sad(values: &[f64]) -> f64 {
    let mut model = Sad::default();
    let mut total = 0.0;
    for y in values {
        if let Ok(scored) = model.score(y) {
            total += scored.score();
            scored.learn();
        }
    }
    total
}
