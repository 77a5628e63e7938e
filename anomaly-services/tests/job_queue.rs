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
    let mut a = RedisJobQueue::connect(&redis_url(), &prefix, "a", 60).unwrap();
    let mut b = RedisJobQueue::connect(&redis_url(), &prefix, "b", 60).unwrap();

    // A drift storm makes one job.
    assert!(a.enqueue(&job("j1"), 60).unwrap());
    assert!(!b.enqueue(&job("j2"), 60).unwrap());

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
    let mut a = RedisJobQueue::connect(&redis_url(), &prefix, "a", 60).unwrap();
    assert!(a.enqueue(&job("j1"), 60).unwrap());
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
    let mut a = RedisJobQueue::connect(&redis_url(), &prefix, "a", 60).unwrap();
    assert_eq!(a.done(&job("j1")).unwrap(), None);
    a.mark_done(&job("j1"), None).unwrap();
    assert_eq!(a.done(&job("j1")).unwrap(), Some(None));
    let update = ModelUpdate {
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
    let mut a = RedisJobQueue::connect(&redis_url(), &prefix, "a", 60).unwrap();
    assert_eq!(a.adopt_unlisted().unwrap(), 1);
    assert_eq!(a.take().unwrap(), Some(job("old")));
    assert_eq!(a.adopt_unlisted().unwrap(), 0);
    delete_redis_prefix(&prefix);
}
