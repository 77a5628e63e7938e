//! Kafka through librdkafka: batched polling, produce-and-confirm, and per-partition offsets
//! committed only after a batch's outputs are acknowledged (at-least-once).
//!
//! Offsets follow Kafka Connect's rule: for every partition, the committed offset is the next
//! one to process, one entry per partition, never moved past a record whose effects are not
//! durable. They are committed on an interval, synchronously at shutdown and before a partition
//! is revoked; a partition the group has never committed is pinned to its starting offset as
//! soon as it is assigned, so a crash before the first commit cannot skip what arrived in
//! between (with `auto.offset.reset=latest`).

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use thiserror::Error;

/// `max.poll.interval.ms`: the longest a consumer may go between two polls before the group
/// gives its partitions to another member (5 minutes, or the session timeout if longer).
pub const MAX_POLL_INTERVAL_MS: u64 = 300_000;

/// How long the services wait for a batch's delivery reports, milliseconds.
pub const SEND_TIMEOUT_MS: u64 = 30_000;

/// One consumed record, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key, if any.
    pub key: Option<Vec<u8>>,
    /// Its payload (empty if none).
    pub payload: Vec<u8>,
    /// Its Kafka timestamp, Unix milliseconds (the producer's send time unless it set one).
    pub timestamp_ms: Option<i64>,
}

/// A record to produce.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// Destination topic.
    pub topic: &'static str,
    /// Key (the card id, where there is one).
    pub key: Option<String>,
    /// JSON payload.
    pub payload: Vec<u8>,
}

/// Producing failed: some outputs were not acknowledged.
#[derive(Debug, Error)]
pub enum SendError {
    /// The broker rejected or lost messages.
    #[error("{count} message(s) were not delivered (first error: {first})")]
    Undelivered {
        /// How many.
        count: usize,
        /// The first delivery error.
        first: String,
    },
    /// Delivery reports were still missing when the time ran out.
    #[error("{0} message(s) still unacknowledged after the send timeout")]
    TimedOut(usize),
    /// librdkafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Where a consumer group with no committed offset for a partition starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The partition's first offset (replaying a topic from its start).
    Earliest,
    /// The partition's end (live services: what arrives from now on).
    Latest,
}

impl StartFrom {
    /// Reads `earliest` or `latest` (`KAFKA_OFFSET_RESET`).
    ///
    /// ```
    /// use anomaly_services::adapters::kafka::StartFrom;
    ///
    /// assert_eq!(StartFrom::parse("latest"), Some(StartFrom::Latest));
    /// assert_eq!(StartFrom::parse("newest"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "earliest" => Some(Self::Earliest),
            "latest" => Some(Self::Latest),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
        }
    }
}

/// The Kafka settings that trade latency for throughput, chosen by `scripts/bench-services`
/// (docs/BENCHMARKS.md).
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaTuning {
    /// Most records per poll batch (`KAFKA_BATCH_SIZE`).
    pub batch_size: usize,
    /// How long the producer waits to fill a request (`KAFKA_LINGER_MS`).
    pub linger_ms: u64,
    /// How often processed offsets are committed (`KAFKA_COMMIT_INTERVAL_MS`).
    pub commit_interval: Duration,
    /// How often librdkafka reports statistics, from which the consumer lag gauge is set.
    pub statistics_interval: Duration,
    /// Longest time a broker holds a fetch that has no data yet (`KAFKA_FETCH_WAIT_MS`).
    /// Apache Kafka answers as soon as data arrives, so this only paces idle fetches; the
    /// mock cluster (and some other brokers) answer only when it expires, so it bounds
    /// every hop's latency there.
    pub fetch_wait_ms: u64,
    /// How long the group waits for a silent member before moving its partitions
    /// (`KAFKA_SESSION_TIMEOUT_MS`): a crashed instance's partitions stay unconsumed that
    /// long.
    pub session_timeout: Duration,
    /// Report, in [`Polled::ends`], each partition whose end the consumer reaches (a reader
    /// merging partitions by event time needs to know a partition has nothing more yet).
    pub report_partition_ends: bool,
}

impl Default for KafkaTuning {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            linger_ms: 2,
            commit_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(30),
            fetch_wait_ms: 50,
            statistics_interval: Duration::from_secs(5),
            report_partition_ends: false,
        }
    }
}

/// The delivery reports of the batch being sent. Reports are matched to their batch by an id
/// carried as each message's opaque, so a late report of an abandoned batch cannot count
/// toward the next one.
#[derive(Default)]
pub struct DeliveryTracker {
    batch: Mutex<BatchDeliveries>,
    settled: Condvar,
}

#[derive(Default)]
struct BatchDeliveries {
    id: usize,
    outstanding: usize,
    failed: usize,
    first_error: Option<String>,
}

impl DeliveryTracker {
    fn lock(&self) -> MutexGuard<'_, BatchDeliveries> {
        // The guarded data are counters: a panic elsewhere cannot leave them torn.
        self.batch.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, batch_id: usize) {
        let mut batch = self.lock();
        if batch.id != batch_id {
            return;
        }
        batch.outstanding = batch.outstanding.saturating_sub(1);
        if let Err((error, _)) = result {
            batch.failed += 1;
            batch.first_error.get_or_insert_with(|| error.to_string());
        }
        if batch.outstanding == 0 {
            self.settled.notify_all();
        }
    }
}

/// Per partition: the next offset to process (everything before it is done and its outputs
/// acknowledged) and the last offset committed to the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    processed: i64,
    committed: i64,
}

/// The consumer's side of the group protocol: keeps the processed positions, commits a
/// partition's position before it is revoked, pins new partitions' starting offsets.
pub struct GroupContext {
    start_from: StartFrom,
    positions: Mutex<BTreeMap<(String, i32), Position>>,
    /// Where librdkafka's statistics put each partition's consumer lag, once exported.
    lag: Mutex<Option<prometheus::IntGaugeVec>>,
    /// Counts the partitions revoked from this consumer, once exported.
    revoked: Mutex<Option<prometheus::IntCounter>>,
}

impl GroupContext {
    fn positions(&self) -> MutexGuard<'_, BTreeMap<(String, i32), Position>> {
        // Plain offsets: a panic elsewhere cannot leave them torn.
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives every newly assigned partition an explicit starting offset: the group's committed
    /// one, or, where there is none, the start `start_from` names, committed at once.
    fn pin_start(&self, consumer: &BaseConsumer<Self>, assigned: &mut TopicPartitionList) {
        let timeout = Duration::from_secs(10);
        let committed = match consumer.committed_offsets(assigned.clone(), timeout) {
            Ok(committed) => committed,
            Err(e) => {
                warn!(error = e.to_string().as_str(); "Could not read committed offsets; starting by auto.offset.reset");
                return;
            }
        };
        let mut pinned = TopicPartitionList::new();
        let mut positions = self.positions();
        for elem in committed.elements() {
            let (topic, partition) = (elem.topic().to_owned(), elem.partition());
            if let Err(e) = elem.error() {
                // Unknown, not absent: pinning it could overwrite a real commit.
                warn!(topic = topic.as_str(), partition = partition, error = e.to_string().as_str(); "Committed offset unreadable; starting from the group's commit as librdkafka finds it");
                continue;
            }
            let start = match elem.offset() {
                Offset::Offset(offset) => offset,
                _ => match consumer.fetch_watermarks(&topic, partition, timeout) {
                    Ok((low, high)) => {
                        let start = match self.start_from {
                            StartFrom::Earliest => low,
                            StartFrom::Latest => high,
                        };
                        if pinned
                            .add_partition_offset(&topic, partition, Offset::Offset(start))
                            .is_err()
                        {
                            continue;
                        }
                        start
                    }
                    Err(e) => {
                        warn!(topic = topic.as_str(), partition = partition, error = e.to_string().as_str(); "No watermarks; starting by auto.offset.reset");
                        continue;
                    }
                },
            };
            if assigned
                .set_partition_offset(&topic, partition, Offset::Offset(start))
                .is_ok()
            {
                positions.insert(
                    (topic, partition),
                    Position {
                        processed: start,
                        committed: start,
                    },
                );
            }
        }
        drop(positions);
        if pinned.count() == 0 {
            return;
        }
        let mut attempt = 0;
        while let Err(e) = consumer.commit(&pinned, CommitMode::Sync) {
            attempt += 1;
            if attempt < 3 {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            // The first batch's commit covers them; until then a crash starts these
            // partitions by auto.offset.reset again.
            warn!(error = e.to_string().as_str(); "Could not commit the starting offsets of new partitions");
            let mut positions = self.positions();
            for elem in pinned.elements() {
                if let Some(p) = positions.get_mut(&(elem.topic().to_owned(), elem.partition())) {
                    p.committed = -1;
                }
            }
            break;
        }
    }

    /// Commits the processed positions of `revoked` (synchronously: their next owner starts
    /// from there) and forgets them.
    fn commit_revoked(&self, consumer: &BaseConsumer<Self>, revoked: &TopicPartitionList) {
        let mut positions = self.positions();
        let mut offsets = TopicPartitionList::new();
        for elem in revoked.elements() {
            let key = (elem.topic().to_owned(), elem.partition());
            if let Some(p) = positions.remove(&key)
                && p.processed > p.committed
            {
                let _ = offsets.add_partition_offset(&key.0, key.1, Offset::Offset(p.processed));
            }
        }
        drop(positions);
        if offsets.count() > 0 {
            match consumer.commit(&offsets, CommitMode::Sync) {
                Ok(()) => {
                    info!(offsets = describe(&offsets).as_str(); "Committed revoked partitions")
                }
                Err(e) => {
                    warn!(error = e.to_string().as_str(); "Could not commit revoked partitions; their next owner replays from the last commit")
                }
            }
        }
    }
}

impl ClientContext for GroupContext {
    /// librdkafka's errors, logged; reaching a partition's end is not one (a reader that asked
    /// for it gets it in [`Polled::ends`]).
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            error!(error = error.to_string().as_str(), reason = reason; "librdkafka error");
        }
    }

    /// Every `statistics.interval.ms`: the lag of each partition this consumer owns, its end
    /// (last stable offset) minus the next offset to process. (librdkafka's own
    /// `consumer_lag` counts from offsets it committed or stored itself: never, here.)
    fn stats(&self, statistics: rdkafka::Statistics) {
        let lag = self.lag.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(gauge) = lag.as_ref() else {
            return;
        };
        let positions = self.positions();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                let end = if p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                if let Some(position) = positions.get(&(topic.clone(), *partition))
                    && end >= 0
                {
                    gauge
                        .with_label_values(&[topic.as_str(), &partition.to_string()])
                        .set((end - position.processed).max(0));
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let applied = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.pin_start(consumer, partitions);
                info!(partitions = describe(partitions).as_str(); "Partitions assigned");
                if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Some(counter) = self
                    .revoked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                {
                    counter.inc_by(partitions.count() as u64);
                }
                self.commit_revoked(consumer, partitions);
                if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                warn!(error = RDKafkaErrorCode::from(other).to_string().as_str(); "Rebalance failed");
                self.positions().clear();
                if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                }
            }
        };
        if let Err(e) = applied {
            warn!(error = e.to_string().as_str(); "Could not apply a rebalance");
        }
    }
}

/// `topic/partition@offset` for every element, for logs.
fn describe(list: &TopicPartitionList) -> String {
    list.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => format!("{}/{}@{o}", e.topic(), e.partition()),
            _ => format!("{}/{}", e.topic(), e.partition()),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What one poll returned: the records taken off the consumer, and the error that ended the
/// poll early, if one did. Records taken before an error are kept: their partitions' positions
/// have moved past them, so dropping them would let a later batch's offsets skip them.
#[derive(Debug, Default)]
pub struct Polled {
    /// The records, in the order consumed.
    pub records: Vec<Record>,
    /// The error that stopped the poll.
    pub error: Option<KafkaError>,
    /// Partitions whose end was reached during the poll (only with
    /// [`KafkaTuning::report_partition_ends`]).
    pub ends: Vec<i32>,
}

/// A service's Kafka side: one consumer (in a consumer group) and one producer.
///
/// The loop every service runs ([`crate::service::run`] does this, with dead letters,
/// retries and metrics):
///
/// ```no_run
/// use std::time::Duration;
/// use anomaly_services::adapters::kafka::{KafkaIo, KafkaTuning, Output};
///
/// let tuning = KafkaTuning { batch_size: 500, ..KafkaTuning::default() };
/// let io = KafkaIo::connect_tuned("127.0.0.1:9092", "my-group", &["in"], "latest", tuning)?;
/// loop {
///     let batch = io.poll_batch(io.tuning().batch_size, Duration::from_millis(200)).records;
///     let outputs: Vec<Output> = batch
///         .iter()
///         .map(|r| Output { topic: "out", key: None, payload: r.payload.clone() })
///         .collect();
///     // Offsets move only once the outputs are acknowledged.
///     io.send_all(&outputs, Duration::from_secs(30))?;
///     io.mark_processed(&batch)?;
///     io.commit_due()?;
///     # break;
/// }
/// io.close()?; // commits what was processed, then leaves the group
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct KafkaIo {
    consumer: BaseConsumer<GroupContext>,
    producer: ThreadedProducer<DeliveryTracker>,
    tuning: KafkaTuning,
    last_commit: Mutex<Instant>,
}

impl KafkaIo {
    /// Connects to `bootstrap`, joins `group_id` and subscribes to `topics`; a partition the
    /// group never committed starts from `offset_reset` (`latest` for live services,
    /// `earliest` in tests). Default [`KafkaTuning`].
    pub fn connect(
        bootstrap: &str,
        group_id: &str,
        topics: &[&str],
        offset_reset: &str,
    ) -> KafkaResult<Self> {
        Self::connect_tuned(
            bootstrap,
            group_id,
            topics,
            offset_reset,
            KafkaTuning::default(),
        )
    }

    /// [`connect`](Self::connect) with explicit tuning.
    pub fn connect_tuned(
        bootstrap: &str,
        group_id: &str,
        topics: &[&str],
        offset_reset: &str,
        tuning: KafkaTuning,
    ) -> KafkaResult<Self> {
        let start_from = StartFrom::parse(offset_reset).ok_or(KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "expected `earliest` or `latest`".into(),
            "auto.offset.reset".into(),
            offset_reset.into(),
        ))?;
        let context = GroupContext {
            start_from,
            positions: Mutex::new(BTreeMap::new()),
            lag: Mutex::new(None),
            revoked: Mutex::new(None),
        };
        let consumer: BaseConsumer<GroupContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group_id)
            // Offsets are committed by hand: per partition, after the outputs are acknowledged.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", start_from.name())
            .set("fetch.wait.max.ms", tuning.fetch_wait_ms.to_string())
            .set(
                "enable.partition.eof",
                if tuning.report_partition_ends {
                    "true"
                } else {
                    "false"
                },
            )
            .set(
                "statistics.interval.ms",
                tuning.statistics_interval.as_millis().to_string(),
            )
            .set(
                "session.timeout.ms",
                tuning.session_timeout.as_millis().to_string(),
            )
            // A third of the session, as Kafka advises, and never more than librdkafka's 3 s.
            .set(
                "heartbeat.interval.ms",
                (tuning.session_timeout.as_millis() / 3)
                    .min(3_000)
                    .to_string(),
            )
            // Incremental rebalances: when an instance joins or leaves, only the partitions
            // that move are revoked; the others keep being consumed (the eager protocol stops
            // every member for every rebalance).
            .set("partition.assignment.strategy", "cooperative-sticky")
            // Kafka's default, set so that it is a decision: a batch's worst case (every
            // dependency call at its timeout) stays far below it, and Slack is called from
            // another thread, so a consumer is never thrown out of its group for being slow.
            // librdkafka refuses an interval below the session timeout.
            .set(
                "max.poll.interval.ms",
                MAX_POLL_INTERVAL_MS
                    .max(tuning.session_timeout.as_millis() as u64)
                    .to_string(),
            )
            .create_with_context(context)?;
        if !topics.is_empty() {
            consumer.subscribe(topics)?;
        }
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            // librdkafka gives up on a message when `send_all` does (its default is 5 min), so
            // a batch retried after a timeout is not also delivered late.
            .set("message.timeout.ms", SEND_TIMEOUT_MS.to_string())
            .set("linger.ms", tuning.linger_ms.to_string())
            .create_with_context(DeliveryTracker::default())?;
        Ok(Self {
            consumer,
            producer,
            tuning,
            last_commit: Mutex::new(Instant::now()),
        })
    }

    /// Reports each assigned partition's consumer lag in `lag` (labels: topic, partition),
    /// every [`KafkaTuning::statistics_interval`], and counts in `revoked` the partitions a
    /// rebalance takes from this consumer.
    pub fn export_group_metrics(
        &self,
        lag: prometheus::IntGaugeVec,
        revoked: prometheus::IntCounter,
    ) {
        let context = self.consumer.context();
        *context.lag.lock().unwrap_or_else(PoisonError::into_inner) = Some(lag);
        *context
            .revoked
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(revoked);
    }

    /// The tuning this client runs with.
    pub fn tuning(&self) -> &KafkaTuning {
        &self.tuning
    }

    /// Reads every partition of `topic` outside any consumer group (nothing is committed):
    /// from `positions` where given (the next offset to read, kept by the caller with the
    /// state it covers), from `start` elsewhere, resolved to a concrete offset (the
    /// partition's first or next one) that is added to `positions`, so that whoever resumes
    /// from them starts where this reader did, not at a later end. For a single owner of a
    /// whole stream, whose position lives in its checkpoint; returns the partitions assigned.
    pub fn assign_all(
        &self,
        topic: &str,
        positions: &mut BTreeMap<i32, i64>,
        start: StartFrom,
        timeout: Duration,
    ) -> KafkaResult<Vec<i32>> {
        let metadata = self.consumer.fetch_metadata(Some(topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut list = TopicPartitionList::new();
        for &partition in &partitions {
            let next = match positions.get(&partition) {
                Some(&next) => next,
                None => {
                    let (low, high) = self.consumer.fetch_watermarks(topic, partition, timeout)?;
                    let first = match start {
                        StartFrom::Earliest => low,
                        StartFrom::Latest => high,
                    };
                    positions.insert(partition, first);
                    first
                }
            };
            list.add_partition_offset(topic, partition, Offset::Offset(next))?;
        }
        self.consumer.assign(&list)?;
        Ok(partitions)
    }

    /// How many partitions `topic` has now.
    pub fn partition_count(&self, topic: &str, timeout: Duration) -> KafkaResult<usize> {
        let metadata = self.consumer.fetch_metadata(Some(topic), timeout)?;
        Ok(metadata.topics().iter().map(|t| t.partitions().len()).sum())
    }

    /// The first offset and the end (next offset to be written) of `partition` of `topic`.
    pub fn watermarks(
        &self,
        topic: &str,
        partition: i32,
        timeout: Duration,
    ) -> KafkaResult<(i64, i64)> {
        self.consumer.fetch_watermarks(topic, partition, timeout)
    }

    /// Up to `max` records, waiting at most `wait` for the first one.
    pub fn poll_batch(&self, max: usize, wait: Duration) -> Polled {
        let mut batch = Vec::new();
        let mut ends = Vec::new();
        let deadline = Instant::now() + wait;
        while batch.len() < max {
            let timeout = if batch.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.consumer.poll(timeout) {
                Some(Ok(message)) => {
                    // A record after an end: that partition is not at its end any more.
                    ends.retain(|&p| p != message.partition());
                    batch.push(Record {
                        topic: message.topic().to_owned(),
                        partition: message.partition(),
                        offset: message.offset(),
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        timestamp_ms: message.timestamp().to_millis(),
                    });
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => ends.push(partition),
                Some(Err(e)) => {
                    return Polled {
                        records: batch,
                        error: Some(e),
                        ends,
                    };
                }
                None => break,
            }
        }
        Polled {
            records: batch,
            error: None,
            ends,
        }
    }

    /// Produces every output and waits for their delivery reports (or until `timeout`).
    pub fn send_all(&self, outputs: &[Output], timeout: Duration) -> Result<(), SendError> {
        if outputs.is_empty() {
            return Ok(());
        }
        let tracker = self.producer.context();
        let batch_id = {
            let mut batch = tracker.lock();
            batch.id = batch.id.wrapping_add(1);
            batch.outstanding = outputs.len();
            batch.failed = 0;
            batch.first_error = None;
            batch.id
        };
        let deadline = Instant::now() + timeout;
        for output in outputs {
            let mut record =
                BaseRecord::with_opaque_to(output.topic, batch_id).payload(&output.payload);
            if let Some(key) = &output.key {
                record = record.key(key);
            }
            let mut pending = record;
            loop {
                match self.producer.send(pending) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        // The local queue is full: the polling thread drains it as reports come.
                        std::thread::sleep(Duration::from_millis(1));
                        pending = back;
                    }
                    Err((e, _)) => {
                        // Abandon the batch: its later reports count for nothing.
                        let mut batch = tracker.lock();
                        batch.id = batch.id.wrapping_add(1);
                        return Err(e.into());
                    }
                }
            }
        }
        let mut batch = tracker.lock();
        while batch.outstanding > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let outstanding = batch.outstanding;
                batch.id = batch.id.wrapping_add(1);
                return Err(SendError::TimedOut(outstanding));
            }
            batch = tracker
                .settled
                .wait_timeout(batch, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if batch.failed > 0 {
            return Err(SendError::Undelivered {
                count: batch.failed,
                first: batch.first_error.take().unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Marks `records` processed (their outputs acknowledged): each partition's position moves
    /// to its highest offset + 1; the positions are committed when the commit interval has
    /// passed (see [`commit_due`](Self::commit_due)).
    ///
    /// Records of partitions this consumer no longer owns (moved to another member of the
    /// group during the batch) are left out: their new owner resumes from the last committed
    /// offset, so they are consumed again there.
    pub fn mark_processed(&self, records: &[Record]) -> KafkaResult<()> {
        let owned = self.consumer.assignment()?;
        let mut positions = self.consumer.context().positions();
        for r in records {
            if owned.find_partition(&r.topic, r.partition).is_none() {
                continue;
            }
            let next = r.offset + 1;
            positions
                .entry((r.topic.clone(), r.partition))
                .and_modify(|p| p.processed = p.processed.max(next))
                .or_insert(Position {
                    processed: next,
                    committed: -1,
                });
        }
        Ok(())
    }

    /// Commits the processed positions if the commit interval has passed since the last
    /// commit; returns whether it committed.
    pub fn commit_due(&self) -> KafkaResult<bool> {
        let mut last = self
            .last_commit
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.elapsed() < self.tuning.commit_interval {
            return Ok(false);
        }
        *last = Instant::now();
        drop(last);
        self.commit_processed().map(|_| true)
    }

    /// Commits, synchronously, every owned partition's processed position that moved since its
    /// last commit; returns what it committed (`topic/partition@offset ...`).
    pub fn commit_processed(&self) -> KafkaResult<String> {
        let owned = self.consumer.assignment()?;
        let mut offsets = TopicPartitionList::new();
        {
            let positions = self.consumer.context().positions();
            for ((topic, partition), p) in positions.iter() {
                if p.processed > p.committed && owned.find_partition(topic, *partition).is_some() {
                    offsets.add_partition_offset(topic, *partition, Offset::Offset(p.processed))?;
                }
            }
        }
        if offsets.count() == 0 {
            return Ok(String::new());
        }
        self.consumer.commit(&offsets, CommitMode::Sync)?;
        let mut positions = self.consumer.context().positions();
        for elem in offsets.elements() {
            if let (Some(p), Offset::Offset(o)) = (
                positions.get_mut(&(elem.topic().to_owned(), elem.partition())),
                elem.offset(),
            ) {
                p.committed = p.committed.max(o);
            }
        }
        Ok(describe(&offsets))
    }

    /// Moves each partition of `records` back to its first record, so an unprocessed batch is
    /// consumed again; returns the partitions moved back (whose records come back here).
    /// Every partition is tried, each up to three times; the error is the last one of a
    /// partition that could not be moved back. Partitions this consumer no longer owns are
    /// skipped: their new owner consumes them from the last committed offset.
    pub fn rewind(&self, records: &[Record]) -> KafkaResult<Vec<(String, i32)>> {
        let owned = self.consumer.assignment()?;
        let mut first: Vec<(&str, i32, i64)> = Vec::new();
        for r in records
            .iter()
            .filter(|r| owned.find_partition(&r.topic, r.partition).is_some())
        {
            match first
                .iter_mut()
                .find(|(t, p, _)| *t == r.topic && *p == r.partition)
            {
                Some(entry) => entry.2 = entry.2.min(r.offset),
                None => first.push((&r.topic, r.partition, r.offset)),
            }
        }
        let mut failed = None;
        for &(topic, partition, offset) in &first {
            let mut attempt = 0;
            while let Err(e) = self.consumer.seek(
                topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(10),
            ) {
                attempt += 1;
                if attempt == 3 {
                    failed = Some(e);
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(first
                .into_iter()
                .map(|(topic, partition, _)| (topic.to_owned(), partition))
                .collect()),
        }
    }

    /// Whether this consumer is still assigned any of `partitions`. True when the assignment
    /// cannot be read: the caller then keeps waiting for their records, as before.
    pub fn owns_any(&self, partitions: &[(String, i32)]) -> bool {
        match self.consumer.assignment() {
            Ok(owned) => partitions
                .iter()
                .any(|(topic, partition)| owned.find_partition(topic, *partition).is_some()),
            Err(_) => true,
        }
    }

    /// The group's committed offset of every partition of `topics`, read back from the
    /// cluster (`None` where the group has committed none).
    pub fn committed(
        &self,
        topics: &[&str],
        timeout: Duration,
    ) -> KafkaResult<BTreeMap<(String, i32), Option<i64>>> {
        let mut list = TopicPartitionList::new();
        for topic in topics {
            let metadata = self.consumer.fetch_metadata(Some(topic), timeout)?;
            for t in metadata.topics() {
                for p in t.partitions() {
                    list.add_partition(t.name(), p.id());
                }
            }
        }
        let committed = self.consumer.committed_offsets(list, timeout)?;
        Ok(committed
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                ((e.topic().to_owned(), e.partition()), offset)
            })
            .collect())
    }

    /// Commits what was processed, logs the committed positions and leaves the group (call on
    /// shutdown, after the last batch). A failed commit is an error: the next start replays
    /// from the previous commit.
    pub fn close(&self) -> KafkaResult<()> {
        let mut committed = self.commit_processed();
        // When instances stop together, the group is rebalancing and refuses commits of the
        // old generation until this member has rejoined; polling lets it take part (what it
        // returns is not processed, so not committed; partitions it loses are committed by
        // the revocation).
        let until = Instant::now() + Duration::from_secs(5);
        while let Err(KafkaError::ConsumerCommit(
            RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::UnknownMemberId,
        )) = &committed
            && Instant::now() < until
        {
            let _ = self.consumer.poll(Duration::from_millis(100));
            committed = self.commit_processed();
        }
        match &committed {
            Ok(offsets) => {
                let all = self
                    .consumer
                    .context()
                    .positions()
                    .iter()
                    .map(|((t, p), pos)| format!("{t}/{p}@{}", pos.committed))
                    .collect::<Vec<_>>()
                    .join(" ");
                info!(committed_now = offsets.as_str(), positions = all.as_str(); "Offsets committed at shutdown");
            }
            Err(e) => warn!(error = e.to_string().as_str(); "Final commit failed"),
        }
        self.consumer.unsubscribe();
        match committed {
            Ok(_) => Ok(()),
            // The group gave this member's partitions to others while it stopped: they resume
            // from the last commit (at most a commit interval again), as after any rebalance.
            // Not a failure of this shutdown.
            Err(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId,
            )) => {
                warn!(
                    "The group moved this instance's partitions on while it stopped; their new owners resume from the last commit"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka refuses `max.poll.interval.ms` below `session.timeout.ms`: the longest
    /// session the configuration accepts still makes a client (no broker needed).
    #[test]
    fn the_longest_accepted_session_timeout_makes_a_client() {
        let tuning = KafkaTuning {
            session_timeout: Duration::from_millis(1_800_000),
            ..KafkaTuning::default()
        };
        let client = KafkaIo::connect_tuned("127.0.0.1:9", "g", &[], "earliest", tuning);
        assert!(client.is_ok(), "{:?}", client.err());
    }
}
