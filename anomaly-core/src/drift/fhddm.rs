use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{DriftDetector, DriftStatus, Outcome};
use crate::InputError;
use crate::error::{ParameterError, check};

/// FHDDM's parameters, with River's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FhddmParams {
    /// Number of recent outcomes whose accuracy is compared with the best seen. Default 100.
    pub sliding_window_size: u32,
    /// Confidence level of the Hoeffding bound, in (0, 1). Default 1e-6.
    pub confidence_level: f64,
    /// Also test the most recent `short_window_size` outcomes (FHDDMS), which reacts faster to
    /// abrupt drops. Must be at most `sliding_window_size`. Default `None`.
    pub short_window_size: Option<u32>,
}

impl Default for FhddmParams {
    fn default() -> Self {
        Self {
            sliding_window_size: 100,
            confidence_level: 1e-6,
            short_window_size: None,
        }
    }
}

/// Fast Hoeffding Drift Detection Method (Pesaranghader & Viktor, 2016), with River's
/// `drift.binary.FHDDM` arithmetic.
///
/// FHDDM compares the accuracy over the last `sliding_window_size` outcomes with the best
/// accuracy seen and signals a drift when it has dropped by more than a Hoeffding bound.
///
/// **Convention.** River's docstring says its input is "1 = error", but its test fires when the
/// mean of the input *drops*, which is the original method's "1 = correct prediction"
/// convention. Here the input is an [`Outcome`] and FHDDM counts correct predictions, so it
/// fires when the error rate rises, as the method intends. River's numbers for a stream of
/// River inputs `x` are reproduced by feeding `Correct` where `x = 1`.
///
/// ```
/// use anomaly_core::drift::{DriftDetector, Fhddm, Outcome};
///
/// let mut fhddm = Fhddm::default();
/// let first_drift = (0..2000).position(|i| {
///     let every = if i < 1000 { 20 } else { 2 }; // error rate 5%, then 50%
///     fhddm.update(Outcome::from_error_flag(i % every == 0)).unwrap().is_drift()
/// });
/// assert!(first_drift.is_some_and(|i| i > 1000));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fhddm {
    params: FhddmParams,
    /// Recent inputs, 1 = correct prediction.
    window: VecDeque<u8>,
    correct_in_window: u32,
    correct_in_short: u32,
    best_accuracy: f64,
    best_short_accuracy: f64,
    epsilon: f64,
    short_epsilon: f64,
    drift: bool,
}

impl Default for Fhddm {
    fn default() -> Self {
        Self::fresh(FhddmParams::default())
    }
}

fn hoeffding_epsilon(confidence: f64, size: u32) -> f64 {
    ((1.0 / confidence).ln() / (2.0 * f64::from(size))).sqrt()
}

impl Fhddm {
    /// Builds FHDDM with the given parameters.
    pub fn new(params: FhddmParams) -> Result<Self, ParameterError> {
        check(
            params.sliding_window_size >= 1,
            "FHDDM",
            "sliding_window_size",
            "at least 1",
            params.sliding_window_size,
        )?;
        check(
            params.confidence_level > 0.0 && params.confidence_level < 1.0,
            "FHDDM",
            "confidence_level",
            "in (0, 1)",
            params.confidence_level,
        )?;
        if let Some(short) = params.short_window_size {
            check(
                short >= 1 && short <= params.sliding_window_size,
                "FHDDM",
                "short_window_size",
                "in 1..=sliding_window_size",
                short,
            )?;
        }
        Ok(Self::fresh(params))
    }

    fn fresh(params: FhddmParams) -> Self {
        Self {
            params,
            window: VecDeque::with_capacity(params.sliding_window_size as usize),
            correct_in_window: 0,
            correct_in_short: 0,
            best_accuracy: 0.0,
            best_short_accuracy: 0.0,
            epsilon: hoeffding_epsilon(params.confidence_level, params.sliding_window_size),
            short_epsilon: params
                .short_window_size
                .map_or(0.0, |s| hoeffding_epsilon(params.confidence_level, s)),
            drift: false,
        }
    }

    /// The parameters this detector was built with.
    pub fn params(&self) -> &FhddmParams {
        &self.params
    }

    /// The best accuracy seen over a full window since the last reset.
    pub fn best_accuracy(&self) -> f64 {
        self.best_accuracy
    }
}

impl DriftDetector for Fhddm {
    type Input = Outcome;
    const NAME: &'static str = "FHDDM";

    fn update(&mut self, outcome: Outcome) -> Result<DriftStatus, InputError> {
        if self.drift {
            self.reset();
        }
        let x = u8::from(!outcome.is_error());
        let size = self.params.sliding_window_size as usize;
        self.window.push_back(x);
        self.correct_in_window += u32::from(x);
        if let Some(short) = self.params.short_window_size {
            self.correct_in_short += u32::from(x);
            // The short window is the newest `short` inputs of the long one.
            if self.window.len() > short as usize {
                let left = self.window[self.window.len() - 1 - short as usize];
                self.correct_in_short -= u32::from(left);
            }
        }
        if self.window.len() == size {
            let accuracy = f64::from(self.correct_in_window) / size as f64;
            if self.best_accuracy < accuracy {
                self.best_accuracy = accuracy;
            }
            let mut drift = self.best_accuracy - accuracy > self.epsilon;
            if let Some(short) = self.params.short_window_size {
                let short_accuracy = f64::from(self.correct_in_short) / f64::from(short);
                if self.best_short_accuracy < short_accuracy {
                    self.best_short_accuracy = short_accuracy;
                }
                drift |= self.best_short_accuracy - short_accuracy > self.short_epsilon;
            }
            self.drift = drift;
            let len_before_pop = self.window.len();
            if let Some(oldest) = self.window.pop_front() {
                self.correct_in_window -= u32::from(oldest);
                if self
                    .params
                    .short_window_size
                    .is_some_and(|short| len_before_pop <= short as usize)
                {
                    self.correct_in_short -= u32::from(oldest);
                }
            }
        }
        Ok(self.status())
    }

    fn drift_detected(&self) -> bool {
        self.drift
    }

    fn warning_detected(&self) -> bool {
        false
    }

    fn reset(&mut self) {
        *self = Self::fresh(self.params);
    }
}
