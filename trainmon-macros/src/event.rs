//! The events, as the macros see them: attribute name, runtime variant, which options apply.

use proc_macro2::{Ident, Span};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    TrainBegin,
    EpochBegin,
    BatchBegin,
    BatchEnd,
    EpochEnd,
    TrainEnd,
}

impl Event {
    /// The attribute's name, for messages.
    pub fn attribute(self) -> &'static str {
        match self {
            Event::TrainBegin => "on_train_begin",
            Event::EpochBegin => "on_epoch_begin",
            Event::BatchBegin => "on_batch_begin",
            Event::BatchEnd => "on_batch_end",
            Event::EpochEnd => "on_epoch_end",
            Event::TrainEnd => "on_train_end",
        }
    }

    /// The variant of `trainmon::Event`, which also names the marker type in `trainmon::events`.
    pub fn variant(self) -> Ident {
        let name = match self {
            Event::TrainBegin => "TrainBegin",
            Event::EpochBegin => "EpochBegin",
            Event::BatchBegin => "BatchBegin",
            Event::BatchEnd => "BatchEnd",
            Event::EpochEnd => "EpochEnd",
            Event::TrainEnd => "TrainEnd",
        };
        Ident::new(name, Span::call_site())
    }

    /// Whether the event repeats, so that `every` means something.
    pub fn repeats(self) -> bool {
        !matches!(self, Event::TrainBegin | Event::TrainEnd)
    }

    /// What `every` counts at this event, for messages.
    pub fn counter(self) -> &'static str {
        match self {
            Event::BatchBegin | Event::BatchEnd => "batches within the epoch",
            Event::EpochBegin | Event::EpochEnd => "epochs",
            Event::TrainBegin | Event::TrainEnd => "nothing: it fires once per fit",
        }
    }
}
