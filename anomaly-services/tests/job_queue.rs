//! The Redis retraining-job queue: debounced, exclusive, and crash-safe.

mod common;

use anomaly_services::services::retraining_worker::{JobQueue, RedisJobQueue};
use anomaly_services::stages::retraining::RetrainingJob;
use common::{delete_redis_prefix, redis_url, unique};

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
    let mut connection = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
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
