//! The producer: the seeded generator's transactions onto `raw-transactions`, paced by
//! `REPLAY_SPEED`, logging every phase transition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::adapters::kafka::{KafkaIo, Output};
use crate::config::ConfigError;
use crate::failure::Unavailable;
use crate::generator::Generator;
use crate::pipeline::pace;
use crate::service::json_output;
use crate::telemetry::http::Status;

/// Topic it writes.
pub const SINK: &str = "raw-transactions";

/// The part of the stream one of several producer instances sends: every instance generates
/// the same seeded stream and sends the transactions of the cards that hash to it, so the
/// instances together send the stream once, each card's transactions from one instance, in
/// order.
///
/// ```
/// use anomaly_services::services::producer::Shard;
///
/// let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
/// for card in ["card-000001", "card-000002", "card-000003"] {
///     assert_eq!(shards.iter().filter(|s| s.owns(card)).count(), 1);
/// }
/// assert!(Shard::WHOLE.owns("any card"));
/// assert!(Shard::new(3, 3).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// The only instance: the whole stream.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Instance `index` (from 0) of `count`.
    pub fn new(index: u32, count: u32) -> Result<Self, ConfigError> {
        if count == 0 {
            return Err(ConfigError {
                variable: "PRODUCER_INSTANCES",
                value: count.to_string(),
                expected: "at least 1",
            });
        }
        if index >= count {
            return Err(ConfigError {
                variable: "PRODUCER_INSTANCE",
                value: index.to_string(),
                expected: "below PRODUCER_INSTANCES (instances are numbered from 0)",
            });
        }
        Ok(Self { index, count })
    }

    /// Which instance this is, of how many: `(index, count)`.
    pub fn position(&self) -> (u32, u32) {
        (self.index, self.count)
    }

    /// Whether this instance sends the transactions of `card_id` (FNV-1a of its bytes, modulo
    /// the count: the same on every instance, build and platform).
    pub fn owns(&self, card_id: &str) -> bool {
        let hash = card_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        hash % u64::from(self.count) == u64::from(self.index)
    }
}

/// Where a producer instance records how far it has got (Redis in production, see
/// [`RedisProducerProgress`](crate::adapters::producer_progress::RedisProducerProgress)).
pub trait Progress {
    /// The generator index of the first event not acknowledged, if recorded.
    fn load(&mut self) -> Result<Option<u64>, Unavailable>;
    /// Records that every event before generator index `next` is acknowledged.
    fn save(&mut self, next: u64) -> Result<(), Unavailable>;
}

impl Progress for crate::adapters::producer_progress::RedisProducerProgress {
    fn load(&mut self) -> Result<Option<u64>, Unavailable> {
        crate::adapters::producer_progress::RedisProducerProgress::load(self)
            .map_err(Unavailable::redis)
    }
    fn save(&mut self, next: u64) -> Result<(), Unavailable> {
        crate::adapters::producer_progress::RedisProducerProgress::save(self, next)
            .map_err(Unavailable::redis)
    }
}

/// Progress kept in memory: a stream from its start (tests, benchmarks, one-off runs).
#[derive(Debug, Default)]
pub struct MemoryProgress(pub Option<u64>);

impl Progress for MemoryProgress {
    fn load(&mut self) -> Result<Option<u64>, Unavailable> {
        Ok(self.0)
    }
    fn save(&mut self, next: u64) -> Result<(), Unavailable> {
        self.0 = Some(next);
        Ok(())
    }
}

/// Sends this instance's share of the stream (or until `shutdown`), in acknowledged batches of
/// `KAFKA_BATCH_SIZE`, from where `progress` says the last run stopped, recording it after
/// every batch; returns how many transactions were delivered. A crash between a batch's
/// acknowledgement and its record sends that batch again (at least once).
pub fn produce(
    io: &KafkaIo,
    generator: Generator,
    shard: Shard,
    replay_speed: f64,
    progress: &mut dyn Progress,
    status: &Status,
    shutdown: &AtomicBool,
) -> Result<u64, Unavailable> {
    let resume_at = progress.load()?.unwrap_or(0);
    if resume_at > 0 {
        info!(event = resume_at; "Resuming the stream after the last acknowledged batch");
    }
    let boundaries = generator.boundaries().to_vec();
    let start = Instant::now();
    let mut first_ms = None;
    let batch_size = io.tuning().batch_size;
    let mut batch: Vec<Output> = Vec::with_capacity(batch_size);
    let mut delivered = 0;
    let mut next = resume_at;
    for (index, tx) in generator.enumerate() {
        let index = index as u64;
        if index < resume_at {
            continue;
        }
        if shutdown.load(Ordering::Relaxed) {
            break;
        }
        if let Some(b) = boundaries.iter().find(|b| b.index == index) {
            info!(phase = b.name.as_str(), event = index; "Phase transition");
        }
        if replay_speed > 0.0 {
            let origin = *first_ms.get_or_insert(tx.timestamp_ms);
            pace(start, tx.timestamp_ms - origin, replay_speed);
        }
        next = index + 1;
        if !shard.owns(&tx.card_id) {
            continue;
        }
        batch.push(json_output(SINK, Some(tx.card_id.clone()), &tx));
        if batch.len() == batch_size {
            delivered += send(io, &mut batch, status, shutdown);
            record(progress, next, &batch, status);
        }
    }
    delivered += send(io, &mut batch, status, shutdown);
    record(progress, next, &batch, status);
    Ok(delivered)
}

/// Records the progress once `batch` is empty (acknowledged); a failure is counted and left to
/// the next batch's record (a crash meanwhile sends a little more again).
fn record(progress: &mut dyn Progress, next: u64, batch: &[Output], status: &Status) {
    if !batch.is_empty() {
        return;
    }
    if let Err(e) = progress.save(next) {
        status
            .metrics
            .errors
            .with_label_values(&["redis_unavailable"])
            .inc();
        warn!(error = e.to_string().as_str(); "Could not record the producer's progress");
    }
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
