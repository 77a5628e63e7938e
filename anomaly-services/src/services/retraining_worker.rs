//! retraining-worker: drifts become jobs in a Redis queue; a job trains a fresh ensemble on the
//! recent labelled events (a history in Redis that every worker appends its scored events to)
//! and publishes it (Redis `active_model`, `model-updates`, `model_versions`) only if it is not
//! worse than the running model.

use log::info;
use redis::Commands;

use crate::adapters::kafka::{Output, Record};
use crate::adapters::labelled_history::RedisLabelledHistory;
use crate::failure::{Failure, Unavailable};
use crate::messages::{FeatureVector, ModelUpdate, ScoredEvent, decode_drift, decode_scored};
use crate::service::{Handler, json_output, reject};
use crate::stages::retraining::{JobOutcome, Retrainer, RetrainingJob};

/// Topics it reads: scored events carry their features and labels, so no join is needed.
pub const SOURCES: [&str; 2] = ["scores", "drift-events"];
/// Topic announcing published models.
pub const MODEL_UPDATES: &str = "model-updates";

/// A queue of retraining jobs shared by the workers.
pub trait JobQueue {
    /// Enqueues `job` unless a job is already waiting (a drift storm makes one job) or a job
    /// ran less than the debounce ago (see [`mark_done`](Self::mark_done)); returns whether it
    /// was enqueued. A job that waits because no worker has enough data yet does not start the
    /// debounce: only a job that ran does.
    fn enqueue(&mut self, job: &RetrainingJob) -> Result<bool, Unavailable>;
    /// Takes the next job, leasing it to this worker; no other worker can take it while the
    /// lease holds.
    fn take(&mut self) -> Result<Option<RetrainingJob>, Unavailable>;
    /// Removes a finished job.
    fn complete(&mut self, job: &RetrainingJob) -> Result<(), Unavailable>;
    /// Extends this worker's lease (call between jobs: a job must finish within a lease).
    fn renew(&mut self) -> Result<(), Unavailable>;
    /// Puts back the jobs of workers that died mid-job (their lease expired) and the jobs
    /// this worker left unfinished (a failed batch); returns how many.
    fn recover(&mut self) -> Result<u64, Unavailable>;
    /// Records for a day that `job` ran, with the model it published if it did (a job put
    /// back after it ran, its batch failed later, is then not run twice); starts the debounce
    /// and lets the next drift after it enqueue a job.
    fn mark_done(
        &mut self,
        job: &RetrainingJob,
        update: Option<&ModelUpdate>,
    ) -> Result<(), Unavailable>;
    /// What [`mark_done`](Self::mark_done) recorded for `job`: `None` if it has not run.
    fn done(&mut self, job: &RetrainingJob) -> Result<Option<Option<ModelUpdate>>, Unavailable>;
}

/// [`JobQueue`] in Redis: a pending list, one in-progress list and one lease per worker, and
/// the set of workers; a `waiting` key naming the job enqueued and not finished yet, and a
/// `debounce` key set for `debounce_seconds` when a job ran. Every step that touches two keys
/// is one Lua script, so a crash between them cannot lose or duplicate a job.
pub struct RedisJobQueue {
    link: crate::adapters::redis_link::RedisLink,
    prefix: String,
    worker: String,
    lease_seconds: u64,
    debounce_seconds: u64,
}

/// How long a job may wait for its data before a new drift can enqueue another (a safety
/// net: a job is normally finished, and its `waiting` key removed, long before).
const WAITING_SECONDS: u64 = 86_400;

/// Pushes the job unless a job ran recently (KEYS[1]), one is waiting (KEYS[3]), or this very
/// job already ran (KEYS[4]: its drift was replayed after the debounce ended).
const ENQUEUE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'EX', ARGV[3]) then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0";

/// Records that a job ran: its outcome for a day, the debounce, and no job waiting.
const MARK_DONE: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'EX', 86400)
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
return 1";

/// Moves the oldest pending job to the worker's list and (re)sets its lease.
const TAKE: &str = r"
local job = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
if job then
  redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[2])
  redis.call('SADD', KEYS[4], ARGV[1])
end
return job";

/// Moves every job of a worker's list back to the front of the queue (next to be taken),
/// unless the worker's lease holds (ARGV[1] = 1 ignores the lease: this worker's own list).
const PUT_BACK: &str = r"
if ARGV[1] ~= '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local moved = 0
while redis.call('LMOVE', KEYS[1], KEYS[3], 'RIGHT', 'RIGHT') do moved = moved + 1 end
if ARGV[1] ~= '1' then redis.call('SREM', KEYS[4], ARGV[2]) end
return moved";

impl RedisJobQueue {
    /// A queue under `prefix` for worker `worker` (unique among the running workers), whose
    /// jobs are reclaimable `lease_seconds` after its last take or renewal; after a job ran,
    /// drifts enqueue no other for `debounce_seconds`.
    pub fn connect(
        url: &str,
        prefix: &str,
        worker: &str,
        lease_seconds: u64,
        debounce_seconds: u64,
    ) -> Result<Self, Unavailable> {
        let link = crate::adapters::redis_link::RedisLink::open(url).map_err(redis_error)?;
        Ok(Self {
            link,
            prefix: prefix.to_owned(),
            worker: worker.to_owned(),
            lease_seconds,
            debounce_seconds,
        })
    }

    /// Records the duration of every Redis call in `latency`.
    pub fn with_latency(mut self, latency: prometheus::Histogram) -> Self {
        self.link = self.link.with_latency(latency);
        self
    }

    fn key(&self, name: &str) -> String {
        format!("{}retrain:{name}", self.prefix)
    }

    /// Puts back the jobs of in-progress lists whose worker is not in the set of workers:
    /// lists left by versions before per-worker leases (their workers are gone once no old
    /// version runs). Scans the keyspace: call once at start-up, not per batch.
    pub fn adopt_unlisted(&mut self) -> Result<u64, Unavailable> {
        let marker = self.key("running:");
        let lists: Vec<String> = self
            .link
            .call(|c| Ok(c.scan_match(format!("{marker}*"))?.collect()))
            .map_err(redis_error)?;
        let workers = self.key("workers");
        let listed: Vec<String> = self
            .link
            .call(|c| c.smembers(workers))
            .map_err(redis_error)?;
        let mut adopted = 0;
        for list in lists {
            let worker = list[marker.len()..].to_owned();
            if worker != self.worker && !listed.contains(&worker) {
                adopted += self.put_back(&worker, false)?;
            }
        }
        Ok(adopted)
    }

    fn put_back(&mut self, worker: &str, own: bool) -> Result<u64, Unavailable> {
        {
            let script = redis::Script::new(PUT_BACK);
            let mut invocation = script.prepare_invoke();
            invocation
                .key(self.key(&format!("running:{worker}")))
                .key(self.key(&format!("lease:{worker}")))
                .key(self.key("queue"))
                .key(self.key("workers"))
                .arg(if own { "1" } else { "0" })
                .arg(worker);
            self.link.call(|c| invocation.invoke(c))
        }
        .map_err(redis_error)
    }
}

fn redis_error(e: impl std::fmt::Display) -> Unavailable {
    Unavailable::redis(e)
}

impl JobQueue for RedisJobQueue {
    fn enqueue(&mut self, job: &RetrainingJob) -> Result<bool, Unavailable> {
        let payload = serde_json::to_string(job).map_err(Unavailable::redis)?;
        let queued: i64 = {
            let script = redis::Script::new(ENQUEUE);
            let mut invocation = script.prepare_invoke();
            invocation
                .key(self.key("debounce"))
                .key(self.key("queue"))
                .key(self.key("waiting"))
                .key(self.key(&format!("done:{}", job.job_id)))
                .arg(&job.job_id)
                .arg(payload)
                .arg(WAITING_SECONDS);
            self.link.call(|c| invocation.invoke(c))
        }
        .map_err(redis_error)?;
        Ok(queued == 1)
    }

    fn take(&mut self) -> Result<Option<RetrainingJob>, Unavailable> {
        let running = self.key(&format!("running:{}", self.worker));
        let taken: Option<String> = {
            let script = redis::Script::new(TAKE);
            let mut invocation = script.prepare_invoke();
            invocation
                .key(self.key("queue"))
                .key(&running)
                .key(self.key(&format!("lease:{}", self.worker)))
                .key(self.key("workers"))
                .arg(&self.worker)
                .arg(self.lease_seconds.max(1));
            self.link.call(|c| invocation.invoke(c))
        }
        .map_err(redis_error)?;
        let Some(payload) = taken else {
            return Ok(None);
        };
        match serde_json::from_str::<RetrainingJob>(&payload) {
            Ok(job) => Ok(Some(job)),
            Err(e) => {
                // Not one of ours: drop it rather than take it forever.
                let _: i64 = self
                    .link
                    .call(|c| c.lrem(&running, 1, &payload))
                    .map_err(redis_error)?;
                Err(Unavailable::redis(format!(
                    "dropped an unreadable job: {e}"
                )))
            }
        }
    }

    fn complete(&mut self, job: &RetrainingJob) -> Result<(), Unavailable> {
        let payload = serde_json::to_string(job).map_err(Unavailable::redis)?;
        let running = self.key(&format!("running:{}", self.worker));
        let _: i64 = self
            .link
            .call(|c| c.lrem(running, 1, payload))
            .map_err(redis_error)?;
        Ok(())
    }

    fn renew(&mut self) -> Result<(), Unavailable> {
        let lease = self.key(&format!("lease:{}", self.worker));
        let (worker, seconds) = (&self.worker, self.lease_seconds.max(1));
        let () = self
            .link
            .call(|c| c.set_ex(lease, worker, seconds))
            .map_err(redis_error)?;
        Ok(())
    }

    fn mark_done(
        &mut self,
        job: &RetrainingJob,
        update: Option<&ModelUpdate>,
    ) -> Result<(), Unavailable> {
        let record = serde_json::to_string(&update).map_err(Unavailable::redis)?;
        let _: i64 = {
            let script = redis::Script::new(MARK_DONE);
            let mut invocation = script.prepare_invoke();
            invocation
                .key(self.key(&format!("done:{}", job.job_id)))
                .key(self.key("debounce"))
                .key(self.key("waiting"))
                .arg(record)
                .arg(&job.job_id)
                .arg(self.debounce_seconds.max(1));
            self.link.call(|c| invocation.invoke(c))
        }
        .map_err(redis_error)?;
        Ok(())
    }

    fn done(&mut self, job: &RetrainingJob) -> Result<Option<Option<ModelUpdate>>, Unavailable> {
        let key = self.key(&format!("done:{}", job.job_id));
        let record: Option<String> = self.link.call(|c| c.get(key)).map_err(redis_error)?;
        record
            .map(|r| {
                serde_json::from_str(&r)
                    .map_err(|e| Unavailable::redis(format!("unreadable job record: {e}")))
            })
            .transpose()
    }

    fn recover(&mut self) -> Result<u64, Unavailable> {
        let own = self.worker.clone();
        let mut recovered = self.put_back(&own, true)?;
        let key = self.key("workers");
        let workers: Vec<String> = self.link.call(|c| c.smembers(key)).map_err(redis_error)?;
        for worker in workers.iter().filter(|w| **w != own) {
            recovered += self.put_back(worker, false)?;
        }
        Ok(recovered)
    }
}

/// The recent labelled events jobs train on, shared by the workers (see
/// [`RedisLabelledHistory`]).
pub trait LabelledHistory {
    /// Appends a batch's scored events (those without features are skipped).
    fn append(&mut self, events: &[ScoredEvent]) -> Result<(), Unavailable>;
    /// Entries held (an event appended twice counts twice).
    fn entries(&mut self) -> Result<usize, Unavailable>;
    /// The events, oldest first, each once, with their live scores.
    fn load(&mut self) -> Result<Vec<(FeatureVector, f64)>, Unavailable>;
}

impl LabelledHistory for RedisLabelledHistory {
    fn append(&mut self, events: &[ScoredEvent]) -> Result<(), Unavailable> {
        RedisLabelledHistory::append(self, events).map_err(Unavailable::redis)
    }
    fn entries(&mut self) -> Result<usize, Unavailable> {
        RedisLabelledHistory::len(self).map_err(Unavailable::redis)
    }
    fn load(&mut self) -> Result<Vec<(FeatureVector, f64)>, Unavailable> {
        RedisLabelledHistory::load(self).map_err(Unavailable::redis)
    }
}

/// Where a published model goes.
pub trait ModelPublisher {
    /// A version number no other worker gets, above the active model's.
    fn next_version(&mut self) -> Result<u64, Unavailable>;
    /// Makes the snapshot the active model as `version` unless a newer one is active (another
    /// worker published meanwhile); returns whether it did.
    fn store_snapshot(&mut self, version: u64, snapshot: &[u8]) -> Result<bool, Unavailable>;
    /// Records the version (the `model_versions` table); a row the store refuses as data is
    /// a `Reject` (counted, not retried).
    fn record_version(&mut self, update: &ModelUpdate) -> Result<(), Failure>;
    /// Records a job's outcome, published or not (the `retraining_jobs` table); a row the
    /// store refuses as data is a `Reject`.
    fn record_job(&mut self, outcome: &JobOutcome) -> Result<(), Failure>;
}

/// A store error as a [`Failure`]: refused as data, or unavailable.
fn store_failure(e: crate::adapters::postgres::StoreError) -> Failure {
    if e.is_permanent() {
        Failure::Reject {
            kind: "refused_by_store",
            error: e.to_string(),
        }
    } else {
        Failure::postgres(e)
    }
}

/// Redis `active_model` + PostgreSQL `model_versions`.
pub struct StorePublisher {
    /// The model store.
    pub models: crate::adapters::redis::RedisModelStore,
    /// The event store.
    pub events: crate::adapters::postgres::PgEventStore,
}

impl ModelPublisher for StorePublisher {
    fn next_version(&mut self) -> Result<u64, Unavailable> {
        self.models.allocate_version().map_err(Unavailable::redis)
    }
    fn store_snapshot(&mut self, version: u64, snapshot: &[u8]) -> Result<bool, Unavailable> {
        self.models
            .publish(version, snapshot)
            .map_err(Unavailable::redis)
    }
    fn record_version(&mut self, update: &ModelUpdate) -> Result<(), Failure> {
        self.events
            .write_model_version(update)
            .map(drop)
            .map_err(store_failure)
    }
    fn record_job(&mut self, outcome: &JobOutcome) -> Result<(), Failure> {
        self.events
            .write_job(outcome)
            .map(drop)
            .map_err(store_failure)
    }
}

/// Turns drifts into jobs and runs the queue's jobs.
pub struct RetrainingService<Q, P, H> {
    status: std::sync::Arc<crate::telemetry::http::Status>,
    retrainer: Retrainer,
    queue: Q,
    publisher: P,
    history: H,
    /// This batch's scored events, appended to the history when the batch ends.
    batch_events: Vec<ScoredEvent>,
    running_version: u64,
}

impl<Q: JobQueue, P: ModelPublisher, H: LabelledHistory> RetrainingService<Q, P, H> {
    /// A handler; the queue debounces jobs (see [`JobQueue::enqueue`]); jobs train on
    /// `history`.
    pub fn new(
        retrainer: Retrainer,
        queue: Q,
        publisher: P,
        history: H,
        status: std::sync::Arc<crate::telemetry::http::Status>,
    ) -> Self {
        Self {
            status,
            retrainer,
            queue,
            publisher,
            history,
            batch_events: Vec::new(),
            running_version: 1,
        }
    }

    /// A row refused as data is counted and logged, not retried (it would fail every time
    /// and stall the worker); an unavailable store fails the batch.
    fn unless_refused(&self, recorded: Result<(), Failure>) -> Result<(), Unavailable> {
        match recorded {
            Ok(()) => Ok(()),
            Err(Failure::Retry(e)) => Err(e),
            Err(Failure::Reject { kind, error }) => {
                self.status.metrics.errors.with_label_values(&[kind]).inc();
                log::warn!(error = error.as_str(); "Row refused by the database; not retried");
                Ok(())
            }
        }
    }
}

impl<Q: JobQueue, P: ModelPublisher, H: LabelledHistory> Handler for RetrainingService<Q, P, H> {
    fn handle(&mut self, record: &Record, _: &mut Vec<Output>) -> Result<(), Failure> {
        match record.topic.as_str() {
            "scores" => {
                let scored = decode_scored(&record.payload).map_err(reject)?;
                self.running_version = self.running_version.max(scored.model_version);
                if !scored.features.is_empty() {
                    // Only the newest events of a long batch can stay in the history.
                    if self.batch_events.len() == 2 * self.retrainer.capacity() {
                        self.batch_events.drain(..self.retrainer.capacity());
                    }
                    self.batch_events.push(scored);
                }
            }
            _ => {
                let drift = decode_drift(&record.payload).map_err(reject)?;
                if let Some(job) = self.retrainer.request(&drift) {
                    let queued = self.queue.enqueue(&job)?;
                    info!(job = job.job_id.as_str(), queued = queued; "Retraining requested");
                }
            }
        }
        Ok(())
    }

    fn end_batch(&mut self, _: &[Record], out: &mut Vec<Output>) -> Result<(), Unavailable> {
        self.history.append(&self.batch_events)?;
        self.batch_events.clear();
        // Jobs of dead workers, and this worker's own from a failed batch, go back first.
        let recovered = self.queue.recover()?;
        if recovered > 0 {
            info!(recovered = recovered; "Unfinished retraining jobs put back");
        }
        // Jobs wait in the queue until the history holds enough data to train on: a job
        // rejected for lack of data would start the debounce and make every drift until its
        // end ignored.
        let held = self.history.entries()?;
        self.status.metrics.history_events.set(held as i64);
        if held < self.retrainer.needed_events() {
            return Ok(());
        }
        let mut loaded = false;
        while let Some(job) = self.queue.take()? {
            if !loaded {
                let events = self.history.load()?;
                self.retrainer.replace_recent(events);
                loaded = true;
                if !self.retrainer.ready() {
                    // Duplicates made the list look longer than it is: the job goes back
                    // with this worker's unfinished ones at the next batch.
                    return Ok(());
                }
            }
            if let Some(update) = self.queue.done(&job)? {
                // It ran, but the batch it ran in failed: its announcement was never sent.
                if let Some(update) = update {
                    self.running_version = self.running_version.max(update.model_version);
                    out.push(json_output(MODEL_UPDATES, None, &update));
                }
                self.queue.complete(&job)?;
                continue;
            }
            let version = self.publisher.next_version()?;
            let (mut outcome, mut publication, failed) =
                match self
                    .retrainer
                    .run(job.clone(), self.running_version, version)
                {
                    Ok((outcome, publication)) => (outcome, publication, false),
                    // Training failed on its data: retrying would fail the same way, so the
                    // job is recorded as failed and removed.
                    Err(e) => (
                        JobOutcome::failed(job.clone(), self.running_version, &e),
                        None,
                        true,
                    ),
                };
            if let Some(candidate) = &publication
                && !self
                    .publisher
                    .store_snapshot(version, &candidate.snapshot)?
            {
                // Another worker made a newer model active while this one trained: the
                // active model never goes back.
                outcome.published = false;
                outcome.decision = format!(
                    "superseded: version {version} trained, but a newer version was active by then"
                );
                publication = None;
            }
            if let Some(publication) = &publication {
                let recorded = self.publisher.record_version(&publication.update);
                self.unless_refused(recorded)?;
                self.running_version = publication.update.model_version;
                out.push(json_output(MODEL_UPDATES, None, &publication.update));
            }
            let recorded = self.publisher.record_job(&outcome);
            self.unless_refused(recorded)?;
            self.queue
                .mark_done(&job, publication.as_ref().map(|p| &p.update))?;
            let label = if failed {
                "failed"
            } else if outcome.published {
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
            self.queue.complete(&job)?;
            self.queue.renew()?;
        }
        Ok(())
    }

    fn batch_failed(&mut self) {
        // The batch is consumed again and brings its events back.
        self.batch_events.clear();
    }
}
