//! Our Random Cut Forest, AWS's Rust implementation (`krcflib`) and `rcf3`, on the same inputs
//! in one run: events/s of score+update, the resident memory each model adds, and exact ROC AUC on
//! Shuttle (River's copy) and on the project's synthetic transactions.
//!
//! ```text
//! cargo run --release -p rcf-peers --bin bench-vs-rcf -- [--shuttle PATH] [--quick] [--seeds N]
//! ```
//! Prints Markdown tables: the speed is the best of three fresh processes per forest, the
//! memory the least of theirs. Shuttle is read from River's wheel (`target/bench-venv`, made by
//! `scripts/bench-vs-river`) unless `--shuttle` says where `shuttle.csv.gz` is.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anomaly_core::metrics::roc_auc;
use anomaly_services::generator::{Generator, GeneratorParams};
use anomaly_services::stages::feature_engineering::FeatureEngineer;
use rcf_peers::{Aws, Forest, Ours, Rcf3, Shape};

/// Resident memory of this process, in bytes (Linux).
fn resident_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb * 1024.0)
}

const NAMES: [&str; 3] = ["anomaly-core", "krcflib (AWS)", "rcf3"];

fn build(which: usize, shape: Shape) -> Box<dyn Forest> {
    match which {
        0 => Box::new(Ours::new(shape)),
        1 => Box::new(Aws::new(shape)),
        _ => Box::new(Rcf3::new(shape)),
    }
}

/// A data set: its name, points and anomaly labels.
type Labelled = (&'static str, Vec<Vec<f64>>, Vec<bool>);

/// Uniform points with a few far ones, from a fixed generator.
fn synthetic(n: usize, dim: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut state = seed ^ 0x0005_DEEC_E66D;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| {
            let far = if i % 100 == 99 { 3.0 } else { 0.0 };
            (0..dim).map(|_| uniform() + far).collect()
        })
        .collect()
}

/// Events/s of score+update, and how much the process's resident memory grew for the model.
fn speed(which: usize, shape: Shape, points: &[Vec<f64>]) -> (f64, f64) {
    let before = resident_bytes();
    let mut forest = build(which, shape);
    let start = Instant::now();
    let mut checksum = 0.0;
    for p in points {
        checksum += forest.score_then_learn(p);
    }
    let seconds = start.elapsed().as_secs_f64();
    let held = resident_bytes() - before;
    std::hint::black_box(checksum);
    drop(forest);
    (points.len() as f64 / seconds, held)
}

fn auc(which: usize, shape: Shape, points: &[Vec<f64>], labels: &[bool]) -> f64 {
    let mut forest = build(which, shape);
    let scores: Vec<f64> = points.iter().map(|p| forest.score_then_learn(p)).collect();
    roc_auc(&scores, labels).unwrap_or(f64::NAN)
}

fn read_shuttle(path: &Path) -> Result<(Vec<Vec<f64>>, Vec<bool>), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (mut points, mut labels) = (Vec::new(), Vec::new());
    for line in text.lines().skip(1) {
        let cells: Vec<f64> = line
            .split(',')
            .map(|c| c.parse().map_err(|_| format!("bad cell `{c}`")))
            .collect::<Result<_, _>>()?;
        let (label, features) = cells.split_last().ok_or("empty line")?;
        points.push(features.to_vec());
        labels.push(*label == 1.0);
    }
    Ok((points, labels))
}

/// The project's synthetic transactions through the feature engineer: (features, is_fraud).
fn transactions(events: u64) -> (Vec<Vec<f64>>, Vec<bool>) {
    let params = GeneratorParams {
        events,
        ..GeneratorParams::default()
    };
    let mut engineer = FeatureEngineer::new(anomaly_core::features::InMemoryStore::new(
        anomaly_core::features::CardState::default(),
    ));
    let (mut points, mut labels) = (Vec::new(), Vec::new());
    for tx in Generator::new(params) {
        if let Ok(vector) = engineer.process(&tx) {
            points.push(vector.features);
            labels.push(vector.is_fraud);
        }
    }
    (points, labels)
}

fn spread(values: &[f64]) -> String {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    format!("{mean:.4} [{lo:.4}, {hi:.4}]")
}

/// Runs one speed measurement in a child process: (events/s, resident bytes added).
fn measure_in_child(
    which: usize,
    trees: usize,
    sample_size: usize,
    events: usize,
) -> Option<(f64, f64)> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe)
        .args([
            "--one",
            &which.to_string(),
            &trees.to_string(),
            &sample_size.to_string(),
            &events.to_string(),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut numbers = text
        .split_whitespace()
        .filter_map(|v| v.parse::<f64>().ok());
    Some((numbers.next()?, numbers.next()?))
}

fn main() -> ExitCode {
    let mut shuttle = PathBuf::from(
        "target/bench-venv/lib/python3.11/site-packages/river/datasets/shuttle.csv.gz",
    );
    let mut quick = false;
    // Five seeds show the spread; twenty tell a change of a few thousandths from chance.
    let mut seeds = 5u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // One speed measurement, in this (fresh) process: which trees sample events.
            "--one" => {
                let n: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
                let [which, trees, sample_size, events] = n[..] else {
                    return ExitCode::from(2);
                };
                let shape = Shape {
                    dim: 8,
                    trees,
                    sample_size,
                    seed: 42,
                };
                let (rate, bytes) = speed(which, shape, &synthetic(events, 8, 1));
                std::hint::black_box(bytes);
                // Memory: ten models kept alive side by side, so the allocator's fixed cost
                // is shared out; the resident memory they add, per model.
                let points = synthetic(events.min(5_000), 8, 2);
                let before = resident_bytes();
                let forests: Vec<Box<dyn Forest>> = (0..10)
                    .map(|k| {
                        let mut f = build(
                            which,
                            Shape {
                                seed: 42 + k,
                                ..shape
                            },
                        );
                        for p in &points {
                            f.score_then_learn(p);
                        }
                        f
                    })
                    .collect();
                let per_model = (resident_bytes() - before) / forests.len() as f64;
                drop(forests);
                println!("{rate} {per_model}");
                return ExitCode::SUCCESS;
            }
            "--shuttle" => match args.next() {
                Some(p) => shuttle = PathBuf::from(p),
                None => {
                    eprintln!("--shuttle needs a path to shuttle.csv.gz");
                    return ExitCode::from(2);
                }
            },
            "--quick" => quick = true,
            "--seeds" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => seeds = n,
                _ => {
                    eprintln!("--seeds needs a whole number above 0");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!(
                    "unexpected argument `{other}`; usage: bench-vs-rcf [--shuttle PATH] [--quick] [--seeds N]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let scale = if quick { 10 } else { 1 };
    println!("| forest | trees / sample | events | score+update ev/s | resident MB per model |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for (trees, sample_size, events) in [(50, 256, 50_000), (100, 512, 20_000)] {
        let events = events / scale;
        // The best of three fresh processes each, taken in turns: on a shared machine a
        // single run can land in another tenant's busy second.
        let mut best = [(0.0f64, f64::INFINITY); NAMES.len()];
        for _ in 0..3 {
            for (which, name) in NAMES.iter().enumerate() {
                let Some((rate, bytes)) = measure_in_child(which, trees, sample_size, events)
                else {
                    eprintln!("the measurement of {name} failed");
                    return ExitCode::FAILURE;
                };
                best[which] = (best[which].0.max(rate), best[which].1.min(bytes));
            }
        }
        for (name, (rate, bytes)) in NAMES.iter().zip(best) {
            println!(
                "| {name} | {trees} / {sample_size} | {events} | {rate:.0} | {:.2} |",
                bytes / 1e6
            );
        }
    }
    println!();
    let datasets: Vec<Labelled> = {
        let mut sets = Vec::new();
        match read_shuttle(&shuttle) {
            Ok((mut p, mut l)) => {
                p.truncate(p.len() / scale);
                l.truncate(p.len());
                sets.push(("Shuttle", p, l));
            }
            Err(e) => eprintln!(
                "Shuttle skipped: {e} (run scripts/bench-vs-river once, or pass --shuttle)"
            ),
        }
        let (p, l) = transactions(50_000 / scale as u64);
        sets.push(("synthetic transactions", p, l));
        sets
    };
    println!(
        "| data | forest | ROC AUC, seeds 0-{}: mean [min, max] |",
        seeds - 1
    );
    println!("| --- | --- | --- |");
    for (data, points, labels) in &datasets {
        for (which, name) in NAMES.iter().enumerate() {
            let aucs: Vec<f64> = (0..seeds)
                .map(|seed| {
                    let shape = Shape {
                        dim: points[0].len(),
                        trees: 50,
                        sample_size: 256,
                        seed,
                    };
                    auc(which, shape, points, labels)
                })
                .collect();
            println!("| {data} | {name} | {} |", spread(&aucs));
        }
    }
    ExitCode::SUCCESS
}
