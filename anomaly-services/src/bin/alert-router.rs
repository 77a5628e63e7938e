//! alert-router: `alerts` -> the alerts table and the notification outbox; a notifier thread
//! sends the outbox to Slack.

use std::process::ExitCode;

use anomaly_services::adapters::outbox::PgOutbox;
use anomaly_services::cli::AlertRouterCommand;
use anomaly_services::config::redact_url;
use anomaly_services::failure::Dependency::Postgres;
use anomaly_services::services::alert_router::{ALERTS, AlertRouterService};
use anomaly_services::services::main::{
    ServiceError, connect_event_store, connect_kafka, service_main,
};
use anomaly_services::services::notifier::{NotifierSettings, SlackNotifier, run_notifier};
use anomaly_services::stages::alert_routing::AlertRouter;
use log::info;

fn main() -> ExitCode {
    service_main::<AlertRouterCommand>(8005, |ctx| {
        let config = &ctx.config;
        let store = connect_event_store(config)?.with_latency(ctx.status.metrics.latency(Postgres));
        let io = connect_kafka(config, "alert-router", &[ALERTS])?;
        let notifier = match config.slack_webhook_url.clone() {
            Some(url) => {
                let mut outbox =
                    PgOutbox::connect(config.timescale_url.expose(), &config.timescale_schema)
                        .map_err(|e| ServiceError::Connect {
                            what: "database (notification outbox)",
                            address: redact_url(config.timescale_url.expose()),
                            detail: e.to_string(),
                        })?
                        .with_latency(ctx.status.metrics.latency(Postgres));
                let settings = NotifierSettings {
                    max_age: config.notify_max_age,
                    max_retry_wait: config.notify_max_retry_wait,
                    ..NotifierSettings::default()
                };
                let status = ctx.status.clone();
                let shutdown = ctx.shutdown.clone();
                Some(
                    std::thread::Builder::new()
                        .name("notifier".into())
                        .spawn(move || {
                            let mut slack = SlackNotifier::new(url);
                            run_notifier(&mut outbox, &mut slack, &settings, &status, &shutdown);
                        })
                        .map_err(|e| ServiceError::Start {
                            what: "start the notifier thread".into(),
                            source: e.into(),
                        })?,
                )
            }
            None => None,
        };
        info!(slack = notifier.is_some(); "Service started");
        let router = AlertRouter::new(config.min_slack_severity, 60_000);
        let mut handler =
            AlertRouterService::new(router, store, notifier.is_some(), ctx.status.clone());
        let outcome = ctx.consume(&io, &mut handler);
        // The loop ends on shutdown or on an error; either way the notifier stops too.
        ctx.shutdown
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(notifier) = notifier
            && notifier.join().is_err()
        {
            return Err(ServiceError::Panicked("notifier"));
        }
        outcome
    })
}
