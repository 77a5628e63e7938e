//! Checkpoints of what each ml-inference instance has learned online since the published model
//! it started from, so that a restart resumes learning instead of starting again from the
//! publication. One checkpoint per instance (with the one before it kept, in case the newest
//! does not load), and an index of when each instance last saved, so that an instance without a
//! checkpoint of its own (new, or renamed) starts from the freshest one another instance saved.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Commands;

use super::redis::RedisStoreError;
use super::redis_link::RedisLink;

/// Moves the current checkpoint to `:previous`, writes the new one, both expiring after
/// ARGV[2] seconds, and records the save time ARGV[3] of instance ARGV[4] in the index, from
/// which entries older than ARGV[5] are dropped.
const SAVE: &str = r"
local current = redis.call('GET', KEYS[1])
if current then redis.call('SET', KEYS[2], current, 'EX', ARGV[2]) end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[5])
return 1";

/// How many other instances' checkpoints are tried when an instance has none of its own.
const OTHERS_TRIED: isize = 3;

/// The learned-model checkpoints under `prefix`, as seen by one instance.
///
/// ```no_run
/// use std::time::Duration;
/// use anomaly_services::adapters::learned_models::RedisLearnedModels;
///
/// let mut checkpoints = RedisLearnedModels::connect("redis://127.0.0.1:6379", "",
///     "ml-inference-0", Duration::from_secs(7 * 86_400))?;
/// checkpoints.save(b"snapshot bytes")?;
/// let (_, newest) = &checkpoints.restore_order()?[0];
/// assert_eq!(checkpoints.fetch(newest)?.as_deref(), Some(&b"snapshot bytes"[..]));
/// # Ok::<(), anomaly_services::adapters::redis::RedisStoreError>(())
/// ```
pub struct RedisLearnedModels {
    link: RedisLink,
    prefix: String,
    instance: String,
    keep_for: Duration,
}

impl RedisLearnedModels {
    /// The checkpoints of `instance` (a name stable across its restarts and unique among the
    /// running instances); checkpoints not renewed for `keep_for` expire.
    pub fn connect(
        url: &str,
        prefix: &str,
        instance: &str,
        keep_for: Duration,
    ) -> Result<Self, RedisStoreError> {
        Ok(Self {
            link: RedisLink::open(url)?,
            prefix: prefix.to_owned(),
            instance: instance.to_owned(),
            keep_for: keep_for.max(Duration::from_secs(1)),
        })
    }

    /// Records the duration of every Redis call in `latency`.
    pub fn with_latency(mut self, latency: prometheus::Histogram) -> Self {
        self.link = self.link.with_latency(latency);
        self
    }

    fn key(&self, instance: &str) -> String {
        format!("{}learned_model:{instance}", self.prefix)
    }

    fn index(&self) -> String {
        format!("{}learned_models", self.prefix)
    }

    /// Saves `snapshot` as this instance's checkpoint, keeping the one it replaces.
    pub fn save(&mut self, snapshot: &[u8]) -> Result<(), RedisStoreError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let expired_before = now_ms.saturating_sub(self.keep_for.as_millis() as u64);
        let script = redis::Script::new(SAVE);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.key(&self.instance))
            .key(format!("{}:previous", self.key(&self.instance)))
            .key(self.index())
            .arg(snapshot)
            .arg(self.keep_for.as_secs())
            .arg(now_ms)
            .arg(&self.instance)
            .arg(expired_before);
        let _: i64 = self.link.call(|c| invocation.invoke(c))?;
        Ok(())
    }

    /// The checkpoints to try, in order, as (description, key): this instance's newest, its
    /// previous, then the newest of the (at most three) other instances that saved most
    /// recently. Some may have expired since: [`fetch`](Self::fetch) says.
    pub fn restore_order(&mut self) -> Result<Vec<(String, String)>, RedisStoreError> {
        let own = self.key(&self.instance);
        let index = self.index();
        // One more than tried: the list may include this instance.
        let freshest: Vec<String> = self.link.call(|c| c.zrevrange(&index, 0, OTHERS_TRIED))?;
        let mut order = vec![
            ("own checkpoint".to_owned(), own.clone()),
            (
                "own previous checkpoint".to_owned(),
                format!("{own}:previous"),
            ),
        ];
        order.extend(
            freshest
                .into_iter()
                .filter(|other| *other != self.instance)
                .take(OTHERS_TRIED as usize)
                .map(|other| (format!("checkpoint of instance {other}"), self.key(&other))),
        );
        Ok(order)
    }

    /// The bytes of checkpoint `key` (from [`restore_order`](Self::restore_order)), if it
    /// still exists.
    pub fn fetch(&mut self, key: &str) -> Result<Option<Vec<u8>>, RedisStoreError> {
        Ok(self.link.call(|c| c.get(key))?)
    }
}
