//! The Redis retraining-job queue: debounced, exclusive, and crash-safe.

mod common;

use anomaly_services::services::retraining_worker::{JobQueue, RedisJobQueue};
use anomaly_services::stages::retraining::RetrainingJob;
use common::{delete_redis_prefix, redis_connection, redis_url, unique};

fn job(id: &str) -> RetrainingJob {
    RetrainingJob {
        job_id: id.into(),
        reason: "ADWIN drift".into(),
        sequence: 1,
        timestamp_ms: 0,
    }
}

#[test]
fn jobs_are_debounced_exclusive_and_survive_a_crash() {
    let prefix = unique("test:jobs") + ":";
    let mut a = RedisJobQueue::connect(&redis_url(), &prefix, "a", 60, 60).unwrap();
    let mut b = RedisJobQueue::connect(&redis_url(), &prefix, "b", 60, 60).unwrap();

    // A drift storm makes one job.
    assert!(a.enqueue(&job("j1")).unwrap());
    assert!(!b.enqueue(&job("j2")).unwrap());

    // One worker takes it; the other gets nothing.
    assert_eq!(a.take().unwrap(), Some(job("j1")));
    assert_eq!(b.take().unwrap(), None);

    // Worker a is alive (its lease holds): nothing to recover.
    assert_eq!(b.recover().unwrap(), 0);

    // Worker a dies mid-job: once its lease is gone the job goes back and b runs it.
    let mut connection = redis_connection();
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{prefix}retrain:lease:a"))
        .query(&mut connection)
        .unwrap();
    assert_eq!(b.recover().unwrap(), 1);
    assert_eq!(b.take().unwrap(), Some(job("j1")));
    b.complete(&job("j1")).unwrap();
    assert_eq!(a.take().unwrap(), None);
    assert_eq!(b.recover().unwrap(), 0);

    delete_redis_prefix(&prefix);
}

/// A worker whose batch failed mid-job takes the job again on its next batch; a job that was
/// not enqueued (the debounce held) leaves nothing behind.
#[test]
fn a_worker_puts_back_its_own_unfinished_job() {
    let prefix = unique("test:jobs-own") + ":";
    let mut a = RedisJobQueue::connect(&redis_url(), &prefix, "a", 60, 60).unwrap();
    assert!(a.enqueue(&job("j1")).unwrap());
    assert_eq!(a.take().unwrap(), Some(job("j1")));
    // The batch failed before `complete`: the next batch starts with `recover`.
    assert_eq!(a.recover().unwrap(), 1);
    assert_eq!(a.take().unwrap(), Some(job("j1")));
    a.renew().unwrap();
    a.complete(&job("j1")).unwrap();
    assert_eq!(a.recover().unwrap(), 0);
    assert_eq!(a.take().unwrap(), None);
    delete_redis_prefix(&prefix);
}

/// A job that ran is remembered with the model it published, so that running it again after
/// its batch failed is avoided and its announcement can be sent again.
#[test]
fn finished_jobs_are_remembered_with_their_model() {
    use anomaly_services::messages::ModelUpdate;

    let prefix = unique("test:jobs-done") + ":";
    let mut a = RedisJobQueue::connect(&redis_url(), &prefix, "a", 60, 60).unwrap();
    assert_eq!(a.done(&job("j1")).unwrap(), None);
    a.mark_done(&job("j1"), None).unwrap();
    assert_eq!(a.done(&job("j1")).unwrap(), Some(None));
    let update = ModelUpdate {
        schema_version: anomaly_services::messages::SCHEMA_VERSION,
        model_version: 2,
        timestamp_ms: 0,
        reason: "ADWIN drift".into(),
        previous_auc: Some(0.8),
        auc: Some(0.9),
    };
    a.mark_done(&job("j2"), Some(&update)).unwrap();
    assert_eq!(a.done(&job("j2")).unwrap(), Some(Some(update)));
    delete_redis_prefix(&prefix);
}

/// In-progress lists of workers that are not in the set of workers (left by versions before
/// per-worker leases) are put back at start-up.
#[test]
fn unlisted_in_progress_lists_are_adopted() {
    let prefix = unique("test:jobs-unlisted") + ":";
    let mut connection = redis_connection();
    let payload = serde_json::to_string(&job("old")).unwrap();
    let _: i64 = redis::cmd("LPUSH")
        .arg(format!("{prefix}retrain:running:worker-1"))
        .arg(payload)
        .query(&mut connection)
        .unwrap();
    let mut a = RedisJobQueue::connect(&redis_url(), &prefix, "a", 60, 60).unwrap();
    assert_eq!(a.adopt_unlisted().unwrap(), 1);
    assert_eq!(a.take().unwrap(), Some(job("old")));
    assert_eq!(a.adopt_unlisted().unwrap(), 0);
    delete_redis_prefix(&prefix);
}

fn key_exists(key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query::<i64>(&mut redis_connection())
        .unwrap()
        == 1
}

/// A waiting job keeps further drifts from enqueueing others but starts no debounce; the
/// debounce starts when a job ran, and once it is over the next drift enqueues a job again.
#[test]
fn only_a_job_that_ran_starts_the_debounce() {
    let prefix = unique("test:jobs-debounce") + ":";
    let debounce = format!("{prefix}retrain:debounce");
    let mut a = RedisJobQueue::connect(&redis_url(), &prefix, "a", 60, 600).unwrap();
    assert!(a.enqueue(&job("j1")).unwrap());
    assert!(!a.enqueue(&job("j2")).unwrap(), "one job waits at a time");
    assert!(!key_exists(&debounce), "waiting starts no debounce");

    assert_eq!(a.take().unwrap(), Some(job("j1")));
    a.mark_done(&job("j1"), None).unwrap();
    a.complete(&job("j1")).unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(&debounce)
        .query(&mut redis_connection())
        .unwrap();
    assert!((1..=600).contains(&ttl), "debounce ttl {ttl}");
    assert!(!a.enqueue(&job("j3")).unwrap(), "within the debounce");

    // The debounce expires.
    let _: i64 = redis::cmd("DEL")
        .arg(&debounce)
        .query(&mut redis_connection())
        .unwrap();
    // A drift replayed after the debounce asks for a job that already ran: not queued again
    // (it would take the `waiting` slot for nothing).
    assert!(!a.enqueue(&job("j1")).unwrap());
    assert!(a.enqueue(&job("j4")).unwrap());
    assert_eq!(a.take().unwrap(), Some(job("j4")));
    delete_redis_prefix(&prefix);
}

mod worker {
    use super::*;
    use anomaly_services::adapters::kafka::Record;
    use anomaly_services::adapters::labelled_history::RedisLabelledHistory;
    use anomaly_services::messages::{
        DriftEvent, DriftSource, FeatureVector, ModelUpdate, ScoredEvent,
    };
    use anomaly_services::pipeline::default_model;
    use anomaly_services::service::Handler;
    use anomaly_services::services::retraining_worker::{ModelPublisher, RetrainingService};
    use anomaly_services::stages::retraining::{JobOutcome, Retrainer, RetrainingParams};
    use anomaly_services::telemetry::http::Status;

    /// Keeps the outcomes of the jobs that ran, shared with the test.
    #[derive(Clone, Default)]
    struct Published {
        jobs: std::sync::Arc<std::sync::Mutex<Vec<JobOutcome>>>,
        next: std::sync::Arc<std::sync::Mutex<u64>>,
    }

    impl ModelPublisher for Published {
        fn next_version(&mut self) -> Result<u64, anomaly_services::failure::Unavailable> {
            // Above the fresh model's version, 1, like the Redis counter.
            let mut next = self.next.lock().unwrap();
            *next = (*next).max(1) + 1;
            Ok(*next)
        }
        fn store_snapshot(
            &mut self,
            _: u64,
            _: &[u8],
        ) -> Result<bool, anomaly_services::failure::Unavailable> {
            Ok(true)
        }
        fn record_version(
            &mut self,
            _: &ModelUpdate,
        ) -> Result<(), anomaly_services::failure::Failure> {
            Ok(())
        }
        fn record_job(
            &mut self,
            outcome: &JobOutcome,
        ) -> Result<(), anomaly_services::failure::Failure> {
            self.jobs.lock().unwrap().push(outcome.clone());
            Ok(())
        }
    }

    fn record(topic: &str, offset: i64, payload: Vec<u8>) -> Record {
        Record {
            topic: topic.into(),
            partition: 0,
            offset,
            key: None,
            payload,
            timestamp_ms: None,
        }
    }

    fn labelled(i: i64) -> Record {
        let vector = FeatureVector {
            schema_version: anomaly_services::messages::SCHEMA_VERSION,
            event_id: format!("e{i}"),
            card_id: "c".into(),
            timestamp_ms: 1_767_225_600_000 + i,
            features: vec![((i * 7919) % 101) as f64 / 101.0; 11],
            amount: 1.0,
            is_fraud: i % 10 == 0,
            phase: "p".into(),
            merchant: "m".into(),
        };
        let scored = ScoredEvent {
            schema_version: anomaly_services::messages::SCHEMA_VERSION,
            event_id: vector.event_id.clone(),
            card_id: "c".into(),
            timestamp_ms: 1_767_225_600_000 + i,
            score: if vector.is_fraud { 0.6 } else { 0.4 },
            is_anomaly: false,
            is_fraud: vector.is_fraud,
            model_version: 1,
            amount: 1.0,
            phase: "p".into(),
            merchant: "m".into(),
            features: vector.features.clone(),
        };
        record("scores", i, serde_json::to_vec(&scored).unwrap())
    }

    fn drift(sequence: u64) -> Record {
        let event = DriftEvent {
            schema_version: anomaly_services::messages::SCHEMA_VERSION,
            drift_id: format!("d{sequence}"),
            detector: DriftSource::Adwin,
            timestamp_ms: 1_767_225_600_000 + sequence as i64,
            event_id: format!("e{sequence}"),
            sequence,
            model_version: 1,
            detail: "width 100".into(),
        };
        record(
            "drift-events",
            sequence as i64,
            serde_json::to_vec(&event).unwrap(),
        )
    }

    /// The id of the job the drift of `sequence` asks for.
    fn job_id(sequence: u64) -> String {
        let drift: DriftEvent = serde_json::from_slice(&drift(sequence).payload).unwrap();
        Retrainer::new(RetrainingParams::default(), default_model(), Vec::new())
            .request(&drift)
            .unwrap()
            .job_id
    }

    fn batch<H: Handler>(service: &mut H, records: &[Record]) {
        let mut out = Vec::new();
        for r in records {
            service.handle(r, &mut out).unwrap();
        }
        service.end_batch(&[], &mut out).unwrap();
        service.before_commit().unwrap();
        service.batch_committed();
    }

    /// A drift that comes before the worker has enough labelled events leaves its job waiting
    /// in the queue (no "only N events" outcome, no debounce); the job runs once the data is
    /// there.
    #[test]
    fn a_job_waits_for_its_data_instead_of_being_rejected() {
        let prefix = unique("test:jobs-wait") + ":";
        let params = RetrainingParams {
            history: 400,
            holdout: 200,
            debounce_events: 10_000,
        };
        let names = anomaly_core::features::TransactionFeatures::NAMES
            .iter()
            .map(|s| s.to_string())
            .collect();
        let retrainer = Retrainer::new(params, default_model(), names);
        let queue = RedisJobQueue::connect(&redis_url(), &prefix, "w", 60, 600).unwrap();
        let history =
            RedisLabelledHistory::connect(&redis_url(), &prefix, retrainer.capacity()).unwrap();
        let published = Published::default();
        let mut service = RetrainingService::new(
            retrainer,
            queue,
            published.clone(),
            history,
            Status::new("retraining-worker"),
        );
        let queued = format!("{prefix}retrain:queue");
        let queue_length = || -> i64 {
            redis::cmd("LLEN")
                .arg(&queued)
                .query(&mut redis_connection())
                .unwrap()
        };

        let early: Vec<Record> = (0..100).map(labelled).chain([drift(100)]).collect();
        batch(&mut service, &early);
        assert_eq!(queue_length(), 1, "the job waits in the queue");
        assert!(
            published.jobs.lock().unwrap().is_empty(),
            "not rejected for lack of data"
        );
        assert!(!key_exists(&format!("{prefix}retrain:debounce")));

        // A second drift while the job waits adds no job.
        let more: Vec<Record> = (100..300).map(labelled).chain([drift(300)]).collect();
        batch(&mut service, &more);
        assert_eq!(queue_length(), 1);

        // Enough data: the waiting job runs, and only now does the debounce start.
        let rest: Vec<Record> = (300..700).map(labelled).collect();
        batch(&mut service, &rest);
        assert_eq!(queue_length(), 0);
        assert!(key_exists(&format!("{prefix}retrain:debounce")));
        let done: Option<String> = redis::cmd("GET")
            .arg(format!("{prefix}retrain:done:{}", job_id(100)))
            .query(&mut redis_connection())
            .unwrap();
        assert!(done.is_some(), "the first drift's job ran");
        let jobs = published.jobs.lock().unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].candidate_version, Some(2), "{}", jobs[0].decision);
        delete_redis_prefix(&prefix);
    }
}
