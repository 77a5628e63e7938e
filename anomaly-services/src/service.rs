//! The consume-process-produce loop every Kafka service runs: batches of up to
//! `KAFKA_BATCH_SIZE` records; bad records are dead-lettered and counted, never fatal; a
//! batch's offsets are marked processed only after all its outputs are acknowledged, and
//! committed per partition on an interval and at shutdown, so a crash replays at most the
//! uncommitted interval (at-least-once) instead of losing it. A failed batch is consumed again; if its partitions cannot be moved back to it,
//! the loop stops with an error (the process exits and its restart resumes from the last
//! committed offsets), since going on would let later offsets skip it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{error, info, warn};

use crate::adapters::kafka::{KafkaIo, Output, Record};
use crate::messages::dead_letter;
use crate::telemetry::http::Status;

/// The first wait after a failed batch; it doubles per failure in a row, up to
/// [`MAX_BACKOFF`], each wait drawn at random from its upper half so that replicas that failed
/// together do not retry together.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two tries of a failed batch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The dead-letter topic.
pub const DEAD_LETTERS: &str = "dead-letters";

pub use crate::failure::{Dependency, Failure, Unavailable};

/// A bad message's failure: dead-letter it under its error's kind.
pub fn reject(error: crate::messages::MessageError) -> Failure {
    Failure::Reject {
        kind: crate::messages::error_kind(&error),
        error: error.to_string(),
    }
}

/// An output carrying `message` as JSON.
pub fn json_output<T: serde::Serialize>(
    topic: &'static str,
    key: Option<String>,
    message: &T,
) -> Output {
    Output {
        topic,
        key,
        // Our message types are plain data: serializing them cannot fail.
        payload: serde_json::to_vec(message).unwrap_or_default(),
    }
}

/// The `dead-letters` record for `record`, rejected because of `error`.
pub fn dead_letter_output(record: &Record, error: &dyn std::fmt::Display) -> Output {
    let letter = dead_letter(
        error,
        &record.topic,
        record.partition,
        record.offset,
        &record.payload,
    );
    json_output(DEAD_LETTERS, None, &letter)
}

/// Dead-letters `record`, found bad only after its batch was processed (a row the database
/// refused as data): counted like a record rejected by [`Handler::handle`].
pub fn dead_letter_late(
    status: &Status,
    record: &Record,
    kind: &'static str,
    error: &str,
    out: &mut Vec<Output>,
) {
    status.metrics.errors.with_label_values(&[kind]).inc();
    status.metrics.dead_letters.inc();
    out.push(dead_letter_output(record, &error));
}

/// A service's per-record logic.
pub trait Handler {
    /// Processes one record, appending what it produces to `out`.
    fn handle(&mut self, record: &Record, out: &mut Vec<Output>) -> Result<(), Failure>;

    /// Called once a batch (`batch`, every record handled) is processed, before its outputs
    /// are produced and its offsets stored: where a batch writer commits its rows, and
    /// dead-letters (with [`dead_letter_late`]) the records whose rows the store refused. An
    /// error (only a dependency's: a record's own fault is dead-lettered, never fails a
    /// batch) makes the batch run again.
    fn end_batch(&mut self, _batch: &[Record], _out: &mut Vec<Output>) -> Result<(), Unavailable> {
        Ok(())
    }

    /// Called once a batch's outputs are acknowledged, before its offsets are stored: where a
    /// handler writes state that must not change unless the outputs went out. An error makes
    /// the batch run again.
    fn before_commit(&mut self) -> Result<(), Unavailable> {
        Ok(())
    }

    /// Called on every turn of the loop, between batches, whether records came or not:
    /// where a handler does periodic work (ml-inference checks for a newer model). It counts
    /// and logs its own errors; the loop goes on.
    fn tick(&mut self) {}

    /// Called once a batch's outputs are acknowledged and its offsets stored: state that
    /// records learned from is now final (a handler keeps a copy to return to).
    fn batch_committed(&mut self) {}

    /// Called when a batch failed and will be consumed again: a handler whose state learns
    /// from records goes back to its state after the last committed batch, so the replay
    /// does not count them twice.
    fn batch_failed(&mut self) {}

    /// Called when the records of the last failed batch will not come back to this consumer:
    /// the group gave their partitions to another one, which replays them. A handler that
    /// holds something back until the replay (ml-inference adopts no new model) stops
    /// waiting; without this, an instance whose partitions moved during a failure waited
    /// until its next committed batch, for good once the stream had ended.
    fn replay_moved_away(&mut self) {}
}

/// Why the loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// A batch failed and the consumer could not be moved back to it.
    #[error(
        "a failed batch could not be rewound ({0}); stopping so that a restart replays it from the last committed offset"
    )]
    RewindFailed(String),
    /// The offsets of the last batches could not be committed at shutdown: the next start
    /// replays them.
    #[error("the final offset commit failed ({0}); the next start replays since the last commit")]
    FinalCommit(String),
}

/// Runs `handler` on the subscribed topics until `shutdown` is set, then commits what was
/// processed and leaves the group.
pub fn run(
    io: &KafkaIo,
    handler: &mut impl Handler,
    status: &Arc<Status>,
    shutdown: &AtomicBool,
) -> Result<(), LoopError> {
    let metrics = &status.metrics;
    io.export_group_metrics(
        metrics.consumer_lag.clone(),
        metrics.partitions_revoked.clone(),
    );
    let mut backoff = Backoff::default();
    let mut stopped_by = Ok(());
    let mut commits_failing = false;
    // The partitions of the last failed batch whose records come back to this consumer,
    // until they do (a batch commits) or the group moves them elsewhere.
    let mut awaiting_replay: Vec<(String, i32)> = Vec::new();
    while !shutdown.load(Ordering::Relaxed) {
        if !awaiting_replay.is_empty() && !io.owns_any(&awaiting_replay) {
            info!("The failed batch's partitions moved to another consumer, which replays them");
            awaiting_replay.clear();
            handler.replay_moved_away();
        }
        handler.tick();
        commits_failing = commit_if_due(io, status).unwrap_or(commits_failing);
        let polled = io.poll_batch(io.tuning().batch_size, Duration::from_millis(200));
        if let Some(e) = &polled.error {
            warn!(error = e.to_string().as_str(); "Kafka poll failed");
            metrics.errors.with_label_values(&["kafka_poll"]).inc();
            status.healthy.store(false, Ordering::Relaxed);
        }
        let batch = polled.records;
        if batch.is_empty() {
            if polled.error.is_some() {
                backoff.wait(shutdown);
            }
            continue;
        }
        metrics.batch_records.observe(batch.len() as f64);
        let mut outputs = Vec::with_capacity(batch.len());
        let mut retry = None;
        let started = Instant::now();
        metrics.events_in.inc_by(batch.len() as u64);
        for record in &batch {
            match handler.handle(record, &mut outputs) {
                Ok(()) => {}
                Err(Failure::Reject { kind, error }) => {
                    metrics.errors.with_label_values(&[kind]).inc();
                    metrics.dead_letters.inc();
                    outputs.push(dead_letter_output(record, &error));
                }
                Err(Failure::Retry(e)) => {
                    retry = Some(e);
                    break;
                }
            }
        }
        if retry.is_none()
            && let Err(e) = handler.end_batch(&batch, &mut outputs)
        {
            retry = Some(e);
        }
        // Stages work per batch (one store round trip for all its records), so a record's
        // processing time is its share of the batch's; two clock reads per batch, not per record.
        let share = started.elapsed().as_secs_f64() / batch.len() as f64;
        for _ in &batch {
            metrics.processing_seconds.observe(share);
        }
        let outcome = match retry {
            Some(e) => Err(e),
            None => io
                .send_all(
                    &outputs,
                    Duration::from_millis(crate::adapters::kafka::SEND_TIMEOUT_MS),
                )
                .map_err(|e| Unavailable::new(Dependency::Kafka, e))
                .and_then(|()| handler.before_commit()),
        };
        let outcome = outcome.and_then(|()| {
            io.mark_processed(&batch)
                .map_err(|e| Unavailable::new(Dependency::Kafka, e))
        });
        match outcome {
            Ok(()) => {
                handler.batch_committed();
                awaiting_replay.clear();
                if let Some(newest) = batch.iter().filter_map(|r| r.timestamp_ms).max() {
                    metrics.last_event_time.set(newest as f64 / 1000.0);
                }
                metrics.events_out.inc_by(outputs.len() as u64);
                // Healthy again unless offsets cannot be committed: a service that processes
                // but never commits would replay everything after a restart.
                status.healthy.store(!commits_failing, Ordering::Relaxed);
                backoff = Backoff::default();
            }
            Err(e) => {
                // Nothing of this batch is committed: rewind so it is processed again.
                error!(
                    dependency = e.dependency.name(), error = e.detail.as_str();
                    "Batch failed; it will be processed again"
                );
                metrics
                    .errors
                    .with_label_values(&[unavailable_kind(e.dependency)])
                    .inc();
                status.healthy.store(false, Ordering::Relaxed);
                handler.batch_failed();
                match io.rewind(&batch) {
                    Ok(rewound) => awaiting_replay = rewound,
                    Err(e) => {
                        error!(error = e.to_string().as_str(); "Rewind failed");
                        stopped_by = Err(LoopError::RewindFailed(e.to_string()));
                        break;
                    }
                }
                if awaiting_replay.is_empty() {
                    handler.replay_moved_away();
                }
                backoff.wait(shutdown);
            }
        }
    }
    // Only batches whose outputs were acknowledged were marked processed: committing them
    // is right even after a failed rewind.
    let closed = io.close();
    info!("Consumer closed");
    match (stopped_by, closed) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(LoopError::FinalCommit(e.to_string())),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// Commits the processed offsets when the commit interval has passed: `Some(true)` if that
/// failed (counted; `/health` unhealthy until a commit succeeds; the positions stay pending for
/// the next try), `Some(false)` if it committed, `None` if it was not due.
fn commit_if_due(io: &KafkaIo, status: &Status) -> Option<bool> {
    match io.commit_due() {
        Ok(true) => Some(false),
        Ok(false) => None,
        Err(e) => {
            warn!(error = e.to_string().as_str(); "Offset commit failed; retrying at the next interval");
            status
                .metrics
                .errors
                .with_label_values(&["kafka_commit"])
                .inc();
            status.healthy.store(false, Ordering::Relaxed);
            Some(true)
        }
    }
}

/// The `anomaly_errors_total` kind of a failed batch.
fn unavailable_kind(dependency: Dependency) -> &'static str {
    match dependency {
        Dependency::Kafka => "kafka_unavailable",
        Dependency::Redis => "redis_unavailable",
        Dependency::Postgres => "postgres_unavailable",
        Dependency::Slack => "slack_unavailable",
    }
}

/// Capped exponential backoff with jitter between tries of a failed batch.
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    /// Sleeps between half and all of the current delay (waking early on shutdown), then
    /// doubles it (capped).
    fn wait(&mut self, shutdown: &AtomicBool) {
        let half = self.next / 2;
        crate::startup::sleep_unless_shutdown(half + half.mul_f64(rand::random::<f64>()), shutdown);
        self.next = (self.next * 2).min(MAX_BACKOFF);
    }
}
