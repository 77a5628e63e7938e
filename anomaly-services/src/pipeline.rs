//! All six stages in one process, with in-memory stand-ins for Kafka, Redis, PostgreSQL and
//! Slack: the project's main job, and the reference the services are tested against.

use std::time::{Duration, Instant};

use anomaly_core::anomaly::{
    AnomalyError, Ensemble, EnsembleParams, HstParams, MemberKind, MemberParams, RcfParams,
};
use anomaly_core::features::{CardState, InMemoryStore, TransactionFeatures};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::generator::{Generator, GeneratorParams, PhaseBoundary};
use crate::messages::{
    Alert, DeadLetter, DriftEvent, ModelUpdate, ScoredEvent, Severity, dead_letter,
};
use crate::stages::alert_routing::{AlertRouter, Routing};
use crate::stages::drift_monitor::{DriftMonitor, drift_alert};
use crate::stages::feature_engineering::FeatureEngineer;
use crate::stages::inference::Inference;
use crate::stages::retraining::{JobOutcome, Retrainer, RetrainingParams};

/// Everything the embedded pipeline can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineConfig {
    /// The synthetic stream (seed, events, cards, phases).
    pub generator: GeneratorParams,
    /// Wall-clock pacing: event time runs this many times faster than real time; 0 runs as
    /// fast as possible.
    pub replay_speed: f64,
    /// The model.
    pub model: EnsembleParams,
    /// Scores at or above it are anomalies.
    pub threshold: f64,
    /// Alerts at or above it are sent to the notifier.
    pub min_notify_severity: Severity,
    /// Retraining triggers and judgement.
    pub retraining: RetrainingParams,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            generator: GeneratorParams::default(),
            replay_speed: 0.0,
            model: default_model(),
            threshold: DEFAULT_THRESHOLD,
            min_notify_severity: Severity::High,
            retraining: RetrainingParams::default(),
        }
    }
}

/// The default anomaly threshold: 0.85, not the Python system's 0.7. The ensemble puts ordinary
/// traffic between 0.5 and 0.8 (HalfSpaceTrees' own scale), so 0.7 flags a tenth of it; see
/// `docs/PIPELINE.md` for the precision/recall trade-off behind this choice.
pub const DEFAULT_THRESHOLD: f64 = 0.85;

/// The default model: River's HST defaults (10 trees of height 8, window 250: the best speed
/// for its accuracy on our benchmarks) and SAD on the amount z-score feature, weighted 0.7/0.3.
pub fn default_model() -> EnsembleParams {
    EnsembleParams {
        hst: HstParams {
            seed: Some(1),
            ..HstParams::default()
        },
        sad_feature: "amount_zscore".into(),
        ..EnsembleParams::default()
    }
}

/// `model` with a Random Cut Forest (AWS's defaults: 50 trees, samples of 256) joining the
/// ensemble at the trees' weight, seeded with `seed`.
///
/// ```
/// use anomaly_services::pipeline::{default_model, with_random_cut_forest};
///
/// let model = with_random_cut_forest(default_model(), 42);
/// assert_eq!(model.members.len(), 1);
/// ```
pub fn with_random_cut_forest(mut model: EnsembleParams, seed: u64) -> EnsembleParams {
    model.members.push(MemberParams {
        detector: MemberKind::Rcf(RcfParams {
            seed: Some(seed),
            ..RcfParams::default()
        }),
        weight: model.hst_weight,
    });
    model
}

/// Why the pipeline stopped.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// The model could not be built from the configuration.
    #[error("model configuration: {0}")]
    Model(#[from] anomaly_core::ParameterError),
    /// Scoring failed for a reason that is not the event's fault.
    #[error("inference: {0}")]
    Inference(#[from] AnomalyError),
}

/// What a run produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineRun {
    /// The configuration it ran with.
    pub config: Option<PipelineConfig>,
    /// Every scored event (the `scored_events` table).
    pub scored: Vec<ScoredEvent>,
    /// Every drift (the `drift_events` table).
    pub drifts: Vec<DriftEvent>,
    /// Every retraining job, published or not.
    pub jobs: Vec<JobOutcome>,
    /// Every published model (the `model_versions` table, first version excluded).
    pub model_updates: Vec<ModelUpdate>,
    /// Every alert (the `alerts` table).
    pub alerts: Vec<Alert>,
    /// The alerts the notifier received.
    pub notified: Vec<Alert>,
    /// Alerts not re-sent because an identical one was sent recently.
    pub duplicates_suppressed: u64,
    /// Events that could not be processed.
    pub dead_letters: Vec<DeadLetter>,
    /// Where each generator phase started.
    pub boundaries: Vec<PhaseBoundary>,
    /// Wall time of the run.
    pub seconds: f64,
}

/// Runs the whole pipeline; `progress(done, total)` is called every few thousand events.
///
/// ```
/// use anomaly_services::pipeline::{run, PipelineConfig};
///
/// let mut config = PipelineConfig::default();
/// config.generator.events = 2_000;
/// let result = run(&config, |_, _| {})?;
/// assert_eq!(result.scored.len() + result.dead_letters.len(), 2_000);
/// # Ok::<(), anomaly_services::pipeline::PipelineError>(())
/// ```
pub fn run(
    config: &PipelineConfig,
    mut progress: impl FnMut(u64, u64),
) -> Result<PipelineRun, PipelineError> {
    let seed = config.generator.seed;
    let features: Vec<String> = TransactionFeatures::NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut model_params = config.model.clone();
    model_params.hst.seed = Some(model_params.hst.seed.unwrap_or(seed));
    let generator = Generator::new(config.generator.clone());
    let mut out = PipelineRun {
        config: Some(config.clone()),
        boundaries: generator.boundaries().to_vec(),
        ..PipelineRun::default()
    };
    let mut engineer = FeatureEngineer::new(InMemoryStore::new(CardState::default()));
    let model = Ensemble::with_features(model_params.clone(), &features)?;
    let mut inference = Inference::new(model, 1, config.threshold);
    // Scores are 0 while the trees fill their first window: not a drift worth reporting.
    let warm_up =
        u64::from(model_params.hst.window_size) + u64::from(model_params.sad_grace_period);
    let mut monitor = DriftMonitor::new(warm_up);
    let mut retrainer = Retrainer::new(config.retraining.clone(), model_params, features);
    let mut waiting_job = None;
    let mut router = AlertRouter::new(config.min_notify_severity, 60_000);
    let total = config.generator.events;
    out.scored.reserve(total as usize);
    let start = Instant::now();
    let mut first_event_ms = None;
    for (index, tx) in generator.enumerate() {
        if config.replay_speed > 0.0 {
            let origin = *first_event_ms.get_or_insert(tx.timestamp_ms);
            pace(start, tx.timestamp_ms - origin, config.replay_speed);
        }
        let vector = match engineer.process(&tx) {
            Ok(vector) => vector,
            Err(e) => {
                let payload = serde_json::to_vec(&tx).unwrap_or_default();
                out.dead_letters.push(dead_letter(
                    &e,
                    "raw-transactions",
                    0,
                    index as i64,
                    &payload,
                ));
                continue;
            }
        };
        let (scored, anomaly_alert) = inference.process(&vector)?;
        retrainer.observe(vector, scored.score);
        let mut new_alerts: Vec<Alert> = anomaly_alert.into_iter().collect();
        for drift in monitor.process(&scored) {
            new_alerts.push(drift_alert(&drift));
            if waiting_job.is_none() {
                waiting_job = retrainer.request(&drift);
            }
            out.drifts.push(drift);
        }
        // As in the services, a job waits until there is enough data to train on.
        if retrainer.ready()
            && let Some(job) = waiting_job.take()
        {
            let running = inference.version();
            let (outcome, publish) = retrainer.run(job, running, running + 1)?;
            if let Some(publication) = publish {
                // The published bytes go through the same validation as in the services.
                if inference.swap(&publication.snapshot).is_ok() {
                    out.model_updates.push(publication.update);
                }
            }
            out.jobs.push(outcome);
        }
        for alert in new_alerts {
            match router.route(&alert) {
                Routing::Notify => out.notified.push(alert.clone()),
                Routing::Duplicate => out.duplicates_suppressed += 1,
                Routing::Stored => {}
            }
            // In one process nothing can fail between routing and storing.
            router.commit();
            out.alerts.push(alert);
        }
        out.scored.push(scored);
        if index % 4096 == 4095 {
            progress(index as u64 + 1, total);
        }
    }
    progress(total, total);
    out.seconds = start.elapsed().as_secs_f64();
    Ok(out)
}

/// Sleeps until `event_offset_ms` of event time, divided by `speed`, has passed since `start`.
pub fn pace(start: Instant, event_offset_ms: i64, speed: f64) {
    let due = Duration::from_secs_f64((event_offset_ms.max(0) as f64 / 1000.0) / speed);
    if let Some(wait) = due.checked_sub(start.elapsed()) {
        std::thread::sleep(wait);
    }
}
