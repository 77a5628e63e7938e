//! The drift detectors' single owner. ADWIN and DDM watch the whole score stream: split over
//! the instances of a consumer group, each would see a third of it, report each drift once
//! per instance and lose its state whenever a partition moved. So one drift-detector instance
//! at a time, the holder of a Redis lease, runs them: it reads every partition of `scores`
//! outside the group, and after each batch writes the drifts' rows, sends their events and
//! alerts, then checkpoints the detectors with the offsets they cover (a write fenced by the
//! lease). The other instances stand by; when the lease ends (crash, shutdown), one of them
//! takes over from the checkpoint, so the detectors go on as if nothing happened. Scored
//! events are stored by every instance from its own partitions, in the group (see
//! [`drift_detector`](super::drift_detector)).

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};
use serde::{Deserialize, Serialize};

use crate::adapters::checkpoints::{Lease, Ownership};
use crate::adapters::kafka::{KafkaIo, Output, Record, StartFrom};
use crate::failure::{Dependency, Unavailable};
use crate::messages::{DriftEvent, ScoredEvent, decode_scored};
use crate::service::json_output;
use crate::services::drift_detector::{ALERTS, DRIFT_EVENTS, EventWriter, SCORES};
use crate::stages::drift_monitor::{DriftMonitor, drift_alert};
use crate::startup::sleep_unless_shutdown;
use crate::telemetry::http::Status;

/// The detectors and the next offset of every partition they have seen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DetectorCheckpoint {
    /// ADWIN and DDM.
    pub monitor: DriftMonitor,
    /// Per partition of `scores`, the first offset the detectors have not seen.
    pub positions: BTreeMap<i32, i64>,
}

/// How the owner works.
#[derive(Clone, Debug)]
pub struct LeaderSettings {
    /// How long the lease lasts without renewal: a crashed owner is replaced after it.
    pub lease: Duration,
    /// Where the detectors start on a partition no checkpoint covers.
    pub start: StartFrom,
    /// Scored events counted but not watched at the start (the model's warm-up).
    pub warm_up: u64,
    /// Records per batch.
    pub batch_size: usize,
}

/// Where the owner reads from: a Kafka client outside any group, made for each session.
pub trait ScoreSource {
    /// A fresh client.
    fn connect(&self) -> Result<KafkaIo, Unavailable>;
}

impl<F: Fn() -> Result<KafkaIo, Unavailable>> ScoreSource for F {
    fn connect(&self) -> Result<KafkaIo, Unavailable> {
        self()
    }
}

/// One stretch of ownership: a client reading every partition, the records read and not yet
/// detected, the detectors as of the last checkpoint written, and the events recently seen.
struct Session {
    io: KafkaIo,
    merge: EventTimeMerge,
    checkpoint: DetectorCheckpoint,
    recent: RecentEvents,
    partitions: usize,
    next_partition_check: Instant,
}

/// How often the owner looks for partitions added to `scores` (it then starts a new session
/// from its checkpoint, reading the new partitions from their start).
const PARTITION_CHECK: Duration = Duration::from_secs(30);

/// How many of each partition's latest events are remembered to recognise a replayed one.
/// An upstream instance that crashes or loses a partition before committing sends again what
/// it scored since its last commit (a second of records at most while commits succeed), under
/// the same key, so into the same partition, shortly after the originals.
pub const DEDUPE_WINDOW: usize = 20_000;

/// The ids (hashed) of the latest [`DEDUPE_WINDOW`] scored events of each partition, so that
/// the detectors see an event replayed upstream once. Not checkpointed: a new session rebuilds
/// it from the log itself, reading the window before the checkpoint's positions.
struct RecentEvents {
    partitions: BTreeMap<i32, (VecDeque<u64>, HashSet<u64>)>,
    window: usize,
}

impl RecentEvents {
    fn new(window: usize) -> Self {
        Self {
            partitions: BTreeMap::new(),
            window: window.max(1),
        }
    }

    fn hash(event_id: &str) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        event_id.hash(&mut hasher);
        hasher.finish()
    }

    /// Whether `event_id` is among the partition's recent events; if not, it is now.
    fn seen_before(&mut self, partition: i32, event_id: &str) -> bool {
        let id = Self::hash(event_id);
        let (order, ids) = self.partitions.entry(partition).or_default();
        if !ids.insert(id) {
            return true;
        }
        order.push_back(id);
        if order.len() > self.window
            && let Some(oldest) = order.pop_front()
        {
            ids.remove(&oldest);
        }
        false
    }
}

/// A scored event read and waiting for its turn (`None`: it does not decode, and is skipped).
struct Pending {
    time: i64,
    partition: i32,
    offset: i64,
    event: Option<ScoredEvent>,
}

/// Hands the records of several partitions over in event-time order: a record goes out only
/// when every partition has one buffered or has reached its end, so a partition read in a
/// burst (the backlog after a takeover) does not run ahead of the others and make the
/// detectors see the stream out of order.
struct EventTimeMerge {
    buffers: BTreeMap<i32, VecDeque<Pending>>,
    at_end: BTreeSet<i32>,
    /// When each partition last delivered a record or reached its end.
    heard: BTreeMap<i32, Instant>,
}

/// A partition silent this long (no record, no end: its broker is down) stops holding the
/// others back; its records are merged as they come when it is back.
const SILENT_PARTITION: Duration = Duration::from_secs(30);

impl EventTimeMerge {
    fn new(partitions: &[i32]) -> Self {
        Self {
            buffers: partitions.iter().map(|&p| (p, VecDeque::new())).collect(),
            at_end: BTreeSet::new(),
            heard: partitions.iter().map(|&p| (p, Instant::now())).collect(),
        }
    }

    fn push(&mut self, record: &Record) {
        let event = decode_scored(&record.payload).ok();
        self.at_end.remove(&record.partition);
        self.heard.insert(record.partition, Instant::now());
        self.buffers
            .entry(record.partition)
            .or_default()
            .push_back(Pending {
                // Undecodable records go first: they only move the position.
                time: event.as_ref().map_or(i64::MIN, |e| e.timestamp_ms),
                partition: record.partition,
                offset: record.offset,
                event,
            });
    }

    /// Nothing follows the buffered records of `partition` for now.
    fn reached_end(&mut self, partition: i32) {
        self.at_end.insert(partition);
        self.heard.insert(partition, Instant::now());
    }

    fn pop(&mut self) -> Option<Pending> {
        let mut earliest: Option<(i64, i32)> = None;
        for (&partition, buffer) in &self.buffers {
            match buffer.front() {
                Some(head) if earliest.is_none_or(|(time, _)| head.time < time) => {
                    earliest = Some((head.time, partition));
                }
                Some(_) => {}
                None if self.at_end.contains(&partition) => {}
                None if self
                    .heard
                    .get(&partition)
                    .is_some_and(|at| at.elapsed() >= SILENT_PARTITION) => {}
                // It may yet deliver something earlier than every head.
                None => return None,
            }
        }
        let (_, partition) = earliest?;
        self.buffers.get_mut(&partition)?.pop_front()
    }
}

/// Why a session could not start or a batch failed: logged, and the owner starts again from
/// its checkpoint.
#[derive(Debug, thiserror::Error)]
enum OwnerError {
    /// Redis, Kafka or PostgreSQL failed.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// Another instance holds the lease now.
    #[error("lost the lease while taking over")]
    LostLease,
    /// The service is shutting down.
    #[error("stopping")]
    Stopping,
    /// The log before the checkpoint could not be read within a minute.
    #[error("could not read back the recent scored events of partitions {0:?}")]
    ReadBackTimedOut(Vec<i32>),
    /// Partitions were added to `scores`.
    #[error("`{SCORES}` has {now} partitions, was {was}: taking them all over from the checkpoint")]
    PartitionsChanged {
        /// Partitions the session read.
        was: usize,
        /// Partitions now.
        now: usize,
    },
}

fn redis(e: impl std::fmt::Display) -> OwnerError {
    OwnerError::Unavailable(Unavailable::redis(e))
}

fn kafka(e: impl std::fmt::Display) -> OwnerError {
    OwnerError::Unavailable(Unavailable::new(Dependency::Kafka, e))
}

/// Runs for the life of the service: stands by, owns the detectors while it holds the lease,
/// gives the lease up at shutdown.
pub fn run_drift_leader(
    ownership: &mut Ownership,
    source: &impl ScoreSource,
    writer: &mut impl EventWriter,
    settings: &LeaderSettings,
    status: &Status,
    shutdown: &AtomicBool,
) {
    let metrics = &status.metrics;
    let mut session: Option<Session> = None;
    let mut renew_at = Instant::now();
    while !shutdown.load(Ordering::Relaxed) {
        if session.is_none() || Instant::now() >= renew_at {
            match ownership.acquire() {
                Ok(Lease::Renewed) => renew_at = Instant::now() + settings.lease / 3,
                Ok(Lease::Taken) => {
                    // Free means it expired or was given up: another owner may have moved
                    // the checkpoint on since this session's state was read.
                    if session.take().is_some() {
                        warn!(
                            "The drift detectors' lease had expired; resuming from the checkpoint"
                        );
                    }
                    renew_at = Instant::now() + settings.lease / 3;
                }
                Ok(Lease::HeldElsewhere) => {
                    if session.take().is_some() {
                        warn!("Lost the drift detectors' lease; standing by");
                    }
                    metrics.drift_leader.set(0);
                    sleep_unless_shutdown(Duration::from_secs(1), shutdown);
                    continue;
                }
                Err(e) => {
                    // Without renewing, the lease may run out: stop before another takes over.
                    warn!(error = e.to_string().as_str(); "Lease not renewed; standing by");
                    metrics
                        .errors
                        .with_label_values(&["redis_unavailable"])
                        .inc();
                    session = None;
                    metrics.drift_leader.set(0);
                    sleep_unless_shutdown(Duration::from_secs(1), shutdown);
                    continue;
                }
            }
        }
        let current = match session.as_mut() {
            Some(current) => current,
            None => match start_session(ownership, source, settings, status, shutdown) {
                Ok(started) => {
                    metrics.drift_leader.set(1);
                    session.insert(started)
                }
                Err(e) => {
                    warn!(error = e.to_string().as_str(); "Could not take the drift detectors over; retrying");
                    sleep_unless_shutdown(Duration::from_secs(1), shutdown);
                    continue;
                }
            },
        };
        match run_batch(current, ownership, writer, settings, status) {
            Ok(true) => {}
            Ok(false) => {
                warn!("Lost the drift detectors' lease while checkpointing; standing by");
                session = None;
                metrics.drift_leader.set(0);
            }
            Err(e) => {
                // Start again from the checkpoint: the batch is read and detected again.
                warn!(error = e.to_string().as_str(); "Drift batch failed; resuming from the checkpoint");
                metrics.errors.with_label_values(&["drift_leader"]).inc();
                session = None;
                sleep_unless_shutdown(Duration::from_millis(500), shutdown);
            }
        }
    }
    if session.is_some() {
        if let Err(e) = ownership.release() {
            warn!(error = e.to_string().as_str(); "Lease not released; a standby takes over when it ends");
        }
        metrics.drift_leader.set(0);
    }
}

/// Restores the detectors from the newest checkpoint that decodes and reads every partition
/// from the positions it covers.
fn start_session(
    ownership: &mut Ownership,
    source: &impl ScoreSource,
    settings: &LeaderSettings,
    status: &Status,
    shutdown: &AtomicBool,
) -> Result<Session, OwnerError> {
    let restored = ownership.load::<DetectorCheckpoint>().map_err(redis)?;
    if let Some(reason) = &restored.fell_back {
        status
            .metrics
            .errors
            .with_label_values(&["checkpoint_corrupt"])
            .inc();
        warn!(error = reason.as_str(); "Newest drift checkpoint unreadable; using the one before");
    }
    let mut checkpoint = restored.state.unwrap_or_else(|| DetectorCheckpoint {
        monitor: DriftMonitor::new(settings.warm_up),
        positions: BTreeMap::new(),
    });
    let io = source.connect()?;
    // A partition the checkpoint does not cover although it covers others was added to the
    // topic since: everything on it is new to the detectors.
    let start = if checkpoint.positions.is_empty() {
        settings.start
    } else {
        StartFrom::Earliest
    };
    let partitions = io
        .assign_all(
            SCORES,
            &mut checkpoint.positions,
            start,
            Duration::from_secs(10),
        )
        .map_err(kafka)?;
    // Where this session starts on partitions no checkpoint covered is recorded at once: a
    // successor resumes there, not at a later end.
    if !ownership.save(&checkpoint).map_err(redis)? {
        return Err(OwnerError::LostLease);
    }
    let started = Instant::now();
    let recent = recall_recent(&io, &checkpoint.positions, DEDUPE_WINDOW, shutdown)?;
    info!(seconds = started.elapsed().as_secs_f64(); "Read back the recent scored events");
    io.assign_all(
        SCORES,
        &mut checkpoint.positions,
        settings.start,
        Duration::from_secs(10),
    )
    .map_err(kafka)?;
    info!(
        partitions = partitions.len(),
        seen = checkpoint.monitor.seen();
        "Took the drift detectors over"
    );
    Ok(Session {
        io,
        merge: EventTimeMerge::new(&partitions),
        checkpoint,
        recent,
        partitions: partitions.len(),
        next_partition_check: Instant::now() + PARTITION_CHECK,
    })
}

/// The events the detectors saw last on each partition (up to `window` before its position),
/// read back from the log: what the previous owner remembered to drop replays.
fn recall_recent(
    io: &KafkaIo,
    positions: &BTreeMap<i32, i64>,
    window: usize,
    shutdown: &AtomicBool,
) -> Result<RecentEvents, OwnerError> {
    let mut recent = RecentEvents::new(window);
    let mut from = BTreeMap::new();
    let mut until = BTreeMap::new();
    for (&partition, &position) in positions {
        let (low, _) = io
            .watermarks(SCORES, partition, Duration::from_secs(10))
            .map_err(kafka)?;
        let start = low.max(position - window as i64);
        if start < position {
            from.insert(partition, start);
            until.insert(partition, position);
        }
    }
    if until.is_empty() {
        return Ok(recent);
    }
    io.assign_all(
        SCORES,
        &mut from,
        StartFrom::Earliest,
        Duration::from_secs(10),
    )
    .map_err(kafka)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !until.is_empty() {
        if shutdown.load(Ordering::Relaxed) {
            return Err(OwnerError::Stopping);
        }
        if Instant::now() >= deadline {
            return Err(OwnerError::ReadBackTimedOut(
                until.keys().copied().collect(),
            ));
        }
        let polled = io.poll_batch(5_000, Duration::from_millis(200));
        if let Some(e) = polled.error {
            return Err(kafka(format!("poll: {e}")));
        }
        for record in polled.records {
            let Some(&end) = until.get(&record.partition) else {
                continue;
            };
            if record.offset >= end {
                continue;
            }
            if let Ok(event) = decode_scored(&record.payload) {
                recent.seen_before(record.partition, &event.event_id);
            }
            if record.offset + 1 >= end {
                until.remove(&record.partition);
            }
        }
    }
    Ok(recent)
}

/// One batch: detect, store the drifts, send them, checkpoint. `Ok(false)` if the lease was
/// lost (nothing checkpointed).
fn run_batch(
    session: &mut Session,
    ownership: &mut Ownership,
    writer: &mut impl EventWriter,
    settings: &LeaderSettings,
    status: &Status,
) -> Result<bool, OwnerError> {
    if Instant::now() >= session.next_partition_check {
        session.next_partition_check = Instant::now() + PARTITION_CHECK;
        let now = session
            .io
            .partition_count(SCORES, Duration::from_secs(10))
            .map_err(|e| kafka(format!("metadata: {e}")))?;
        if now != session.partitions {
            return Err(OwnerError::PartitionsChanged {
                was: session.partitions,
                now,
            });
        }
    }
    let polled = session
        .io
        .poll_batch(settings.batch_size, Duration::from_millis(200));
    if let Some(e) = polled.error {
        return Err(kafka(format!("poll: {e}")));
    }
    for record in &polled.records {
        session.merge.push(record);
    }
    for &partition in &polled.ends {
        session.merge.reached_end(partition);
    }
    let mut next = session.checkpoint.clone();
    let mut drifts: Vec<DriftEvent> = Vec::new();
    let mut outputs: Vec<Output> = Vec::new();
    let mut detected = 0;
    while let Some(pending) = session.merge.pop() {
        if pending.offset < next.positions.get(&pending.partition).copied().unwrap_or(0) {
            continue;
        }
        next.positions.insert(pending.partition, pending.offset + 1);
        detected += 1;
        // A bad record is dead-lettered by the instance that stores it; here it is skipped.
        let Some(event) = pending.event else {
            continue;
        };
        // Scored again upstream after a crash or a rebalance: the detectors saw it already.
        if session
            .recent
            .seen_before(pending.partition, &event.event_id)
        {
            status.metrics.replays_skipped.inc();
            continue;
        }
        for drift in next.monitor.process(&event) {
            status
                .metrics
                .drifts
                .with_label_values(&[drift.detector.name()])
                .inc();
            let key = Some(drift.detector.name().to_owned());
            outputs.push(json_output(DRIFT_EVENTS, key.clone(), &drift));
            outputs.push(json_output(ALERTS, key, &drift_alert(&drift)));
            drifts.push(drift);
        }
    }
    if detected == 0 {
        return Ok(true);
    }
    // Renewed right before anything leaves: an owner whose batch outlasted its lease (and
    // may have been replaced) publishes nothing.
    if ownership.acquire().map_err(redis)? != Lease::Renewed {
        return Ok(false);
    }
    // Drift rows are generated by the detectors themselves: none can be refused as data.
    writer.write_drifts(&drifts)?;
    session
        .io
        .send_all(
            &outputs,
            Duration::from_millis(crate::adapters::kafka::SEND_TIMEOUT_MS),
        )
        .map_err(|e| kafka(format!("send: {e}")))?;
    if !ownership.save(&next).map_err(redis)? {
        return Ok(false);
    }
    session.checkpoint = next;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64, time: i64) -> Record {
        let event = ScoredEvent {
            schema_version: crate::messages::SCHEMA_VERSION,
            event_id: format!("e{partition}-{offset}"),
            card_id: "c".into(),
            timestamp_ms: 1_767_225_600_000 + time,
            score: 0.5,
            is_anomaly: false,
            is_fraud: false,
            model_version: 1,
            amount: 1.0,
            phase: "p".into(),
            merchant: String::new(),
            features: Vec::new(),
        };
        Record {
            topic: SCORES.into(),
            partition,
            offset,
            key: None,
            payload: serde_json::to_vec(&event).unwrap(),
            timestamp_ms: None,
        }
    }

    fn drain(merge: &mut EventTimeMerge) -> Vec<(i32, i64)> {
        std::iter::from_fn(|| merge.pop())
            .map(|p| (p.partition, p.offset))
            .collect()
    }

    /// A replayed event is recognised within the window of its partition; an event as old
    /// as the window is forgotten; partitions do not share windows.
    #[test]
    fn replays_are_recognised_within_the_window() {
        let mut recent = RecentEvents::new(3);
        for id in ["a", "b", "c"] {
            assert!(!recent.seen_before(0, id));
        }
        assert!(recent.seen_before(0, "a"), "replayed");
        assert!(!recent.seen_before(1, "a"), "another partition's window");
        assert!(!recent.seen_before(0, "d"), "new");
        assert!(!recent.seen_before(0, "a"), "fell out of the window");
        assert!(recent.seen_before(0, "d"));
    }

    /// A burst from one partition waits for the others: records go out in event-time order,
    /// and only as far as every partition has spoken or reached its end.
    #[test]
    fn partitions_are_merged_by_event_time() {
        let mut merge = EventTimeMerge::new(&[0, 1]);
        for (offset, time) in [(0, 10), (1, 30), (2, 50)] {
            merge.push(&record(0, offset, time));
        }
        assert_eq!(
            drain(&mut merge),
            [],
            "partition 1 may still hold earlier events"
        );
        merge.push(&record(1, 0, 20));
        assert_eq!(drain(&mut merge), [(0, 0), (1, 0)]);
        merge.reached_end(1);
        assert_eq!(drain(&mut merge), [(0, 1), (0, 2)]);
        // New data on partition 1 clears its end: once it is out, partition 1 may again
        // deliver something earlier than partition 0's head.
        merge.push(&record(1, 1, 60));
        merge.push(&record(0, 3, 70));
        assert_eq!(drain(&mut merge), [(1, 1)]);
        merge.reached_end(1);
        assert_eq!(drain(&mut merge), [(0, 3)]);
        // An undecodable record is not held back by event time (it only moves the position).
        let mut bad = record(1, 2, 0);
        bad.payload = b"{".to_vec();
        merge.push(&bad);
        merge.push(&record(0, 4, 90));
        assert_eq!(drain(&mut merge), [(1, 2)]);
    }
}
