//! The three forests behind one interface, so the benchmark and the agreement test feed them
//! the same points in the same order.

use rcflib::rcf::RCFOptionsBuilder;

/// A forest that scores a point, then learns it.
pub trait Forest {
    /// Scores `x` with what the forest holds now.
    fn score(&mut self, x: &[f64]) -> f64;
    /// Learns `x`.
    fn learn(&mut self, x: &[f64]);
    /// Scores then learns (the streaming protocol).
    fn score_then_learn(&mut self, x: &[f64]) -> f64 {
        let s = self.score(x);
        self.learn(x);
        s
    }
}

/// The forests' shared parameters.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Features per point.
    pub dim: usize,
    /// Trees.
    pub trees: usize,
    /// Points each tree samples.
    pub sample_size: usize,
    /// Seed.
    pub seed: u64,
}

/// anomaly-core's forest.
pub struct Ours {
    forest: anomaly_core::anomaly::RandomCutForest,
    pending: Option<f64>,
}

impl Ours {
    /// A forest of `shape`.
    pub fn new(shape: Shape) -> Self {
        let names: Vec<String> = (0..shape.dim).map(|i| format!("f{i}")).collect();
        let params = anomaly_core::anomaly::RcfParams {
            number_of_trees: shape.trees,
            sample_size: shape.sample_size,
            seed: Some(shape.seed),
            ..Default::default()
        };
        match anomaly_core::anomaly::RandomCutForest::with_features(params, &names) {
            Ok(forest) => Self {
                forest,
                pending: None,
            },
            Err(e) => panic!("forest parameters rejected: {e}"),
        }
    }

    /// The forest.
    pub fn forest(&self) -> &anomaly_core::anomaly::RandomCutForest {
        &self.forest
    }
}

impl Forest for Ours {
    fn score(&mut self, x: &[f64]) -> f64 {
        use anomaly_core::anomaly::AnomalyDetector;
        self.forest.score(x).map(|s| s.score()).unwrap_or(f64::NAN)
    }

    fn learn(&mut self, x: &[f64]) {
        use anomaly_core::anomaly::AnomalyDetector;
        if let Ok(scored) = self.forest.score(x) {
            scored.learn();
        }
        self.pending = None;
    }

    fn score_then_learn(&mut self, x: &[f64]) -> f64 {
        use anomaly_core::anomaly::AnomalyDetector;
        match self.forest.score(x) {
            Ok(scored) => {
                let s = scored.score();
                scored.learn();
                s
            }
            Err(_) => f64::NAN,
        }
    }
}

/// AWS's Rust implementation (the `krcflib` crate).
pub struct Aws {
    forest: Box<dyn rcflib::rcf::RCF + Send + Sync>,
    point: Vec<f32>,
}

impl Aws {
    /// A forest of `shape`, with AWS's defaults otherwise.
    pub fn new(shape: Shape) -> Self {
        let built = rcflib::rcf::RCFBuilder::new(shape.dim, 1)
            .tree_capacity(shape.sample_size)
            .number_of_trees(shape.trees)
            .random_seed(shape.seed)
            .build_default();
        match built {
            Ok(forest) => Self {
                forest,
                point: Vec::new(),
            },
            Err(e) => panic!("krcflib rejected the parameters: {e:?}"),
        }
    }

    fn load(&mut self, x: &[f64]) {
        self.point.clear();
        self.point.extend(x.iter().map(|&v| v as f32));
    }

    /// AWS's attribution: per feature, (high, low).
    pub fn attribution(&mut self, x: &[f64]) -> Vec<(f64, f64)> {
        self.load(x);
        match self.forest.attribution(&self.point) {
            Ok(d) => d.high.iter().copied().zip(d.low.iter().copied()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Forest for Aws {
    fn score(&mut self, x: &[f64]) -> f64 {
        self.load(x);
        self.forest.score(&self.point).unwrap_or(f64::NAN)
    }

    fn learn(&mut self, x: &[f64]) {
        self.load(x);
        let _ = self.forest.update(&self.point, 0);
    }
}

/// The independent `rcf3` implementation.
pub struct Rcf3 {
    forest: rcf3::Forest,
    point: Vec<f32>,
}

impl Rcf3 {
    /// A forest of `shape`, with its defaults otherwise.
    pub fn new(shape: Shape) -> Self {
        let built = rcf3::Forest::builder(shape.dim)
            .num_trees(shape.trees)
            .capacity(shape.sample_size)
            .seed(shape.seed)
            .build();
        match built {
            Ok(forest) => Self {
                forest,
                point: Vec::new(),
            },
            Err(e) => panic!("rcf3 rejected the parameters: {e:?}"),
        }
    }

    fn load(&mut self, x: &[f64]) {
        self.point.clear();
        self.point.extend(x.iter().map(|&v| v as f32));
    }
}

impl Forest for Rcf3 {
    fn score(&mut self, x: &[f64]) -> f64 {
        self.load(x);
        self.forest.score(&self.point).unwrap_or(f64::NAN)
    }

    fn learn(&mut self, x: &[f64]) {
        self.load(x);
        let _ = self.forest.update(&self.point);
    }
}
