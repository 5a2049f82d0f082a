//! The events of training at which hooks run, and the counter each one's filters count.

/// A point in training where hooks run.
///
/// Every event has a 1-based counter that its hooks' filters (`every`, `once`, `before`,
/// `after`) test:
///
/// | event | counter |
/// |---|---|
/// | `TrainBegin`, `TrainEnd`, `Exception` | none: they happen once |
/// | `EpochBegin`, `ValidationBegin`, `ValidationEnd`, `EpochEnd` | the epoch, from 1 |
/// | `BatchBegin`, `BeforeBackward`, `AfterBackward`, `BeforeOptimizerStep`, `BatchEnd` | the batch within its epoch, from 1, restarting every epoch (`counter = global_step` switches to the optimizer step over the whole fit, from 1) |
/// | `ValidationBatchEnd` | the validation batch within its validation run, from 1 |
///
/// So `#[on_batch_end(every = 10)]` fires at batches 10, 20, 30 of every epoch, as the
/// tutorial's logger does, and `#[on_batch_end(every = 100, counter = global_step)]` at steps
/// 100, 200, … of the fit.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// Once, when `fit` starts (`#[on_train_begin]`).
    TrainBegin,
    /// At the start of each epoch (`#[on_epoch_begin]`).
    EpochBegin,
    /// Before each training batch (`#[on_batch_begin]`).
    BatchBegin,
    /// After the batch's loss is computed, before its backward pass (`#[on_before_backward]`).
    BeforeBackward,
    /// After the backward pass: gradients are there (`#[on_after_backward]`).
    AfterBackward,
    /// Just before the optimizer step (`#[on_before_optimizer_step]`).
    BeforeOptimizerStep,
    /// After each training batch's optimizer step, its running logs ready (`#[on_batch_end]`).
    BatchEnd,
    /// Before the validation pass at the end of each epoch (`#[on_validation_begin]`).
    ValidationBegin,
    /// After each validation batch (`#[on_validation_batch_end]`).
    ValidationBatchEnd,
    /// After the validation pass; the epoch's logs hold the `val_` metrics (`#[on_validation_end]`).
    ValidationEnd,
    /// At the end of each epoch, its logs final (`#[on_epoch_end]`).
    EpochEnd,
    /// Once, when training ends, however it ended but by an error (`#[on_train_end]`).
    TrainEnd,
    /// Once, when training fails with an error, which the hook may take (`#[on_exception]`).
    Exception,
}

/// How many events there are.
pub(crate) const EVENTS: usize = 13;

impl Event {
    /// Every event, in the order they first occur in a fit.
    pub const ALL: [Event; EVENTS] = [
        Event::TrainBegin,
        Event::EpochBegin,
        Event::BatchBegin,
        Event::BeforeBackward,
        Event::AfterBackward,
        Event::BeforeOptimizerStep,
        Event::BatchEnd,
        Event::ValidationBegin,
        Event::ValidationBatchEnd,
        Event::ValidationEnd,
        Event::EpochEnd,
        Event::TrainEnd,
        Event::Exception,
    ];

    /// The attribute that registers a hook for this event.
    pub fn attribute(self) -> &'static str {
        match self {
            Event::TrainBegin => "on_train_begin",
            Event::EpochBegin => "on_epoch_begin",
            Event::BatchBegin => "on_batch_begin",
            Event::BeforeBackward => "on_before_backward",
            Event::AfterBackward => "on_after_backward",
            Event::BeforeOptimizerStep => "on_before_optimizer_step",
            Event::BatchEnd => "on_batch_end",
            Event::ValidationBegin => "on_validation_begin",
            Event::ValidationBatchEnd => "on_validation_batch_end",
            Event::ValidationEnd => "on_validation_end",
            Event::EpochEnd => "on_epoch_end",
            Event::TrainEnd => "on_train_end",
            Event::Exception => "on_exception",
        }
    }

    /// Whether the event happens more than once in a fit, so that filters mean something.
    pub fn repeats(self) -> bool {
        !matches!(self, Event::TrainBegin | Event::TrainEnd | Event::Exception)
    }

    /// Whether the event is one of a training batch, whose filters may count the global step.
    pub fn is_training_batch(self) -> bool {
        matches!(
            self,
            Event::BatchBegin
                | Event::BeforeBackward
                | Event::AfterBackward
                | Event::BeforeOptimizerStep
                | Event::BatchEnd
        )
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.attribute())
    }
}

/// One type per event, so that the compiler can check which parameters exist at which event.
pub mod events {
    macro_rules! markers {
        ($($name:ident: $doc:literal),* $(,)?) => {$(
            #[doc = $doc]
            #[derive(Debug)]
            pub enum $name {}
        )*};
    }
    markers! {
        TrainBegin: "`#[on_train_begin]`",
        EpochBegin: "`#[on_epoch_begin]`",
        BatchBegin: "`#[on_batch_begin]`",
        BeforeBackward: "`#[on_before_backward]`",
        AfterBackward: "`#[on_after_backward]`",
        BeforeOptimizerStep: "`#[on_before_optimizer_step]`",
        BatchEnd: "`#[on_batch_end]`",
        ValidationBegin: "`#[on_validation_begin]`",
        ValidationBatchEnd: "`#[on_validation_batch_end]`",
        ValidationEnd: "`#[on_validation_end]`",
        EpochEnd: "`#[on_epoch_end]`",
        TrainEnd: "`#[on_train_end]`",
        Exception: "`#[on_exception]`",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, event) in Event::ALL.iter().enumerate() {
            assert_eq!(event.index(), i, "{event}");
        }
    }
}
