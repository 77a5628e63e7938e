//! The producer: the seeded generator's transactions onto `raw-transactions`, paced by
//! `REPLAY_SPEED`, logging every phase transition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::adapters::kafka::{KafkaIo, Output};
use crate::generator::Generator;
use crate::pipeline::pace;
use crate::service::json_output;
use crate::telemetry::http::Status;

/// Topic it writes.
pub const SINK: &str = "raw-transactions";

/// Sends the whole stream (or until `shutdown`), in acknowledged batches of `KAFKA_BATCH_SIZE`; returns how
/// many transactions were delivered.
pub fn produce(
    io: &KafkaIo,
    generator: Generator,
    replay_speed: f64,
    status: &Status,
    shutdown: &AtomicBool,
) -> u64 {
    let boundaries = generator.boundaries().to_vec();
    let start = Instant::now();
    let mut first_ms = None;
    let batch_size = io.tuning().batch_size;
    let mut batch: Vec<Output> = Vec::with_capacity(batch_size);
    let mut delivered = 0;
    for (index, tx) in generator.enumerate() {
        if shutdown.load(Ordering::Relaxed) {
            break;
        }
        if let Some(b) = boundaries.iter().find(|b| b.index == index as u64) {
            info!(phase = b.name.as_str(), event = index; "Phase transition");
        }
        if replay_speed > 0.0 {
            let origin = *first_ms.get_or_insert(tx.timestamp_ms);
            pace(start, tx.timestamp_ms - origin, replay_speed);
        }
        batch.push(json_output(SINK, Some(tx.card_id.clone()), &tx));
        if batch.len() == batch_size {
            delivered += send(io, &mut batch, status, shutdown);
        }
    }
    delivered + send(io, &mut batch, status, shutdown)
}

/// Sends `batch` until it is acknowledged (or shutdown); returns how many were delivered.
fn send(io: &KafkaIo, batch: &mut Vec<Output>, status: &Status, shutdown: &AtomicBool) -> u64 {
    let mut backoff = Duration::from_millis(100);
    while !batch.is_empty() {
        match io.send_all(
            batch,
            Duration::from_millis(crate::adapters::kafka::SEND_TIMEOUT_MS),
        ) {
            Ok(()) => {
                let n = batch.len() as u64;
                status.metrics.events_out.inc_by(n);
                status.healthy.store(true, Ordering::Relaxed);
                batch.clear();
                return n;
            }
            Err(e) => {
                // Resending may duplicate a few transactions; consumers are idempotent.
                warn!(error = e.to_string().as_str(); "Send failed, retrying");
                status
                    .metrics
                    .errors
                    .with_label_values(&["kafka_send"])
                    .inc();
                status.healthy.store(false, Ordering::Relaxed);
                if shutdown.load(Ordering::Relaxed) {
                    return 0;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    0
}
