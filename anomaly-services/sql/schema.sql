-- The pipeline's tables. Applied at every service start-up: every statement is idempotent.
-- Runs on plain PostgreSQL 15; turns the tables into TimescaleDB hypertables when the
-- extension is available. Each table's timestamp column `ts` is the partition key, so
-- uniqueness is always (id, ts): TimescaleDB rejects UNIQUE indexes without it.

CREATE TABLE IF NOT EXISTS scored_events (
    event_id      TEXT             NOT NULL,
    ts            TIMESTAMPTZ      NOT NULL,
    card_id       TEXT             NOT NULL,
    score         DOUBLE PRECISION NOT NULL,
    is_anomaly    BOOLEAN          NOT NULL,
    is_fraud      BOOLEAN          NOT NULL,
    model_version BIGINT           NOT NULL,
    amount        DOUBLE PRECISION NOT NULL,
    phase         TEXT             NOT NULL,
    UNIQUE (event_id, ts)
);
CREATE INDEX IF NOT EXISTS scored_events_event_id_ts ON scored_events (event_id, ts DESC);
CREATE INDEX IF NOT EXISTS scored_events_card_ts ON scored_events (card_id, ts DESC);

CREATE TABLE IF NOT EXISTS drift_events (
    drift_id      TEXT        NOT NULL,
    ts            TIMESTAMPTZ NOT NULL,
    detector      TEXT        NOT NULL,
    event_id      TEXT        NOT NULL,
    sequence      BIGINT      NOT NULL,
    model_version BIGINT      NOT NULL,
    detail        TEXT        NOT NULL,
    UNIQUE (drift_id, ts)
);

CREATE TABLE IF NOT EXISTS alerts (
    alert_id     TEXT             NOT NULL,
    ts           TIMESTAMPTZ      NOT NULL,
    kind         TEXT             NOT NULL,
    severity     TEXT             NOT NULL,
    event_id     TEXT             NOT NULL,
    card_id      TEXT,
    score        DOUBLE PRECISION,
    message      TEXT             NOT NULL,
    top_features JSONB            NOT NULL DEFAULT '[]',
    UNIQUE (alert_id, ts)
);
CREATE INDEX IF NOT EXISTS alerts_severity_ts ON alerts (severity, ts DESC);

CREATE TABLE IF NOT EXISTS model_versions (
    model_version BIGINT           NOT NULL,
    ts            TIMESTAMPTZ      NOT NULL,
    reason        TEXT             NOT NULL,
    previous_auc  DOUBLE PRECISION,
    auc           DOUBLE PRECISION,
    UNIQUE (model_version, ts)
);

-- Every retraining job, published or not, with both models' figures and the decision.
CREATE TABLE IF NOT EXISTS retraining_jobs (
    job_id            TEXT             NOT NULL,
    ts                TIMESTAMPTZ      NOT NULL,
    reason            TEXT             NOT NULL,
    previous_version  BIGINT           NOT NULL,
    candidate_version BIGINT,
    previous_auc      DOUBLE PRECISION,
    candidate_auc     DOUBLE PRECISION,
    published         BOOLEAN          NOT NULL,
    decision          TEXT             NOT NULL,
    UNIQUE (job_id, ts)
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('scored_events', 'ts', if_not_exists => TRUE);
        PERFORM create_hypertable('drift_events', 'ts', if_not_exists => TRUE);
        PERFORM create_hypertable('alerts', 'ts', if_not_exists => TRUE);
        PERFORM create_hypertable('model_versions', 'ts', if_not_exists => TRUE);
        PERFORM create_hypertable('retraining_jobs', 'ts', if_not_exists => TRUE);
    END IF;
END
$$;
