//! Events per second for each workload, one JSON line each (machine-readable benchmarks).
//!
//! ```text
//! cargo run --release -p anomaly-core --example throughput -- [WORKLOAD...] [--events N] [--inputs DIR]
//! ```
//! Prints `{"workload": NAME, "events": N, "seconds": S, "events_per_sec": R}` per workload:
//! the best of three runs, each from a fresh model whose first event was processed before
//! timing. Inputs are generated (`--events`, scaled down for the slow workloads), or read
//! from `DIR/<workload>.f64|u8` as written by `scripts/bench-vs-river`. With `--inputs`,
//! `hst_*` lines also carry `"model_bytes"`, the size of the trained model's node storage.

#[path = "../benches/workloads/mod.rs"]
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use workloads::{Input, Prepared, WORKLOADS, generate, load};

/// Events a workload runs when `events` are requested: the slow ones run fewer.
fn scaled(name: &str, events: usize) -> usize {
    match name {
        "kswin" | "hst_10_8" | "loda" | "rcf" => events / 10,
        "hst_25_15" => events / 50,
        "lof" => events / 200,
        _ => events,
    }
}

fn main() -> ExitCode {
    let mut names: Vec<String> = Vec::new();
    let mut events = 1_000_000usize;
    let mut inputs: Option<PathBuf> = None;
    // Parsed by hand: anomaly-core's examples keep to its few named dev-dependencies.
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 1 => events = n,
                _ => {
                    eprintln!("--events needs an integer above 1");
                    return ExitCode::from(2);
                }
            },
            "--inputs" => match args.next() {
                Some(dir) => inputs = Some(PathBuf::from(dir)),
                None => {
                    eprintln!("--inputs needs a folder");
                    return ExitCode::from(2);
                }
            },
            name if WORKLOADS.contains(&name) => names.push(arg),
            _ => {
                eprintln!("unknown workload `{arg}`; known: {}", WORKLOADS.join(", "));
                return ExitCode::from(2);
            }
        }
    }
    if names.is_empty() {
        names = WORKLOADS.iter().map(|s| s.to_string()).collect();
    }
    for name in &names {
        let input: Input = match &inputs {
            Some(dir) => match load(name, dir) {
                Ok(input) => input,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            },
            None => match generate(name, scaled(name, events) + 1) {
                Some(input) => input,
                None => continue,
            },
        };
        let Some(prepared) = Prepared::new(name, &input) else {
            continue;
        };
        let mut best = f64::INFINITY;
        let mut model_bytes = None;
        for _ in 0..3 {
            let mut runner = prepared.fresh();
            let start = Instant::now();
            std::hint::black_box(runner.run());
            best = best.min(start.elapsed().as_secs_f64());
            model_bytes = runner.model_bytes();
        }
        let n = prepared.events();
        let memory = match (model_bytes, &inputs) {
            (Some(bytes), Some(_)) => format!(", \"model_bytes\": {bytes}"),
            _ => String::new(),
        };
        println!(
            "{{\"workload\": \"{name}\", \"events\": {n}, \"seconds\": {best:.6}, \"events_per_sec\": {:.0}{memory}}}",
            n as f64 / best
        );
    }
    ExitCode::SUCCESS
}
