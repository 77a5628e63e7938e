//! `scores` -> drift detection -> `drift-events` and drift `alerts`; scored events and drift
//! events are written to the event store before the batch's offsets are stored.

use crate::adapters::kafka::{Output, Record};
use crate::adapters::postgres::Inserted;
use crate::failure::{Dependency, Failure, RejectedRow, Unavailable};
use crate::messages::{DriftEvent, ScoredEvent, decode_scored};
use crate::service::{Handler, dead_letter_late, json_output, reject};
use crate::stages::drift_monitor::{DriftMonitor, drift_alert};
use crate::telemetry::http::Status;

/// Topic it reads.
pub const SCORES: &str = "scores";
/// Topic of drift events.
pub const DRIFT_EVENTS: &str = "drift-events";
/// Topic of alerts.
pub const ALERTS: &str = "alerts";

/// Where the rows go (PostgreSQL in production).
pub trait EventWriter {
    /// Inserts scored events, ignoring those already stored; returns the rows refused as
    /// data.
    fn write_scored(&mut self, events: &[ScoredEvent]) -> Result<Vec<RejectedRow>, Unavailable>;
    /// Inserts drift events, ignoring those already stored; returns the rows refused as
    /// data.
    fn write_drifts(&mut self, drifts: &[DriftEvent]) -> Result<Vec<RejectedRow>, Unavailable>;
}

impl EventWriter for crate::adapters::postgres::PgEventStore {
    fn write_scored(&mut self, events: &[ScoredEvent]) -> Result<Vec<RejectedRow>, Unavailable> {
        self.write_scored(events)
            .map(|Inserted { rejected, .. }| rejected)
            .map_err(|e| Unavailable::new(Dependency::Postgres, e))
    }
    fn write_drifts(&mut self, drifts: &[DriftEvent]) -> Result<Vec<RejectedRow>, Unavailable> {
        self.write_drifts(drifts)
            .map(|Inserted { rejected, .. }| rejected)
            .map_err(|e| Unavailable::new(Dependency::Postgres, e))
    }
}

/// Watches scores for drift; batches rows per poll batch (at most 100 rows, at most one poll
/// interval old: the batch writer's size and time bounds).
pub struct DriftService<W> {
    /// The detectors, when this handler runs them (one process alone); `None` when the
    /// instances' elected owner does ([`drift_leader`](super::drift_leader)).
    monitor: Option<DriftMonitor>,
    /// The monitor after the last committed batch.
    committed: Option<DriftMonitor>,
    writer: W,
    scored: Vec<ScoredEvent>,
    drifts: Vec<DriftEvent>,
    /// The record (partition, offset) each scored event and each drift came from.
    scored_sources: Vec<(i32, i64)>,
    drift_sources: Vec<(i32, i64)>,
    status: std::sync::Arc<Status>,
}

impl<W: EventWriter> DriftService<W> {
    /// A handler storing scored events and running the detectors on the records it reads;
    /// `warm_up` scored events are stored but not watched. Right for one instance reading
    /// every partition; with several, use [`rows_only`](Self::rows_only) and the elected
    /// owner.
    pub fn new(writer: W, warm_up: u64, status: std::sync::Arc<Status>) -> Self {
        let monitor = DriftMonitor::new(warm_up);
        Self {
            committed: Some(monitor.clone()),
            monitor: Some(monitor),
            writer,
            scored: Vec::new(),
            drifts: Vec::new(),
            scored_sources: Vec::new(),
            drift_sources: Vec::new(),
            status,
        }
    }
}

impl<W: EventWriter> DriftService<W> {
    /// A handler that only stores the scored events of the partitions it is assigned (the
    /// detectors run in the elected owner).
    pub fn rows_only(writer: W, status: std::sync::Arc<Status>) -> Self {
        Self {
            monitor: None,
            committed: None,
            writer,
            scored: Vec::new(),
            drifts: Vec::new(),
            scored_sources: Vec::new(),
            drift_sources: Vec::new(),
            status,
        }
    }
}

impl<W: EventWriter> Handler for DriftService<W> {
    fn handle(&mut self, record: &Record, out: &mut Vec<Output>) -> Result<(), Failure> {
        let event = decode_scored(&record.payload).map_err(reject)?;
        let found = match self.monitor.as_mut() {
            Some(monitor) => monitor.process(&event),
            None => Vec::new(),
        };
        for drift in found {
            self.status
                .metrics
                .drifts
                .with_label_values(&[drift.detector.name()])
                .inc();
            let alert = drift_alert(&drift);
            out.push(json_output(
                DRIFT_EVENTS,
                Some(drift.detector.name().into()),
                &drift,
            ));
            out.push(json_output(
                ALERTS,
                Some(drift.detector.name().into()),
                &alert,
            ));
            self.drifts.push(drift);
            self.drift_sources.push((record.partition, record.offset));
        }
        self.scored.push(event);
        self.scored_sources.push((record.partition, record.offset));
        self.status
            .metrics
            .batch_queue_depth
            .set(self.scored.len() as i64);
        Ok(())
    }

    fn end_batch(&mut self, batch: &[Record], out: &mut Vec<Output>) -> Result<(), Unavailable> {
        let started = std::time::Instant::now();
        let written = self.writer.write_scored(&self.scored).and_then(|scored| {
            let drifts = self.writer.write_drifts(&self.drifts)?;
            Ok((scored, drifts))
        });
        // Either way the batch's rows leave the buffer: on failure the batch is consumed again.
        self.scored.clear();
        self.drifts.clear();
        let scored_sources = std::mem::take(&mut self.scored_sources);
        let drift_sources = std::mem::take(&mut self.drift_sources);
        self.status.metrics.batch_queue_depth.set(0);
        self.status
            .metrics
            .batch_flush_seconds
            .observe(started.elapsed().as_secs_f64());
        let (scored, drifts) = written?;
        let refused = scored
            .into_iter()
            .map(|row| (scored_sources.get(row.index), row.error))
            .chain(
                drifts
                    .into_iter()
                    .map(|row| (drift_sources.get(row.index), row.error)),
            );
        for (source, error) in refused {
            let record = source.and_then(|&(partition, offset)| {
                batch
                    .iter()
                    .find(|r| r.partition == partition && r.offset == offset)
            });
            if let Some(record) = record {
                dead_letter_late(&self.status, record, "refused_by_store", &error, out);
            }
        }
        Ok(())
    }

    fn batch_committed(&mut self) {
        self.committed.clone_from(&self.monitor);
    }

    fn batch_failed(&mut self) {
        // The replay feeds the detectors the same scores again: start from where they were.
        self.monitor.clone_from(&self.committed);
        self.scored.clear();
        self.drifts.clear();
        self.scored_sources.clear();
        self.drift_sources.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Alert, DriftEvent};

    /// Stores rows; fails the first `failures` flushes.
    #[derive(Default)]
    struct FlakyWriter {
        failures: usize,
        drifts: Vec<DriftEvent>,
    }

    impl EventWriter for FlakyWriter {
        fn write_scored(&mut self, _: &[ScoredEvent]) -> Result<Vec<RejectedRow>, Unavailable> {
            if self.failures > 0 {
                self.failures -= 1;
                return Err(Unavailable::new(Dependency::Postgres, "database down"));
            }
            Ok(Vec::new())
        }
        fn write_drifts(&mut self, drifts: &[DriftEvent]) -> Result<Vec<RejectedRow>, Unavailable> {
            self.drifts.extend_from_slice(drifts);
            Ok(Vec::new())
        }
    }

    fn records() -> Vec<Record> {
        (0..4000)
            .map(|i| {
                let event = ScoredEvent {
                    schema_version: crate::messages::SCHEMA_VERSION,
                    event_id: format!("e{i}"),
                    card_id: "c".into(),
                    timestamp_ms: 1_767_225_600_000 + i,
                    score: if i < 2000 { 0.3 } else { 0.8 },
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
                    partition: 0,
                    offset: i,
                    key: None,
                    payload: serde_json::to_vec(&event).unwrap(),
                    timestamp_ms: None,
                }
            })
            .collect()
    }

    /// What `service::run` does with one batch: handle every record, then end it; on failure
    /// the batch is handled again from the start.
    fn run_batch(service: &mut DriftService<FlakyWriter>, batch: &[Record]) -> Vec<Output> {
        loop {
            let mut out = Vec::new();
            for record in batch {
                service.handle(record, &mut out).unwrap();
            }
            match service.end_batch(batch, &mut out) {
                Ok(()) => {
                    service.batch_committed();
                    return out;
                }
                Err(_) => service.batch_failed(),
            }
        }
    }

    #[test]
    fn a_replayed_batch_gives_the_same_drifts_and_alerts_as_the_first_run() {
        let batch = records();
        let mut once = DriftService::new(FlakyWriter::default(), 0, Status::new("drift-detector"));
        let mut replayed = DriftService::new(
            FlakyWriter {
                failures: 2,
                ..FlakyWriter::default()
            },
            0,
            Status::new("drift-detector"),
        );
        let expected = run_batch(&mut once, &batch);
        let got = run_batch(&mut replayed, &batch);
        assert!(
            expected.iter().any(|o| o.topic == DRIFT_EVENTS),
            "the stream drifts"
        );
        assert_eq!(got, expected);
        assert_eq!(replayed.writer.drifts, once.writer.drifts);
        // The detectors saw every score once: the next batch behaves the same on both.
        assert_eq!(
            replayed.monitor.as_ref().map(DriftMonitor::seen),
            once.monitor.as_ref().map(DriftMonitor::seen)
        );
        let alert: Alert = serde_json::from_slice(
            &expected
                .iter()
                .find(|o| o.topic == ALERTS)
                .map(|o| o.payload.clone())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(alert, drift_alert(&once.writer.drifts[0]));
    }

    /// Refuses the scored rows at the given indexes, as PostgreSQL refuses data.
    struct Refusing(Vec<usize>);

    impl EventWriter for Refusing {
        fn write_scored(
            &mut self,
            events: &[ScoredEvent],
        ) -> Result<Vec<RejectedRow>, Unavailable> {
            Ok(self
                .0
                .iter()
                .filter(|&&i| i < events.len())
                .map(|&index| RejectedRow {
                    index,
                    error: format!("refused row {index}"),
                })
                .collect())
        }
        fn write_drifts(&mut self, _: &[DriftEvent]) -> Result<Vec<RejectedRow>, Unavailable> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn rows_the_store_refuses_become_dead_letters_of_their_records() {
        let status = Status::new("drift-detector");
        let mut service = DriftService::new(Refusing(vec![1, 3]), 0, status.clone());
        let batch = &records()[..5];
        let mut out = Vec::new();
        for record in batch {
            service.handle(record, &mut out).unwrap();
        }
        service.end_batch(batch, &mut out).unwrap();
        let letters: Vec<crate::messages::DeadLetter> = out
            .iter()
            .filter(|o| o.topic == crate::service::DEAD_LETTERS)
            .map(|o| serde_json::from_slice(&o.payload).unwrap())
            .collect();
        let offsets: Vec<i64> = letters.iter().map(|l| l.offset).collect();
        assert_eq!(offsets, [1, 3]);
        assert_eq!(letters[0].error, "refused row 1");
        assert_eq!(
            letters[1].payload,
            String::from_utf8_lossy(&batch[3].payload)
        );
        assert_eq!(status.metrics.dead_letters.get(), 2);
        assert_eq!(
            status
                .metrics
                .errors
                .with_label_values(&["refused_by_store"])
                .get(),
            2
        );
    }
}
