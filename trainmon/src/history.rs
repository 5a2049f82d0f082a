//! Per-epoch records, and what `fit` returns.

use crate::event::Event;
use std::time::Duration;

/// The final logs of one epoch, as `on_validation_end` and `on_epoch_end` hooks see them and
/// the history keeps them: its metrics by name (`loss`, `accuracy`, metrics of your own, and
/// with a validation set the same prefixed `val_`), its time and size.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochLogs {
    pub(crate) epoch: usize,
    pub(crate) time: Duration,
    pub(crate) batches: usize,
    pub(crate) samples: usize,
    pub(crate) values: Vec<(String, f64)>,
    pub(crate) learning_rate: f64,
}

impl EpochLogs {
    /// The epoch's 1-based number.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Mean of the epoch's batch losses.
    pub fn loss(&self) -> f64 {
        self.get("loss").unwrap_or(f64::NAN)
    }

    /// Share of the epoch's samples whose predicted class was right; NaN when the trainer
    /// tracks no accuracy.
    pub fn accuracy(&self) -> f64 {
        self.get("accuracy").unwrap_or(f64::NAN)
    }

    /// Wall time of the epoch: from its `on_epoch_begin` hooks to the end of its training and
    /// validation batches and their hooks (the `on_validation_end` and `on_epoch_end` hooks are
    /// not in it).
    pub fn time(&self) -> Duration {
        self.time
    }

    /// Batches trained in the epoch (fewer than planned when a batch hook stopped training).
    pub fn batches(&self) -> usize {
        self.batches
    }

    /// Samples trained in the epoch.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Mean loss over the validation set, if the trainer has one.
    pub fn val_loss(&self) -> Option<f64> {
        self.get("val_loss")
    }

    /// Accuracy over the validation set, if the trainer has one and tracks accuracy.
    pub fn val_accuracy(&self) -> Option<f64> {
        self.get("val_accuracy")
    }

    /// The learning rate the epoch trained with (at its last step).
    pub fn learning_rate(&self) -> f64 {
        self.learning_rate
    }

    /// Samples trained per second of the epoch's time.
    pub fn throughput(&self) -> f64 {
        self.samples as f64 / self.time.as_secs_f64()
    }

    /// A value by name: a metric (`"loss"`, `"accuracy"`, `"val_loss"`, one of your own…),
    /// `"time"` (seconds), `"lr"` or `"throughput"` (samples/s); `None` for a name the epoch
    /// does not have.
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "time" => Some(self.time.as_secs_f64()),
            "lr" => Some(self.learning_rate),
            "throughput" => Some(self.throughput()),
            _ => self.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v),
        }
    }

    /// The epoch's metrics, by name, training ones first, then validation ones (not the time).
    pub fn metrics(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.values.iter().map(|(n, v)| (n.as_str(), *v))
    }
}

/// Why training stopped before its last epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopReason {
    /// The reason the hook gave.
    pub reason: String,
    /// The hook that asked to stop: its function name (or the name of a run-time hook).
    pub hook: String,
    /// The event it ran at.
    pub event: Event,
    /// The epoch it was in (1-based; 0 before the first).
    pub epoch: usize,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (hook `{}` at {}, epoch {})",
            self.reason, self.hook, self.event, self.epoch
        )
    }
}

/// Every finished epoch of a fit, and why it stopped; what [`crate::Trainer::fit`] returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub(crate) epochs: Vec<EpochLogs>,
    pub(crate) stop: Option<StopReason>,
    pub(crate) elapsed: Duration,
}

impl History {
    /// The finished epochs, in order.
    pub fn epochs(&self) -> &[EpochLogs] {
        &self.epochs
    }

    /// The last finished epoch.
    pub fn last(&self) -> Option<&EpochLogs> {
        self.epochs.last()
    }

    /// Finished epochs.
    pub fn len(&self) -> usize {
        self.epochs.len()
    }

    /// Whether no epoch finished.
    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }

    /// Why training stopped early; `None` when every planned epoch ran.
    pub fn stop_reason(&self) -> Option<&StopReason> {
        self.stop.as_ref()
    }

    /// A metric of every epoch, by name (see [`EpochLogs::get`]); empty for an unknown name.
    pub fn metric(&self, name: &str) -> Vec<f64> {
        self.epochs.iter().filter_map(|e| e.get(name)).collect()
    }

    /// Wall time of the whole fit, hooks included (so far, while training).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}
