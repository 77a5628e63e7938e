//! The metrics every service exports, in one typed place.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// A service's metrics, all named `anomaly_*` and labelled with the service.
///
/// ```
/// use anomaly_services::telemetry::metrics::Metrics;
///
/// let metrics = Metrics::new("ml-inference");
/// metrics.events_in.inc();
/// metrics.errors.with_label_values(&["bad_json"]).inc();
/// let text = metrics.render();
/// assert!(text.contains(r#"anomaly_events_in_total{service="ml-inference"} 1"#));
/// ```
pub struct Metrics {
    registry: Registry,
    /// Messages consumed.
    pub events_in: IntCounter,
    /// Messages produced.
    pub events_out: IntCounter,
    /// Time to process one message, seconds: its share of its batch's processing time.
    pub processing_seconds: Histogram,
    /// Errors by kind (`bad_json`, `invalid`, `too_large`, `store`, ...).
    pub errors: IntCounterVec,
    /// Messages sent to `dead-letters`.
    pub dead_letters: IntCounter,
    /// Anomalies flagged.
    pub anomalies: IntCounter,
    /// Alerts by severity.
    pub alerts: IntCounterVec,
    /// Drifts by detector.
    pub drifts: IntCounterVec,
    /// Version of the model in use.
    pub active_model_version: IntGauge,
    /// Rows waiting in the batch writer.
    pub batch_queue_depth: IntGauge,
    /// Time to flush one batch, seconds.
    pub batch_flush_seconds: Histogram,
    /// Unix time, seconds, of the newest processed record's Kafka timestamp (when it was
    /// produced): how fresh what the service has processed is.
    pub last_event_time: Gauge,
    /// Retraining jobs run, by outcome (`published` or `kept`).
    pub retraining_jobs: IntCounterVec,
    /// Records consumed again after a restart whose effects the state already held, skipped.
    pub replays_skipped: IntCounter,
    /// Records per poll batch (how well the per-batch costs are shared).
    pub batch_records: Histogram,
    /// Alert keys the alert router remembers for de-duplication (bounded).
    pub dedupe_keys: IntGauge,
    /// Records not processed yet, per topic and partition this instance owns (the partition's
    /// end from librdkafka's statistics, minus the next offset to process).
    pub consumer_lag: IntGaugeVec,
    /// Duration of calls to a dependency (`redis`, `postgres`, `slack`), seconds.
    pub dependency_seconds: HistogramVec,
    /// Notifications by outcome of a try: `sent`, `retried`, `failed` (given up).
    pub notifications: IntCounterVec,
    /// Notifications in the outbox waiting to be sent or retried.
    pub outbox_pending: IntGauge,
    /// Partitions taken from this consumer by a rebalance (another member joined or left,
    /// or this one missed its session or poll interval and was thrown out).
    pub partitions_revoked: IntCounter,
    /// drift-detector: 1 while this instance owns the drift detectors, 0 on standby.
    pub drift_leader: IntGauge,
    /// retraining-worker: entries of the shared labelled history jobs train on.
    pub history_events: IntGauge,
    /// ml-inference: time to encode and write a checkpoint of the learned model.
    pub checkpoint_seconds: Histogram,
    /// ml-inference: size of the last checkpoint written, bytes.
    pub checkpoint_bytes: IntGauge,
    /// Always 1, labelled with the build's version (dashboards show what runs where).
    pub build_info: IntGaugeVec,
    /// The process's resident memory, bytes (Linux; read when the metrics are rendered).
    pub resident_memory_bytes: IntGauge,
}

/// The kinds of `anomaly_errors_total` (docs/OPERATIONS.md says what each means).
pub const ERROR_KINDS: [&str; 19] = [
    "too_large",
    "bad_json",
    "invalid",
    "newer_schema",
    "corrupt_state",
    "refused_by_store",
    "redis_unavailable",
    "postgres_unavailable",
    "kafka_unavailable",
    "slack_unavailable",
    "kafka_poll",
    "kafka_commit",
    "kafka_send",
    "notify",
    "outbox",
    "slack",
    "drift_leader",
    "checkpoint_corrupt",
    "model_rejected",
];

impl Metrics {
    /// The metrics of `service`, registered in a fresh registry.
    // Every name, label and bucket list below is a constant: constructing and registering
    // them cannot fail at run time (the doctest and the tests build them all).
    #[allow(clippy::expect_used)]
    pub fn new(service: &str) -> Self {
        let labels = [("service".to_owned(), service.to_owned())].into();
        let registry = Registry::new_custom(Some("anomaly".into()), Some(labels))
            .expect("constant registry prefix");
        let latency = prometheus::exponential_buckets(1e-6, 4.0, 12).expect("constant buckets");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("constant name");
        let counter_vec = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label]).expect("constant name")
        };
        let histogram = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(latency.clone()))
                .expect("constant name")
        };
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("constant name");
        let metrics = Self {
            events_in: counter("events_in_total", "Messages consumed"),
            events_out: counter("events_out_total", "Messages produced"),
            processing_seconds: histogram(
                "processing_seconds",
                "Time to process one message (its share of its batch's time)",
            ),
            errors: counter_vec("errors_total", "Errors by kind", "kind"),
            dead_letters: counter("dead_letters_total", "Messages sent to dead-letters"),
            anomalies: counter("anomalies_total", "Anomalies flagged"),
            alerts: counter_vec("alerts_total", "Alerts by severity", "severity"),
            drifts: counter_vec("drifts_total", "Drifts by detector", "detector"),
            active_model_version: gauge("active_model_version", "Version of the model in use"),
            batch_queue_depth: gauge("batch_queue_depth", "Rows waiting in the batch writer"),
            batch_flush_seconds: histogram("batch_flush_seconds", "Time to flush one batch"),
            last_event_time: Gauge::new(
                "last_event_time_seconds",
                "Kafka timestamp (Unix seconds) of the newest processed record",
            )
            .expect("constant name"),
            retraining_jobs: counter_vec("retraining_jobs_total", "Retraining jobs run", "outcome"),
            replays_skipped: counter(
                "replays_skipped_total",
                "Records consumed again whose effects the state already held",
            ),
            batch_records: Histogram::with_opts(
                HistogramOpts::new("batch_records", "Records per poll batch").buckets(vec![
                    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0,
                ]),
            )
            .expect("constant name"),
            dedupe_keys: gauge("dedupe_keys", "Alert keys remembered for de-duplication"),
            consumer_lag: IntGaugeVec::new(
                Opts::new(
                    "consumer_lag",
                    "Records not processed yet, per topic and partition",
                ),
                &["topic", "partition"],
            )
            .expect("constant name"),
            dependency_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "dependency_seconds",
                    "Duration of calls to a dependency (redis, postgres, slack)",
                )
                .buckets(vec![
                    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                &["dependency"],
            )
            .expect("constant name"),
            notifications: counter_vec(
                "notifications_total",
                "Notification tries by outcome (sent, retried, failed)",
                "outcome",
            ),
            outbox_pending: gauge(
                "outbox_pending",
                "Notifications waiting in the outbox to be sent or retried",
            ),
            partitions_revoked: counter(
                "partitions_revoked_total",
                "Partitions taken from this consumer by a rebalance",
            ),
            drift_leader: gauge(
                "drift_leader",
                "1 while this instance owns the drift detectors (drift-detector)",
            ),
            history_events: gauge(
                "history_events",
                "Entries of the shared labelled history retraining jobs train on (retraining-worker)",
            ),
            checkpoint_seconds: histogram(
                "checkpoint_seconds",
                "Time to encode and write a checkpoint of the learned model (ml-inference)",
            ),
            checkpoint_bytes: gauge(
                "checkpoint_bytes",
                "Size of the last learned-model checkpoint written, bytes (ml-inference)",
            ),
            build_info: IntGaugeVec::new(
                Opts::new("build_info", "Always 1; the label says which version runs"),
                &["version"],
            )
            .expect("constant name"),
            resident_memory_bytes: gauge(
                "resident_memory_bytes",
                "Resident memory of the process, bytes",
            ),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(metrics.events_in.clone()),
            Box::new(metrics.events_out.clone()),
            Box::new(metrics.processing_seconds.clone()),
            Box::new(metrics.errors.clone()),
            Box::new(metrics.dead_letters.clone()),
            Box::new(metrics.anomalies.clone()),
            Box::new(metrics.alerts.clone()),
            Box::new(metrics.drifts.clone()),
            Box::new(metrics.active_model_version.clone()),
            Box::new(metrics.batch_queue_depth.clone()),
            Box::new(metrics.batch_flush_seconds.clone()),
            Box::new(metrics.last_event_time.clone()),
            Box::new(metrics.retraining_jobs.clone()),
            Box::new(metrics.replays_skipped.clone()),
            Box::new(metrics.batch_records.clone()),
            Box::new(metrics.dedupe_keys.clone()),
            Box::new(metrics.consumer_lag.clone()),
            Box::new(metrics.dependency_seconds.clone()),
            Box::new(metrics.notifications.clone()),
            Box::new(metrics.outbox_pending.clone()),
            Box::new(metrics.partitions_revoked.clone()),
            Box::new(metrics.drift_leader.clone()),
            Box::new(metrics.history_events.clone()),
            Box::new(metrics.checkpoint_seconds.clone()),
            Box::new(metrics.checkpoint_bytes.clone()),
            Box::new(metrics.build_info.clone()),
            Box::new(metrics.resident_memory_bytes.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("distinct constant names");
        }
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Every known label value exists from the start, at zero: a rate or an increase over
        // a series that appears only at its first event would miss that event, and alert
        // rules and dashboards would find no series at all on a healthy service.
        for kind in ERROR_KINDS {
            metrics.errors.with_label_values(&[kind]);
        }
        for severity in ["LOW", "MEDIUM", "HIGH", "CRITICAL"] {
            metrics.alerts.with_label_values(&[severity]);
        }
        for detector in ["ADWIN", "DDM"] {
            metrics.drifts.with_label_values(&[detector]);
        }
        for outcome in ["published", "kept", "failed"] {
            metrics.retraining_jobs.with_label_values(&[outcome]);
        }
        for outcome in ["sent", "retried", "failed"] {
            metrics.notifications.with_label_values(&[outcome]);
        }
        for dependency in ["redis", "postgres", "slack"] {
            metrics.dependency_seconds.with_label_values(&[dependency]);
        }
        metrics
    }

    /// The histogram of `dependency`'s call durations (`redis`, `postgres`, `slack`).
    pub fn latency(&self, dependency: crate::failure::Dependency) -> Histogram {
        self.dependency_seconds
            .with_label_values(&[dependency.name()])
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Some(bytes) = resident_memory_bytes() {
            self.resident_memory_bytes.set(bytes as i64);
        }
        let mut out = Vec::new();
        // Encoding gathered metrics into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// This process's resident set size, from `/proc/self/statm` (Linux); `None` elsewhere.
///
/// ```
/// let rss = anomaly_services::telemetry::metrics::resident_memory_bytes();
/// if cfg!(target_os = "linux") {
///     assert!(rss.unwrap() > 0);
/// }
/// ```
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // Pages of 4 KiB (x86-64, and arm64 kernels as Debian builds them): reading the page
    // size would need libc for one number.
    Some(pages * 4096)
}
