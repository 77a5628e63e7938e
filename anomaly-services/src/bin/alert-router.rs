//! alert-router: `alerts` -> the alerts table, and Slack for those at or above
//! MIN_SLACK_SEVERITY.

use std::process::ExitCode;

use anomaly_services::services::alert_router::{ALERTS, AlertRouterService, SlackNotifier};
use anomaly_services::services::main::{connect_event_store, connect_kafka, service_main};
use anomaly_services::stages::alert_routing::AlertRouter;
use log::info;

const HELP: &str = "\
alert-router: stores every alert from `alerts` in PostgreSQL and posts those at or above
MIN_SLACK_SEVERITY to SLACK_WEBHOOK_URL (5 s timeout, retries with backoff, HTTP 429
Retry-After honoured, one message per card/severity a minute); the webhook URL is never
logged. Environment (docs/OPERATIONS.md): KAFKA_BOOTSTRAP_SERVERS, TIMESCALE_URL,
SLACK_WEBHOOK_URL, MIN_SLACK_SEVERITY, HTTP_PORT (default 8005), HTTP_BIND, RUST_LOG. Stops
cleanly on SIGTERM or SIGINT.";

fn main() -> ExitCode {
    service_main("alert-router", 8005, HELP, |ctx| {
        let config = &ctx.config;
        let store = connect_event_store(config)?;
        let io = connect_kafka(config, "alert-router", &[ALERTS])?;
        let slack = config.slack_webhook_url.clone().map(SlackNotifier::new);
        info!(slack = slack.is_some(); "Service started");
        let router = AlertRouter::new(config.min_slack_severity, 60_000);
        let mut handler = AlertRouterService::new(router, store, slack, ctx.status.clone());
        anomaly_services::service::run(&io, &mut handler, &ctx.status, &ctx.shutdown)
            .map_err(|e| e.to_string())
    })
}
