//! retraining-worker: drifts become jobs in a Redis queue; a job trains a fresh ensemble on the
//! recent labelled vectors and publishes it (Redis `active_model`, `model-updates`,
//! `model_versions`) only if it is not worse than the running model.

use std::collections::{HashMap, VecDeque};

use log::info;
use redis::{Commands, Connection};

use crate::adapters::kafka::{Output, Record};
use crate::messages::{
    DriftEvent, FeatureVector, ModelUpdate, decode, decode_features, decode_scored,
};
use crate::service::{Failure, Handler, json_output, reject};
use crate::stages::retraining::{JobOutcome, Retrainer, RetrainingJob};

/// Topics it reads.
pub const SOURCES: [&str; 3] = ["features", "scores", "drift-events"];
/// Topic announcing published models.
pub const MODEL_UPDATES: &str = "model-updates";

/// A queue of retraining jobs shared by the workers.
pub trait JobQueue {
    /// Enqueues `job` unless a job was enqueued less than `debounce_seconds` ago (drift storms
    /// make one job); returns whether it was enqueued.
    fn enqueue(&mut self, job: &RetrainingJob, debounce_seconds: u64) -> Result<bool, String>;
    /// Takes the next job, leasing it to this worker; no other worker can take it.
    fn take(&mut self) -> Result<Option<RetrainingJob>, String>;
    /// Removes a finished job.
    fn complete(&mut self, job: &RetrainingJob) -> Result<(), String>;
    /// Puts back the jobs of workers that died mid-job (their lease expired); returns how many.
    fn recover(&mut self) -> Result<u64, String>;
}

/// [`JobQueue`] in Redis: a pending list, one in-progress list per worker (jobs move between
/// them atomically with LMOVE) and a lease key per running job.
pub struct RedisJobQueue {
    connection: Connection,
    prefix: String,
    worker: String,
    lease_seconds: u64,
}

impl RedisJobQueue {
    /// A queue under `prefix` for worker `worker`, whose jobs are reclaimable `lease_seconds`
    /// after it took them.
    pub fn connect(
        url: &str,
        prefix: &str,
        worker: &str,
        lease_seconds: u64,
    ) -> Result<Self, String> {
        let connection = redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .map_err(|e| e.to_string())?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            worker: worker.to_owned(),
            lease_seconds,
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}retrain:{name}", self.prefix)
    }
}

fn redis_error(e: redis::RedisError) -> String {
    format!("redis: {e}")
}

impl JobQueue for RedisJobQueue {
    fn enqueue(&mut self, job: &RetrainingJob, debounce_seconds: u64) -> Result<bool, String> {
        let fresh: Option<String> = redis::cmd("SET")
            .arg(self.key("debounce"))
            .arg(&job.job_id)
            .arg("NX")
            .arg("EX")
            .arg(debounce_seconds.max(1))
            .query(&mut self.connection)
            .map_err(redis_error)?;
        if fresh.is_none() {
            return Ok(false);
        }
        let payload = serde_json::to_string(job).map_err(|e| e.to_string())?;
        let () = self
            .connection
            .lpush(self.key("queue"), payload)
            .map_err(redis_error)?;
        Ok(true)
    }

    fn take(&mut self) -> Result<Option<RetrainingJob>, String> {
        let running = self.key(&format!("running:{}", self.worker));
        let taken: Option<String> = redis::cmd("LMOVE")
            .arg(self.key("queue"))
            .arg(&running)
            .arg("RIGHT")
            .arg("LEFT")
            .query(&mut self.connection)
            .map_err(redis_error)?;
        let Some(payload) = taken else {
            return Ok(None);
        };
        match serde_json::from_str::<RetrainingJob>(&payload) {
            Ok(job) => {
                let () = self
                    .connection
                    .set_ex(
                        self.key(&format!("lease:{}", job.job_id)),
                        &self.worker,
                        self.lease_seconds,
                    )
                    .map_err(redis_error)?;
                Ok(Some(job))
            }
            Err(e) => {
                // Not one of ours: drop it rather than take it forever.
                let _: i64 = self
                    .connection
                    .lrem(&running, 1, &payload)
                    .map_err(redis_error)?;
                Err(format!("dropped an unreadable job: {e}"))
            }
        }
    }

    fn complete(&mut self, job: &RetrainingJob) -> Result<(), String> {
        let payload = serde_json::to_string(job).map_err(|e| e.to_string())?;
        let running = self.key(&format!("running:{}", self.worker));
        let _: i64 = self
            .connection
            .lrem(running, 1, payload)
            .map_err(redis_error)?;
        let _: i64 = self
            .connection
            .del(self.key(&format!("lease:{}", job.job_id)))
            .map_err(redis_error)?;
        Ok(())
    }

    fn recover(&mut self) -> Result<u64, String> {
        let lists: Vec<String> = self
            .connection
            .keys(self.key("running:*"))
            .map_err(redis_error)?;
        let mut recovered = 0;
        for list in lists {
            let jobs: Vec<String> = self.connection.lrange(&list, 0, -1).map_err(redis_error)?;
            for payload in jobs {
                let leased = serde_json::from_str::<RetrainingJob>(&payload)
                    .map(|job| self.key(&format!("lease:{}", job.job_id)))
                    .ok();
                let alive: bool = match &leased {
                    Some(lease) => self.connection.exists(lease).map_err(redis_error)?,
                    None => false,
                };
                if !alive {
                    let removed: i64 = self
                        .connection
                        .lrem(&list, 1, &payload)
                        .map_err(redis_error)?;
                    if removed == 1 {
                        let () = self
                            .connection
                            .rpush(self.key("queue"), &payload)
                            .map_err(redis_error)?;
                        recovered += 1;
                    }
                }
            }
        }
        Ok(recovered)
    }
}

/// Where a published model goes.
pub trait ModelPublisher {
    /// Stores the snapshot as the active model.
    fn store_snapshot(&mut self, snapshot: &[u8]) -> Result<(), String>;
    /// Records the version (the `model_versions` table).
    fn record_version(&mut self, update: &ModelUpdate) -> Result<(), String>;
    /// Records a job's outcome, published or not (the `retraining_jobs` table).
    fn record_job(&mut self, outcome: &JobOutcome) -> Result<(), String>;
}

/// Redis `active_model` + PostgreSQL `model_versions`.
pub struct StorePublisher {
    /// The model store.
    pub models: crate::adapters::redis::RedisModelStore,
    /// The event store.
    pub events: crate::adapters::postgres::PgEventStore,
}

impl ModelPublisher for StorePublisher {
    fn store_snapshot(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.models.publish(snapshot).map_err(|e| e.to_string())
    }
    fn record_version(&mut self, update: &ModelUpdate) -> Result<(), String> {
        self.events
            .write_model_version(update)
            .map(drop)
            .map_err(|e| e.to_string())
    }
    fn record_job(&mut self, outcome: &JobOutcome) -> Result<(), String> {
        self.events
            .write_job(outcome)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Recent vectors waiting for their score, bounded.
const PENDING_VECTORS: usize = 50_000;

/// Turns drifts into jobs and runs the queue's jobs.
pub struct RetrainingService<Q, P> {
    status: std::sync::Arc<crate::telemetry::http::Status>,
    retrainer: Retrainer,
    queue: Q,
    publisher: P,
    debounce_seconds: u64,
    vectors: HashMap<String, FeatureVector>,
    arrival: VecDeque<String>,
    running_version: u64,
}

impl<Q: JobQueue, P: ModelPublisher> RetrainingService<Q, P> {
    /// A handler; jobs requested within `debounce_seconds` of the previous one are dropped.
    pub fn new(
        retrainer: Retrainer,
        queue: Q,
        publisher: P,
        debounce_seconds: u64,
        status: std::sync::Arc<crate::telemetry::http::Status>,
    ) -> Self {
        Self {
            status,
            retrainer,
            queue,
            publisher,
            debounce_seconds,
            vectors: HashMap::new(),
            arrival: VecDeque::new(),
            running_version: 1,
        }
    }
}

impl<Q: JobQueue, P: ModelPublisher> Handler for RetrainingService<Q, P> {
    fn handle(&mut self, record: &Record, _: &mut Vec<Output>) -> Result<(), Failure> {
        match record.topic.as_str() {
            "features" => {
                let vector = decode_features(&record.payload).map_err(reject)?;
                if self.arrival.len() == PENDING_VECTORS
                    && let Some(oldest) = self.arrival.pop_front()
                {
                    self.vectors.remove(&oldest);
                }
                self.arrival.push_back(vector.event_id.clone());
                self.vectors.insert(vector.event_id.clone(), vector);
            }
            "scores" => {
                let scored = decode_scored(&record.payload).map_err(reject)?;
                self.running_version = self.running_version.max(scored.model_version);
                if let Some(vector) = self.vectors.remove(&scored.event_id) {
                    self.retrainer.observe(vector, scored.score);
                }
            }
            _ => {
                let drift: DriftEvent = decode(&record.payload).map_err(reject)?;
                if let Some(job) = self.retrainer.request(&drift) {
                    let queued = self
                        .queue
                        .enqueue(&job, self.debounce_seconds)
                        .map_err(Failure::Retry)?;
                    info!(job = job.job_id.as_str(), queued = queued; "Retraining requested");
                }
            }
        }
        Ok(())
    }

    fn end_batch(&mut self, out: &mut Vec<Output>) -> Result<(), Failure> {
        while let Some(job) = self.queue.take().map_err(Failure::Retry)? {
            let (outcome, publication) = self
                .retrainer
                .run(job.clone(), self.running_version)
                .map_err(|e| Failure::Retry(e.to_string()))?;
            if let Some(publication) = publication {
                self.publisher
                    .store_snapshot(&publication.snapshot)
                    .map_err(Failure::Retry)?;
                self.publisher
                    .record_version(&publication.update)
                    .map_err(Failure::Retry)?;
                self.running_version = publication.update.model_version;
                out.push(json_output(MODEL_UPDATES, None, &publication.update));
            }
            self.publisher
                .record_job(&outcome)
                .map_err(Failure::Retry)?;
            let label = if outcome.published {
                "published"
            } else {
                "kept"
            };
            self.status
                .metrics
                .retraining_jobs
                .with_label_values(&[label])
                .inc();
            info!(
                job = job.job_id.as_str(),
                published = outcome.published,
                decision = outcome.decision.as_str();
                "Retraining job done"
            );
            self.queue.complete(&job).map_err(Failure::Retry)?;
        }
        Ok(())
    }
}
