//! What a hook that monitors a metric needs to know of it: whether lower or higher is better
//! ([`Mode`]), and how much better counts as an improvement ([`Delta`]). Early stopping, the
//! checkpoints, the plateau schedule, the metric files, the summary and the run status share
//! them.

/// Whether lower or higher values of the monitored metric are better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Lower is better (losses, errors).
    Min,
    /// Higher is better (accuracies).
    Max,
    /// `Max` for a metric whose name contains `acc`, `Min` otherwise (Keras's "auto").
    #[default]
    Auto,
}

impl Mode {
    /// Whether higher values of `metric` are better in this mode (auto: for an accuracy).
    pub fn maximises(self, metric: &str) -> bool {
        match self {
            Mode::Min => false,
            Mode::Max => true,
            Mode::Auto => metric.contains("acc"),
        }
    }
}

/// How much a value must beat the best one to count as an improvement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Delta {
    /// By this much (`0.0`: any improvement counts).
    Absolute(f64),
    /// By this share of the best value's magnitude (`0.01`: 1 %).
    Relative(f64),
}
