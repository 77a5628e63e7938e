//! Memory of the feature engineer and the alert router over many distinct cards.
//!
//! ```text
//! cargo run --release -p anomaly-services --example bench-memory [-- --cards 1000000]
//! ```
//! Feeds `--cards` transactions, each of a card never seen before, through the feature
//! engineer's record handler (its card states in a Redis server this program starts on a
//! spare port, so the machine's Redis is untouched), and as many alerts, each of a new card,
//! through the alert router's handler (rows discarded). Prints, every tenth of the run, the
//! process's resident memory and the alert router's `anomaly_dedupe_keys` gauge: both must
//! level off, whatever the number of cards (Redis holds the cards, under their TTL).

use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anomaly_services::adapters::kafka::{Output, Record};
use anomaly_services::adapters::redis::RedisFeatureStore;
use anomaly_services::failure::{RejectedRow, Unavailable};
use anomaly_services::messages::{Alert, AlertKind, RawTransaction, Severity};
use anomaly_services::service::Handler;
use anomaly_services::services::alert_router::{AlertRouterService, AlertWriter};
use anomaly_services::services::applied_card::AppliedCard;
use anomaly_services::services::feature_engineer::FeatureEngineerService;
use anomaly_services::stages::alert_routing::AlertRouter;
use anomaly_services::telemetry::http::Status;
use anomaly_services::telemetry::metrics::resident_memory_bytes;

type Error = Box<dyn std::error::Error>;

/// Stores nothing.
struct Discard;

impl AlertWriter for Discard {
    fn write_alerts(&mut self, _: &[(Alert, bool)]) -> Result<Vec<RejectedRow>, Unavailable> {
        Ok(Vec::new())
    }
}

fn record(topic: &str, offset: i64, payload: Vec<u8>) -> Record {
    Record {
        topic: topic.into(),
        partition: 0,
        offset,
        key: None,
        payload,
        timestamp_ms: None,
    }
}

/// One batch through `handler` as the service loop runs it.
fn run_batch(handler: &mut impl Handler, batch: &[Record]) -> Result<(), Error> {
    let mut out: Vec<Output> = Vec::new();
    for r in batch {
        handler.handle(r, &mut out).map_err(|e| format!("{e:?}"))?;
    }
    handler
        .end_batch(batch, &mut out)
        .map_err(|e| format!("{e:?}"))?;
    handler.before_commit().map_err(|e| format!("{e:?}"))?;
    handler.batch_committed();
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How many cards to measure.
#[derive(clap::Parser)]
#[command(name = "bench-memory")]
struct Args {
    /// Distinct cards whose states the services hold.
    #[arg(long, default_value_t = 1_000_000)]
    cards: i64,
}

fn run() -> Result<(), Error> {
    let Args { cards } = clap::Parser::parse();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e}"))?;
    let url = format!("redis://127.0.0.1:{port}");
    let result = (|| {
        let mut store = None;
        for _ in 0..100 {
            match RedisFeatureStore::connect(&url, "card:", 3_600, AppliedCard::default()) {
                Ok(s) => {
                    store = Some(s);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let store = store.ok_or("redis-server did not start")?;
        let engineer_status = Status::new("feature-engineer");
        let router_status = Status::new("alert-router");
        let mut engineer = FeatureEngineerService::new(store, Arc::clone(&engineer_status));
        let mut router = AlertRouterService::new(
            AlertRouter::new(Severity::High, 60_000),
            Discard,
            true,
            Arc::clone(&router_status),
        );
        let start_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64
            - 86_400_000;
        println!("| cards seen | resident memory (MiB) | alert keys remembered |");
        println!("|---:|---:|---:|");
        let report = |seen: i64, keys: i64| {
            let rss = resident_memory_bytes().unwrap_or(0) as f64 / (1 << 20) as f64;
            println!("| {seen} | {rss:.1} | {keys} |");
        };
        report(0, 0);
        let step = (cards / 10).max(1);
        let mut offset = 0;
        while offset < cards {
            let end = (offset + 1_000).min(cards);
            let transactions: Vec<Record> = (offset..end)
                .map(|i| {
                    let tx = RawTransaction {
                        schema_version: anomaly_services::messages::SCHEMA_VERSION,
                        event_id: format!("tx-{i}"),
                        card_id: format!("card-{i}"),
                        timestamp_ms: start_ms + i,
                        amount: 10.0 + (i % 500) as f64,
                        merchant: "m".into(),
                        category: "grocery".into(),
                        latitude: 48.85,
                        longitude: 2.35,
                        is_fraud: false,
                        phase: "normal".into(),
                    };
                    Ok(record("raw-transactions", i, serde_json::to_vec(&tx)?))
                })
                .collect::<Result<_, Error>>()?;
            run_batch(&mut engineer, &transactions)?;
            let alerts: Vec<Record> = (offset..end)
                .map(|i| {
                    let alert = Alert {
                        schema_version: anomaly_services::messages::SCHEMA_VERSION,
                        alert_id: format!("alert-{i}"),
                        kind: AlertKind::Anomaly,
                        severity: Severity::Critical,
                        timestamp_ms: start_ms + i,
                        event_id: format!("tx-{i}"),
                        card_id: Some(format!("card-{i}")),
                        score: Some(0.99),
                        message: "anomaly".into(),
                        top_features: vec![],
                    };
                    Ok(record("alerts", i, serde_json::to_vec(&alert)?))
                })
                .collect::<Result<_, Error>>()?;
            run_batch(&mut router, &alerts)?;
            offset = end;
            if offset % step == 0 || offset == cards {
                report(offset, router_status.metrics.dedupe_keys.get());
            }
        }
        let dead = engineer_status.metrics.dead_letters.get();
        if dead > 0 {
            return Err(format!("{dead} transactions dead-lettered").into());
        }
        Ok(())
    })();
    let _ = redis.kill();
    let _ = redis.wait();
    result
}
