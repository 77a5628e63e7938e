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

use workloads::{DRIFT_WORKLOADS, DriftInputs};

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
        } else if DRIFT_WORKLOADS.contains(&arg.as_str()) {
            names.push(arg);
        } else {
            eprintln!(
                "unknown workload `{arg}`; known: {}",
                DRIFT_WORKLOADS.join(", ")
            );
            return ExitCode::from(2);
        }
    }
    if names.is_empty() {
        names = DRIFT_WORKLOADS.iter().map(|s| s.to_string()).collect();
    }
    let inputs = DriftInputs::new(events);
    for name in names {
        // KSWIN is ~100x slower per update than the rest; fewer events keep the run short.
        let n = if name == "kswin" { events / 10 } else { events };
        let inputs = if n == events {
            &inputs
        } else {
            &DriftInputs::new(n)
        };
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let start = Instant::now();
            std::hint::black_box(inputs.run(&name));
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!(
            "{{\"workload\": \"{name}\", \"events\": {n}, \"seconds\": {best:.6}, \"events_per_sec\": {:.0}}}",
            n as f64 / best
        );
    }
    ExitCode::SUCCESS
}
