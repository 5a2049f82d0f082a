//! The events of training at which hooks run.

/// A point in training where hooks run. Counters are 1-based: epochs count from 1, and batch
/// events count the batch within its epoch (1, 2, …, restarting every epoch), so that
/// `#[on_batch_end(every = 10)]` fires at batches 10, 20, 30 of every epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Event {
    /// Once, when `fit` starts (`#[on_train_begin]`).
    TrainBegin,
    /// At the start of each epoch (`#[on_epoch_begin]`); counts epochs.
    EpochBegin,
    /// Before each training batch (`#[on_batch_begin]`); counts batches within the epoch.
    BatchBegin,
    /// After each training batch's optimizer step (`#[on_batch_end]`); counts batches within the epoch.
    BatchEnd,
    /// At the end of each epoch, its logs final (`#[on_epoch_end]`); counts epochs.
    EpochEnd,
    /// Once, when training ends, however it ended (`#[on_train_end]`).
    TrainEnd,
}

impl Event {
    /// Every event, in the order they first occur in a fit.
    pub const ALL: [Event; 6] = [
        Event::TrainBegin,
        Event::EpochBegin,
        Event::BatchBegin,
        Event::BatchEnd,
        Event::EpochEnd,
        Event::TrainEnd,
    ];

    /// The attribute that registers a hook for this event.
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
        BatchEnd: "`#[on_batch_end]`",
        EpochEnd: "`#[on_epoch_end]`",
        TrainEnd: "`#[on_train_end]`",
    }
}
