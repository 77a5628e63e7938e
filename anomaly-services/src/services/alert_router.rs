//! `alerts` -> the alerts table and, for those at or above the minimum severity and not
//! repeats, the notification outbox (sent to Slack by the [`notifier`](super::notifier)
//! thread, never from the consumer loop).

use crate::adapters::kafka::{Output, Record};
use crate::adapters::postgres::Inserted;
use crate::failure::{Failure, RejectedRow, Unavailable};
use crate::messages::{Alert, decode_alert};
use crate::service::{Handler, dead_letter_late, reject};
use crate::stages::alert_routing::{AlertRouter, Routing};
use crate::telemetry::http::Status;

/// Topic it reads.
pub const ALERTS: &str = "alerts";

/// Where every alert is stored, with the notifications to send (PostgreSQL in production:
/// the `alerts` table and the `notifications` outbox, written together).
pub trait AlertWriter {
    /// Inserts alerts, ignoring those already stored, and queues a notification for those
    /// flagged; returns the rows refused as data.
    fn write_alerts(&mut self, alerts: &[(Alert, bool)]) -> Result<Vec<RejectedRow>, Unavailable>;
}

impl AlertWriter for crate::adapters::postgres::PgEventStore {
    fn write_alerts(&mut self, alerts: &[(Alert, bool)]) -> Result<Vec<RejectedRow>, Unavailable> {
        self.write_alerts(alerts)
            .map(|Inserted { rejected, .. }| rejected)
            .map_err(|e| Unavailable::new(crate::failure::Dependency::Postgres, e))
    }
}

/// Stores every alert, queues the important ones for notification once.
pub struct AlertRouterService<W> {
    router: AlertRouter,
    writer: W,
    notify: bool,
    /// The batch's alerts, whether to notify each, and the record each came from.
    pending: Vec<(Alert, bool)>,
    sources: Vec<(i32, i64)>,
    status: std::sync::Arc<Status>,
}

impl<W: AlertWriter> AlertRouterService<W> {
    /// A handler storing into `writer`; `notify` false (no webhook configured) queues no
    /// notification.
    pub fn new(
        router: AlertRouter,
        writer: W,
        notify: bool,
        status: std::sync::Arc<Status>,
    ) -> Self {
        Self {
            router,
            writer,
            notify,
            pending: Vec::new(),
            sources: Vec::new(),
            status,
        }
    }
}

impl<W: AlertWriter> Handler for AlertRouterService<W> {
    fn handle(&mut self, record: &Record, _: &mut Vec<Output>) -> Result<(), Failure> {
        let alert = decode_alert(&record.payload).map_err(reject)?;
        let notify = self.notify && self.router.route(&alert) == Routing::Notify;
        self.status
            .metrics
            .dedupe_keys
            .set(self.router.remembered_keys() as i64);
        self.pending.push((alert, notify));
        self.sources.push((record.partition, record.offset));
        Ok(())
    }

    fn end_batch(&mut self, batch: &[Record], out: &mut Vec<Output>) -> Result<(), Unavailable> {
        let written = self.writer.write_alerts(&self.pending);
        let sources = std::mem::take(&mut self.sources);
        let pending = std::mem::take(&mut self.pending);
        for RejectedRow { index, error } in written? {
            if let Some((alert, true)) = pending.get(index) {
                self.router.unroute(alert);
            }
            if let Some(record) = sources.get(index).and_then(|&(partition, offset)| {
                batch
                    .iter()
                    .find(|r| r.partition == partition && r.offset == offset)
            }) {
                dead_letter_late(&self.status, record, "refused_by_store", &error, out);
            }
        }
        Ok(())
    }

    fn batch_committed(&mut self) {
        self.router.commit();
    }

    fn batch_failed(&mut self) {
        // The replay routes the same alerts again: the de-duplication must not take the
        // first run's decisions (whose notifications were not stored) for earlier ones.
        self.router.rollback();
        self.pending.clear();
        self.sources.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{AlertKind, Severity};

    /// Stores nothing; remembers which alerts were queued for notification.
    #[derive(Default)]
    struct Discard {
        notified: Vec<String>,
    }

    impl AlertWriter for Discard {
        fn write_alerts(
            &mut self,
            alerts: &[(Alert, bool)],
        ) -> Result<Vec<RejectedRow>, Unavailable> {
            self.notified.extend(
                alerts
                    .iter()
                    .filter(|(_, n)| *n)
                    .map(|(a, _)| a.alert_id.clone()),
            );
            Ok(Vec::new())
        }
    }

    /// The record of alert `a<i>` about `card`, at offset `i`.
    fn alert_record(i: i64, card: &str, severity: Severity, timestamp_ms: i64) -> Record {
        let alert = Alert {
            schema_version: crate::messages::SCHEMA_VERSION,
            alert_id: format!("a{i}"),
            kind: AlertKind::Anomaly,
            severity,
            timestamp_ms,
            event_id: format!("e{i}"),
            card_id: Some(card.into()),
            score: Some(0.99),
            message: "m".into(),
            top_features: vec![],
        };
        Record {
            topic: ALERTS.into(),
            partition: 0,
            offset: i,
            key: None,
            payload: serde_json::to_vec(&alert).unwrap(),
            timestamp_ms: None,
        }
    }

    /// Alerts for 1,000,000 distinct cards, 10 ms of event time apart: the gauge of remembered
    /// keys stays at about two minutes' worth, not one per card.
    #[test]
    fn the_remembered_keys_gauge_stays_bounded_over_many_cards() {
        let status = Status::new("alert-router");
        let mut service = AlertRouterService::new(
            AlertRouter::new(Severity::Low, 60_000),
            Discard::default(),
            true,
            std::sync::Arc::clone(&status),
        );
        let mut out = Vec::new();
        let mut most = 0;
        for i in 0..1_000_000i64 {
            let record = alert_record(
                i,
                &format!("card-{i}"),
                Severity::High,
                1_767_225_600_000 + i * 10,
            );
            service.handle(&record, &mut out).unwrap();
            if i % 1_000 == 999 {
                service.end_batch(&[], &mut out).unwrap();
                service.batch_committed();
            }
            most = most.max(status.metrics.dedupe_keys.get());
        }
        assert!((6_000..=12_002).contains(&most), "{most} keys remembered");
    }

    /// A batch whose rows were not stored is routed again from the router's state before
    /// it: its notifications are queued on the replay, not taken for repeats.
    #[test]
    fn a_failed_batch_notifies_on_its_replay() {
        let status = Status::new("alert-router");
        let mut service = AlertRouterService::new(
            AlertRouter::new(Severity::High, 60_000),
            Discard::default(),
            true,
            status,
        );
        let record =
            |i: i64, card: &str| alert_record(i, card, Severity::Critical, 1_767_225_600_000 + i);
        let mut out = Vec::new();
        service.handle(&record(0, "c1"), &mut out).unwrap();
        service.end_batch(&[], &mut out).unwrap();
        service.batch_committed();
        // The second batch fails after routing (say its outputs were not acknowledged).
        let batch = [record(1, "c2"), record(2, "c1")];
        for r in &batch {
            service.handle(r, &mut out).unwrap();
        }
        service.batch_failed();
        for r in &batch {
            service.handle(r, &mut out).unwrap();
        }
        service.end_batch(&batch, &mut out).unwrap();
        service.batch_committed();
        // c2 notified once (on the replay); c1's second alert is a repeat of a0.
        assert_eq!(service.writer.notified, ["a0", "a1"]);
    }

    /// Refuses the first alert it is given, as PostgreSQL refuses a row as data.
    #[derive(Default)]
    struct RefusesFirst {
        refused: bool,
        notified: Vec<String>,
    }

    impl AlertWriter for RefusesFirst {
        fn write_alerts(
            &mut self,
            alerts: &[(Alert, bool)],
        ) -> Result<Vec<RejectedRow>, Unavailable> {
            let mut rejected = Vec::new();
            for (i, (alert, notify)) in alerts.iter().enumerate() {
                if !self.refused {
                    self.refused = true;
                    rejected.push(RejectedRow {
                        index: i,
                        error: "refused".into(),
                    });
                } else if *notify {
                    self.notified.push(alert.alert_id.clone());
                }
            }
            Ok(rejected)
        }
    }

    /// An alert whose row was refused queued no notification: the next alert of its card is
    /// not taken for its repeat.
    #[test]
    fn a_refused_alert_does_not_silence_the_next_one() {
        let status = Status::new("alert-router");
        let mut service = AlertRouterService::new(
            AlertRouter::new(Severity::High, 60_000),
            RefusesFirst::default(),
            true,
            status.clone(),
        );
        let record = |i: i64| alert_record(i, "c1", Severity::Critical, 1_767_225_600_000 + i);
        for i in 0..2 {
            let batch = [record(i)];
            let mut out = Vec::new();
            service.handle(&batch[0], &mut out).unwrap();
            service.end_batch(&batch, &mut out).unwrap();
            service.batch_committed();
            assert_eq!(
                out.iter()
                    .filter(|o| o.topic == crate::service::DEAD_LETTERS)
                    .count(),
                usize::from(i == 0)
            );
        }
        assert_eq!(service.writer.notified, ["a1"]);
    }
}
