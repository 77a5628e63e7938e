//! The notification outbox (table `notifications`): the alert router queues notifications
//! there in the statement that stores their alerts; a notifier thread claims the due ones,
//! sends them and records the outcome. Claims are leases (`next_attempt_at` moved forward),
//! taken with `FOR UPDATE SKIP LOCKED`, so any number of routers share the outbox and a
//! notifier that dies mid-send leaves its claims to be taken again when they expire. Each claim
//! carries a token: only the claim that holds a notification records its outcome.

use std::time::Duration;

use super::postgres_link::{PgLink, StoreError};

/// A notification to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The alert it announces (the outbox's key).
    pub alert_id: String,
    /// The message text.
    pub text: String,
    /// Tries so far, this one included.
    pub attempts: i32,
    /// How long ago it was queued.
    pub age: Duration,
    /// The claim's token (recording an outcome needs it).
    pub claim: String,
}

/// How many notifications are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Waiting to be sent (or retried).
    pub pending: i64,
    /// Delivered.
    pub sent: i64,
    /// Given up: refused by the webhook, or older than the maximum age.
    pub failed: i64,
}

/// The outbox, through its own connection (the notifier thread's).
pub struct PgOutbox {
    link: PgLink,
}

impl PgOutbox {
    /// Opens the outbox of schema `schema` at `url` (the schema is applied by
    /// [`PgEventStore::connect`](super::postgres::PgEventStore::connect)).
    pub fn connect(url: &str, schema: &str) -> Result<Self, StoreError> {
        Ok(Self {
            link: PgLink::open(url, schema)?,
        })
    }

    /// Records the duration of every database call in `latency`.
    pub fn with_latency(mut self, latency: prometheus::Histogram) -> Self {
        self.link = self.link.with_latency(latency);
        self
    }

    /// Claims up to `limit` due notifications, oldest first, for `lease`: nobody else takes
    /// them before it ends.
    pub fn claim(&mut self, limit: i64, lease: Duration) -> Result<Vec<Notification>, StoreError> {
        let lease = lease.as_secs_f64();
        let token = format!("{:016x}", rand::random::<u64>());
        let rows = self.link.call(|client| {
            client.query(
                "UPDATE notifications n \
                 SET next_attempt_at = now() + make_interval(secs => $2), \
                     attempts = n.attempts + 1, claim_token = $3 \
                 FROM (SELECT alert_id FROM notifications \
                       WHERE state = 'pending' AND next_attempt_at <= now() \
                       ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due \
                 WHERE n.alert_id = due.alert_id \
                 RETURNING n.alert_id, n.text, n.attempts, \
                           EXTRACT(EPOCH FROM now() - n.created_at)::FLOAT8",
                &[&limit, &lease, &token],
            )
        })?;
        let mut claimed: Vec<Notification> = rows
            .iter()
            .map(|row| Notification {
                alert_id: row.get(0),
                text: row.get(1),
                attempts: row.get(2),
                age: Duration::from_secs_f64(row.get::<_, f64>(3).max(0.0)),
                claim: token.clone(),
            })
            .collect();
        claimed.sort_by_key(|n| std::cmp::Reverse(n.age));
        Ok(claimed)
    }

    /// Records that `notification` was delivered; `false` if its claim was taken over.
    pub fn sent(&mut self, notification: &Notification) -> Result<bool, StoreError> {
        self.finish(notification, "sent", None)
    }

    /// Records that `notification` will not be delivered, and why; `false` if its claim was
    /// taken over.
    pub fn failed(&mut self, notification: &Notification, error: &str) -> Result<bool, StoreError> {
        self.finish(notification, "failed", Some(error))
    }

    /// Schedules the next try of `notification` in `after`, recording why this one failed;
    /// `false` if its claim was taken over.
    pub fn retry_later(
        &mut self,
        notification: &Notification,
        after: Duration,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.reschedule(notification, after, error, 0)
    }

    /// Gives back a claimed notification that was not tried, to be tried in `after` (its
    /// claim does not count as a try); `false` if its claim was taken over.
    pub fn release(
        &mut self,
        notification: &Notification,
        after: Duration,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.reschedule(notification, after, reason, 1)
    }

    /// Notifications waiting to be sent or retried.
    pub fn pending(&mut self) -> Result<i64, StoreError> {
        let row = self.link.call(|client| {
            client.query_one(
                "SELECT COUNT(*) FROM notifications WHERE state = 'pending'",
                &[],
            )
        })?;
        Ok(row.get(0))
    }

    /// Notifications per state (a scan of the table: for tests and operators, not a loop).
    pub fn counts(&mut self) -> Result<OutboxCounts, StoreError> {
        let rows = self.link.call(|client| {
            client.query(
                "SELECT state, COUNT(*) FROM notifications GROUP BY state",
                &[],
            )
        })?;
        let mut counts = OutboxCounts::default();
        for row in rows {
            let n: i64 = row.get(1);
            match row.get::<_, &str>(0) {
                "pending" => counts.pending = n,
                "sent" => counts.sent = n,
                _ => counts.failed = n,
            }
        }
        Ok(counts)
    }

    /// Deletes sent notifications finished more than `age` ago (failed ones stay for
    /// operators to see); returns how many.
    pub fn forget_sent(&mut self, age: Duration) -> Result<u64, StoreError> {
        let age = age.as_secs_f64();
        self.link.call(|client| {
            client.execute(
                "DELETE FROM notifications WHERE state = 'sent' \
                 AND finished_at < now() - make_interval(secs => $1)",
                &[&age],
            )
        })
    }

    fn reschedule(
        &mut self,
        notification: &Notification,
        after: Duration,
        reason: &str,
        untried: i32,
    ) -> Result<bool, StoreError> {
        let after = after.as_secs_f64();
        let updated = self.link.call(|client| {
            client.execute(
                "UPDATE notifications SET next_attempt_at = now() + make_interval(secs => $3), \
                 attempts = GREATEST(attempts - $5, 0), last_error = $4 \
                 WHERE alert_id = $1 AND claim_token = $2 AND state = 'pending'",
                &[
                    &notification.alert_id,
                    &notification.claim,
                    &after,
                    &reason,
                    &untried,
                ],
            )
        })?;
        Ok(updated == 1)
    }

    fn finish(
        &mut self,
        notification: &Notification,
        state: &str,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let updated = self.link.call(|client| {
            client.execute(
                "UPDATE notifications SET state = $3, finished_at = now(), last_error = $4 \
                 WHERE alert_id = $1 AND claim_token = $2 AND state = 'pending'",
                &[&notification.alert_id, &notification.claim, &state, &error],
            )
        })?;
        Ok(updated == 1)
    }
}
