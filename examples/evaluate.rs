//! Streams a labelled CSV through an online min-max scaler and HalfSpaceTrees, score then
//! learn, and prints the exact ROC AUC per seed.
//!
//! ```text
//! cargo run --release -p anomaly-core --example evaluate -- --csv FILE --label COLUMN \
//!     [--n-trees N --height H --window W --seeds 0,1,2,3,4] [--protocol river|fused] \
//!     [--trees chacha|river]
//! ```
//! `--trees river` grows River's very trees for each seed (Python's generator), so the
//! `river` protocol then reproduces River's scores exactly.
//! The CSV has a header row, numeric feature columns and a 0/1 label column (a `.gz` file is
//! not read: decompress it first). Protocols:
//! * `river` (default): River's `MinMaxScaler() | HalfSpaceTrees()` pipeline: the event is
//!   scored with the scaler as it was, then the scaler learns it and the trees learn it scaled
//!   with the updated scaler.
//! * `fused`: the scaler learns the event first, then the trees score and learn the same
//!   scaled row (one walk per tree, what the pipeline services do).

use std::process::ExitCode;

use anomaly_core::anomaly::{AnomalyDetector, HalfSpaceTrees, HstParams, TreeRng};
use anomaly_core::metrics::roc_auc;

struct Options {
    csv: String,
    label: String,
    n_trees: u32,
    height: u32,
    window: u32,
    seeds: Vec<u64>,
    fused: bool,
    tree_rng: TreeRng,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        csv: String::new(),
        label: String::new(),
        n_trees: 10,
        height: 8,
        window: 250,
        seeds: vec![0, 1, 2, 3, 4],
        fused: false,
        tree_rng: TreeRng::ChaCha,
    };
    // Parsed by hand: anomaly-core's examples keep to its few named dev-dependencies.
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--csv" => options.csv = value()?,
            "--label" => options.label = value()?,
            "--n-trees" => options.n_trees = number(&value()?, &flag)?,
            "--height" => options.height = number(&value()?, &flag)?,
            "--window" => options.window = number(&value()?, &flag)?,
            "--seeds" => {
                options.seeds = value()?
                    .split(',')
                    .map(|s| number(s.trim(), "--seeds"))
                    .collect::<Result<_, _>>()?
            }
            "--protocol" => {
                options.fused = match value()?.as_str() {
                    "river" => false,
                    "fused" => true,
                    other => return Err(format!("--protocol is river or fused, not `{other}`")),
                }
            }
            "--trees" => {
                options.tree_rng = match value()?.as_str() {
                    "chacha" => TreeRng::ChaCha,
                    "river" => TreeRng::River,
                    other => return Err(format!("--trees is chacha or river, not `{other}`")),
                }
            }
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if options.csv.is_empty() || options.label.is_empty() {
        return Err("--csv and --label are required".into());
    }
    Ok(options)
}

fn number<T: std::str::FromStr>(text: &str, flag: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: `{text}` is not a valid number"))
}

/// A labelled CSV: feature names, rows and labels.
struct Dataset {
    names: Vec<String>,
    rows: Vec<Vec<f64>>,
    labels: Vec<bool>,
}

fn read_csv(path: &str, label: &str) -> Result<Dataset, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty CSV")?.split(',').collect();
    let label_column = header
        .iter()
        .position(|h| h.trim() == label)
        .ok_or(format!("no column `{label}` in the header"))?;
    let names = header
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != label_column)
        .map(|(_, h)| h.trim().to_owned())
        .collect();
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut row = Vec::with_capacity(header.len() - 1);
        for (i, cell) in line.split(',').enumerate() {
            let value: f64 = number(cell.trim(), &format!("line {}", n + 2))?;
            if i == label_column {
                labels.push(value == 1.0);
            } else {
                row.push(value);
            }
        }
        rows.push(row);
    }
    Ok(Dataset {
        names,
        rows,
        labels,
    })
}

/// River's `preprocessing.MinMaxScaler`: `(x - min) / (max - min)`, 0 when the range is 0.
struct MinMax {
    min: Vec<f64>,
    max: Vec<f64>,
}

impl MinMax {
    fn new(width: usize) -> Self {
        Self {
            min: vec![f64::INFINITY; width],
            max: vec![f64::NEG_INFINITY; width],
        }
    }

    fn learn(&mut self, row: &[f64]) {
        for ((lo, hi), x) in self.min.iter_mut().zip(&mut self.max).zip(row) {
            *lo = lo.min(*x);
            *hi = hi.max(*x);
        }
    }

    fn transform(&self, row: &[f64], out: &mut [f64]) {
        for (i, x) in row.iter().enumerate() {
            let range = self.max[i] - self.min[i];
            // Before the scaler has seen anything River yields NaN; HST scores 0 then anyway,
            // and 0 keeps our finite-input check happy.
            out[i] = if range != 0.0 && range.is_finite() {
                (x - self.min[i]) / range
            } else {
                0.0
            };
        }
    }
}

fn run(
    options: &Options,
    names: &[String],
    rows: &[Vec<f64>],
    seed: u64,
) -> Result<Vec<f64>, String> {
    let params = HstParams {
        n_trees: options.n_trees,
        height: options.height,
        window_size: options.window,
        seed: Some(seed),
        tree_rng: options.tree_rng,
        ..HstParams::default()
    };
    let mut model = HalfSpaceTrees::with_features(params, names).map_err(|e| e.to_string())?;
    let mut scaler = MinMax::new(names.len());
    let mut scaled = vec![0.0; names.len()];
    let mut scores = Vec::with_capacity(rows.len());
    for row in rows {
        if options.fused {
            scaler.learn(row);
            scaler.transform(row, &mut scaled);
            let scored = model.score(&scaled).map_err(|e| e.to_string())?;
            scores.push(scored.score());
            scored.learn();
        } else {
            scaler.transform(row, &mut scaled);
            // Scored with the scaler as it was; dropping the score leaves the model as is.
            scores.push(model.score(&scaled).map_err(|e| e.to_string())?.score());
            scaler.learn(row);
            scaler.transform(row, &mut scaled);
            model.score(&scaled).map_err(|e| e.to_string())?.learn();
        }
    }
    Ok(scores)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(e) => {
            eprintln!(
                "{e}\nusage: evaluate --csv FILE --label COLUMN [--n-trees N --height H --window W --seeds 0,1,2] [--protocol river|fused] [--trees chacha|river]"
            );
            return ExitCode::from(2);
        }
    };
    let Dataset {
        names,
        rows,
        labels,
    } = match read_csv(&options.csv, &options.label) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut aucs = Vec::new();
    for &seed in &options.seeds {
        match run(&options, &names, &rows, seed) {
            Ok(scores) => {
                let Some(auc) = roc_auc(&scores, &labels) else {
                    eprintln!("the labels hold a single class: ROC AUC is undefined");
                    return ExitCode::FAILURE;
                };
                println!("seed={seed} auc={auc:.6}");
                aucs.push(auc);
            }
            Err(e) => {
                eprintln!("seed {seed}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mean = aucs.iter().sum::<f64>() / aucs.len() as f64;
    let variance = aucs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / aucs.len() as f64;
    println!("auc_mean={mean:.4} auc_std={:.4}", variance.sqrt());
    ExitCode::SUCCESS
}
