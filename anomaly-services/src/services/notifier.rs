//! The alert router's notifier thread: sends the notifications of the outbox to Slack, away
//! from the consumer loop, so a slow, failing or rate-limiting webhook never holds a Kafka
//! batch. Each notification is sent until it succeeds, until the webhook refuses it for good
//! (HTTP 4xx other than 429), or until it is older than the maximum age; the last two are
//! marked `failed` in the outbox and counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::adapters::outbox::{Notification, PgOutbox};
use crate::startup::sleep_unless_shutdown;
use crate::telemetry::http::Status;

/// Why a message was not delivered.
#[derive(Clone, Debug, PartialEq)]
pub enum SendError {
    /// HTTP 429: send nothing for this long (the webhook's `Retry-After`, at least a second),
    /// and why.
    RateLimited(Duration, String),
    /// Unreachable, timed out or failing (HTTP 5xx): try again later.
    Unavailable(String),
    /// Refused (HTTP 4xx other than 429): it will never be accepted.
    Refused(String),
}

/// Delivers a message to people.
pub trait Notifier {
    /// One try at delivering `text`; errors never contain secrets (the webhook URL).
    fn send(&mut self, text: &str) -> Result<(), SendError>;
}

/// Posts messages to a Slack incoming webhook, one try per call, with a 5 s timeout. The URL
/// never appears in errors or logs.
pub struct SlackNotifier {
    agent: ureq::Agent,
    url: crate::config::Secret,
}

/// Bound on one webhook call, connection included.
pub const SLACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest `Retry-After` honoured as given; longer ones are cut to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl SlackNotifier {
    /// A notifier posting to `url`.
    ///
    /// ```
    /// use anomaly_services::config::Secret;
    /// use anomaly_services::services::notifier::{Notifier, SendError, SlackNotifier};
    ///
    /// // Nothing listens on port 9: the message cannot be delivered yet, and the error
    /// // does not show the URL.
    /// let mut slack = SlackNotifier::new(Secret::new("http://127.0.0.1:9/services/T0/B0/token"));
    /// match slack.send("[HIGH] card c-1: score 0.97") {
    ///     Err(SendError::Unavailable(e)) => assert!(!e.contains("token")),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn new(url: crate::config::Secret) -> Self {
        Self {
            agent: ureq::AgentBuilder::new().timeout(SLACK_TIMEOUT).build(),
            url,
        }
    }
}

impl Notifier for SlackNotifier {
    fn send(&mut self, text: &str) -> Result<(), SendError> {
        let body = serde_json::json!({ "text": text }).to_string();
        let request = self
            .agent
            .post(self.url.expose())
            .set("Content-Type", "application/json");
        match request.send_string(&body) {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(429, response)) => Err(SendError::RateLimited(
                response
                    .header("Retry-After")
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs)
                    .clamp(Duration::from_secs(1), MAX_RETRY_AFTER),
                "rate limited (HTTP 429)".into(),
            )),
            Err(ureq::Error::Status(code, _)) if code < 500 => {
                Err(SendError::Refused(format!("Slack answered HTTP {code}")))
            }
            Err(ureq::Error::Status(code, _)) => Err(SendError::Unavailable(format!(
                "Slack answered HTTP {code}"
            ))),
            // The transport error's text may contain the URL: keep only its kind.
            Err(ureq::Error::Transport(t)) => Err(SendError::Unavailable(format!(
                "transport error ({})",
                t.kind()
            ))),
        }
    }
}

/// How the notifier thread works through the outbox.
#[derive(Clone, Debug)]
pub struct NotifierSettings {
    /// A notification still undelivered this long after it was queued is marked `failed`.
    pub max_age: Duration,
    /// Notifications claimed at a time.
    pub claim: i64,
    /// How long a claim holds before another notifier may take it again; no send starts
    /// later than the webhook timeout plus ten seconds before it ends.
    pub lease: Duration,
    /// Wait when nothing is due.
    pub idle_wait: Duration,
    /// Wait before the second try; it doubles per try, up to `max_retry_wait`.
    pub first_retry_wait: Duration,
    /// The longest wait between two tries.
    pub max_retry_wait: Duration,
    /// Sent notifications are deleted from the outbox this long after delivery.
    pub keep_sent: Duration,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(24 * 3600),
            claim: 20,
            lease: Duration::from_secs(180),
            idle_wait: Duration::from_millis(200),
            first_retry_wait: Duration::from_secs(1),
            max_retry_wait: Duration::from_secs(300),
            keep_sent: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl NotifierSettings {
    /// The wait before the try after `attempts` tries: exponential, capped, drawn from its
    /// upper half so that notifications that failed together spread out.
    fn retry_wait(&self, attempts: i32) -> Duration {
        let doublings = attempts.clamp(1, 30) as u32 - 1;
        let full = self
            .first_retry_wait
            .saturating_mul(1 << doublings.min(20))
            .min(self.max_retry_wait);
        full / 2 + (full / 2).mul_f64(rand::random::<f64>())
    }
}

/// Sends the outbox's notifications through `notifier` until `shutdown` is set.
pub fn run_notifier(
    outbox: &mut PgOutbox,
    notifier: &mut impl Notifier,
    settings: &NotifierSettings,
    status: &Status,
    shutdown: &AtomicBool,
) {
    let metrics = &status.metrics;
    let mut outbox_wait = Duration::from_millis(100);
    let mut next_gauge = Instant::now();
    let mut next_pruning = Instant::now();
    info!("Notifier started");
    while !shutdown.load(Ordering::Relaxed) {
        if Instant::now() >= next_gauge {
            next_gauge = Instant::now() + Duration::from_secs(5);
            match outbox.pending() {
                Ok(pending) => metrics.outbox_pending.set(pending),
                Err(e) => warn!(error = e.to_string().as_str(); "Outbox not readable"),
            }
        }
        if Instant::now() >= next_pruning {
            next_pruning = Instant::now() + Duration::from_secs(3600);
            if let Err(e) = outbox.forget_sent(settings.keep_sent) {
                warn!(error = e.to_string().as_str(); "Sent notifications not pruned");
            }
        }
        let claimed = match outbox.claim(settings.claim, settings.lease) {
            Ok(claimed) => {
                outbox_wait = Duration::from_millis(100);
                claimed
            }
            Err(e) => {
                warn!(error = e.to_string().as_str(); "Outbox unavailable; retrying");
                metrics.errors.with_label_values(&["outbox"]).inc();
                sleep_unless_shutdown(outbox_wait, shutdown);
                outbox_wait = (outbox_wait * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if claimed.is_empty() {
            sleep_unless_shutdown(settings.idle_wait, shutdown);
            continue;
        }
        if let Some(wait) = deliver(outbox, notifier, settings, status, &claimed) {
            sleep_unless_shutdown(wait, shutdown);
        }
    }
    info!("Notifier stopped");
}

/// Sends `claimed` in order and records each outcome. When the webhook asks for a pause or
/// is down, the rest of the claim is given back untried (a failing webhook is not hammered)
/// and the pause is returned. Nothing is sent once the claim's lease could end before the
/// send does: another notifier may take it over then.
fn deliver(
    outbox: &mut PgOutbox,
    notifier: &mut impl Notifier,
    settings: &NotifierSettings,
    status: &Status,
    claimed: &[Notification],
) -> Option<Duration> {
    let metrics = &status.metrics;
    let claimed_at = Instant::now();
    for (i, notification) in claimed.iter().enumerate() {
        if claimed_at.elapsed() + SLACK_TIMEOUT + LEASE_MARGIN >= settings.lease {
            give_back(
                outbox,
                &claimed[i..],
                Duration::ZERO,
                "claim ran out of time",
            );
            return None;
        }
        let started = Instant::now();
        let sent = notifier.send(&notification.text);
        metrics
            .dependency_seconds
            .with_label_values(&["slack"])
            .observe(started.elapsed().as_secs_f64());
        let id = notification.alert_id.as_str();
        let too_old = notification.age >= settings.max_age;
        let (outcome, recorded, pause) = match sent {
            Ok(()) => ("sent", outbox.sent(notification), None),
            Err(SendError::Refused(e)) => {
                warn!(alert = id, error = e.as_str(); "Notification refused by the webhook");
                ("failed", outbox.failed(notification, &e), None)
            }
            Err(SendError::Unavailable(e) | SendError::RateLimited(_, e)) if too_old => {
                let e = format!(
                    "undelivered after {} tries over {} s: {e}",
                    notification.attempts,
                    notification.age.as_secs()
                );
                warn!(alert = id, error = e.as_str(); "Notification given up");
                ("failed", outbox.failed(notification, &e), None)
            }
            Err(SendError::Unavailable(e)) => {
                let wait = settings.retry_wait(notification.attempts);
                (
                    "retried",
                    outbox.retry_later(notification, wait, &e),
                    Some((wait, e)),
                )
            }
            Err(SendError::RateLimited(wait, e)) => (
                "retried",
                outbox.retry_later(notification, wait, &e),
                Some((wait, e)),
            ),
        };
        metrics.notifications.with_label_values(&[outcome]).inc();
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                warn!(alert = id; "Notification taken over by another notifier before its outcome was recorded")
            }
            Err(e) => {
                // Its claim expires and it is sent again: at least once, never lost.
                warn!(alert = id, error = e.to_string().as_str(); "Notification outcome not recorded");
                metrics.errors.with_label_values(&["outbox"]).inc();
            }
        }
        if let Some((wait, reason)) = pause {
            warn!(wait_ms = wait.as_millis() as u64, error = reason.as_str(); "Webhook unavailable; pausing notifications");
            metrics.errors.with_label_values(&["notify"]).inc();
            give_back(outbox, &claimed[i + 1..], wait, &reason);
            return Some(wait);
        }
    }
    None
}

/// Room left in a claim's lease after the last send it starts.
const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// Gives back untried notifications, due again in `after`.
fn give_back(outbox: &mut PgOutbox, untried: &[Notification], after: Duration, reason: &str) {
    for notification in untried {
        if let Err(e) = outbox.release(notification, after, reason) {
            warn!(alert = notification.alert_id.as_str(), error = e.to_string().as_str(); "Notification not given back; its lease will expire");
        }
    }
}
