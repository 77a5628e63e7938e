//! Why a record or a batch was not processed, typed by what to do about it: a record that can
//! never succeed is dead-lettered and the batch goes on; a dependency that is unavailable
//! makes the whole batch run again after a backoff.

use std::fmt;

/// Why a record was not processed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Permanent: the record itself is bad (malformed, invalid, too large, refused by the
    /// database as data). It is dead-lettered and the batch goes on.
    Reject {
        /// Metric label, e.g. `bad_json`.
        kind: &'static str,
        /// What was wrong.
        error: String,
    },
    /// Transient: a dependency failed; the batch is processed again later.
    Retry(Unavailable),
}

impl From<Unavailable> for Failure {
    /// A dependency that is unavailable: the batch runs again.
    fn from(unavailable: Unavailable) -> Self {
        Self::Retry(unavailable)
    }
}

impl Failure {
    /// A Redis failure: retry the batch.
    pub fn redis(error: impl fmt::Display) -> Self {
        Self::Retry(Unavailable::redis(error))
    }

    /// A PostgreSQL failure: retry the batch.
    pub fn postgres(error: impl fmt::Display) -> Self {
        Self::Retry(Unavailable::postgres(error))
    }
}

/// A dependency the services call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// The Kafka cluster.
    Kafka,
    /// Redis (feature store, model store, job queue).
    Redis,
    /// PostgreSQL/TimescaleDB (event store, notification outbox).
    Postgres,
    /// The Slack webhook.
    Slack,
}

impl Dependency {
    /// Its name in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kafka => "kafka",
            Self::Redis => "redis",
            Self::Postgres => "postgres",
            Self::Slack => "slack",
        }
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dependency could not do what was asked (unreachable, timed out, restarting): nothing is
/// wrong with the data, so the same work succeeds once it is back.
///
/// ```
/// use anomaly_services::failure::{Dependency, Unavailable};
///
/// let e = Unavailable::new(Dependency::Redis, "connection refused");
/// assert_eq!(e.to_string(), "redis unavailable: connection refused");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{dependency} unavailable: {detail}")]
pub struct Unavailable {
    /// Which one.
    pub dependency: Dependency,
    /// What it said.
    pub detail: String,
}

impl Unavailable {
    /// `dependency` failed with `error`.
    pub fn new(dependency: Dependency, error: impl fmt::Display) -> Self {
        Self {
            dependency,
            detail: error.to_string(),
        }
    }

    /// Redis failed with `error`.
    pub fn redis(error: impl fmt::Display) -> Self {
        Self::new(Dependency::Redis, error)
    }

    /// PostgreSQL failed with `error`.
    pub fn postgres(error: impl fmt::Display) -> Self {
        Self::new(Dependency::Postgres, error)
    }
}

/// A row a store refused as data (PostgreSQL SQLSTATE class 22 or 23): the record it came
/// from is dead-lettered with `error`; the other rows of its batch are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRow {
    /// Its index in the rows written.
    pub index: usize,
    /// Why it was refused.
    pub error: String,
}
