//! All six stages in one process, with in-memory stand-ins for Kafka, Redis, PostgreSQL and
//! Slack: the project's main job, and the reference the services are tested against.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anomaly_core::anomaly::{
    AnomalyError, Ensemble, EnsembleParams, HstParams, MemberKind, MemberParams, RcfParams,
};
use anomaly_core::features::{CardState, InMemoryStore, TransactionFeatures};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::generator::{Generator, GeneratorParams, PhaseBoundary};
use crate::messages::{
    Alert, DeadLetter, DriftEvent, DriftSource, FeatureVector, ModelUpdate, RawTransaction,
    ScoredEvent, Severity, dead_letter,
};
use crate::report::RunStats;
use crate::stages::alert_routing::{AlertRouter, Routing};
use crate::stages::drift_monitor::{DriftMonitor, drift_alert};
use crate::stages::feature_engineering::FeatureEngineer;
use crate::stages::inference::Inference;
use crate::stages::retraining::{JobOutcome, Retrainer, RetrainingJob, RetrainingParams};

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
    /// The transaction file the run read (`generator` then only seeds the models); `None`
    /// for the synthetic stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
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
            input: None,
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
    /// The input could not be read further.
    #[error("reading the input: {0}")]
    Input(String),
    /// A result could not be written (see [`EventSink`]).
    #[error("writing the results: {0}")]
    Output(#[from] std::io::Error),
}

/// Dead letters kept in [`PipelineRun::dead_letters`]; beyond it they are only counted, so
/// that a file full of bad rows does not fill the memory.
pub const LISTED_DEAD_LETTERS: usize = 10_000;

/// Notified alerts kept in [`PipelineRun::notified`] (the embedded stand-in for Slack): a
/// long run notifies about one event in a thousand, so the list is bounded like the dead
/// letters'.
pub const LISTED_NOTIFIED: usize = 10_000;

/// What a run produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineRun {
    /// The configuration it ran with.
    pub config: Option<PipelineConfig>,
    /// Every scored event (the `scored_events` table), when the run keeps them ([`run`]);
    /// empty when they went to an [`EventSink`].
    pub scored: Vec<ScoredEvent>,
    /// Every drift (the `drift_events` table).
    pub drifts: Vec<DriftEvent>,
    /// Every retraining job, published or not.
    pub jobs: Vec<JobOutcome>,
    /// Every published model (the `model_versions` table, first version excluded).
    pub model_updates: Vec<ModelUpdate>,
    /// Every alert (the `alerts` table), when the run keeps them; see `scored`.
    pub alerts: Vec<Alert>,
    /// The alerts the notifier received (the first [`LISTED_NOTIFIED`]).
    pub notified: Vec<Alert>,
    /// Notified alerts beyond [`LISTED_NOTIFIED`], counted only (every alert is in the
    /// `alerts` table, notified or not).
    #[serde(default)]
    pub unlisted_notified: u64,
    /// Alerts not re-sent because an identical one was sent recently.
    pub duplicates_suppressed: u64,
    /// Events that could not be processed (the first [`LISTED_DEAD_LETTERS`]), with where
    /// they were: an input file's line number, or the generator's event index.
    pub dead_letters: Vec<DeadLetter>,
    /// Dead letters beyond [`LISTED_DEAD_LETTERS`], counted only.
    #[serde(default)]
    pub unlisted_dead_letters: u64,
    /// Where each phase started.
    pub boundaries: Vec<PhaseBoundary>,
    /// Wall time of the run.
    pub seconds: f64,
    /// Whether the input had ground-truth labels (see [`Input::labelled`]).
    #[serde(default = "labelled")]
    pub labelled: bool,
    /// The figures of the scored events and alerts, accumulated as they were produced.
    #[serde(skip)]
    pub stats: RunStats,
}

fn labelled() -> bool {
    true
}

/// Where a run's per-event results go as they are produced: scored events and alerts are
/// most of a run's output, so a long run streams them instead of keeping them.
pub trait EventSink {
    /// A scored event, in stream order. Borrowed: the thread that made an event's strings
    /// frees them, which costs a fraction of a free from another thread.
    fn scored(&mut self, event: &ScoredEvent) -> std::io::Result<()>;
    /// An alert, in the order they were raised.
    fn alert(&mut self, alert: &Alert) -> std::io::Result<()>;
    /// After the last result: anything buffered is written (the run's clock stops after).
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keeps everything in memory (what [`run`] returns).
#[derive(Default)]
struct KeepAll {
    scored: Vec<ScoredEvent>,
    alerts: Vec<Alert>,
}

impl EventSink for KeepAll {
    fn scored(&mut self, event: &ScoredEvent) -> std::io::Result<()> {
        self.scored.push(event.clone());
        Ok(())
    }

    fn alert(&mut self, alert: &Alert) -> std::io::Result<()> {
        self.alerts.push(alert.clone());
        Ok(())
    }
}

/// One transaction of a run's input, or why a record of it could not be read.
pub type InputRecord = Result<RawTransaction, UnreadableRecord>;

/// A record of the input that is not a transaction: it becomes a dead letter, unless the
/// input itself failed.
#[derive(Clone, Debug, PartialEq)]
pub struct UnreadableRecord {
    /// Why.
    pub error: String,
    /// The record's text, as far as it could be read (cut to 4 KiB in the dead letter).
    pub raw: String,
    /// The input cannot be read further (an I/O error, or a panic of the thread parsing it):
    /// the run stops with this error.
    pub fatal: bool,
}

impl UnreadableRecord {
    /// A bad record: the run goes on.
    pub fn bad(error: String, raw: String) -> Self {
        Self {
            error,
            raw,
            fatal: false,
        }
    }
}

/// Where a run's transactions come from.
pub struct Input<I> {
    /// The transactions (or unreadable records), in order, each with its position: a file's
    /// line number, or the generator's event index. A dead letter's `offset` is its
    /// record's position.
    pub records: I,
    /// Records expected (the progress bar's end and the charts' resolution).
    pub expected: u64,
    /// Named in dead letters (`source_topic`).
    pub source: String,
    /// Whether the records carry ground-truth labels (without them, a run has no
    /// precision, recall or ROC AUC, and no drift detection or retraining on errors).
    pub labelled: bool,
    /// Where each phase starts, when the source knows (the generator); otherwise they are
    /// taken from the events, wherever the phase changes.
    pub boundaries: Option<Vec<PhaseBoundary>>,
}

/// Runs the whole pipeline on the synthetic stream of `config.generator`, keeping every
/// scored event and alert in memory; `progress(done, total)` is called every few thousand
/// events.
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
    progress: impl FnMut(u64, u64),
) -> Result<PipelineRun, PipelineError> {
    let mut kept = KeepAll::default();
    let mut out = run_streaming(config, synthetic_input(config), &mut kept, progress)?;
    out.scored = kept.scored;
    out.alerts = kept.alerts;
    Ok(out)
}

/// The synthetic stream of `config.generator` as a run's input.
pub fn synthetic_input(
    config: &PipelineConfig,
) -> Input<impl Iterator<Item = (i64, InputRecord)> + use<>> {
    let generator = Generator::new(config.generator.clone());
    let boundaries = generator.boundaries().to_vec();
    Input {
        records: generator
            .enumerate()
            .map(|(index, tx)| (index as i64, Ok(tx))),
        expected: config.generator.events,
        source: "raw-transactions".into(),
        labelled: true,
        boundaries: Some(boundaries),
    }
}

/// Transactions sent from the reading thread to the stages at a time: large enough to make
/// the hand-over cheap, small enough to keep both threads busy.
const BATCH: usize = 512;
/// Batches in flight between the two threads.
const BATCHES_IN_FLIGHT: usize = 8;

/// A result on its way to the writing thread.
enum Output {
    Scored(ScoredEvent),
    Alert(Alert),
}

/// A transaction made ready for the stages by the reading thread.
enum Prepared {
    Features(FeatureVector),
    Rejected(DeadLetter),
    /// The input cannot be read further.
    Failed(String),
}

/// Runs the whole pipeline on `input`, handing every scored event and alert to `sink` as it
/// is produced (memory stays flat whatever the input's length); the returned run has the
/// rest (drifts, jobs, notified alerts, dead letters, figures).
///
/// Reading and feature engineering run on a thread ahead of the stages, and the sink (with
/// the report's figures) on one behind them: the feature state of a card depends only on
/// that card's earlier transactions, and the sink sees every result in order, so the results
/// are those of one thread, event for event.
pub fn run_streaming<I>(
    config: &PipelineConfig,
    mut input: Input<I>,
    sink: &mut (impl EventSink + Send),
    mut progress: impl FnMut(u64, u64),
) -> Result<PipelineRun, PipelineError>
where
    I: Iterator<Item = (i64, InputRecord)> + Send,
{
    let seed = config.generator.seed;
    let features: Vec<String> = TransactionFeatures::NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut model_params = config.model.clone();
    model_params.hst.seed = Some(model_params.hst.seed.unwrap_or(seed));
    let model = Ensemble::with_features(model_params.clone(), &features)?;
    let inference = Inference::new(model, 1, config.threshold);
    // Scores are 0 while the trees fill their first window: not a drift worth reporting.
    let warm_up =
        u64::from(model_params.hst.window_size) + u64::from(model_params.sad_grace_period);
    let mut stages = Stages {
        monitor: DriftMonitor::new(warm_up),
        retrainer: Retrainer::new(config.retraining.clone(), model_params, features),
        waiting_job: None,
        router: AlertRouter::new(config.min_notify_severity, 60_000),
        inference,
        new_alerts: Vec::new(),
        labelled: true,
    };
    let total = input.expected;
    let mut out = PipelineRun {
        config: Some(config.clone()),
        stats: RunStats::new(total),
        ..PipelineRun::default()
    };
    let mut phases = PhaseTracker::default();
    let known_boundaries = input.boundaries.take();
    progress(0, total);
    let start = Instant::now();
    let replay_speed = config.replay_speed;
    // Paced runs hand over event by event, so that events reach the stages on time.
    let batch = if replay_speed > 0.0 { 1 } else { BATCH };
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<Prepared>>(BATCHES_IN_FLIGHT);
    // Emptied batches go back to the thread that fills them: fresh ones, freed on another
    // thread, made the allocator map (and the kernel zero) new pages all run long.
    let (empty_prepared, reuse_prepared) = std::sync::mpsc::channel::<Vec<Prepared>>();
    let (empty_outputs, reuse_outputs) = std::sync::mpsc::channel::<Vec<Output>>();
    // Written batches go back to the reading thread, which made most of their strings: a
    // free on the allocating thread is a fraction of the cost of one from another thread.
    let (written_outputs, outputs_to_free) = std::sync::mpsc::channel::<Vec<Output>>();
    let source = input.source.clone();
    out.labelled = input.labelled;
    stages.labelled = input.labelled;
    // Set when the stages stop early, so that a paced reader does not sleep on.
    let stopped = AtomicBool::new(false);
    std::thread::scope(|scope| -> Result<(), PipelineError> {
        let stopped = &stopped;
        let reader = scope.spawn(move || {
            let mut engineer = FeatureEngineer::new(InMemoryStore::new(CardState::default()));
            let mut first_event_ms = None;
            let mut prepared = Vec::with_capacity(batch);
            for (position, record) in input.records {
                let item = match record {
                    Ok(tx) => {
                        if replay_speed > 0.0 {
                            let origin = *first_event_ms.get_or_insert(tx.timestamp_ms);
                            let offset = i128::from(tx.timestamp_ms) - i128::from(origin);
                            pace_unless(start, offset, replay_speed, stopped);
                        }
                        match engineer.process_owned(tx) {
                            Ok(vector) => Prepared::Features(vector),
                            Err(rejected) => {
                                let (e, tx) = *rejected;
                                let payload = serde_json::to_vec(&tx).unwrap_or_default();
                                Prepared::Rejected(dead_letter(&e, &source, 0, position, &payload))
                            }
                        }
                    }
                    Err(failed) if failed.fatal => Prepared::Failed(failed.error),
                    Err(unreadable) => Prepared::Rejected(dead_letter(
                        &unreadable.error,
                        &source,
                        0,
                        position,
                        unreadable.raw.as_bytes(),
                    )),
                };
                prepared.push(item);
                if prepared.len() == batch {
                    for mut written in outputs_to_free.try_iter() {
                        written.clear();
                        let _ = empty_outputs.send(written);
                    }
                    let next = reuse_prepared
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(batch));
                    let full = std::mem::replace(&mut prepared, next);
                    if sender.send(full).is_err() {
                        return; // The stages stopped on an error.
                    }
                }
            }
            if !prepared.is_empty() {
                let _ = sender.send(prepared);
            }
        });
        let (results, result_receiver) =
            std::sync::mpsc::sync_channel::<Vec<Output>>(BATCHES_IN_FLIGHT);
        let mut stats = std::mem::take(&mut out.stats);
        let writer = scope.spawn(move || -> std::io::Result<RunStats> {
            for outputs in result_receiver {
                for output in &outputs {
                    match output {
                        Output::Scored(event) => {
                            stats.add_scored(event);
                            sink.scored(event)?;
                        }
                        Output::Alert(alert) => {
                            stats.add_alert(alert);
                            sink.alert(alert)?;
                        }
                    }
                }
                // Once the reader is done, the last batches are freed here.
                let _ = written_outputs.send(outputs);
            }
            sink.flush()?;
            Ok(stats)
        });
        let mut done = 0u64;
        let mut outputs = Vec::with_capacity(2 * batch);
        let mut scored_count = 0u64;
        let staged = || -> Result<(), PipelineError> {
            for mut prepared in receiver {
                for item in prepared.drain(..) {
                    match item {
                        Prepared::Features(vector) => {
                            if known_boundaries.is_none() {
                                phases.observe(&vector.phase, scored_count);
                            }
                            scored_count += 1;
                            stages.process(vector, &mut out, &mut outputs)?;
                        }
                        Prepared::Rejected(letter) => {
                            if out.dead_letters.len() < LISTED_DEAD_LETTERS {
                                out.dead_letters.push(letter);
                            } else {
                                out.unlisted_dead_letters += 1;
                            }
                        }
                        Prepared::Failed(error) => return Err(PipelineError::Input(error)),
                    }
                    done += 1;
                    if done % 4096 == 0 {
                        progress(done, total.max(done));
                    }
                }
                let _ = empty_prepared.send(prepared);
                if outputs.len() >= batch {
                    let next = reuse_outputs
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(2 * batch));
                    let full = std::mem::replace(&mut outputs, next);
                    if results.send(full).is_err() {
                        break; // The writer stopped on an error, returned below.
                    }
                }
            }
            if !outputs.is_empty() {
                let _ = results.send(std::mem::take(&mut outputs));
            }
            Ok(())
        };
        let staged = staged();
        // Whatever happened, the other threads end: the reader's sends fail once its
        // receiver is gone, the writer's loop once its sender is.
        stopped.store(true, Ordering::Relaxed);
        drop(results);
        if let Err(panic) = reader.join() {
            std::panic::resume_unwind(panic);
        }
        let written = match writer.join() {
            Ok(written) => written,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        staged?;
        out.stats = written?;
        progress(done, done);
        Ok(())
    })?;
    out.boundaries = known_boundaries.unwrap_or(phases.boundaries);
    out.seconds = start.elapsed().as_secs_f64();
    Ok(out)
}

/// The stages after feature engineering, run on the calling thread.
struct Stages {
    inference: Inference,
    monitor: DriftMonitor,
    retrainer: Retrainer,
    waiting_job: Option<RetrainingJob>,
    router: AlertRouter,
    /// Reused for every event: most raise none.
    new_alerts: Vec<Alert>,
    /// Without labels, the error stream (DDM) and the retraining judged on labels mean
    /// nothing: only the scores are watched for drift.
    labelled: bool,
}

impl Stages {
    fn process(
        &mut self,
        vector: FeatureVector,
        out: &mut PipelineRun,
        outputs: &mut Vec<Output>,
    ) -> Result<(), PipelineError> {
        let (scored, anomaly_alert) = self.inference.process_owned(vector)?;
        self.retrainer.observe(&scored);
        self.new_alerts.extend(anomaly_alert);
        for drift in self.monitor.process(&scored) {
            if !self.labelled && drift.detector == DriftSource::Ddm {
                continue;
            }
            self.new_alerts.push(drift_alert(&drift));
            if self.waiting_job.is_none() && self.labelled {
                self.waiting_job = self.retrainer.request(&drift);
            }
            out.drifts.push(drift);
        }
        // As in the services, a job waits until there is enough data to train on.
        if self.retrainer.ready()
            && let Some(job) = self.waiting_job.take()
        {
            let running = self.inference.version();
            let (outcome, publish) = self.retrainer.run(job, running, running + 1)?;
            if let Some(publication) = publish {
                // The published bytes go through the same validation as in the services.
                if self.inference.swap(&publication.snapshot).is_ok() {
                    out.model_updates.push(publication.update);
                }
            }
            out.jobs.push(outcome);
        }
        for alert in self.new_alerts.drain(..) {
            match self.router.route(&alert) {
                Routing::Notify if out.notified.len() < LISTED_NOTIFIED => {
                    out.notified.push(alert.clone())
                }
                Routing::Notify => out.unlisted_notified += 1,
                Routing::Duplicate => out.duplicates_suppressed += 1,
                Routing::Stored => {}
            }
            // In one process nothing can fail between routing and storing.
            self.router.commit();
            outputs.push(Output::Alert(alert));
        }
        outputs.push(Output::Scored(scored));
        Ok(())
    }
}

/// Phase boundaries as the events show them: a new one wherever the phase changes.
#[derive(Default)]
struct PhaseTracker {
    boundaries: Vec<PhaseBoundary>,
}

/// Phase boundaries kept: a phase column that changes on every row would otherwise grow the
/// run (and the report) with the file.
const MAX_BOUNDARIES: usize = 1_000;

impl PhaseTracker {
    fn observe(&mut self, phase: &str, index: u64) {
        if self.boundaries.len() < MAX_BOUNDARIES
            && self.boundaries.last().is_none_or(|b| b.name != phase)
        {
            self.boundaries.push(PhaseBoundary {
                index,
                name: phase.to_owned(),
            });
        }
    }
}

/// [`pace`] in slices of at most 100 ms, returning early once `stopped` is set.
fn pace_unless(start: Instant, event_offset_ms: i128, speed: f64, stopped: &AtomicBool) {
    let due_s = (event_offset_ms.max(0) as f64 / 1000.0) / speed;
    let Ok(due) = Duration::try_from_secs_f64(due_s) else {
        return; // Beyond any wait worth making.
    };
    while !stopped.load(Ordering::Relaxed) {
        let Some(wait) = due.checked_sub(start.elapsed()) else {
            return;
        };
        std::thread::sleep(wait.min(Duration::from_millis(100)));
    }
}

/// Sleeps until `event_offset_ms` of event time, divided by `speed`, has passed since `start`.
pub fn pace(start: Instant, event_offset_ms: i64, speed: f64) {
    let due_s = (event_offset_ms.max(0) as f64 / 1000.0) / speed;
    if let Some(wait) = Duration::try_from_secs_f64(due_s)
        .ok()
        .and_then(|due| due.checked_sub(start.elapsed()))
    {
        std::thread::sleep(wait);
    }
}
