//! Attribute macros of [trainmon](https://docs.rs/trainmon). Use them through `trainmon`, which
//! re-exports them: `use trainmon::prelude::*;`.
//!
//! Each attribute marks a free function as a hook of one event. The macro checks the function
//! (parse → check → expand), leaves it as written, and registers it with the hook registry of
//! `trainmon`, so that `Trainer::fit` finds and calls it.

mod args;
mod check;
mod event;
mod expand;

use event::Event;
use proc_macro::TokenStream;

macro_rules! attributes {
    ($($(#[doc = $doc:literal])* $name:ident => $event:ident;)*) => {$(
        $(#[doc = $doc])*
        #[proc_macro_attribute]
        pub fn $name(args: TokenStream, item: TokenStream) -> TokenStream {
            expand::hook(Event::$event, args.into(), item.into()).into()
        }
    )*};
}

attributes! {
    /// Runs the function once when `fit` starts, before the first epoch.
    ///
    /// Options: `priority = i32` (higher runs first, default 0), `group = "name"`, `crate = "path"`.
    on_train_begin => TrainBegin;
    /// Runs the function at the start of each epoch.
    ///
    /// Filters count epochs from 1: `every = N`, `once = N` or `once = [N, …]`, `after = N`,
    /// `before = N`, `when = predicate`. Options: `priority`, `group`, `crate`.
    on_epoch_begin => EpochBegin;
    /// Runs the function before each training batch.
    ///
    /// Filters count the batch within its epoch from 1 (`counter = global_step`: the optimizer
    /// step over the fit). Options: `every`, `once`, `after`, `before`, `when`, `counter`,
    /// `priority`, `group`, `crate`.
    on_batch_begin => BatchBegin;
    /// Runs the function after the batch's loss is computed, before the backward pass. Filters
    /// and options as `on_batch_begin`.
    on_before_backward => BeforeBackward;
    /// Runs the function after the backward pass, gradients computed. Filters and options as
    /// `on_batch_begin`.
    on_after_backward => AfterBackward;
    /// Runs the function just before the optimizer step. Filters and options as `on_batch_begin`.
    on_before_optimizer_step => BeforeOptimizerStep;
    /// Runs the function after each training batch's optimizer step, with the epoch's running
    /// logs: `every = 10` fires at batches 10, 20, 30 of every epoch. Filters and options as
    /// `on_batch_begin`.
    on_batch_end => BatchEnd;
    /// Runs the function before each epoch's validation pass. Filters count epochs.
    on_validation_begin => ValidationBegin;
    /// Runs the function after each validation batch, with the validation run's running logs.
    /// Filters count validation batches from 1.
    on_validation_batch_end => ValidationBatchEnd;
    /// Runs the function after each epoch's validation pass; the epoch's logs hold the `val_`
    /// metrics. Filters count epochs.
    on_validation_end => ValidationEnd;
    /// Runs the function at the end of each epoch, its logs final. Filters count epochs.
    on_epoch_end => EpochEnd;
    /// Runs the function once when training ends, however it ended but by an error.
    ///
    /// Options: `priority`, `group`, `crate`.
    on_train_end => TrainEnd;
    /// Runs the function once when training fails with an error (`&Error` parameter).
    ///
    /// Options: `priority`, `group`, `crate`.
    on_exception => Exception;
}
