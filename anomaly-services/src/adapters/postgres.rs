//! The event store in PostgreSQL/TimescaleDB: idempotent schema, idempotent batch inserts.

use postgres::{Client, NoTls, Transaction};
use thiserror::Error;

use crate::messages::{Alert, DriftEvent, ModelUpdate, ScoredEvent};

/// The schema, applied idempotently at start-up.
pub const SCHEMA: &str = include_str!("../../sql/schema.sql");

/// Advisory lock key serializing schema application ("ANOMALY" in ASCII).
const SCHEMA_LOCK: i64 = 0x0041_4E4F_4D41_4C59;

/// A database failure (the message never contains the connection password).
#[derive(Debug, Error)]
#[error("database: {0}")]
pub struct StoreError(#[from] postgres::Error);

/// Writes the pipeline's rows. Every insert is `ON CONFLICT DO NOTHING` on `(id, ts)`, so a
/// batch replayed after a crash adds nothing twice.
pub struct PgEventStore {
    client: Client,
}

impl PgEventStore {
    /// Connects to `url`, uses (creating it if needed) the schema `schema` (`public` in
    /// production; tests use their own), and applies the tables.
    pub fn connect(url: &str, schema: &str) -> Result<Self, StoreError> {
        let mut client = Client::connect(url, NoTls)?;
        let quoted = quote_identifier(schema);
        // Services start together: `IF NOT EXISTS` alone races between connections (both see
        // no table, one fails on the catalog's unique index), so the schema is applied under
        // a transaction-scoped advisory lock.
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {quoted}; SET LOCAL search_path TO {quoted};"
        ))?;
        tx.batch_execute(SCHEMA)?;
        tx.commit()?;
        client.batch_execute(&format!("SET search_path TO {quoted};"))?;
        Ok(Self { client })
    }

    /// Inserts scored events in one statement (one round trip whatever the batch size);
    /// returns how many were new.
    pub fn write_scored(&mut self, events: &[ScoredEvent]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let column = |f: fn(&ScoredEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
        let ids = column(|e| e.event_id.clone());
        let cards = column(|e| e.card_id.clone());
        let phases = column(|e| e.phase.clone());
        let ts: Vec<i64> = events.iter().map(|e| e.timestamp_ms).collect();
        let scores: Vec<f64> = events.iter().map(|e| e.score).collect();
        let anomalies: Vec<bool> = events.iter().map(|e| e.is_anomaly).collect();
        let frauds: Vec<bool> = events.iter().map(|e| e.is_fraud).collect();
        let versions: Vec<i64> = events.iter().map(|e| e.model_version as i64).collect();
        let amounts: Vec<f64> = events.iter().map(|e| e.amount).collect();
        Ok(self.client.execute(
            "INSERT INTO scored_events (event_id, ts, card_id, score, is_anomaly, is_fraud, model_version, amount, phase) \
             SELECT id, to_timestamp(ms / 1000.0), card, score, anomaly, fraud, version, amount, phase \
             FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::FLOAT8[], $5::BOOL[], $6::BOOL[], $7::BIGINT[], $8::FLOAT8[], $9::TEXT[]) \
                  AS t(id, ms, card, score, anomaly, fraud, version, amount, phase) \
             ON CONFLICT (event_id, ts) DO NOTHING",
            &[
                &ids, &ts, &cards, &scores, &anomalies, &frauds, &versions, &amounts, &phases,
            ],
        )?)
    }

    /// Inserts drift events; returns how many were new.
    pub fn write_drifts(&mut self, drifts: &[DriftEvent]) -> Result<u64, StoreError> {
        if drifts.is_empty() {
            return Ok(0);
        }
        self.in_transaction(|tx| {
            let statement = tx.prepare(
                "INSERT INTO drift_events (drift_id, ts, detector, event_id, sequence, model_version, detail) \
                 VALUES ($1, to_timestamp($2::BIGINT / 1000.0), $3, $4, $5, $6, $7) \
                 ON CONFLICT (drift_id, ts) DO NOTHING",
            )?;
            let mut inserted = 0;
            for d in drifts {
                inserted += tx.execute(
                    &statement,
                    &[
                        &d.drift_id,
                        &d.timestamp_ms,
                        &d.detector.name(),
                        &d.event_id,
                        &(d.sequence as i64),
                        &(d.model_version as i64),
                        &d.detail,
                    ],
                )?;
            }
            Ok(inserted)
        })
    }

    /// Inserts alerts in one statement; returns how many were new.
    pub fn write_alerts(&mut self, alerts: &[Alert]) -> Result<u64, StoreError> {
        if alerts.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = alerts.iter().map(|a| a.alert_id.as_str()).collect();
        let ts: Vec<i64> = alerts.iter().map(|a| a.timestamp_ms).collect();
        let kinds: Vec<String> = alerts
            .iter()
            .map(|a| {
                serde_json::to_value(a.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect();
        let severities: Vec<&str> = alerts.iter().map(|a| a.severity.name()).collect();
        let events: Vec<&str> = alerts.iter().map(|a| a.event_id.as_str()).collect();
        let cards: Vec<Option<&str>> = alerts.iter().map(|a| a.card_id.as_deref()).collect();
        let scores: Vec<Option<f64>> = alerts.iter().map(|a| a.score).collect();
        let messages: Vec<&str> = alerts.iter().map(|a| a.message.as_str()).collect();
        let features: Vec<String> = alerts
            .iter()
            .map(|a| serde_json::to_string(&a.top_features).unwrap_or_else(|_| "[]".into()))
            .collect();
        Ok(self.client.execute(
            "INSERT INTO alerts (alert_id, ts, kind, severity, event_id, card_id, score, message, top_features) \
             SELECT id, to_timestamp(ms / 1000.0), kind, severity, event, card, score, message, features::JSONB \
             FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::FLOAT8[], $8::TEXT[], $9::TEXT[]) \
                  AS t(id, ms, kind, severity, event, card, score, message, features) \
             ON CONFLICT (alert_id, ts) DO NOTHING",
            &[
                &ids, &ts, &kinds, &severities, &events, &cards, &scores, &messages, &features,
            ],
        )?)
    }

    /// Records a published model version; returns whether it was new.
    pub fn write_model_version(&mut self, update: &ModelUpdate) -> Result<bool, StoreError> {
        let inserted = self.client.execute(
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
        )?;
        Ok(inserted == 1)
    }

    /// Records a retraining job's outcome; returns whether it was new.
    pub fn write_job(
        &mut self,
        job: &crate::stages::retraining::JobOutcome,
    ) -> Result<bool, StoreError> {
        let inserted = self.client.execute(
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
        )?;
        Ok(inserted == 1)
    }

    /// Rows in `table` (one of the pipeline tables).
    pub fn count(&mut self, table: Table) -> Result<u64, StoreError> {
        let row = self
            .client
            .query_one(&format!("SELECT COUNT(*) FROM {}", table.name()), &[])?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    fn in_transaction<R>(
        &mut self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<R, postgres::Error>,
    ) -> Result<R, StoreError> {
        let mut tx = self.client.transaction()?;
        let result = f(&mut tx)?;
        tx.commit()?;
        Ok(result)
    }
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

/// `name` as a quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
