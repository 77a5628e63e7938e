//! Streaming features: running statistics and scaling (more to come in this module).

/// Whether `x` is an acceptable input value: finite with magnitude at most
/// [`MAX_INPUT_MAGNITUDE`](crate::MAX_INPUT_MAGNITUDE) (false for NaN).
#[inline]
pub(crate) fn is_valid_value(x: f64) -> bool {
    x.abs() <= crate::MAX_INPUT_MAGNITUDE
}

mod codec;
mod ewm;
mod moments;
mod running;
mod scaler;
mod summary;
mod window;

pub use codec::{Compact, DecodeError, FORMAT_VERSION};
pub use ewm::{EwmParams, EwmStats};
pub use running::RunningStats;
pub use scaler::{MinMaxScaler, ScalerError};
pub use summary::Summary;
pub use window::{Ingest, SlidingWindow, WindowParams, WindowSpan};
