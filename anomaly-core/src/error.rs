//! Errors shared by every model in the crate.

use thiserror::Error;

/// A parameter given to a constructor is outside the range the model supports.
///
/// The message names the model, the parameter, what it must be and what it was, so the fix is
/// obvious from the error alone:
///
/// ```
/// use anomaly_core::drift::{Adwin, AdwinParams};
///
/// let err = Adwin::new(AdwinParams { delta: 1.5, ..AdwinParams::default() }).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "ADWIN: parameter `delta` must be in (0, 1), got 1.5"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{model}: parameter `{parameter}` must be {expected}, got {got}")]
pub struct ParameterError {
    /// The model whose constructor rejected the parameter (River's name, e.g. `ADWIN`).
    pub model: &'static str,
    /// The parameter's name, as in River.
    pub parameter: &'static str,
    /// The accepted range or form, in words.
    pub expected: &'static str,
    /// The rejected value, formatted.
    pub got: String,
}

impl ParameterError {
    pub(crate) fn new(
        model: &'static str,
        parameter: &'static str,
        expected: &'static str,
        got: impl ToString,
    ) -> Self {
        Self {
            model,
            parameter,
            expected,
            got: got.to_string(),
        }
    }
}

/// Checks a parameter and builds the error when it does not hold.
pub(crate) fn check(
    ok: bool,
    model: &'static str,
    parameter: &'static str,
    expected: &'static str,
    got: impl ToString,
) -> Result<(), ParameterError> {
    if ok {
        Ok(())
    } else {
        Err(ParameterError::new(model, parameter, expected, got))
    }
}

/// The largest magnitude a real-valued input may have.
///
/// Squares of larger values would overflow the variance accumulators (to infinity, then NaN),
/// silently corrupting the model, so such inputs are rejected instead.
pub const MAX_INPUT_MAGNITUDE: f64 = 1e100;

/// An input value was rejected; the model's state is exactly as it was before the call.
///
/// ```
/// use anomaly_core::drift::{Adwin, DriftDetector};
/// use anomaly_core::InputError;
///
/// let mut adwin = Adwin::default();
/// assert!(matches!(adwin.update(f64::NAN), Err(InputError::NotFinite { .. })));
/// assert_eq!(adwin.width(), 0);
/// ```
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InputError {
    /// NaN or an infinity was passed where a finite number is required.
    #[error(
        "{model}: input must be a finite number, got {value}; drop or impute it before updating"
    )]
    NotFinite {
        /// The model that rejected the input.
        model: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A finite value too large to be accumulated without overflow.
    #[error(
        "{model}: input magnitude must be at most 1e100, got {value}; rescale the stream before updating"
    )]
    TooLarge {
        /// The model that rejected the input.
        model: &'static str,
        /// The rejected value.
        value: f64,
    },
}

/// Accepts `value` if it is finite and not larger than [`MAX_INPUT_MAGNITUDE`].
pub(crate) fn check_input(model: &'static str, value: f64) -> Result<f64, InputError> {
    if !value.is_finite() {
        Err(InputError::NotFinite { model, value })
    } else if value.abs() > MAX_INPUT_MAGNITUDE {
        Err(InputError::TooLarge { model, value })
    } else {
        Ok(value)
    }
}
