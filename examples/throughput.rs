//! Events per second for each workload, one JSON line each (machine-readable benchmarks).
//!
//! ```text
//! cargo run --release -p anomaly-core --example throughput -- [WORKLOAD...] [--events N]
//! ```
//! Prints `{"workload": NAME, "events": N, "seconds": S, "events_per_sec": R}` per workload,
//! the best of three runs over inputs generated once before timing.

#[path = "../benches/workloads/mod.rs"]
mod workloads;

use std::process::ExitCode;
use std::time::Instant;

use workloads::{ANOMALY_WORKLOADS, DRIFT_WORKLOADS, DriftInputs};

/// Events a workload runs for `events` requested: the slow ones run fewer.
fn scaled(name: &str, events: usize) -> usize {
    match name {
        "kswin" | "hst_10_8" => events / 10,
        "hst_25_15" => events / 50,
        _ => events,
    }
}

/// Times `work` over `n` events: best of three runs.
fn best_of_three(mut work: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        work();
        best = best.min(start.elapsed().as_secs_f64());
    }
    best
}

fn main() -> ExitCode {
    let mut names: Vec<String> = Vec::new();
    let mut events = 1_000_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--events" {
            match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => events = n,
                _ => {
                    eprintln!("--events needs a positive integer");
                    return ExitCode::from(2);
                }
            }
        } else if DRIFT_WORKLOADS.contains(&arg.as_str())
            || ANOMALY_WORKLOADS.contains(&arg.as_str())
        {
            names.push(arg);
        } else {
            eprintln!(
                "unknown workload `{arg}`; known: {}, {}",
                ANOMALY_WORKLOADS.join(", "),
                DRIFT_WORKLOADS.join(", ")
            );
            return ExitCode::from(2);
        }
    }
    if names.is_empty() {
        names = ANOMALY_WORKLOADS
            .iter()
            .chain(DRIFT_WORKLOADS.iter())
            .map(|s| s.to_string())
            .collect();
    }
    for name in names {
        let n = scaled(&name, events);
        let seconds = match name.as_str() {
            "hst_10_8" | "hst_25_15" => {
                let (trees, height) = if name == "hst_10_8" {
                    (10, 8)
                } else {
                    (25, 15)
                };
                let rows = workloads::rows(n, 8, 4);
                let mut model = workloads::hst(trees, height);
                // Warm up past the first window so every timed event scores.
                workloads::score_learn(&mut model, &rows[..8 * 250.min(n)], 8);
                best_of_three(|| {
                    std::hint::black_box(workloads::score_learn(&mut model, &rows, 8));
                })
            }
            "sad" => {
                let values = workloads::normal(n, 5);
                best_of_three(|| {
                    std::hint::black_box(workloads::sad(&values));
                })
            }
            _ => {
                let inputs = DriftInputs::new(n);
                best_of_three(|| {
                    std::hint::black_box(inputs.run(&name));
                })
            }
        };
        println!(
            "{{\"workload\": \"{name}\", \"events\": {n}, \"seconds\": {seconds:.6}, \"events_per_sec\": {:.0}}}",
            n as f64 / seconds
        );
    }
    ExitCode::SUCCESS
}
