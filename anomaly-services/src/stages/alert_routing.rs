//! Alerts -> the alerts table and, at or above a minimum severity, a notifier; repeats are
//! de-duplicated.

use std::collections::HashMap;

use crate::messages::{Alert, AlertKind, Severity};

/// What happened to an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// Stored only (below the notification severity).
    Stored,
    /// Stored and sent to the notifier.
    Notify,
    /// Stored; a repeat of an alert notified within the de-duplication window, not resent.
    Duplicate,
}

/// Decides which alerts reach the notifier.
///
/// ```
/// use anomaly_services::messages::{Alert, AlertKind, Severity};
/// use anomaly_services::stages::alert_routing::{AlertRouter, Routing};
///
/// let mut router = AlertRouter::new(Severity::High, 60_000);
/// let alert = |t: i64, severity| Alert {
///     schema_version: anomaly_services::messages::SCHEMA_VERSION,
///     alert_id: format!("a{t}"), kind: AlertKind::Anomaly, severity, timestamp_ms: t,
///     event_id: "e".into(), card_id: Some("card-1".into()), score: Some(0.97),
///     message: String::new(), top_features: vec![],
/// };
/// assert_eq!(router.route(&alert(0, Severity::Low)), Routing::Stored);
/// assert_eq!(router.route(&alert(1_000, Severity::Critical)), Routing::Notify);
/// assert_eq!(router.route(&alert(2_000, Severity::Critical)), Routing::Duplicate);
/// assert_eq!(router.route(&alert(90_000, Severity::Critical)), Routing::Notify);
/// ```
pub struct AlertRouter {
    min_severity: Severity,
    dedupe_window_ms: i64,
    last_notified: HashMap<DedupeKey, i64>,
    /// Newest event time notified.
    newest_ms: i64,
    /// Remembered keys at which the next pruning runs.
    prune_at: usize,
    /// Since the last [`commit`](AlertRouter::commit): each notified key's previous time and
    /// the time it was set to, and the newest time before, for
    /// [`rollback`](AlertRouter::rollback) and [`unroute`](AlertRouter::unroute).
    journal: Vec<(DedupeKey, Option<i64>, i64)>,
    newest_at_commit: i64,
}

type DedupeKey = (AlertKind, String, Severity);

/// Most alert keys remembered for de-duplication. Past it the oldest are forgotten (their
/// next alert is notified again): memory stays bounded whatever the number of cards.
pub const MAX_DEDUPE_KEYS: usize = 100_000;

impl AlertRouter {
    /// Notifies alerts at or above `min_severity`; the same kind of alert for the same card
    /// (or the same drift detector) at the same severity is sent at most once per
    /// `dedupe_window_ms` of event time. Keys are forgotten once their window is over (an
    /// alert more than a window older than the newest one may be notified again), and beyond
    /// [`MAX_DEDUPE_KEYS`].
    pub fn new(min_severity: Severity, dedupe_window_ms: i64) -> Self {
        Self {
            min_severity,
            dedupe_window_ms,
            last_notified: HashMap::new(),
            newest_ms: i64::MIN,
            prune_at: 1_024,
            journal: Vec::new(),
            newest_at_commit: i64::MIN,
        }
    }

    /// Alert keys remembered for de-duplication (at most [`MAX_DEDUPE_KEYS`]).
    pub fn remembered_keys(&self) -> usize {
        self.last_notified.len()
    }

    /// Forgets the keys whose window ended before the newest notified alert, then, if more
    /// than nine tenths of [`MAX_DEDUPE_KEYS`] are left, the oldest of them. Runs when the map
    /// has doubled since the last pruning, so its cost is constant per alert.
    fn prune(&mut self) {
        let horizon = self.newest_ms.saturating_sub(self.dedupe_window_ms);
        self.last_notified.retain(|_, last| *last > horizon);
        let keep = MAX_DEDUPE_KEYS / 10 * 9;
        if self.last_notified.len() > keep {
            let mut times: Vec<i64> = self.last_notified.values().copied().collect();
            let cut = times.len() - keep;
            let (_, &mut oldest_kept, _) = times.select_nth_unstable(cut);
            self.last_notified.retain(|_, last| *last >= oldest_kept);
        }
        self.prune_at = (self.last_notified.len() * 2).clamp(1_024, MAX_DEDUPE_KEYS);
    }

    /// Makes the decisions since the last commit final (their notifications are stored).
    pub fn commit(&mut self) {
        self.journal.clear();
        self.newest_at_commit = self.newest_ms;
    }

    /// Forgets the decisions since the last commit (their notifications were not stored),
    /// so that routing the same alerts again decides the same. A key pruned meanwhile stays
    /// forgotten: at worst one more notification, never one fewer.
    pub fn rollback(&mut self) {
        for (key, previous, _) in self.journal.drain(..).rev() {
            match previous {
                Some(time) => self.last_notified.insert(key, time),
                None => self.last_notified.remove(&key),
            };
        }
        self.newest_ms = self.newest_at_commit;
    }

    /// Forgets the decision to notify `alert`, routed since the last commit, whose
    /// notification was not stored after all (the database refused its row): the next alert
    /// of its kind, card and severity is not taken for its repeat.
    pub fn unroute(&mut self, alert: &Alert) {
        let key = Self::key(alert);
        let Some(at) = self
            .journal
            .iter()
            .rposition(|(k, _, set_to)| *k == key && *set_to == alert.timestamp_ms)
        else {
            return;
        };
        let (key, previous, set_to) = self.journal.remove(at);
        if self.last_notified.get(&key) == Some(&set_to) {
            match previous {
                Some(time) => self.last_notified.insert(key, time),
                None => self.last_notified.remove(&key),
            };
        }
    }

    fn key(alert: &Alert) -> DedupeKey {
        let subject = alert
            .card_id
            .clone()
            .unwrap_or_else(|| alert.message.split(':').next().unwrap_or("").to_owned());
        (alert.kind, subject, alert.severity)
    }

    /// Routes one alert.
    pub fn route(&mut self, alert: &Alert) -> Routing {
        if alert.severity < self.min_severity {
            return Routing::Stored;
        }
        let key = Self::key(alert);
        match self.last_notified.get(&key) {
            Some(&last) if alert.timestamp_ms.saturating_sub(last) < self.dedupe_window_ms => {
                Routing::Duplicate
            }
            previous => {
                self.journal
                    .push((key.clone(), previous.copied(), alert.timestamp_ms));
                self.last_notified.insert(key, alert.timestamp_ms);
                self.newest_ms = self.newest_ms.max(alert.timestamp_ms);
                if self.last_notified.len() >= self.prune_at {
                    self.prune();
                }
                Routing::Notify
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(card: u64, t: i64) -> Alert {
        Alert {
            schema_version: crate::messages::SCHEMA_VERSION,
            alert_id: format!("a{card}-{t}"),
            kind: AlertKind::Anomaly,
            severity: Severity::High,
            timestamp_ms: t,
            event_id: "e".into(),
            card_id: Some(format!("card-{card}")),
            score: Some(0.9),
            message: String::new(),
            top_features: vec![],
        }
    }

    /// A million distinct cards, 10 ms apart: only the last minute's keys are kept.
    #[test]
    fn keys_whose_window_is_over_are_forgotten() {
        let mut router = AlertRouter::new(Severity::Low, 60_000);
        let mut most = 0;
        for card in 0..1_000_000u64 {
            assert_eq!(
                router.route(&alert(card, card as i64 * 10)),
                Routing::Notify
            );
            most = most.max(router.remembered_keys());
        }
        // 6,000 keys per window, and the map may double before it is pruned.
        assert!(most <= 12_002, "{most} keys remembered");
        // De-duplication still works for the recent ones.
        assert_eq!(
            router.route(&alert(999_999, 10_000_000)),
            Routing::Duplicate
        );
    }

    /// With a window that never ends, the number of keys is capped: the oldest go first.
    #[test]
    fn keys_are_capped_even_within_the_window() {
        let mut router = AlertRouter::new(Severity::Low, i64::MAX / 4);
        for card in 0..1_000_000u64 {
            router.route(&alert(card, card as i64));
            assert!(router.remembered_keys() <= MAX_DEDUPE_KEYS);
        }
        assert_eq!(router.route(&alert(999_999, 1_000_000)), Routing::Duplicate);
        assert_eq!(
            router.route(&alert(0, 1_000_000)),
            Routing::Notify,
            "forgotten"
        );
    }
}
