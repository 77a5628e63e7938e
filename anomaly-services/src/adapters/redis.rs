//! Redis: the per-card feature store (atomic read-modify-write per card, with a TTL) and the
//! model store (`active_model`).

use anomaly_core::features::{Compact, DecodeError, FeatureStore, update_encoded};
use redis::Commands;

use super::redis_link::RedisLink;
use thiserror::Error;

/// A Redis failure, or stored bytes that do not decode.
#[derive(Debug, Error)]
pub enum RedisStoreError {
    /// Connection or command failure.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored state is corrupt.
    #[error("corrupt state under `{key}`: {source}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why it does not decode.
        source: DecodeError,
    },
    /// The connection was lost between a batch's read and its write: the keys were no longer
    /// watched, so the write was not made (the batch is prepared again).
    #[error("the Redis connection was lost between reading and writing a batch")]
    ConnectionLost,
    /// State that could not be encoded for storage.
    #[error("cannot encode state: {0}")]
    Encoding(String),
    /// Other writers kept changing the key.
    #[error("gave up updating `{key}` after {attempts} conflicting attempts")]
    Contended {
        /// The key.
        key: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// A stored state that did not decode and that [`RedisFeatureStore::update_batch`] replaced
/// with a fresh one, so that one bad key cannot stop a whole batch forever.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscardedState {
    /// The full Redis key.
    pub key: String,
    /// Why it did not decode.
    pub error: String,
    /// The bytes that were stored.
    pub bytes: Vec<u8>,
}

/// A [`FeatureStore`] in Redis: one key per card (`prefix` + card id) holding the state's
/// compact encoding. Updates are optimistic transactions (WATCH, GET, MULTI/SET/EXEC), retried
/// when another writer got in between, so a card's state is never updated twice from the same
/// read.
pub struct RedisFeatureStore<S> {
    link: RedisLink,
    prefix: String,
    ttl_seconds: u64,
    template: S,
    discarded: Vec<DiscardedState>,
}

const MAX_ATTEMPTS: u32 = 16;

impl<S: Compact + Clone> RedisFeatureStore<S> {
    /// Connects to `url`; keys are `prefix` + key, kept `ttl_seconds` after their last update.
    pub fn connect(
        url: &str,
        prefix: &str,
        ttl_seconds: u64,
        template: S,
    ) -> Result<Self, RedisStoreError> {
        Ok(Self {
            link: RedisLink::open(url)?,
            prefix: prefix.to_owned(),
            ttl_seconds,
            template,
            discarded: Vec::new(),
        })
    }

    /// Records the duration of every Redis call in `latency`.
    pub fn with_latency(mut self, latency: prometheus::Histogram) -> Self {
        self.link = self.link.with_latency(latency);
        self
    }

    /// The corrupt states that batch updates replaced since the last call.
    pub fn take_discarded(&mut self) -> Vec<DiscardedState> {
        std::mem::take(&mut self.discarded)
    }
}

impl<S: Compact + Clone> FeatureStore for RedisFeatureStore<S> {
    type State = S;
    type Error = RedisStoreError;

    fn update<R>(
        &mut self,
        key: &str,
        mut f: impl FnMut(&mut S) -> R,
    ) -> Result<R, RedisStoreError> {
        let key = format!("{}{key}", self.prefix);
        for _ in 0..MAX_ATTEMPTS {
            self.link.call(|c| redis::cmd("WATCH").arg(&key).exec(c))?;
            let generation = self.link.generation();
            let stored: Option<Vec<u8>> = self.link.call(|c| c.get(&key))?;
            let (result, new_bytes) = update_encoded(&self.template, stored.as_deref(), &mut f)
                .map_err(|source| RedisStoreError::Corrupt {
                    key: key.clone(),
                    source,
                })?;
            let Some(bytes) = new_bytes else {
                self.link.call(|c| redis::cmd("UNWATCH").exec(c))?;
                return Ok(result);
            };
            if !self.link.holds(generation) {
                return Err(RedisStoreError::ConnectionLost);
            }
            let ttl = self.ttl_seconds;
            let committed: Option<()> = self.link.call(|c| {
                redis::pipe()
                    .atomic()
                    .set_ex(&key, bytes, ttl)
                    .ignore()
                    .query(c)
            })?;
            if committed.is_some() {
                return Ok(result);
            }
        }
        Err(RedisStoreError::Contended {
            key,
            attempts: MAX_ATTEMPTS,
        })
    }

    fn load(&mut self, key: &str) -> Result<Option<S>, RedisStoreError> {
        let key = format!("{}{key}", self.prefix);
        let stored: Option<Vec<u8>> = self.link.call(|c| c.get(&key))?;
        stored
            .map(|bytes| {
                S::decode(&bytes).map_err(|source| RedisStoreError::Corrupt { key, source })
            })
            .transpose()
    }
}

/// A batch's new states, computed from what Redis held and not written yet (see
/// [`RedisFeatureStore::prepare_batch`]).
#[derive(Debug)]
pub struct PreparedBatch {
    generation: u64,
    writes: Vec<(String, Vec<u8>)>,
    discarded: Vec<DiscardedState>,
}

impl PreparedBatch {
    /// Stored states that did not decode; the batch replaces them with fresh ones.
    pub fn discarded(&self) -> &[DiscardedState] {
        &self.discarded
    }
}

impl<S: Compact + Clone> RedisFeatureStore<S> {
    /// Updates the states of a whole batch in one optimistic transaction:
    /// [`prepare_batch`](Self::prepare_batch) then [`commit_batch`](Self::commit_batch),
    /// retried from scratch if another writer got in between. Three round trips per batch
    /// instead of four per item.
    ///
    /// A stored state that does not decode is replaced by the template (and so overwritten);
    /// [`take_discarded`](Self::take_discarded) returns it, bytes included, for the caller to
    /// report.
    pub fn update_batch<R>(
        &mut self,
        keys: &[&str],
        mut f: impl FnMut(usize, &mut S) -> R,
    ) -> Result<Vec<R>, RedisStoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let (results, prepared) = self.prepare_batch(keys, &mut f)?;
            let discarded = prepared.discarded.clone();
            if self.commit_batch(prepared)? {
                self.discarded.extend(discarded);
                return Ok(results);
            }
        }
        Err(RedisStoreError::Contended {
            key: keys.join(","),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Reads the states of a batch and computes their updates without writing them: one
    /// WATCH, one MGET, then `f(i, state)` for every item in order (items sharing a key see
    /// each other's updates). The keys stay watched until [`commit_batch`](Self::commit_batch)
    /// or [`abort_batch`](Self::abort_batch), so a commit fails if another writer changed one.
    pub fn prepare_batch<R>(
        &mut self,
        keys: &[&str],
        mut f: impl FnMut(usize, &mut S) -> R,
    ) -> Result<(Vec<R>, PreparedBatch), RedisStoreError> {
        let mut distinct: Vec<String> = Vec::new();
        let mut slots: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::with_capacity(keys.len());
        let mut slot_of = Vec::with_capacity(keys.len());
        for key in keys {
            let slot = *slots.entry(key).or_insert_with(|| {
                distinct.push(format!("{}{key}", self.prefix));
                distinct.len() - 1
            });
            slot_of.push(slot);
        }
        let mut prepared = PreparedBatch {
            generation: 0,
            writes: Vec::new(),
            discarded: Vec::new(),
        };
        if distinct.is_empty() {
            return Ok((Vec::new(), prepared));
        }
        // WATCH and MGET in one round trip: the keys are watched before they are read.
        let ((), stored): ((), Vec<Option<Vec<u8>>>) = self.link.call(|c| {
            redis::pipe()
                .cmd("WATCH")
                .arg(&distinct)
                .cmd("MGET")
                .arg(&distinct)
                .query(c)
        })?;
        prepared.generation = self.link.generation();
        let mut states = Vec::with_capacity(distinct.len());
        for (key, bytes) in distinct.iter().zip(&stored) {
            let state = match bytes {
                Some(bytes) => S::decode(bytes).unwrap_or_else(|e| {
                    prepared.discarded.push(DiscardedState {
                        key: key.clone(),
                        error: e.to_string(),
                        bytes: bytes.clone(),
                    });
                    self.template.clone()
                }),
                None => self.template.clone(),
            };
            states.push(state);
        }
        let results: Vec<R> = slot_of
            .iter()
            .enumerate()
            .map(|(i, &slot)| f(i, &mut states[slot]))
            .collect();
        let template = self.template.to_bytes();
        for ((key, state), before) in distinct.into_iter().zip(&states).zip(&stored) {
            // Sized for the stored state and a few more events: no reallocation while encoding.
            let mut bytes = Vec::with_capacity(before.as_ref().map_or(0, Vec::len) + 256);
            state.encode(&mut bytes);
            let unchanged = match before {
                Some(before) => *before == bytes,
                None => template == bytes,
            };
            // A discarded state is always rewritten, even if nothing was added to it.
            let replaced = prepared.discarded.iter().any(|d| d.key == key);
            if !unchanged || replaced {
                prepared.writes.push((key, bytes));
            }
        }
        Ok((results, prepared))
    }

    /// Writes a prepared batch in one MULTI/EXEC; `false` (nothing written) if another writer
    /// changed one of its keys since [`prepare_batch`](Self::prepare_batch).
    pub fn commit_batch(&mut self, prepared: PreparedBatch) -> Result<bool, RedisStoreError> {
        if !self.link.holds(prepared.generation) {
            // A new connection watches nothing: writing now could overwrite another writer's
            // update made since the read.
            return Err(RedisStoreError::ConnectionLost);
        }
        if prepared.writes.is_empty() {
            self.link.call(|c| redis::cmd("UNWATCH").exec(c))?;
            return Ok(true);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, bytes) in &prepared.writes {
            pipe.set_ex(key, bytes, self.ttl_seconds).ignore();
        }
        let committed: Option<()> = self.link.call(|c| pipe.query(c))?;
        Ok(committed.is_some())
    }

    /// Gives up a prepared batch (stops watching its keys).
    pub fn abort_batch(&mut self) -> Result<(), RedisStoreError> {
        self.link.call(|c| redis::cmd("UNWATCH").exec(c))?;
        Ok(())
    }
}

/// The published model: snapshot bytes under `prefix` + `active_model`, its version under
/// `active_version`, and the counter versions are allocated from, `model_versions_allocated`.
/// Versions are allocated atomically (two workers never get the same one) and publication is
/// compare-and-set: the active model never goes back to an older version.
pub struct RedisModelStore {
    link: RedisLink,
    key: String,
    version_key: String,
    counter_key: String,
}

/// The next version: one more than the counter and than the active version (the counter may
/// be behind a model published before it existed; the fresh model is version 1).
const ALLOCATE_VERSION: &str = r"
local v = redis.call('INCR', KEYS[1])
local active = tonumber(redis.call('GET', KEYS[2]) or '1')
if v <= active then
  v = active + 1
  redis.call('SET', KEYS[1], v)
end
return v";

/// Makes ARGV[2] the active model as version ARGV[1] unless the active version is as new.
const PUBLISH_IF_NEWER: &str = r"
local active = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= active then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
return 1";

impl RedisModelStore {
    /// Connects to `url`.
    pub fn connect(url: &str, prefix: &str) -> Result<Self, RedisStoreError> {
        Ok(Self {
            link: RedisLink::open(url)?,
            key: format!("{prefix}active_model"),
            version_key: format!("{prefix}active_version"),
            counter_key: format!("{prefix}model_versions_allocated"),
        })
    }

    /// A version number no other caller got, above the active version.
    pub fn allocate_version(&mut self) -> Result<u64, RedisStoreError> {
        let script = redis::Script::new(ALLOCATE_VERSION);
        let mut invocation = script.prepare_invoke();
        invocation.key(&self.counter_key).key(&self.version_key);
        Ok(self.link.call(|c| invocation.invoke(c))?)
    }

    /// The active model's version, if one was published with it.
    pub fn active_version(&mut self) -> Result<Option<u64>, RedisStoreError> {
        Ok(self.link.call(|c| c.get(&self.version_key))?)
    }

    /// A model published before versions were stored beside it (`active_model` without
    /// `active_version`): records the version its snapshot carries, so that allocation and
    /// publication count from it instead of from 1. Call at start-up; returns the version
    /// recorded, if any.
    pub fn adopt_unversioned_model(&mut self) -> Result<Option<u64>, RedisStoreError> {
        if self.active_version()?.is_some() {
            return Ok(None);
        }
        let Some(bytes) = self.load()? else {
            return Ok(None);
        };
        // An unreadable snapshot is ml-inference's to reject; it carries no usable version.
        let Ok(snapshot) = anomaly_core::snapshot::Snapshot::from_bytes(&bytes) else {
            return Ok(None);
        };
        let version = snapshot.model_version;
        let set: bool = self.link.call(|c| {
            redis::cmd("SET")
                .arg(&self.version_key)
                .arg(version)
                .arg("NX")
                .query::<Option<String>>(c)
                .map(|reply| reply.is_some())
        })?;
        Ok(set.then_some(version))
    }

    /// Records the duration of every Redis call in `latency`.
    pub fn with_latency(mut self, latency: prometheus::Histogram) -> Self {
        self.link = self.link.with_latency(latency);
        self
    }

    /// Makes `snapshot` the active model as `version`, unless the active version is as new
    /// (another worker published a newer one meanwhile); returns whether it did.
    pub fn publish(&mut self, version: u64, snapshot: &[u8]) -> Result<bool, RedisStoreError> {
        let script = redis::Script::new(PUBLISH_IF_NEWER);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&self.key)
            .key(&self.version_key)
            .arg(version)
            .arg(snapshot);
        let published: i64 = self.link.call(|c| invocation.invoke(c))?;
        Ok(published == 1)
    }

    /// The active model's snapshot bytes, if one was published.
    pub fn load(&mut self) -> Result<Option<Vec<u8>>, RedisStoreError> {
        Ok(self.link.call(|c| c.get(&self.key))?)
    }
}
