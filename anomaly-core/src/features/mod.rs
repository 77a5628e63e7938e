//! Streaming features: running statistics and scaling (more to come in this module).

mod ewm;
mod moments;
mod running;
mod summary;

pub use ewm::{EwmParams, EwmStats};
pub use running::RunningStats;
pub use summary::Summary;
