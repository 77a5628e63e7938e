//! One Redis connection that heals itself: opened on first use with bounded connect, read and
//! write timeouts, dropped after any failed call and opened again on the next, so a Redis
//! restart costs the batches that ran into it (retried by the service loop) and nothing more.

use std::time::{Duration, Instant};

use prometheus::Histogram;
use redis::{Connection, RedisResult};

/// Bound on connecting and on every read or write: a Redis that stops answering fails the
/// call (and the batch, which is retried) instead of hanging the service.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// A lazily (re)opened connection to one Redis.
///
/// ```no_run
/// use anomaly_services::adapters::redis_link::RedisLink;
///
/// let mut link = RedisLink::open("redis://127.0.0.1:6379")?;
/// let pong: String = link.call(|c| redis::cmd("PING").query(c))?;
/// assert_eq!(pong, "PONG");
/// # Ok::<(), redis::RedisError>(())
/// ```
pub struct RedisLink {
    client: redis::Client,
    connection: Option<Connection>,
    generation: u64,
    latency: Option<Histogram>,
}

impl RedisLink {
    /// A link to `url`, connected now (so that a wrong URL or a Redis that is down shows at
    /// start-up).
    pub fn open(url: &str) -> RedisResult<Self> {
        let mut link = Self {
            client: redis::Client::open(url)?,
            connection: None,
            generation: 0,
            latency: None,
        };
        link.connection()?;
        Ok(link)
    }

    /// Records the duration of every call in `latency`.
    pub fn with_latency(mut self, latency: Histogram) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Runs `f` on the connection, opening one first if there is none. Any error drops the
    /// connection: after a timeout or a half-read reply its state is unknown, and a fresh one
    /// costs a round trip.
    pub fn call<R>(&mut self, f: impl FnOnce(&mut Connection) -> RedisResult<R>) -> RedisResult<R> {
        let started = Instant::now();
        let result = self.connection().and_then(f);
        if result.is_err() {
            self.connection = None;
        }
        if let Some(latency) = &self.latency {
            latency.observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// Counts the connections opened: a call sequence that relies on per-connection state
    /// (WATCH) notes it after its first call and checks [`holds`](Self::holds) before the
    /// last.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the connection of `generation` is still open: the next call runs on it, not
    /// on a new one (which would have lost its WATCHes).
    pub fn holds(&self, generation: u64) -> bool {
        self.connection.is_some() && self.generation == generation
    }

    fn connection(&mut self) -> RedisResult<&mut Connection> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                let connection = self.client.get_connection_with_timeout(REDIS_TIMEOUT)?;
                connection.set_read_timeout(Some(REDIS_TIMEOUT))?;
                connection.set_write_timeout(Some(REDIS_TIMEOUT))?;
                self.generation += 1;
                connection
            }
        };
        Ok(self.connection.insert(connection))
    }
}
