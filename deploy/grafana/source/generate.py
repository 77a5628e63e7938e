#!/usr/bin/env python3
"""Writes the dashboards' JSON (../dashboards/*.json) from the panel lists below, so that
every panel has the same layout rules and the JSON stays reviewable as Python. Run it after
editing a panel: python3 deploy/grafana/source/generate.py"""

import json
import pathlib

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
TIMESCALE = {"type": "grafana-postgresql-datasource", "uid": "timescaledb"}
HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent / "dashboards"


def layout(panels, width=12, height=8):
    """Two panels a row, in order."""
    for index, panel in enumerate(panels):
        panel["id"] = index + 1
        panel["gridPos"] = {"x": (index % 2) * width, "y": (index // 2) * height, "w": width, "h": height}
    return panels


def prometheus_panel(title, description, targets, unit="short", kind="timeseries"):
    return {
        "title": title,
        "description": description,
        "type": kind,
        "datasource": PROMETHEUS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def sql_panel(title, description, sql, kind="timeseries", fmt="time_series", unit="short"):
    return {
        "title": title,
        "description": description,
        "type": kind,
        "datasource": TIMESCALE,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": "A", "datasource": TIMESCALE, "editorMode": "code", "format": fmt, "rawQuery": True, "rawSql": sql}
        ],
    }


def sql_annotation(name, color, sql):
    """Marks on every time-series panel, from a query returning time, text and tags."""
    return {
        "name": name,
        "enable": True,
        "iconColor": color,
        "datasource": TIMESCALE,
        "target": {"refId": "Anno", "datasource": TIMESCALE, "editorMode": "code", "format": "table", "rawQuery": True, "rawSql": sql},
    }


def dashboard(uid, title, description, panels, time_from, annotations=()):
    return {
        "annotations": {"list": list(annotations)},
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["anomaly"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": time_from, "to": "now"},
        "panels": layout(panels),
    }


OVERVIEW = dashboard(
    "anomaly-pipeline",
    "Anomaly pipeline: overview",
    "The six services from their /metrics: throughput, latency, lag, errors, models, drifts, alerts.",
    [
        prometheus_panel(
            "Throughput per service",
            "Records consumed per second by each service (all instances).",
            [("service:anomaly_events_in:rate1m", "{{service}} in"), ("service:anomaly_events_out:rate1m", "{{service}} out")],
            unit="ops",
        ),
        prometheus_panel(
            "Processing time per record",
            "p50 and p99 of each record's share of its batch's processing time, over 5 minutes.",
            [
                ("service:anomaly_processing_seconds:p50_5m", "{{service}} p50"),
                ("service:anomaly_processing_seconds:p99_5m", "{{service}} p99"),
            ],
            unit="s",
        ),
        prometheus_panel(
            "Consumer lag",
            "Records waiting per service and topic (the partitions' ends minus the next offset to process).",
            [("sum by (service, topic) (anomaly_consumer_lag)", "{{service}} {{topic}}")],
        ),
        prometheus_panel(
            "Errors by kind",
            "Errors per second by service and kind (docs/OPERATIONS.md lists the kinds).",
            [("service_kind:anomaly_errors:rate5m", "{{service}} {{kind}}")],
            unit="ops",
        ),
        prometheus_panel(
            "Dead letters",
            "Records sent to dead-letters per second: bad input, refused rows.",
            [("service:anomaly_dead_letters:rate5m", "{{service}}")],
            unit="ops",
        ),
        prometheus_panel(
            "Dependency latency p99",
            "p99 duration of calls to Redis, PostgreSQL and Slack, per service.",
            [("service_dependency:anomaly_dependency_seconds:p99_5m", "{{service}} {{dependency}}")],
            unit="s",
        ),
        prometheus_panel(
            "Active model version per instance",
            "The model each ml-inference instance scores with: all should show the newest.",
            [("anomaly_active_model_version{service=\"ml-inference\"}", "{{instance}}")],
        ),
        prometheus_panel(
            "Drifts",
            "Drifts detected in each 5 minutes, by detector.",
            [("sum by (detector) (increase(anomaly_drifts_total[5m]))", "{{detector}}")],
        ),
        prometheus_panel(
            "Alerts by severity",
            "Anomaly alerts per second raised by ml-inference, by severity.",
            [("sum by (severity) (rate(anomaly_alerts_total[5m]))", "{{severity}}")],
            unit="ops",
        ),
        prometheus_panel(
            "Retraining jobs and notifications",
            "Retraining jobs by outcome and Slack notifications by outcome, per 5 minutes.",
            [
                ("sum by (outcome) (increase(anomaly_retraining_jobs_total[5m]))", "job {{outcome}}"),
                ("sum by (outcome) (increase(anomaly_notifications_total[5m]))", "notification {{outcome}}"),
            ],
        ),
        prometheus_panel(
            "Drift detectors' owner",
            "1 on the drift-detector instance that owns the detectors; exactly one should.",
            [("anomaly_drift_leader", "{{instance}}")],
        ),
        prometheus_panel(
            "Versions running",
            "Which build each instance runs.",
            [("anomaly_build_info", "{{service}} {{instance}} {{version}}")],
            kind="table",
        ),
    ],
    "now-1h",
)

FRAUD = dashboard(
    "anomaly-fraud",
    "Anomaly pipeline: fraud view",
    "What the services stored in TimescaleDB: anomalies, alerts, drifts, models, retraining.",
    [
        sql_panel(
            "Anomaly and fraud rate",
            "Share of scored transactions flagged as anomalies, and of labelled fraud, per 5 minutes of event time.",
            "SELECT date_bin('5 minutes', ts, TIMESTAMPTZ 'epoch') AS time, "
            "avg(is_anomaly::int)::float8 AS anomaly_rate, avg(is_fraud::int)::float8 AS fraud_rate "
            "FROM scored_events WHERE $__timeFilter(ts) GROUP BY 1 ORDER BY 1",
            unit="percentunit",
        ),
        sql_panel(
            "Alerts by severity",
            "Alerts stored per 5 minutes of event time, by severity.",
            "SELECT date_bin('5 minutes', ts, TIMESTAMPTZ 'epoch') AS time, severity AS metric, count(*) AS value "
            "FROM alerts WHERE $__timeFilter(ts) GROUP BY 1, 2 ORDER BY 1",
        ),
        sql_panel(
            "Top cards by anomaly alerts",
            "The ten cards with the most anomaly alerts in the range.",
            "SELECT card_id, count(*) AS alerts, max(score) AS top_score FROM alerts "
            "WHERE kind = 'anomaly' AND $__timeFilter(ts) GROUP BY card_id ORDER BY alerts DESC, card_id LIMIT 10",
            kind="table",
            fmt="table",
        ),
        sql_panel(
            "Top merchants by anomaly alerts",
            "The ten merchants whose transactions raised the most anomaly alerts in the range.",
            "SELECT s.merchant, count(*) AS alerts, max(a.score) AS top_score FROM alerts a "
            "JOIN scored_events s ON s.event_id = a.event_id AND s.ts = a.ts "
            "WHERE a.kind = 'anomaly' AND $__timeFilter(a.ts) GROUP BY s.merchant ORDER BY alerts DESC, s.merchant LIMIT 10",
            kind="table",
            fmt="table",
        ),
        sql_panel(
            "Drift events",
            "Every drift the detectors found, on the event-time line, with its detector and model.",
            "SELECT ts AS time, detector, model_version, detail FROM drift_events "
            "WHERE $__timeFilter(ts) ORDER BY ts",
            kind="table",
            fmt="table",
        ),
        sql_panel(
            "Model versions",
            "Each published model: when, why, and its AUC against the model it replaced.",
            "SELECT ts AS time, model_version, previous_auc, auc, reason FROM model_versions "
            "WHERE $__timeFilter(ts) ORDER BY ts",
            kind="table",
            fmt="table",
        ),
        sql_panel(
            "Retraining decisions",
            "Every retraining job, published or kept, with both models' AUC and the decision.",
            "SELECT ts AS time, previous_version, candidate_version, previous_auc, candidate_auc, published, decision "
            "FROM retraining_jobs WHERE $__timeFilter(ts) ORDER BY ts",
            kind="table",
            fmt="table",
        ),
        sql_panel(
            "Scored transactions",
            "Scored transactions per 5 minutes of event time, by model version.",
            "SELECT date_bin('5 minutes', ts, TIMESTAMPTZ 'epoch') AS time, 'model ' || model_version AS metric, "
            "count(*) AS value FROM scored_events WHERE $__timeFilter(ts) GROUP BY 1, 2 ORDER BY 1",
        ),
    ],
    "now-1y",
    annotations=[
        sql_annotation(
            "Drifts",
            "orange",
            "SELECT ts AS time, detector || ' drift: ' || detail AS text, detector AS tags "
            "FROM drift_events WHERE $__timeFilter(ts) ORDER BY ts",
        ),
        sql_annotation(
            "Models published",
            "green",
            "SELECT ts AS time, 'model ' || model_version || ' published (AUC ' || coalesce(round(auc::numeric, 4)::text, 'n/a') || '): ' || reason AS text, "
            "'model' AS tags FROM model_versions WHERE $__timeFilter(ts) ORDER BY ts",
        ),
    ],
)

for name, board in [("pipeline-overview", OVERVIEW), ("fraud-view", FRAUD)]:
    (OUT / f"{name}.json").write_text(json.dumps(board, indent=2) + "\n")
