use std::collections::HashMap;
use std::convert::Infallible;

use serde::{Deserialize, Serialize};

use super::codec::{Compact, DecodeError};

/// Per-key feature state, read and updated one key at a time, atomically.
///
/// The whole contract is [`update`](Self::update): run a closure on a key's state and persist
/// what it leaves, with no other update of that key interleaved. Keys that were never written
/// start from a template state the store was built with (e.g. an empty window with the
/// right parameters), so the store, not the caller, knows how fresh state looks.
///
/// **Remote stores** (e.g. Redis, in another crate) keep each key's state as the bytes of
/// [`Compact::encode`] and implement `update` as an optimistic transaction around
/// [`update_encoded`], which does the pure part (decode or start from the template, run the
/// closure, encode):
///
/// ```text
/// loop {
///     WATCH key;  bytes = GET key
///     (result, new_bytes) = update_encoded(&template, bytes, &mut f)?
///     match new_bytes {
///         None    => { UNWATCH; return result }            // state unchanged: no write
///         Some(b) => { MULTI; SET key b; if EXEC succeeded { return result } }  // else retry
///     }
/// }
/// ```
///
/// A Lua script doing compare-and-set on the old bytes (or on a version stored next to them)
/// works the same way. Because of the retry, **`f` may run more than once**, each time on
/// freshly loaded state: it must only change the state it is given, and only the last run's
/// result is returned. Both feature states in this crate are pure functions of their inputs,
/// so this holds for `|w| w.push(t, x)` and `|card| card.update(&tx)`.
///
/// ```
/// use anomaly_core::features::{FeatureStore, InMemoryStore, SlidingWindow};
///
/// fn add<S: FeatureStore<State = SlidingWindow>>(store: &mut S, key: &str, t: i64, x: f64)
///     -> Result<f64, Box<dyn std::error::Error>>
/// where
///     S::Error: 'static,
/// {
///     let mean = store.update(key, |w| w.push(t, x).map(|_| w.summary().mean()))??;
///     Ok(mean)
/// }
///
/// let mut store = InMemoryStore::new(SlidingWindow::default());
/// add(&mut store, "card-1", 1_000, 10.0)?;
/// assert_eq!(add(&mut store, "card-1", 2_000, 20.0)?, 15.0);
/// assert_eq!(store.load("card-2")?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait FeatureStore {
    /// The state kept per key, e.g. [`SlidingWindow`](super::SlidingWindow) or
    /// [`CardState`](super::CardState).
    type State;
    /// Why the store could not load or save a state (I/O, corrupt bytes...).
    type Error: std::error::Error;

    /// Runs `f` on `key`'s state (the template if the key is new), persists the state it
    /// leaves and returns `f`'s result. No other update of `key` is interleaved; `f` may run
    /// more than once (see the trait's notes). A new key whose state `f` leaves equal to the
    /// template is not stored.
    fn update<R>(
        &mut self,
        key: &str,
        f: impl FnMut(&mut Self::State) -> R,
    ) -> Result<R, Self::Error>;

    /// A copy of `key`'s state; `None` if the key was never stored.
    fn load(&mut self, key: &str) -> Result<Option<Self::State>, Self::Error>;
}

/// The pure core of a remote [`FeatureStore::update`]: decodes `stored` (or starts from
/// `template` when the key is absent), runs `f`, and returns its result with the bytes to
/// write back, or `None` when the state is unchanged and the write can be skipped.
///
/// Corrupt stored bytes give a [`DecodeError`]; the caller decides whether to fail or to
/// delete the key and start over.
///
/// ```
/// use anomaly_core::features::{SlidingWindow, update_encoded};
///
/// let template = SlidingWindow::default();
/// let (_, bytes) = update_encoded(&template, None, |w| w.push(1, 5.0))?;
/// let bytes = bytes.expect("a new event changes the state");
/// let (count, unchanged) = update_encoded(&template, Some(&bytes), |w| w.len())?;
/// assert_eq!((count, unchanged), (1, None));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn update_encoded<S: Compact + Clone, R>(
    template: &S,
    stored: Option<&[u8]>,
    f: impl FnOnce(&mut S) -> R,
) -> Result<(R, Option<Vec<u8>>), DecodeError> {
    let mut state = match stored {
        Some(bytes) => S::decode(bytes)?,
        None => template.clone(),
    };
    let result = f(&mut state);
    let new_bytes = state.to_bytes();
    let unchanged = match stored {
        Some(bytes) => bytes == new_bytes.as_slice(),
        None => template.to_bytes() == new_bytes,
    };
    Ok((result, (!unchanged).then_some(new_bytes)))
}

/// A [`FeatureStore`] in a `HashMap`, for the embedded pipeline and tests.
///
/// Updates are atomic because they take `&mut self`; share the store between threads behind
/// a `Mutex` (or one store per shard of keys).
///
/// ```
/// use anomaly_core::features::{FeatureStore, InMemoryStore, RunningStats};
///
/// let mut store = InMemoryStore::new(RunningStats::default());
/// store.update("a", |s| s.push(3.0))??;
/// store.update("a", |s| s.push(5.0))??;
/// assert_eq!(store.get("a").map(|s| s.summary().mean()), Some(4.0));
/// assert_eq!(store.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InMemoryStore<S> {
    template: S,
    /// Boxed: a transaction state is hundreds of bytes, and the table moves its entries each
    /// time it grows.
    states: HashMap<String, Box<S>>,
}

impl<S> InMemoryStore<S> {
    /// An empty store whose new keys start as clones of `template`.
    pub fn new(template: S) -> Self {
        Self {
            template,
            states: HashMap::new(),
        }
    }

    /// The state new keys start from.
    pub fn template(&self) -> &S {
        &self.template
    }

    /// `key`'s state, if stored.
    pub fn get(&self, key: &str) -> Option<&S> {
        self.states.get(key).map(|s| &**s)
    }

    /// Removes `key`, returning its state.
    pub fn remove(&mut self, key: &str) -> Option<S> {
        self.states.remove(key).map(|s| *s)
    }

    /// Number of stored keys.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Every stored `(key, state)`, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &S)> {
        self.states.iter().map(|(k, s)| (k.as_str(), &**s))
    }
}

impl<S: Clone + PartialEq> FeatureStore for InMemoryStore<S> {
    type State = S;
    type Error = Infallible;

    fn update<R>(&mut self, key: &str, mut f: impl FnMut(&mut S) -> R) -> Result<R, Infallible> {
        if let Some(state) = self.states.get_mut(key) {
            return Ok(f(state));
        }
        let mut state = self.template.clone();
        let result = f(&mut state);
        // Rejected inputs for unknown keys must not grow the map.
        if state != self.template {
            self.states.insert(key.to_owned(), Box::new(state));
        }
        Ok(result)
    }

    fn load(&mut self, key: &str) -> Result<Option<S>, Infallible> {
        Ok(self.states.get(key).map(|s| S::clone(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::SlidingWindow;

    #[test]
    fn failed_updates_of_new_keys_store_nothing() {
        let mut store = InMemoryStore::new(SlidingWindow::default());
        let r = store.update("k", |w| w.push(1, f64::NAN)).unwrap();
        assert!(r.is_err());
        assert!(store.is_empty());
        store.update("k", |w| w.push(1, 1.0)).unwrap().unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(store.remove("k").map(|w| w.len()), Some(1));
    }

    #[test]
    fn encoded_updates_match_in_memory_updates() {
        let template = SlidingWindow::default();
        let mut memory = InMemoryStore::new(template.clone());
        let mut remote: HashMap<String, Vec<u8>> = HashMap::new();
        for i in 0..500i64 {
            let key = format!("k{}", i % 7);
            let x = (i as f64 * 0.37).sin();
            let a = memory.update(&key, |w| w.push(i * 1_000, x)).unwrap();
            let stored = remote.get(&key).map(Vec::as_slice);
            let (b, bytes) = update_encoded(&template, stored, |w| w.push(i * 1_000, x)).unwrap();
            if let Some(bytes) = bytes {
                remote.insert(key.clone(), bytes);
            }
            assert_eq!(a, b);
            let decoded = SlidingWindow::decode(&remote[&key]).unwrap();
            assert_eq!(memory.get(&key), Some(&decoded));
        }
    }

    #[test]
    fn corrupt_stored_bytes_are_an_error() {
        let template = SlidingWindow::default();
        assert!(update_encoded(&template, Some(&[1, 2, 3]), |w| w.len()).is_err());
    }
}
