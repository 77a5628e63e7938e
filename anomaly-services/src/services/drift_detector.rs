//! `scores` -> drift detection -> `drift-events` and drift `alerts`; scored events and drift
//! events are written to the event store before the batch's offsets are stored.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::adapters::kafka::{Output, Record};
use crate::ids::uuid_from;
use crate::messages::{DriftEvent, ScoredEvent, decode_scored};
use crate::service::{Failure, Handler, json_output, reject};
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
    /// Inserts scored events, ignoring those already stored.
    fn write_scored(&mut self, events: &[ScoredEvent]) -> Result<(), String>;
    /// Inserts drift events, ignoring those already stored.
    fn write_drifts(&mut self, drifts: &[DriftEvent]) -> Result<(), String>;
}

impl EventWriter for crate::adapters::postgres::PgEventStore {
    fn write_scored(&mut self, events: &[ScoredEvent]) -> Result<(), String> {
        self.write_scored(events)
            .map(drop)
            .map_err(|e| e.to_string())
    }
    fn write_drifts(&mut self, drifts: &[DriftEvent]) -> Result<(), String> {
        self.write_drifts(drifts)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Watches scores for drift; batches rows per poll batch (at most 100 rows, at most one poll
/// interval old: the batch writer's size and time bounds).
pub struct DriftService<W> {
    monitor: DriftMonitor,
    writer: W,
    scored: Vec<ScoredEvent>,
    drifts: Vec<DriftEvent>,
    alert_ids: ChaCha8Rng,
    status: std::sync::Arc<Status>,
}

impl<W: EventWriter> DriftService<W> {
    /// A handler writing to `writer`; `warm_up` scored events are stored but not watched.
    pub fn new(writer: W, warm_up: u64, seed: u64, status: std::sync::Arc<Status>) -> Self {
        Self {
            monitor: DriftMonitor::new(seed, warm_up),
            writer,
            scored: Vec::new(),
            drifts: Vec::new(),
            alert_ids: ChaCha8Rng::seed_from_u64(seed ^ 0xA7),
            status,
        }
    }
}

impl<W: EventWriter> Handler for DriftService<W> {
    fn handle(&mut self, record: &Record, out: &mut Vec<Output>) -> Result<(), Failure> {
        let event = decode_scored(&record.payload).map_err(reject)?;
        for drift in self.monitor.process(&event) {
            self.status
                .metrics
                .drifts
                .with_label_values(&[drift.detector.name()])
                .inc();
            let alert = drift_alert(&drift, uuid_from(self.alert_ids.random()));
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
        }
        self.scored.push(event);
        self.status
            .metrics
            .batch_queue_depth
            .set(self.scored.len() as i64);
        Ok(())
    }

    fn end_batch(&mut self, _: &mut Vec<Output>) -> Result<(), Failure> {
        let started = std::time::Instant::now();
        let written = self
            .writer
            .write_scored(&self.scored)
            .and_then(|()| self.writer.write_drifts(&self.drifts));
        // Either way the batch's rows leave the buffer: on failure the batch is consumed again.
        self.scored.clear();
        self.drifts.clear();
        self.status.metrics.batch_queue_depth.set(0);
        self.status
            .metrics
            .batch_flush_seconds
            .observe(started.elapsed().as_secs_f64());
        written.map_err(Failure::Retry)
    }
}
