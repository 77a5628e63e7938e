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

/// A mock Kafka cluster with the pipeline's topics.
#[derive(clap::Parser)]
#[command(name = "mock-kafka")]
struct Args {
    /// Brokers in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..))]
    brokers: i32,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: i32,
}

fn main() -> ExitCode {
    let Args {
        brokers,
        partitions,
    } = clap::Parser::parse();
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
