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

/// Runs the function once when `fit` starts, before the first epoch.
///
/// Options: `priority = i32` (higher runs first, default 0), `crate = "path"`.
#[proc_macro_attribute]
pub fn on_train_begin(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::hook(Event::TrainBegin, args.into(), item.into()).into()
}

/// Runs the function at the start of each epoch (epochs count from 1).
///
/// Options: `every = N` (epochs N, 2N, …), `priority = i32`, `crate = "path"`.
#[proc_macro_attribute]
pub fn on_epoch_begin(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::hook(Event::EpochBegin, args.into(), item.into()).into()
}

/// Runs the function before each training batch (batches count from 1 within each epoch).
///
/// Options: `every = N` (batches N, 2N, … of every epoch), `priority = i32`, `crate = "path"`.
#[proc_macro_attribute]
pub fn on_batch_begin(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::hook(Event::BatchBegin, args.into(), item.into()).into()
}

/// Runs the function after each training batch's optimizer step (batches count from 1 within
/// each epoch, so `every = 10` fires at batches 10, 20, 30 of every epoch).
///
/// Options: `every = N`, `priority = i32`, `crate = "path"`.
#[proc_macro_attribute]
pub fn on_batch_end(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::hook(Event::BatchEnd, args.into(), item.into()).into()
}

/// Runs the function at the end of each epoch, after its logs are final (epochs count from 1).
///
/// Options: `every = N` (epochs N, 2N, …), `priority = i32`, `crate = "path"`.
#[proc_macro_attribute]
pub fn on_epoch_end(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::hook(Event::EpochEnd, args.into(), item.into()).into()
}

/// Runs the function once when training ends, however it ended (all epochs run or a stop).
///
/// Options: `priority = i32` (higher runs first, default 0), `crate = "path"`.
#[proc_macro_attribute]
pub fn on_train_end(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::hook(Event::TrainEnd, args.into(), item.into()).into()
}
