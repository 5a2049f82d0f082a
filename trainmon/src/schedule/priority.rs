//! Where a hook runs among the others of its event: higher priority first, then by module path,
//! function name and location (never by link order).
//!
//! Hooks default to [`DEFAULT`]. The built-in hooks take the places below, so that values are
//! computed before they are read and a checkpoint sees early stopping's decision — the orders
//! Lightning, Ignite and Keras users asked for. Place your own hooks around them with a constant
//! expression: `#[on_epoch_end(priority = trainmon::priority::CHECKPOINT - 1)]` runs after the
//! checkpoint is written.

/// Built-ins that compute values other hooks read: metrics, the learning-rate monitor, timers.
pub const METRICS: i32 = 1000;
/// Built-in loggers and progress bars: after the values are there, before your hooks.
pub const LOGGING: i32 = 100;
/// Hooks that say no priority.
pub const DEFAULT: i32 = 0;
/// Built-in early stopping and terminate-on-NaN: after the hooks that may change the metrics.
pub const EARLY_STOPPING: i32 = -100;
/// Built-in learning-rate schedulers: after early stopping has seen the epoch.
pub const SCHEDULER: i32 = -150;
/// Built-in checkpointing: after early stopping, so that it knows whether training stops.
pub const CHECKPOINT: i32 = -200;
/// Built-in outputs written from the history (plots, summaries): last.
pub const OUTPUTS: i32 = -300;
/// Built-in experiment trackers (MLflow) at the end of training: after the outputs (and the
/// summary, at `OUTPUTS - 100`), which they upload.
pub const TRACKING: i32 = -500;
