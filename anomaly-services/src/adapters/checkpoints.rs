//! Single ownership in Redis: a lease that one instance holds at a time, and the checkpoint of
//! the state it owns, written only while it holds the lease (a fenced write), with the
//! previous checkpoint kept to fall back on if the newest does not decode.

use std::time::Duration;

use redis::Commands;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::redis::RedisStoreError;
use super::redis_link::RedisLink;

/// Renews the lease if held (1), takes it if free (2) (ARGV[1] = owner, ARGV[2] =
/// milliseconds), or leaves it to its holder (0).
const ACQUIRE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 2 end
return 0";

/// What [`Ownership::acquire`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    /// This owner held it, and still does.
    Renewed,
    /// It was free (never taken, released, or expired: perhaps held by another meanwhile),
    /// and this owner took it: state held in memory may be stale, restore the checkpoint.
    Taken,
    /// Another owner holds it.
    HeldElsewhere,
}

/// Gives the lease up if held.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// Writes the checkpoint (keeping the one before) only if the lease is still the writer's.
const SAVE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local current = redis.call('GET', KEYS[2])
if current then redis.call('SET', KEYS[3], current) end
redis.call('SET', KEYS[2], ARGV[2])
return 1";

/// A restored checkpoint.
#[derive(Debug)]
pub struct Restored<T> {
    /// The newest checkpoint that decodes, if any.
    pub state: Option<T>,
    /// Why the newest did not decode, when the previous one (or none) was used instead.
    pub fell_back: Option<String>,
}

/// The lease and checkpoint of one owned piece of state, under `prefix` + `name`.
///
/// ```no_run
/// use std::time::Duration;
/// use anomaly_services::adapters::checkpoints::Ownership;
///
/// let mut owner = Ownership::connect("redis://127.0.0.1:6379", "", "detectors", "instance-a",
///     Duration::from_secs(10))?;
/// if owner.acquire()? != anomaly_services::adapters::checkpoints::Lease::HeldElsewhere {
///     let restored = owner.load::<Vec<u64>>()?;
///     let mut state = restored.state.unwrap_or_default();
///     state.push(1);
///     assert!(owner.save(&state)?, "still the owner");
/// }
/// # Ok::<(), anomaly_services::adapters::redis::RedisStoreError>(())
/// ```
pub struct Ownership {
    link: RedisLink,
    lease_key: String,
    checkpoint_key: String,
    previous_key: String,
    owner: String,
    lease: Duration,
}

impl Ownership {
    /// The ownership of `name`, claimed as `owner` (unique among the instances) for `lease`
    /// at a time.
    pub fn connect(
        url: &str,
        prefix: &str,
        name: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Self, RedisStoreError> {
        Ok(Self {
            link: RedisLink::open(url)?,
            lease_key: format!("{prefix}{name}:owner"),
            checkpoint_key: format!("{prefix}{name}:checkpoint"),
            previous_key: format!("{prefix}{name}:checkpoint:previous"),
            owner: owner.to_owned(),
            lease,
        })
    }

    /// Renews the lease if this owner holds it, takes it if nobody does.
    pub fn acquire(&mut self) -> Result<Lease, RedisStoreError> {
        let script = redis::Script::new(ACQUIRE);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&self.lease_key)
            .arg(&self.owner)
            .arg(self.lease.as_millis() as u64);
        let held: i64 = self.link.call(|c| invocation.invoke(c))?;
        Ok(match held {
            1 => Lease::Renewed,
            2 => Lease::Taken,
            _ => Lease::HeldElsewhere,
        })
    }

    /// Gives the lease up (at shutdown: a standby takes over at once instead of after the
    /// lease).
    pub fn release(&mut self) -> Result<(), RedisStoreError> {
        let script = redis::Script::new(RELEASE);
        let mut invocation = script.prepare_invoke();
        invocation.key(&self.lease_key).arg(&self.owner);
        let _: i64 = self.link.call(|c| invocation.invoke(c))?;
        Ok(())
    }

    /// Writes `state` as the checkpoint if this owner still holds the lease; `false` (nothing
    /// written) if the lease was lost: another instance may own the state now.
    pub fn save<T: Serialize>(&mut self, state: &T) -> Result<bool, RedisStoreError> {
        let bytes =
            serde_json::to_vec(state).map_err(|e| RedisStoreError::Encoding(e.to_string()))?;
        let script = redis::Script::new(SAVE);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&self.lease_key)
            .key(&self.checkpoint_key)
            .key(&self.previous_key)
            .arg(&self.owner)
            .arg(bytes);
        let saved: i64 = self.link.call(|c| invocation.invoke(c))?;
        Ok(saved == 1)
    }

    /// The newest checkpoint that decodes: the last one written, or if it does not decode,
    /// the one before (with the reason in `fell_back`), or none.
    pub fn load<T: DeserializeOwned>(&mut self) -> Result<Restored<T>, RedisStoreError> {
        let (newest, previous): (Option<Vec<u8>>, Option<Vec<u8>>) = self.link.call(|c| {
            let newest = c.get(&self.checkpoint_key)?;
            let previous = c.get(&self.previous_key)?;
            Ok((newest, previous))
        })?;
        let Some(newest) = newest else {
            return Ok(Restored {
                state: None,
                fell_back: None,
            });
        };
        match serde_json::from_slice(&newest) {
            Ok(state) => Ok(Restored {
                state: Some(state),
                fell_back: None,
            }),
            Err(e) => Ok(Restored {
                state: previous.and_then(|bytes| serde_json::from_slice(&bytes).ok()),
                fell_back: Some(format!(
                    "checkpoint `{}` does not decode: {e}",
                    self.checkpoint_key
                )),
            }),
        }
    }
}
