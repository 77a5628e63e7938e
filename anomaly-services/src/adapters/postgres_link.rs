//! One PostgreSQL connection that heals itself: opened with a bounded connect timeout, TCP
//! keepalives and a statement timeout, dropped after any failure that is not about the data,
//! and opened again on the next call. A database restart costs the batches that ran into it
//! (retried by the service loop) and nothing more.

use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use prometheus::Histogram;
use thiserror::Error;

/// Bound on connecting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one statement, enforced by the server (`statement_timeout`) and, for a server or
/// network that stops answering, by the kernel (`tcp_user_timeout`).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A database failure (the message never contains the connection password).
#[derive(Debug, Error)]
#[error("database: {0}")]
pub struct StoreError(#[from] postgres::Error);

impl StoreError {
    /// The SQLSTATE code, when the server answered with one.
    pub fn sqlstate(&self) -> Option<&str> {
        self.0.code().map(postgres::error::SqlState::code)
    }

    /// Whether the database refused the data itself: SQLSTATE class 22 (data exception: a
    /// value out of range, a NUL byte in text) or 23 (integrity constraint violation). The
    /// same row fails every time, so retrying it would stall its partition for ever.
    ///
    /// The idempotent conflict on `(id, ts)` is not one of these: every insert handles it
    /// with `ON CONFLICT DO NOTHING`.
    pub fn is_permanent(&self) -> bool {
        self.sqlstate()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
    }
}

/// A lazily (re)opened connection to one database, with `search_path` set to one schema.
pub struct PgLink {
    config: postgres::Config,
    schema: String,
    client: Option<Client>,
    latency: Option<Histogram>,
}

impl PgLink {
    /// A link to `url` whose sessions use `schema`; connects now, so that a wrong URL or a
    /// database that is down shows at start-up.
    pub fn open(url: &str, schema: &str) -> Result<Self, StoreError> {
        let mut config: postgres::Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .tcp_user_timeout(STATEMENT_TIMEOUT);
        let mut link = Self {
            config,
            schema: schema.to_owned(),
            client: None,
            latency: None,
        };
        link.client()?;
        Ok(link)
    }

    /// Records the duration of every call in `latency`.
    pub fn with_latency(mut self, latency: Histogram) -> Self {
        self.latency = Some(latency);
        self
    }

    /// The schema, quoted as an SQL identifier.
    pub fn quoted_schema(&self) -> String {
        quote_identifier(&self.schema)
    }

    /// Runs `f` on the connection, opening one first if there is none. A failure that is not
    /// about the data drops the connection: after a restart, a timeout or a network error
    /// its session is gone or unknown.
    pub fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<R, postgres::Error>,
    ) -> Result<R, StoreError> {
        let started = Instant::now();
        let result = self
            .client()
            .and_then(|client| f(client).map_err(StoreError::from));
        if let Err(e) = &result
            && !e.is_permanent()
        {
            self.client = None;
        }
        if let Some(latency) = &self.latency {
            latency.observe(started.elapsed().as_secs_f64());
        }
        result
    }

    fn client(&mut self) -> Result<&mut Client, StoreError> {
        let client = match self.client.take() {
            Some(client) if !client.is_closed() => client,
            _ => {
                let mut client = self.config.connect(NoTls)?;
                client.batch_execute(&format!(
                    "SET search_path TO {}; SET statement_timeout = {};",
                    self.quoted_schema(),
                    STATEMENT_TIMEOUT.as_millis()
                ))?;
                client
            }
        };
        Ok(self.client.insert(client))
    }
}

/// `name` as a quoted SQL identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
