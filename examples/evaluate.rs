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
/// The CSV's feature names and where its label column is.
struct Layout {
    names: Vec<String>,
    label_column: usize,
}

fn open(path: &str) -> Result<std::io::Lines<std::io::BufReader<std::fs::File>>, String> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(std::io::BufReader::new(file).lines())
}

fn read_layout(path: &str, label: &str) -> Result<Layout, String> {
    let header = open(path)?
        .next()
        .ok_or("empty CSV")?
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    let header: Vec<&str> = header.split(',').collect();
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
    Ok(Layout {
        names,
        label_column,
    })
}

/// Calls `each` with every row's features and label, read from the file as it goes: like a
/// stream, the rows are not kept, so a run's memory is the model's.
fn for_each_row(
    path: &str,
    layout: &Layout,
    mut each: impl FnMut(&[f64], bool) -> Result<(), String>,
) -> Result<(), String> {
    let mut row = Vec::with_capacity(layout.names.len());
    for (n, line) in open(path)?.enumerate().skip(1) {
        let line = line.map_err(|e| format!("cannot read {path}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        row.clear();
        let mut label = false;
        for (i, cell) in line.split(',').enumerate() {
            let value: f64 = number(cell.trim(), &format!("line {}", n + 1))?;
            if i == layout.label_column {
                label = value == 1.0;
            } else {
                row.push(value);
            }
        }
        each(&row, label)?;
    }
    Ok(())
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

/// One seed's scores, with the labels, in the file's order, into buffers reused from seed to
/// seed (grown afresh each time, they leave holes that keep the allocator from giving the last
/// model's memory to the next).
fn run(
    options: &Options,
    layout: &Layout,
    seed: u64,
    scores: &mut Vec<f64>,
    labels: &mut Vec<bool>,
) -> Result<(), String> {
    let names = &layout.names;
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
    scores.clear();
    labels.clear();
    for_each_row(&options.csv, layout, |row, label| {
        labels.push(label);
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
        Ok(())
    })
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
    let layout = match read_layout(&options.csv, &options.label) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut aucs = Vec::new();
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for &seed in &options.seeds {
        match run(&options, &layout, seed, &mut scores, &mut labels) {
            Ok(()) => {
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
