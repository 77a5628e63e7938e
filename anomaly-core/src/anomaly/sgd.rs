//! What River's two linear models (OneClassSVM and LinearRegression) share: the checks of
//! plain SGD's parameters, and Python's gradient clipping.

use crate::error::{ParameterError, check};

/// Checks the learning rates, the clipping bound and the initial weight of `model`.
pub(crate) fn check_sgd(
    model: &'static str,
    learning_rate: f64,
    intercept_lr: f64,
    clip_gradient: f64,
    initial_weight: f64,
) -> Result<(), ParameterError> {
    check(
        learning_rate > 0.0 && learning_rate.is_finite(),
        model,
        "learning_rate",
        "a finite number > 0",
        learning_rate,
    )?;
    check(
        intercept_lr >= 0.0 && intercept_lr.is_finite(),
        model,
        "intercept_lr",
        "a finite number >= 0",
        intercept_lr,
    )?;
    check(
        clip_gradient > 0.0,
        model,
        "clip_gradient",
        "> 0",
        clip_gradient,
    )?;
    check(
        initial_weight.is_finite(),
        model,
        "initial_weight",
        "finite",
        initial_weight,
    )
}

/// Python's `max(min(g, c), -c)`, which lets NaN through (Rust's `min`/`max` would not).
pub(crate) fn python_clip(g: f64, c: f64) -> f64 {
    let g = if c < g { c } else { g };
    if -c > g { -c } else { g }
}
