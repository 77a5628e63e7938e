-- The pipeline's tables. Applied at every service start-up: every statement is idempotent.
-- Runs on plain PostgreSQL 15; turns the tables into TimescaleDB hypertables when the
-- extension is available. Each table's timestamp column `ts` is the partition key, so
-- uniqueness is always (id, ts): TimescaleDB rejects UNIQUE indexes without it.

-- Ids are compared byte by byte (COLLATE "C"): they are opaque, and locale-aware comparison
-- made the unique indexes most of PostgreSQL's cost per inserted row (docs/BENCHMARKS.md).
CREATE TABLE IF NOT EXISTS scored_events (
    event_id      TEXT COLLATE "C" NOT NULL,
    ts            TIMESTAMPTZ      NOT NULL,
    card_id       TEXT COLLATE "C" NOT NULL,
    score         DOUBLE PRECISION NOT NULL,
    is_anomaly    BOOLEAN          NOT NULL,
    is_fraud      BOOLEAN          NOT NULL,
    model_version BIGINT           NOT NULL,
    amount        DOUBLE PRECISION NOT NULL,
    phase         TEXT             NOT NULL,
    -- When the row was written: ingested_at - the producer's send time is the pipeline's
    -- end-to-end latency (scripts/bench-services measures it).
    ingested_at   TIMESTAMPTZ      NOT NULL DEFAULT now(),
    -- For the fraud dashboards (top merchants by alerts); '' for rows written before it.
    merchant      TEXT             NOT NULL DEFAULT '',
    UNIQUE (event_id, ts)
);
-- Tables created before the column existed.
ALTER TABLE scored_events ADD COLUMN IF NOT EXISTS ingested_at TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE scored_events ADD COLUMN IF NOT EXISTS merchant TEXT NOT NULL DEFAULT '';
-- The unique index on (event_id, ts) serves look-ups by event; a second index on the same
-- columns (created by earlier versions) only cost every insert.
DROP INDEX IF EXISTS scored_events_event_id_ts;
CREATE INDEX IF NOT EXISTS scored_events_card_ts ON scored_events (card_id, ts DESC);

CREATE TABLE IF NOT EXISTS drift_events (
    drift_id      TEXT COLLATE "C" NOT NULL,
    ts            TIMESTAMPTZ NOT NULL,
    detector      TEXT        NOT NULL,
    event_id      TEXT        NOT NULL,
    sequence      BIGINT      NOT NULL,
    model_version BIGINT      NOT NULL,
    detail        TEXT        NOT NULL,
    UNIQUE (drift_id, ts)
);

CREATE TABLE IF NOT EXISTS alerts (
    alert_id     TEXT COLLATE "C" NOT NULL,
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
    job_id            TEXT COLLATE "C" NOT NULL,
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

-- Tables created before the ids were COLLATE "C": convert them once (this rebuilds their
-- indexes), and never again.
DO $$
DECLARE
    id_column RECORD;
BEGIN
    FOR id_column IN
        SELECT c.relname AS table_name, a.attname AS column_name
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema()
          AND (c.relname, a.attname) IN (('scored_events', 'event_id'), ('scored_events', 'card_id'),
                                         ('drift_events', 'drift_id'), ('alerts', 'alert_id'),
                                         ('retraining_jobs', 'job_id'))
          AND a.attcollation <> (SELECT oid FROM pg_collation WHERE collname = 'C' LIMIT 1)
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE TEXT COLLATE "C"',
                       id_column.table_name, id_column.column_name);
    END LOOP;
END
$$;

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

-- The notification outbox: the alert router queues here, in the statement that stores the
-- alert, every alert to send to Slack; its notifier thread sends them, retries failures with
-- backoff and marks them `sent` or, past the maximum age or refused by Slack, `failed`.
-- A work queue of mutable rows, so not a hypertable.
CREATE TABLE IF NOT EXISTS notifications (
    alert_id        TEXT COLLATE "C" PRIMARY KEY,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    severity        TEXT        NOT NULL,
    text            TEXT        NOT NULL,
    state           TEXT        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    finished_at     TIMESTAMPTZ,
    -- The claim that may record this try's outcome: a notifier whose lease ran out cannot
    -- overwrite the outcome of the one that took the notification over.
    claim_token     TEXT
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (next_attempt_at)
    WHERE state = 'pending';
