//! Concept-drift detectors, bit-exact with River 0.26.1.
//!
//! Every detector implements [`DriftDetector`]: feed it one value at a time with
//! [`update`](DriftDetector::update) and match on the returned [`DriftStatus`].
//!
//! | detector | input | River class |
//! | --- | --- | --- |
//! | [`Adwin`] | `f64` | `drift.ADWIN` |
//! | [`PageHinkley`] | `f64` | `drift.PageHinkley` |
//! | [`Kswin`] | `f64` | `drift.KSWIN` |
//! | [`Ddm`] | [`Outcome`] | `drift.binary.DDM` |
//! | [`Eddm`] | [`Outcome`] | `drift.binary.EDDM` |
//! | [`HddmA`] | [`Outcome`] | `drift.binary.HDDMA` |
//! | [`HddmW`] | [`Outcome`] | `drift.binary.HDDMW` |
//! | [`Fhddm`] | [`Outcome`] | `drift.binary.FHDDM` |
//!
//! Detectors that watch a classifier's error stream take an [`Outcome`] rather than a number,
//! so "1 = error" and "1 = correct" conventions cannot be mixed up silently.
//!
//! As in River, a drift is reported for exactly one update: the next update first resets the
//! detector to its freshly constructed state and then processes its input.

mod adwin;
mod ddm;
mod eddm;
mod fhddm;
mod hddm_a;
mod hddm_w;
mod kswin;
mod page_hinkley;

pub use adwin::{Adwin, AdwinParams};
pub use ddm::{Ddm, DdmParams};
pub use eddm::{Eddm, EddmParams};
pub use fhddm::{Fhddm, FhddmParams};
pub use hddm_a::{HddmA, HddmAParams};
pub use hddm_w::{HddmW, HddmWParams};
pub use kswin::{Kswin, KswinParams};
pub use page_hinkley::{PageHinkley, PageHinkleyMode, PageHinkleyParams};

use serde::{Deserialize, Serialize};

use crate::InputError;

/// What a detector concluded from the latest update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DriftStatus {
    /// No change in the stream.
    Stable,
    /// The stream may be changing; a drift could follow.
    Warning,
    /// The stream changed. The detector resets itself on the next update.
    Drift,
}

impl DriftStatus {
    /// Whether this is [`DriftStatus::Drift`].
    pub fn is_drift(self) -> bool {
        self == Self::Drift
    }

    /// Whether this is [`DriftStatus::Warning`].
    pub fn is_warning(self) -> bool {
        self == Self::Warning
    }

    pub(crate) fn from_flags(drift: bool, warning: bool) -> Self {
        if drift {
            Self::Drift
        } else if warning {
            Self::Warning
        } else {
            Self::Stable
        }
    }
}

/// The outcome of one prediction, for detectors that watch a classifier's error stream.
///
/// ```
/// use anomaly_core::drift::Outcome;
///
/// let predicted_fraud = true;
/// let was_fraud = false;
/// assert_eq!(Outcome::from_prediction(predicted_fraud, was_fraud), Outcome::Error);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// The prediction matched the truth.
    Correct,
    /// The prediction was wrong.
    Error,
}

impl Outcome {
    /// `Error` when `predicted != actual`.
    pub fn from_prediction<T: PartialEq>(predicted: T, actual: T) -> Self {
        if predicted == actual {
            Self::Correct
        } else {
            Self::Error
        }
    }

    /// `Error` when `is_error` is true.
    pub fn from_error_flag(is_error: bool) -> Self {
        if is_error { Self::Error } else { Self::Correct }
    }

    /// Whether this outcome is an error.
    pub fn is_error(self) -> bool {
        self == Self::Error
    }
}

/// A streaming concept-drift detector.
///
/// ```
/// use anomaly_core::drift::{Ddm, DriftDetector, DriftStatus, Outcome};
///
/// fn watch<D: DriftDetector>(detector: &mut D, stream: &[D::Input]) -> Vec<usize> {
///     stream
///         .iter()
///         .enumerate()
///         .filter(|(_, x)| matches!(detector.update(**x), Ok(DriftStatus::Drift)))
///         .map(|(i, _)| i)
///         .collect()
/// }
///
/// let mut errors = vec![Outcome::Correct; 500];
/// errors.extend([Outcome::Error; 100]);
/// let drifts = watch(&mut Ddm::default(), &errors);
/// assert_eq!(drifts, vec![500]);
/// ```
pub trait DriftDetector {
    /// What one update consumes: `f64` for value detectors, [`Outcome`] for error-rate ones.
    type Input: Copy;

    /// River's name for this detector (`"ADWIN"`, `"DDM"`, ...).
    const NAME: &'static str;

    /// Feeds one value and returns the detector's conclusion.
    ///
    /// If the previous update reported [`DriftStatus::Drift`], the detector first resets.
    /// A rejected input (non-finite, or larger than [`crate::MAX_INPUT_MAGNITUDE`]) returns an
    /// error and leaves the detector exactly as it was.
    fn update(&mut self, input: Self::Input) -> Result<DriftStatus, InputError>;

    /// The status reported by the latest update ([`DriftStatus::Stable`] before any).
    fn status(&self) -> DriftStatus {
        DriftStatus::from_flags(self.drift_detected(), self.warning_detected())
    }

    /// Whether the latest update detected a drift.
    fn drift_detected(&self) -> bool;

    /// Whether the latest update raised a warning.
    ///
    /// Two-sided HDDM tests can report a warning and a drift on the same update; [`status`]
    /// then says [`DriftStatus::Drift`] while this still says `true`.
    ///
    /// [`status`]: DriftDetector::status
    fn warning_detected(&self) -> bool;

    /// Returns the detector to its freshly constructed state (same parameters, same seed).
    fn reset(&mut self);
}
