//! How far a producer instance has got in its stream, in Redis, so that a restarted instance
//! goes on where its last acknowledged batch ended instead of sending the stream again.

use redis::Commands;

use super::redis::RedisStoreError;
use super::redis_link::RedisLink;

/// The progress of one producer instance on one stream, under
/// `<prefix>producer:progress:<stream>:<instance>of<instances>`, where the stream names the
/// run, seed, length and cards (another stream starts from its beginning).
///
/// ```no_run
/// use anomaly_services::adapters::producer_progress::RedisProducerProgress;
///
/// let mut progress = RedisProducerProgress::connect("redis://127.0.0.1:6379", "",
///     "run1-seed42-events1000000-cards2000", 0, 2)?;
/// let resume_at = progress.load()?.unwrap_or(0);
/// progress.save(resume_at + 1_000)?;
/// # Ok::<(), anomaly_services::adapters::redis::RedisStoreError>(())
/// ```
pub struct RedisProducerProgress {
    link: RedisLink,
    key: String,
}

impl RedisProducerProgress {
    /// The progress of instance `instance` of `instances` on `stream`.
    pub fn connect(
        url: &str,
        prefix: &str,
        stream: &str,
        instance: u32,
        instances: u32,
    ) -> Result<Self, RedisStoreError> {
        Ok(Self {
            link: RedisLink::open(url)?,
            key: format!("{prefix}producer:progress:{stream}:{instance}of{instances}"),
        })
    }

    /// The generator index of the first event not acknowledged yet, if the instance has
    /// started this stream before.
    pub fn load(&mut self) -> Result<Option<u64>, RedisStoreError> {
        let key = &self.key;
        Ok(self.link.call(|c| c.get(key))?)
    }

    /// Records that every event before generator index `next` is acknowledged.
    pub fn save(&mut self, next: u64) -> Result<(), RedisStoreError> {
        let key = &self.key;
        Ok(self.link.call(|c| c.set(key, next))?)
    }
}
