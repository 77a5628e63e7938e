//! The recent labelled events that retraining trains and judges on, shared by every
//! retraining worker in one capped Redis list: whichever worker consumes a `scores` partition
//! appends its events, so a job trains on the most recent events of the whole stream, whatever
//! the number of workers, the partition counts or the assignment.

use std::collections::HashSet;

use redis::Commands;

use super::redis::RedisStoreError;
use super::redis_link::RedisLink;
use crate::messages::{FeatureVector, ScoredEvent, decode_scored};

/// The shared history: a Redis list (newest first) capped at `capacity` entries, each a
/// `scores` message carrying its features.
///
/// ```no_run
/// use anomaly_services::adapters::labelled_history::RedisLabelledHistory;
///
/// let mut history = RedisLabelledHistory::connect("redis://127.0.0.1:6379", "", 7_000)?;
/// let recent = history.load()?;
/// println!("{} labelled events to train on", recent.len());
/// # Ok::<(), anomaly_services::adapters::redis::RedisStoreError>(())
/// ```
pub struct RedisLabelledHistory {
    link: RedisLink,
    key: String,
    capacity: usize,
}

impl RedisLabelledHistory {
    /// The history under `prefix`, keeping the newest `capacity` events.
    pub fn connect(url: &str, prefix: &str, capacity: usize) -> Result<Self, RedisStoreError> {
        Ok(Self {
            link: RedisLink::open(url)?,
            key: format!("{prefix}retrain:history"),
            capacity: capacity.max(1),
        })
    }

    /// Records the duration of every Redis call in `latency`.
    pub fn with_latency(mut self, latency: prometheus::Histogram) -> Self {
        self.link = self.link.with_latency(latency);
        self
    }

    /// Appends `events` (in order) and drops what falls beyond the capacity, in one atomic
    /// step. Events without features are skipped: nothing can be trained on them.
    pub fn append(&mut self, events: &[ScoredEvent]) -> Result<(), RedisStoreError> {
        let labelled: Vec<&ScoredEvent> =
            events.iter().filter(|e| !e.features.is_empty()).collect();
        // Only the newest `capacity` can survive the trim.
        let skip = labelled.len().saturating_sub(self.capacity);
        let mut payloads = Vec::with_capacity(labelled.len() - skip);
        for event in &labelled[skip..] {
            payloads.push(
                serde_json::to_vec(event).map_err(|e| RedisStoreError::Encoding(e.to_string()))?,
            );
        }
        if payloads.is_empty() {
            return Ok(());
        }
        let (key, last) = (&self.key, self.capacity as isize - 1);
        self.link.call(|c| {
            redis::pipe()
                .atomic()
                .lpush(key, &payloads)
                .ignore()
                .ltrim(key, 0, last)
                .ignore()
                .query::<()>(c)
        })?;
        Ok(())
    }

    /// How many entries the list holds (a replayed event may hold two).
    pub fn len(&mut self) -> Result<usize, RedisStoreError> {
        let key = &self.key;
        Ok(self.link.call(|c| c.llen(key))?)
    }

    /// Whether the list is empty.
    pub fn is_empty(&mut self) -> Result<bool, RedisStoreError> {
        Ok(self.len()? == 0)
    }

    /// The history, oldest first by event time (ties by arrival), each event once (a batch
    /// consumed twice after a failure appended its events twice), with the score the live
    /// model gave each. Entries that do not decode are skipped.
    pub fn load(&mut self) -> Result<Vec<(FeatureVector, f64)>, RedisStoreError> {
        let (key, last) = (&self.key, self.capacity as isize - 1);
        let entries: Vec<Vec<u8>> = self.link.call(|c| c.lrange(key, 0, last))?;
        let mut seen = HashSet::with_capacity(entries.len());
        let mut events: Vec<(FeatureVector, f64)> = entries
            .iter()
            .rev()
            .filter_map(|bytes| decode_scored(bytes).ok())
            .filter(|event| seen.insert(event.event_id.clone()))
            .filter_map(|event| event.labelled_vector())
            .collect();
        // Stable: events of one instant keep their order of arrival.
        events.sort_by_key(|(vector, _)| vector.timestamp_ms);
        Ok(events)
    }
}
