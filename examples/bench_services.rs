//! End-to-end benchmark of the six service binaries over Kafka, Redis and PostgreSQL.
//!
//! ```text
//! scripts/bench-services [--events 200000] [--rate 5000] [--latency-seconds 20]
//!                        [--brokers 3] [--partitions 6] [--bootstrap HOST:PORT]
//! ```
//! Starts a standalone librdkafka mock cluster (`--example mock-kafka`; or uses the broker
//! given by `--bootstrap`), the five consuming services and then the producer (release
//! binaries), on the machine's Redis and PostgreSQL (`BENCH_REDIS_URL`, `BENCH_DATABASE_URL`;
//! its own key prefix and schema, removed afterwards). Two measurements:
//! 1. throughput: the producer sends `--events` transactions as fast as it can; events/s from
//!    the producer's start to the last of them written to `scored_events`, and each process's
//!    CPU seconds over that time (a single-threaded service near 1 CPU second per second is
//!    the bottleneck);
//! 2. latency: this program sends transactions at `--rate` per second for
//!    `--latency-seconds`, and reads back when each one's row was written (`ingested_at`):
//!    p50, p99 and max from send to row.
//!
//! `--producer-modes` measures only how a batch's outputs are best confirmed, on the mock
//! cluster: the services' way (idempotent producer, wait for the batch's delivery reports)
//! against one Kafka transaction per batch.
//!
//! Settings such as `KAFKA_BATCH_SIZE` or `KAFKA_LINGER_MS` are passed on to the services from
//! this program's environment. Logs of every process go to `target/bench-services/`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anomaly_services::adapters::kafka::{KafkaIo, Output};
use anomaly_services::generator::{Generator, GeneratorParams};

type Error = Box<dyn std::error::Error>;

/// What to measure.
#[derive(clap::Parser)]
#[command(name = "bench-services")]
struct Args {
    /// Transactions the producer sends.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Transactions per second of the latency run.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    /// How long the latency run lasts.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    latency_seconds: u64,
    /// Brokers of the mock cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    brokers: u32,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..))]
    partitions: u32,
    /// A running Kafka-protocol broker to use instead of a mock cluster.
    #[arg(long)]
    bootstrap: Option<String>,
    /// Also measure the producer alone in its modes.
    #[arg(long)]
    producer_modes: bool,
}

/// The services that consume, with their consumer group's topics.
const CONSUMERS: [(&str, &[&str]); 5] = [
    ("feature-engineer", &["raw-transactions"]),
    ("ml-inference", &["features", "model-updates"]),
    ("drift-detector", &["scores"]),
    ("retraining-worker", &["scores", "drift-events"]),
    ("alert-router", &["alerts"]),
];

struct Process {
    name: String,
    child: Child,
    port: Option<u16>,
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// User + system CPU seconds of `pid` so far.
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at field 3.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(11) + field(12)) / ticks
}

/// The pids of the machine's processes whose command name is `name` (the shared Redis and
/// PostgreSQL servers: their CPU is part of the pipeline's cost).
fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == name)
        })
        .collect()
}

fn total_cpu(pids: &[u32], ticks: f64) -> f64 {
    pids.iter().map(|&pid| cpu_seconds(pid, ticks)).sum()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200")
}

fn metric(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply
        .lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

struct Bench {
    target: PathBuf,
    logs: PathBuf,
    bootstrap: String,
    database_url: String,
    redis_url: String,
    schema: String,
    prefix: String,
}

impl Bench {
    fn spawn(&self, name: &str, extra: &[(&str, String)]) -> Result<Process, Error> {
        let port = free_port()?;
        let log = std::fs::File::create(self.logs.join(format!("{name}.log")))?;
        let mut command = Command::new(self.target.join(name));
        command
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("REDIS_URL", &self.redis_url)
            .env("REDIS_PREFIX", &self.prefix)
            .env("TIMESCALE_URL", &self.database_url)
            .env("TIMESCALE_SCHEMA", &self.schema)
            .env("HTTP_PORT", port.to_string())
            .env("SLACK_WEBHOOK_URL", "")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.target.join(name).display()))?;
        Ok(Process {
            name: name.to_owned(),
            child,
            port: Some(port),
        })
    }

    fn database(&self) -> Result<postgres::Client, Error> {
        let mut client = postgres::Client::connect(&self.database_url, postgres::NoTls)?;
        client.batch_execute(&format!("SET search_path TO \"{}\"", self.schema))?;
        Ok(client)
    }

    fn cleanup(&self) {
        if let Ok(mut client) = postgres::Client::connect(&self.database_url, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ));
        }
        if let Ok(mut redis) =
            redis::Client::open(self.redis_url.as_str()).and_then(|c| c.get_connection())
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query(&mut redis)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query(&mut redis);
            }
        }
    }
}

fn stop(process: &mut Process) {
    let _ = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = process.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = process.child.kill();
    let _ = process.child.wait();
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), Error> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn run(args: &Args) -> Result<(), Error> {
    let examples = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("no directory for this program")?;
    let target = examples
        .parent()
        .map(Path::to_path_buf)
        .ok_or("no target directory")?;
    let logs = target.join("bench-services");
    std::fs::create_dir_all(&logs)?;
    let ticks = clock_ticks();

    let mut mock = None;
    let bootstrap = match &args.bootstrap {
        Some(b) => b.clone(),
        None => {
            let mut child = Command::new(examples.join("mock-kafka"))
                .args(["--brokers", &args.brokers.to_string()])
                .args(["--partitions", &args.partitions.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start mock-kafka: {e}"))?;
            let mut line = String::new();
            if let Some(out) = child.stdout.take() {
                BufReader::new(out).read_line(&mut line)?;
            }
            let bootstrap = line
                .trim()
                .strip_prefix("bootstrap=")
                .ok_or(format!("mock-kafka said {line:?}"))?
                .to_owned();
            mock = Some(child);
            bootstrap
        }
    };
    let id = std::process::id();
    let bench = Bench {
        target,
        logs,
        bootstrap,
        database_url: std::env::var("BENCH_DATABASE_URL")
            .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into()),
        redis_url: std::env::var("BENCH_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        schema: format!("bench_{id}"),
        prefix: format!("bench:{id}:"),
    };
    let outcome = if args.producer_modes {
        producer_modes(&bench.bootstrap, args.events as usize)
    } else {
        measure(args, &bench, mock.as_ref().map(Child::id), ticks)
    };
    bench.cleanup();
    if let Some(mut mock) = mock {
        drop(mock.stdin.take());
        let _ = mock.wait();
    }
    outcome
}

fn measure(args: &Args, bench: &Bench, mock_pid: Option<u32>, ticks: f64) -> Result<(), Error> {
    let mut services = Vec::new();
    for (name, _) in CONSUMERS {
        services.push(bench.spawn(name, &[])?);
    }
    let outcome = measure_with(args, bench, &services, mock_pid, ticks);
    for process in &mut services {
        stop(process);
    }
    outcome
}

fn measure_with(
    args: &Args,
    bench: &Bench,
    services: &[Process],
    mock_pid: Option<u32>,
    ticks: f64,
) -> Result<(), Error> {
    // Ready: every service healthy, every group holding a committed start on all its
    // partitions (with `latest`, what is sent before that would be skipped).
    for process in services.iter() {
        let port = process.port.unwrap_or(0);
        wait_for(
            &format!("{} /health", process.name),
            Duration::from_secs(120),
            || http_ok(port, "/health"),
        )?;
    }
    for (group, topics) in CONSUMERS {
        let io = KafkaIo::connect(&bench.bootstrap, group, &[], "earliest")?;
        wait_for(
            &format!("{group} to join its group"),
            Duration::from_secs(120),
            || {
                io.committed(topics, Duration::from_secs(10))
                    .is_ok_and(|c| !c.is_empty() && c.values().all(Option::is_some))
            },
        )?;
    }

    // 1. Throughput.
    let mut database = bench.database()?;
    let cpu_before: Vec<f64> = services
        .iter()
        .map(|p| cpu_seconds(p.child.id(), ticks))
        .collect();
    let mock_before = mock_pid.map_or(0.0, |pid| cpu_seconds(pid, ticks));
    let servers = [
        ("redis-server", pids_named("redis-server")),
        ("postgres", pids_named("postgres")),
    ];
    let servers_before: Vec<f64> = servers
        .iter()
        .map(|(_, pids)| total_cpu(pids, ticks))
        .collect();
    let started_ms = now_ms();
    let started = Instant::now();
    let mut producer = bench.spawn(
        "producer",
        &[
            ("PRODUCER_EVENTS", args.events.to_string()),
            ("REPLAY_SPEED", "0".into()),
        ],
    )?;
    let mut producer_seconds = None;
    let mut producer_cpu = 0.0;
    let mut last = (0i64, Instant::now());
    // The drift-detector writes a batch's rows before it takes the next batch: once it has
    // taken all N, a few queries find the last row (counting the table every 200 ms would
    // add PostgreSQL load to what is measured).
    let drift_port = services
        .iter()
        .find(|p| p.name == "drift-detector")
        .and_then(|p| p.port)
        .unwrap_or(0);
    let finished_ms = loop {
        std::thread::sleep(Duration::from_millis(100));
        if producer_seconds.is_none() {
            producer_cpu = cpu_seconds(producer.child.id(), ticks).max(producer_cpu);
            if let Ok(Some(_)) = producer.child.try_wait() {
                producer_seconds = Some(started.elapsed().as_secs_f64());
            }
        }
        let taken = metric(drift_port, "anomaly_events_in_total").unwrap_or(0.0) as i64;
        if taken as u64 >= args.events {
            let row = database.query_one(
                "SELECT COUNT(*), EXTRACT(EPOCH FROM MAX(ingested_at))::FLOAT8 * 1000 FROM scored_events",
                &[],
            )?;
            let (count, newest): (i64, Option<f64>) = (row.get(0), row.get(1));
            if count as u64 >= args.events {
                break newest.unwrap_or_else(now_ms);
            }
        }
        if taken != last.0 {
            last = (taken, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "stalled: the drift-detector took {taken} of {} scored events; see {}",
                args.events,
                bench.logs.display()
            )
            .into());
        }
    };
    let wall = (finished_ms - started_ms) / 1000.0;
    let cpu_after: Vec<f64> = services
        .iter()
        .map(|p| cpu_seconds(p.child.id(), ticks))
        .collect();
    let mock_cpu = mock_pid.map_or(0.0, |pid| cpu_seconds(pid, ticks)) - mock_before;
    let servers_after: Vec<f64> = servers
        .iter()
        .map(|(_, pids)| total_cpu(pids, ticks))
        .collect();
    if let Ok(None) = producer.child.try_wait() {
        stop(&mut producer);
    }

    println!(
        "## Throughput: {} events, one instance per service",
        args.events
    );
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| end to end (producer start to last scored row) | {wall:.2} s |");
    println!(
        "| **end-to-end rate** | **{:.0} events/s** |",
        args.events as f64 / wall
    );
    if let Some(s) = producer_seconds {
        println!("| producer: all sent and acknowledged | {s:.2} s |");
    }
    println!();
    println!("| process | CPU s | CPU s per wall s | records in | records per batch |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| producer | {producer_cpu:.2} | {:.2} | |",
        producer_cpu / wall
    );
    for ((process, before), after) in services.iter().zip(&cpu_before).zip(&cpu_after) {
        let used = after - before;
        let records = process
            .port
            .and_then(|p| metric(p, "anomaly_events_in_total"))
            .unwrap_or(f64::NAN);
        let batches = process
            .port
            .and_then(|p| metric(p, "anomaly_batch_records_count"))
            .unwrap_or(f64::NAN);
        println!(
            "| {} | {used:.2} | {:.2} | {records:.0} | {:.0} |",
            process.name,
            used / wall,
            records / batches
        );
    }
    if mock_pid.is_some() {
        println!(
            "| mock Kafka cluster | {mock_cpu:.2} | {:.2} | |",
            mock_cpu / wall
        );
    }
    for (((name, _), before), after) in servers.iter().zip(&servers_before).zip(&servers_after) {
        let used = after - before;
        println!(
            "| {name} (all processes) | {used:.2} | {:.2} | |",
            used / wall
        );
    }
    println!();

    // 2. Latency at a paced rate, sent by this program.
    let total = args.rate * args.latency_seconds;
    let transactions: Vec<_> = Generator::new(GeneratorParams {
        seed: 4242,
        events: total,
        // After the throughput stream's last event time, so no card sees it as late.
        start_ms: GeneratorParams::default().start_ms + 30 * 86_400_000,
        ..GeneratorParams::default()
    })
    .collect();
    let sender = KafkaIo::connect(&bench.bootstrap, "bench-sender", &[], "earliest")?;
    let mut sent_at: HashMap<String, f64> = HashMap::with_capacity(transactions.len());
    let paced = Instant::now();
    let mut next = 0usize;
    while next < transactions.len() {
        let due =
            ((paced.elapsed().as_secs_f64() * args.rate as f64) as usize).min(transactions.len());
        if due > next {
            let chunk = &transactions[next..due];
            let outputs: Vec<Output> = chunk
                .iter()
                .map(|tx| Output {
                    topic: "raw-transactions",
                    key: Some(tx.card_id.clone()),
                    payload: serde_json::to_vec(tx).unwrap_or_default(),
                })
                .collect();
            let at = now_ms();
            sender.send_all(&outputs, Duration::from_secs(30))?;
            for tx in chunk {
                sent_at.insert(tx.event_id.clone(), at);
            }
            next = due;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let ids: Vec<String> = sent_at.keys().cloned().collect();
    let expected = args.events + total;
    wait_for("the paced events' rows", Duration::from_secs(120), || {
        metric(drift_port, "anomaly_events_in_total").unwrap_or(0.0) as u64 >= expected
            && database
                .query_one("SELECT COUNT(*) FROM scored_events", &[])
                .is_ok_and(|row| row.get::<_, i64>(0) as u64 >= expected)
    })?;
    let rows = database.query(
        "SELECT event_id, EXTRACT(EPOCH FROM ingested_at)::FLOAT8 * 1000 FROM scored_events WHERE event_id = ANY($1)",
        &[&ids],
    )?;
    let mut latencies: Vec<f64> = rows
        .iter()
        .filter_map(|row| {
            let id: String = row.get(0);
            let written: f64 = row.get(1);
            sent_at.get(&id).map(|sent| written - sent)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "## Latency: {} events/s for {} s, send to scored row",
        args.rate, args.latency_seconds
    );
    println!();
    println!("| p50 | p99 | max |");
    println!("| --- | --- | --- |");
    println!(
        "| {:.0} ms | {:.0} ms | {:.0} ms |",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}

/// Events/s of `events` transactions sent in batches of `KAFKA_BATCH_SIZE`-like sizes, each
/// batch confirmed before the next: by delivery reports, and by a transaction per batch.
fn producer_modes(bootstrap: &str, events: usize) -> Result<(), Error> {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    let outputs: Vec<Output> = Generator::new(GeneratorParams {
        events: events as u64,
        ..GeneratorParams::default()
    })
    .map(|tx| Output {
        topic: "raw-transactions",
        key: Some(tx.card_id.clone()),
        payload: serde_json::to_vec(&tx).unwrap_or_default(),
    })
    .collect();
    println!("| batch | delivery reports | one transaction per batch |");
    println!("| --- | --- | --- |");
    for batch in [100, 1_000, 5_000] {
        let io = KafkaIo::connect(bootstrap, "bench-acks", &[], "earliest")?;
        let started = Instant::now();
        for chunk in outputs.chunks(batch) {
            io.send_all(chunk, Duration::from_secs(30))?;
        }
        let acked = events as f64 / started.elapsed().as_secs_f64();

        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("transactional.id", format!("bench-tx-{batch}"))
            .set("linger.ms", "2")
            .create()?;
        producer.init_transactions(Duration::from_secs(30))?;
        let started = Instant::now();
        for chunk in outputs.chunks(batch) {
            producer.begin_transaction()?;
            for output in chunk {
                let mut record = BaseRecord::to(output.topic).payload(&output.payload);
                if let Some(key) = &output.key {
                    record = record.key(key);
                }
                while let Err((e, back)) = producer.send(record) {
                    if !matches!(
                        e,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ) {
                        return Err(e.into());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    record = back;
                }
            }
            producer.commit_transaction(Duration::from_secs(30))?;
        }
        let transactional = events as f64 / started.elapsed().as_secs_f64();
        println!("| {batch} | {acked:.0} events/s | {transactional:.0} events/s |");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Args = clap::Parser::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-services: {e}");
            ExitCode::FAILURE
        }
    }
}
