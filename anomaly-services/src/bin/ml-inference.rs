//! ml-inference: `features` -> score then learn -> `scores` and `alerts`; hot-swaps models
//! announced on `model-updates`.

use std::process::ExitCode;

use anomaly_core::anomaly::Ensemble;
use anomaly_core::features::TransactionFeatures;
use anomaly_services::adapters::learned_models::RedisLearnedModels;
use anomaly_services::adapters::redis::RedisModelStore;
use anomaly_services::cli::MlInferenceCommand;
use anomaly_services::pipeline::default_model;
use anomaly_services::services::main::{ServiceError, connect_kafka, connect_redis, service_main};
use anomaly_services::services::ml_inference::{
    FEATURES, InferenceService, MODEL_UPDATES, ModelSource, restore_learned,
};
use anomaly_services::stages::inference::Inference;
use anomaly_services::startup::retry;
use log::{info, warn};

/// A checkpoint not renewed for this long (its instance is gone) expires.
const CHECKPOINTS_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

fn main() -> ExitCode {
    service_main::<MlInferenceCommand>(8002, |ctx| {
        let config = &ctx.config;
        let mut models = connect_redis(config, |url| {
            RedisModelStore::connect(url, &config.redis_prefix)
        })?
        .with_latency(
            ctx.status
                .metrics
                .latency(anomaly_services::failure::Dependency::Redis),
        );
        // A model published by a version before `active_version` existed: record its version,
        // which the other instances' checks compare against.
        if let Err(e) = models.adopt_unversioned_model() {
            warn!(error = e.to_string().as_str(); "Could not record the active model's version");
        }
        let names: Vec<String> = TransactionFeatures::NAMES
            .iter()
            .map(|s| s.to_string())
            .collect();
        let fresh = Ensemble::with_features(default_model(), &names)
            .map_err(|e| ServiceError::Model(e.to_string()))?;
        let mut stage = Inference::new(fresh, 1, config.anomaly_threshold);
        let published = retry(
            "model",
            5,
            std::time::Duration::from_secs(5),
            1,
            std::time::Duration::from_secs(5),
            || {
                models
                    .load_active()?
                    .ok_or_else(|| "no active model yet".to_string())
            },
        );
        match published.map(|bytes| stage.swap(&bytes).map_err(|e| e.to_string())) {
            Ok(Ok(version)) => info!(version = version; "Loaded the active model"),
            Ok(Err(e)) | Err(e) => {
                warn!(error = e.as_str(); "Starting with a fresh model, version 1")
            }
        }
        let checkpoints = match config.model_checkpoint_interval {
            None => None,
            Some(interval) => {
                let mut store = connect_redis(config, |url| {
                    RedisLearnedModels::connect(
                        url,
                        &config.redis_prefix,
                        &config.instance_id,
                        CHECKPOINTS_KEPT_FOR,
                    )
                })?
                .with_latency(
                    ctx.status
                        .metrics
                        .latency(anomaly_services::failure::Dependency::Redis),
                );
                restore_learned(&mut stage, &mut store, &ctx.status.metrics);
                Some((store, interval))
            }
        };
        let io = connect_kafka(config, "ml-inference", &[FEATURES, MODEL_UPDATES])?;
        info!(instance = config.instance_id.as_str(); "Service started");
        let mut handler = InferenceService::new(stage, models, ctx.status.clone());
        if let Some((store, interval)) = checkpoints {
            handler = handler.with_checkpoints(Box::new(store), interval);
        }
        let outcome = ctx.consume(&io, &mut handler);
        // What was learned since the last checkpoint is kept for the next start.
        if let Err(e) = handler.save_checkpoint() {
            warn!(error = e.to_string().as_str(); "Could not checkpoint the learned model at shutdown");
        }
        outcome
    })
}
