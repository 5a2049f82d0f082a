//! The events, as the macros see them: attribute name, runtime variant, which options apply.

use proc_macro2::{Ident, Span};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    TrainBegin,
    EpochBegin,
    BatchBegin,
    BeforeBackward,
    AfterBackward,
    BeforeOptimizerStep,
    BatchEnd,
    ValidationBegin,
    ValidationBatchEnd,
    ValidationEnd,
    EpochEnd,
    TrainEnd,
    Exception,
}

impl Event {
    /// The variant of `trainmon::Event`, which also names the marker type in `trainmon::events`.
    fn name(self) -> &'static str {
        match self {
            Event::TrainBegin => "TrainBegin",
            Event::EpochBegin => "EpochBegin",
            Event::BatchBegin => "BatchBegin",
            Event::BeforeBackward => "BeforeBackward",
            Event::AfterBackward => "AfterBackward",
            Event::BeforeOptimizerStep => "BeforeOptimizerStep",
            Event::BatchEnd => "BatchEnd",
            Event::ValidationBegin => "ValidationBegin",
            Event::ValidationBatchEnd => "ValidationBatchEnd",
            Event::ValidationEnd => "ValidationEnd",
            Event::EpochEnd => "EpochEnd",
            Event::TrainEnd => "TrainEnd",
            Event::Exception => "Exception",
        }
    }

    /// The attribute's name, for messages.
    pub fn attribute(self) -> String {
        let mut name = String::from("on");
        for c in self.name().chars() {
            if c.is_ascii_uppercase() {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        }
        name
    }

    pub fn variant(self) -> Ident {
        Ident::new(self.name(), Span::call_site())
    }

    /// Whether the event repeats, so that filters mean something.
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

    /// What the filters count at this event, for messages.
    pub fn counter(self) -> &'static str {
        match self {
            _ if self.is_training_batch() => "batches within the epoch",
            Event::ValidationBatchEnd => "validation batches",
            _ if self.repeats() => "epochs",
            _ => "nothing: it happens once per fit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names() {
        assert_eq!(Event::BeforeOptimizerStep.attribute(), "on_before_optimizer_step");
        assert_eq!(Event::ValidationBatchEnd.attribute(), "on_validation_batch_end");
        assert_eq!(Event::TrainBegin.attribute(), "on_train_begin");
    }
}
