//! Replays a River golden-vector folder against anomaly-core.
//!
//! ```text
//! cargo run --release -p anomaly-core --example golden -- DIR [--only NAME,NAME...] [--tolerance REL]
//! ```
//! Compares every value exactly, unless `--tolerance` gives a relative tolerance (the golden
//! set allows 1e-12 for values through C's `pow`/`erf` on another C library than River's).
//! A case that cannot be read, or whose trace lacks a step, fails.
//! Prints one line per failing case (where it first differs), then
//! `golden: N passed, M failed`. Exits 1 when M > 0 or N = 0, 2 on bad usage.

use std::path::PathBuf;
use std::process::ExitCode;

use anomaly_core::conformance::{DETECTOR_NAMES, run_folder_with_tolerance};

const USAGE: &str = "usage: golden DIR [--only NAME,NAME...] [--tolerance REL]";

fn main() -> ExitCode {
    let mut dir: Option<PathBuf> = None;
    let mut only: Option<Vec<String>> = None;
    let mut tolerance = 0.0;
    // Parsed by hand: anomaly-core's examples keep to its few named dev-dependencies.
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--only" => {
                let Some(list) = args.next() else {
                    eprintln!("--only needs a comma-separated list of detectors\n{USAGE}");
                    return ExitCode::from(2);
                };
                let names: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
                if let Some(bad) = names.iter().find(|n| !DETECTOR_NAMES.contains(&n.as_str())) {
                    eprintln!(
                        "unknown detector `{bad}`; known: {}",
                        DETECTOR_NAMES.join(", ")
                    );
                    return ExitCode::from(2);
                }
                only = Some(names);
            }
            "--tolerance" => match args.next().map(|t| t.parse::<f64>()) {
                Some(Ok(t)) if (0.0..1.0).contains(&t) => tolerance = t,
                _ => {
                    eprintln!(
                        "--tolerance needs a relative tolerance in [0, 1), e.g. 1e-12\n{USAGE}"
                    );
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ if dir.is_none() && !arg.starts_with('-') => dir = Some(PathBuf::from(arg)),
            _ => {
                eprintln!("unexpected argument `{arg}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let report = match run_folder_with_tolerance(&dir, only.as_deref(), tolerance) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("{e}");
            println!("golden: 0 passed, 0 failed");
            return ExitCode::FAILURE;
        }
    };
    for failure in &report.failures {
        println!("FAIL {}: {}", failure.case, failure.reason);
    }
    println!(
        "golden: {} passed, {} failed",
        report.passed,
        report.failures.len()
    );
    if report.failures.is_empty() && report.passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
