//! Kafka through librdkafka: batched polling, produce-and-confirm, and offsets stored only
//! after a batch's outputs are acknowledged (at-least-once).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use thiserror::Error;

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
    #[error("{0} message(s) were not delivered")]
    Undelivered(u64),
    /// librdkafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Counts failed deliveries.
#[derive(Default)]
pub struct DeliveryTracker {
    failures: AtomicU64,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
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
}

/// A service's Kafka side: one consumer (in a consumer group) and one producer.
pub struct KafkaIo {
    consumer: BaseConsumer,
    producer: BaseProducer<DeliveryTracker>,
}

impl KafkaIo {
    /// Connects to `bootstrap`, joins `group_id` and subscribes to `topics`; a new group starts
    /// from `offset_reset` (`latest` for live services, `earliest` in tests).
    pub fn connect(
        bootstrap: &str,
        group_id: &str,
        topics: &[&str],
        offset_reset: &str,
    ) -> KafkaResult<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group_id)
            .set("enable.auto.commit", "true")
            // Offsets are stored by hand, after the outputs are acknowledged.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", offset_reset)
            .set("session.timeout.ms", "30000")
            .create()?;
        if !topics.is_empty() {
            consumer.subscribe(topics)?;
        }
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create_with_context(DeliveryTracker::default())?;
        Ok(Self { consumer, producer })
    }

    /// Up to `max` records, waiting at most `wait` for the first one.
    pub fn poll_batch(&self, max: usize, wait: Duration) -> Polled {
        let mut batch = Vec::new();
        let deadline = Instant::now() + wait;
        while batch.len() < max {
            let timeout = if batch.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.consumer.poll(timeout) {
                Some(Ok(message)) => batch.push(Record {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                }),
                Some(Err(e)) => {
                    return Polled {
                        records: batch,
                        error: Some(e),
                    };
                }
                None => break,
            }
        }
        Polled {
            records: batch,
            error: None,
        }
    }

    /// Produces every output and waits until all are acknowledged (or `timeout` passes).
    pub fn send_all(&self, outputs: &[Output], timeout: Duration) -> Result<(), SendError> {
        let before = self.producer.context().failures.load(Ordering::Relaxed);
        for output in outputs {
            let mut record = BaseRecord::to(output.topic).payload(&output.payload);
            if let Some(key) = &output.key {
                record = record.key(key);
            }
            let mut pending = record;
            loop {
                match self.producer.send(pending) {
                    Ok(()) => break,
                    Err((
                        KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        back,
                    )) => {
                        // The local queue is full: let deliveries drain, then retry.
                        self.producer.poll(Duration::from_millis(50));
                        pending = back;
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
        }
        self.producer.flush(timeout)?;
        let failed = self.producer.context().failures.load(Ordering::Relaxed) - before;
        if failed > 0 {
            return Err(SendError::Undelivered(failed));
        }
        Ok(())
    }

    /// Marks `records` processed: their offsets are committed with the next auto-commit.
    ///
    /// Records of partitions this consumer no longer owns (moved to another member of the
    /// group during the batch) are left out: their new owner resumes from the last committed
    /// offset, so they are consumed again there.
    pub fn commit(&self, records: &[Record]) -> KafkaResult<()> {
        let owned = self.consumer.assignment()?;
        let mut offsets = TopicPartitionList::new();
        for r in records {
            if owned.find_partition(&r.topic, r.partition).is_some() {
                offsets.add_partition_offset(
                    &r.topic,
                    r.partition,
                    Offset::Offset(r.offset + 1),
                )?;
            }
        }
        if offsets.count() > 0 {
            self.consumer.store_offsets(&offsets)?;
        }
        Ok(())
    }

    /// Moves each partition of `records` back to its first record, so an unprocessed batch is
    /// consumed again. Every partition is tried, each up to three times; the error is the
    /// last one of a partition that could not be moved back. Partitions this consumer no
    /// longer owns are skipped: their new owner consumes them from the last committed offset.
    pub fn rewind(&self, records: &[Record]) -> KafkaResult<()> {
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
        for (topic, partition, offset) in first {
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
        failed.map_or(Ok(()), Err)
    }

    /// Commits what was stored and leaves the group (call on shutdown, after the last batch).
    pub fn close(&self) -> KafkaResult<()> {
        let committed = self.consumer.commit_consumer_state(CommitMode::Sync);
        self.consumer.unsubscribe();
        match committed {
            // Nothing consumed yet: nothing to commit.
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => Ok(()),
            other => other,
        }
    }
}
