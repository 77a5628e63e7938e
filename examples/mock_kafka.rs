//! A standalone Kafka-protocol cluster for benchmarks and manual runs: librdkafka's mock
//! cluster in its own process, with the pipeline's topics created.
//!
//! ```text
//! cargo run --release -p anomaly-services --example mock-kafka -- [--brokers 3] [--partitions 6]
//! ```
//! Prints `bootstrap=HOST:PORT,...` on its first line, then serves until its standard input
//! closes (the parent that started it exited) or it is killed. The brokers listen on
//! 127.0.0.1 only. Not for production: everything is in memory.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anomaly_services::services::TOPICS;
use rdkafka::mocking::MockCluster;

fn main() -> ExitCode {
    let mut brokers = 3;
    let mut partitions = 6;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<i32>().ok());
        match (arg.as_str(), value) {
            ("--brokers", Some(v)) if v > 0 => brokers = v,
            ("--partitions", Some(v)) if v > 0 => partitions = v,
            _ => {
                eprintln!("usage: mock-kafka [--brokers N] [--partitions N]");
                return ExitCode::FAILURE;
            }
        }
    }
    let cluster = match MockCluster::new(brokers) {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!("mock-kafka: cannot start the cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    for topic in TOPICS {
        if let Err(e) = cluster.create_topic(topic, partitions, 1) {
            eprintln!("mock-kafka: cannot create {topic}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "bootstrap={}", cluster.bootstrap_servers())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    // Serve until the parent goes away.
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}
