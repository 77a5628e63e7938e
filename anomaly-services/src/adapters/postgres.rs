//! The event store in PostgreSQL/TimescaleDB: idempotent schema, idempotent batch inserts,
//! and rows refused as data told apart from outages.

use postgres::Client;

use super::postgres_link::PgLink;
pub use super::postgres_link::StoreError;
use crate::failure::RejectedRow;
use crate::messages::{Alert, DriftEvent, ModelUpdate, ScoredEvent};

/// The schema, applied idempotently at start-up.
pub const SCHEMA: &str = include_str!("../../sql/schema.sql");

/// Advisory lock key serializing schema application ("ANOMALY" in ASCII).
const SCHEMA_LOCK: i64 = 0x0041_4E4F_4D41_4C59;

/// What a batch insert did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Inserted {
    /// Rows that were new (the others were stored already: a replay).
    pub new: u64,
    /// Rows the database refused as data, by index; the others were stored.
    pub rejected: Vec<RejectedRow>,
}

/// Writes the pipeline's rows. Every insert is `ON CONFLICT DO NOTHING` on `(id, ts)`, so a
/// batch replayed after a crash adds nothing twice. The connection heals itself (see
/// [`PgLink`]); a row the database refuses as data is reported, not retried.
pub struct PgEventStore {
    link: PgLink,
}

impl PgEventStore {
    /// Connects to `url`, uses (creating it if needed) the schema `schema` (`public` in
    /// production; tests use their own), and applies the tables.
    pub fn connect(url: &str, schema: &str) -> Result<Self, StoreError> {
        let mut link = PgLink::open(url, schema)?;
        let quoted = link.quoted_schema();
        // Services start together: `IF NOT EXISTS` alone races between connections (both see
        // no table, one fails on the catalog's unique index), so the schema is applied under
        // a transaction-scoped advisory lock.
        link.call(|client| {
            let mut tx = client.transaction()?;
            // The statement timeout bounds a batch's writes, not this: converting a large
            // table of an earlier version, or waiting for the service that does, takes longer.
            tx.batch_execute("SET LOCAL statement_timeout = 0")?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {quoted}; SET LOCAL search_path TO {quoted};"
            ))?;
            tx.batch_execute(SCHEMA)?;
            tx.commit()
        })?;
        Ok(Self { link })
    }

    /// Records the duration of every database call in `latency`.
    pub fn with_latency(mut self, latency: prometheus::Histogram) -> Self {
        self.link = self.link.with_latency(latency);
        self
    }

    /// Inserts scored events in one statement (one round trip whatever the batch size).
    pub fn write_scored(&mut self, events: &[ScoredEvent]) -> Result<Inserted, StoreError> {
        self.insert_rows(events, insert_scored)
    }

    /// Inserts drift events in one statement.
    pub fn write_drifts(&mut self, drifts: &[DriftEvent]) -> Result<Inserted, StoreError> {
        self.insert_rows(drifts, insert_drifts)
    }

    /// Inserts alerts in one statement, and queues in the notification outbox (same
    /// statement, so both or neither) those whose `notify` flag is set.
    pub fn write_alerts(&mut self, alerts: &[(Alert, bool)]) -> Result<Inserted, StoreError> {
        self.insert_rows(alerts, insert_alerts)
    }

    /// Inserts `rows` with `insert` in one statement. If the database refuses the statement
    /// as data, the rows are inserted one by one to find the refused ones: those are
    /// reported, the others stored. Any other failure fails the whole batch.
    fn insert_rows<T>(
        &mut self,
        rows: &[T],
        insert: fn(&mut Client, &[T]) -> Result<u64, postgres::Error>,
    ) -> Result<Inserted, StoreError> {
        if rows.is_empty() {
            return Ok(Inserted::default());
        }
        match self.link.call(|client| insert(client, rows)) {
            Ok(new) => Ok(Inserted {
                new,
                rejected: Vec::new(),
            }),
            Err(e) if e.is_permanent() => {
                let mut inserted = Inserted::default();
                for (index, row) in rows.iter().enumerate() {
                    match self
                        .link
                        .call(|client| insert(client, std::slice::from_ref(row)))
                    {
                        Ok(new) => inserted.new += new,
                        Err(e) if e.is_permanent() => inserted.rejected.push(RejectedRow {
                            index,
                            error: format!(
                                "refused by the database (SQLSTATE {}): {e}",
                                e.sqlstate().unwrap_or("?")
                            ),
                        }),
                        Err(e) => return Err(e),
                    }
                }
                Ok(inserted)
            }
            Err(e) => Err(e),
        }
    }

    /// Records a published model version; returns whether it was new.
    pub fn write_model_version(&mut self, update: &ModelUpdate) -> Result<bool, StoreError> {
        let inserted = self.link.call(|client| {
            client.execute(
                "INSERT INTO model_versions (model_version, ts, reason, previous_auc, auc) \
                 VALUES ($1, to_timestamp($2::BIGINT / 1000.0), $3, $4, $5) \
                 ON CONFLICT (model_version, ts) DO NOTHING",
                &[
                    &(update.model_version as i64),
                    &update.timestamp_ms,
                    &update.reason,
                    &update.previous_auc,
                    &update.auc,
                ],
            )
        })?;
        Ok(inserted == 1)
    }

    /// Records a retraining job's outcome; returns whether it was new.
    pub fn write_job(
        &mut self,
        job: &crate::stages::retraining::JobOutcome,
    ) -> Result<bool, StoreError> {
        let inserted = self.link.call(|client| {
            client.execute(
                "INSERT INTO retraining_jobs (job_id, ts, reason, previous_version, candidate_version, previous_auc, candidate_auc, published, decision) \
                 VALUES ($1, to_timestamp($2::BIGINT / 1000.0), $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (job_id, ts) DO NOTHING",
                &[
                    &job.job.job_id,
                    &job.job.timestamp_ms,
                    &job.job.reason,
                    &(job.previous_version as i64),
                    &job.candidate_version.map(|v| v as i64),
                    &job.previous_auc,
                    &job.candidate_auc,
                    &job.published,
                    &job.decision,
                ],
            )
        })?;
        Ok(inserted == 1)
    }

    /// Rows in `table` (one of the pipeline tables).
    pub fn count(&mut self, table: Table) -> Result<u64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name());
        let row = self.link.call(|client| client.query_one(&sql, &[]))?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

fn insert_scored(client: &mut Client, events: &[ScoredEvent]) -> Result<u64, postgres::Error> {
    let column = |f: fn(&ScoredEvent) -> &str| events.iter().map(f).collect::<Vec<_>>();
    let ids = column(|e| &e.event_id);
    let cards = column(|e| &e.card_id);
    let phases = column(|e| &e.phase);
    let ts: Vec<i64> = events.iter().map(|e| e.timestamp_ms).collect();
    let scores: Vec<f64> = events.iter().map(|e| e.score).collect();
    let anomalies: Vec<bool> = events.iter().map(|e| e.is_anomaly).collect();
    let frauds: Vec<bool> = events.iter().map(|e| e.is_fraud).collect();
    let versions: Vec<i64> = events.iter().map(|e| e.model_version as i64).collect();
    let amounts: Vec<f64> = events.iter().map(|e| e.amount).collect();
    let merchants = column(|e| &e.merchant);
    client.execute(
        "INSERT INTO scored_events (event_id, ts, card_id, score, is_anomaly, is_fraud, model_version, amount, phase, merchant) \
         SELECT id, to_timestamp(ms / 1000.0), card, score, anomaly, fraud, version, amount, phase, merchant \
         FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::FLOAT8[], $5::BOOL[], $6::BOOL[], $7::BIGINT[], $8::FLOAT8[], $9::TEXT[], $10::TEXT[]) \
              AS t(id, ms, card, score, anomaly, fraud, version, amount, phase, merchant) \
         ON CONFLICT (event_id, ts) DO NOTHING",
        &[
            &ids, &ts, &cards, &scores, &anomalies, &frauds, &versions, &amounts, &phases,
            &merchants,
        ],
    )
}

fn insert_drifts(client: &mut Client, drifts: &[DriftEvent]) -> Result<u64, postgres::Error> {
    let ids: Vec<&str> = drifts.iter().map(|d| d.drift_id.as_str()).collect();
    let ts: Vec<i64> = drifts.iter().map(|d| d.timestamp_ms).collect();
    let detectors: Vec<&str> = drifts.iter().map(|d| d.detector.name()).collect();
    let events: Vec<&str> = drifts.iter().map(|d| d.event_id.as_str()).collect();
    let sequences: Vec<i64> = drifts.iter().map(|d| d.sequence as i64).collect();
    let versions: Vec<i64> = drifts.iter().map(|d| d.model_version as i64).collect();
    let details: Vec<&str> = drifts.iter().map(|d| d.detail.as_str()).collect();
    client.execute(
        "INSERT INTO drift_events (drift_id, ts, detector, event_id, sequence, model_version, detail) \
         SELECT id, to_timestamp(ms / 1000.0), detector, event, sequence, version, detail \
         FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::TEXT[]) \
              AS t(id, ms, detector, event, sequence, version, detail) \
         ON CONFLICT (drift_id, ts) DO NOTHING",
        &[&ids, &ts, &detectors, &events, &sequences, &versions, &details],
    )
}

/// The alerts, and the outbox rows of those to notify, in one statement: an alert is never
/// stored without its notification queued, nor the other way round.
fn insert_alerts(client: &mut Client, alerts: &[(Alert, bool)]) -> Result<u64, postgres::Error> {
    let ids: Vec<&str> = alerts.iter().map(|(a, _)| a.alert_id.as_str()).collect();
    let ts: Vec<i64> = alerts.iter().map(|(a, _)| a.timestamp_ms).collect();
    let kinds: Vec<&str> = alerts.iter().map(|(a, _)| a.kind.name()).collect();
    let severities: Vec<&str> = alerts.iter().map(|(a, _)| a.severity.name()).collect();
    let events: Vec<&str> = alerts.iter().map(|(a, _)| a.event_id.as_str()).collect();
    let cards: Vec<Option<&str>> = alerts.iter().map(|(a, _)| a.card_id.as_deref()).collect();
    let scores: Vec<Option<f64>> = alerts.iter().map(|(a, _)| a.score).collect();
    let messages: Vec<&str> = alerts.iter().map(|(a, _)| a.message.as_str()).collect();
    let features: Vec<String> = alerts
        .iter()
        .map(|(a, _)| serde_json::to_string(&a.top_features).unwrap_or_else(|_| "[]".into()))
        .collect();
    let notify: Vec<bool> = alerts.iter().map(|(_, notify)| *notify).collect();
    let row = client.query_one(
        "WITH input AS ( \
             SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::FLOAT8[], $8::TEXT[], $9::TEXT[], $10::BOOL[]) \
                  AS t(id, ms, kind, severity, event, card, score, message, features, notify)), \
         stored AS ( \
             INSERT INTO alerts (alert_id, ts, kind, severity, event_id, card_id, score, message, top_features) \
             SELECT id, to_timestamp(ms / 1000.0), kind, severity, event, card, score, message, features::JSONB FROM input \
             ON CONFLICT (alert_id, ts) DO NOTHING RETURNING 1), \
         queued AS ( \
             INSERT INTO notifications (alert_id, severity, text) \
             SELECT id, severity, '[' || severity || '] ' || message FROM input WHERE notify \
             ON CONFLICT (alert_id) DO NOTHING RETURNING 1) \
         SELECT (SELECT COUNT(*) FROM stored), (SELECT COUNT(*) FROM queued)",
        &[
            &ids, &ts, &kinds, &severities, &events, &cards, &scores, &messages, &features,
            &notify,
        ],
    )?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// The pipeline's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `scored_events`.
    ScoredEvents,
    /// `drift_events`.
    DriftEvents,
    /// `alerts`.
    Alerts,
    /// `model_versions`.
    ModelVersions,
    /// `retraining_jobs`.
    RetrainingJobs,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::ScoredEvents => "scored_events",
            Self::DriftEvents => "drift_events",
            Self::Alerts => "alerts",
            Self::ModelVersions => "model_versions",
            Self::RetrainingJobs => "retraining_jobs",
        }
    }
}
