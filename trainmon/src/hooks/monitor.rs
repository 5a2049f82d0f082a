//! What a hook that monitors a metric needs to know of it: whether lower or higher is better
//! ([`Mode`]), and how much better counts as an improvement ([`Delta`]). Early stopping, the
//! checkpoints, the plateau schedule, the metric files, the summary and the run status share
//! them.

use crate::records::key::MetricKey;

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
    /// Whether higher values of `metric` are better in this mode (auto: for an accuracy, a
    /// metric whose name — `accuracy` of `val_accuracy` — contains `acc`).
    pub fn maximises(self, metric: &MetricKey) -> bool {
        match self {
            Mode::Min => false,
            Mode::Max => true,
            Mode::Auto => metric.name().contains("acc"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_maximises_accuracies_on_either_split() {
        for (key, maximises) in [
            (MetricKey::validation("accuracy"), true),
            (MetricKey::training("top5_acc"), true),
            (MetricKey::parse("val_loss"), false),
        ] {
            assert_eq!(Mode::Auto.maximises(&key), maximises, "{key}");
        }
        assert!(!Mode::Min.maximises(&MetricKey::validation("accuracy")));
    }
}
