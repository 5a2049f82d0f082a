//! **Declarative training hooks for Rust and libtorch: annotate a function, and it runs at its
//! event.**
//!
//! A hook is a plain function with an attribute. The attribute checks the function at compile
//! time and registers it; [`Trainer::fit`] finds every registered hook and calls it at its
//! event. Nothing is wired by hand.
//!
//! # Examples
//!
//! The batch logger and early stopping of the classic PyTorch callbacks tutorial:
//!
//! ```
//! use trainmon::prelude::*;
//!
//! // After every 10th batch of each epoch (batches 10, 20, 30, …).
//! #[on_batch_end(every = 10)]
//! fn log_batch(batch: &BatchLogs) {
//!     println!("Batch {}: Loss = {:.4}, Accuracy = {:.4}", batch.number(), batch.loss(), batch.accuracy());
//! }
//!
//! // After every epoch; `Local` state is private to this hook and kept across its calls.
//! #[on_epoch_end]
//! fn early_stop(epoch: &EpochLogs, mut best: Local<Option<f64>>, mut bad_epochs: Local<u32>) -> Control {
//!     match *best {
//!         Some(best) if epoch.loss() >= best => *bad_epochs += 1,
//!         _ => (*best, *bad_epochs) = (Some(epoch.loss()), 0),
//!     }
//!     if *bad_epochs >= 2 {
//!         Control::stop("loss did not improve for 2 epochs")
//!     } else {
//!         Control::Continue
//!     }
//! }
//! ```
//!
//! Then train: every hook of the binary runs.
//!
//! ```
//! use tch::{nn, Device, Kind, Tensor};
//! use trainmon::prelude::*;
//!
//! # fn main() -> trainmon::Result<()> {
//! let vs = nn::VarStore::new(Device::Cpu);
//! let model = nn::linear(vs.root(), 20, 2, Default::default());
//! let data = TensorDataset::new(
//!     Tensor::randn([1000, 20], (Kind::Float, Device::Cpu)),
//!     Tensor::randint(2, [1000], (Kind::Int64, Device::Cpu)),
//! )?;
//! let history = Trainer::new(&vs, &model)
//!     .optimizer(nn::Adam::default(), 1e-3)
//!     .epochs(5)
//!     .batch_size(32)
//!     .fit(&data)?;
//! assert_eq!(history.len(), 5);
//! # Ok(())
//! # }
//! ```
//!
//! # Events
//!
//! | attribute | runs | filters count |
//! |---|---|---|
//! | `#[on_train_begin]` | once, when `fit` starts | — |
//! | `#[on_epoch_begin]` | at the start of each epoch | epochs, from 1 |
//! | `#[on_batch_begin]` | before each training batch | batches within the epoch, from 1 |
//! | `#[on_before_backward]` | after the batch's loss, gradients zeroed, before the backward pass | batches within the epoch |
//! | `#[on_after_backward]` | after the backward pass: gradients are there | batches within the epoch |
//! | `#[on_before_optimizer_step]` | just before the optimizer step | batches within the epoch |
//! | `#[on_batch_end]` | after the optimizer step, the running logs ready | batches within the epoch |
//! | `#[on_validation_begin]` | before each epoch's validation pass | epochs |
//! | `#[on_validation_batch_end]` | after each validation batch | validation batches, from 1 |
//! | `#[on_validation_end]` | after the validation pass | epochs |
//! | `#[on_epoch_end]` | at the end of each epoch, its logs final | epochs |
//! | `#[on_train_end]` | once, when training ends (all epochs, or a stop) | — |
//! | `#[on_exception]` | once, when training fails with an error | — |
//!
//! One function may carry several attributes; it then runs at each of those events.
//!
//! ```
//! use trainmon::prelude::*;
//!
//! #[on_train_begin]
//! #[on_train_end]
//! fn bracket(state: &TrainState) {
//!     println!("epoch {} of {}, {:?} in", state.epoch(), state.epochs(), state.elapsed());
//! }
//!
//! #[on_after_backward(every = 100)]
//! fn gradient_norm(vs: &VarStore) {
//!     let norm: f64 = vs.trainable_variables().iter().map(|v| v.grad().norm().double_value(&[]).powi(2)).sum();
//!     println!("gradient norm {:.3}", norm.sqrt());
//! }
//!
//! #[on_epoch_begin(every = 5)]
//! fn every_fifth_epoch(state: &TrainState, lr: LearningRate) {
//!     println!("epoch {} starts at learning rate {}", state.epoch(), lr.get());
//! }
//!
//! #[on_batch_begin(once = 1)]
//! fn first_batch(state: &TrainState) {
//!     println!("epoch {} begins its batches on {:?}", state.epoch(), state.device());
//! }
//!
//! #[on_before_backward(once = 1, counter = global_step)]
//! fn first_loss(state: &TrainState) {
//!     println!("first loss computed at step {}", state.global_step() + 1);
//! }
//!
//! #[on_before_optimizer_step(every = 1000, counter = global_step)]
//! fn steps(state: &TrainState) {
//!     println!("step {}", state.global_step() + 1);
//! }
//!
//! #[on_validation_begin]
//! fn validating(state: &TrainState) {
//!     println!("validating epoch {}", state.epoch());
//! }
//!
//! #[on_validation_batch_end(every = 10)]
//! fn val_progress(batch: &BatchLogs) {
//!     println!("validation batch {}: loss {:.4}", batch.number(), batch.loss());
//! }
//!
//! #[on_validation_end]
//! fn val_summary(epoch: &EpochLogs) {
//!     println!("val_loss {:?}, val_accuracy {:?}", epoch.val_loss(), epoch.get("val_accuracy"));
//! }
//!
//! #[on_exception]
//! fn report(error: &trainmon::Error, history: &History) {
//!     eprintln!("training failed after {} epochs: {error}", history.len());
//! }
//! ```
//!
//! # Filters
//!
//! As Ignite's event filters, on the event's 1-based counter (table above); all must hold:
//!
//! | option | fires when the counter `c` … |
//! |---|---|
//! | `every = N` | is a multiple of N |
//! | `once = N`, `once = [N, M, …]` | is one of these (alone: not with the others) |
//! | `after = N` | is greater than N |
//! | `before = N` | is less than N |
//! | `when = path` | any, when `path(&TrainState) -> bool` is true |
//! | `counter = global_step` | (training-batch events) counts optimizer steps over the fit instead |
//!
//! ```
//! use trainmon::prelude::*;
//!
//! // Batches 20, 30, 40 of every epoch.
//! #[on_batch_end(every = 10, after = 10, before = 50)]
//! fn mid_epoch(batch: &BatchLogs) {
//!     println!("{}: {:.4}", batch.number(), batch.loss());
//! }
//!
//! // Epochs 1, 10 and 100.
//! #[on_epoch_end(once = [1, 10, 100])]
//! fn milestones(epoch: &EpochLogs) {
//!     println!("epoch {}: {:.4}", epoch.epoch(), epoch.loss());
//! }
//!
//! // Every 500 optimizer steps of the fit, once past the first epoch.
//! fn warmed_up(state: &TrainState) -> bool {
//!     state.epoch() > 1
//! }
//!
//! #[on_batch_end(every = 500, counter = global_step, when = warmed_up)]
//! fn long_run(state: &TrainState) {
//!     println!("step {}", state.global_step());
//! }
//! ```
//!
//! Contradictions are compile errors: `once` with `every`, `before` not above `after`, a
//! filter on an event that happens once, `every = 0`.
//!
//! # Parameters
//!
//! Taken by type, in any order (see [`HookParam`]): `&TrainState`, `&BatchLogs` (batch ends),
//! `&EpochLogs` (validation and epoch ends), `&History`, `Local<T>`, `Res<T>` (a value the
//! trainer was given: [`Res`]), `&VarStore`,
//! [`LearningRate`], `&Error` (`on_exception`). A parameter that is not one of these, or that
//! does not exist at the hook's event, is a compile error under it:
//!
//! ```compile_fail
//! use trainmon::prelude::*;
//!
//! #[on_train_begin]
//! fn too_early(batch: &BatchLogs) {} // no batch has run yet
//! ```
//!
//! ```
//! use trainmon::prelude::*;
//!
//! // Halve the learning rate when the loss stops falling (a plateau scheduler, by hand).
//! #[on_epoch_end]
//! fn plateau(epoch: &EpochLogs, history: &History, lr: LearningRate) {
//!     let previous = history.epochs().iter().rev().nth(1).map(|e| e.loss());
//!     if previous.is_some_and(|p| epoch.loss() >= p) {
//!         lr.set(lr.get() * 0.5);
//!     }
//! }
//! ```
//!
//! # Returns
//!
//! `()`, [`Control`] (to stop training, with a reason kept in [`History::stop_reason`]), or
//! `Result<(), E>` / `Result<Control, E>` for any error `E` that converts into a boxed error
//! (every `std::error::Error + Send + Sync`, `String`, `anyhow::Error`). An error — or a
//! panic — stops training with [`Error::Hook`], which names the hook and its file:line; the
//! `on_exception` hooks run first.
//!
//! ```
//! use trainmon::prelude::*;
//!
//! #[on_batch_end]
//! fn guard(batch: &BatchLogs) -> Result<Control, String> {
//!     if batch.loss().is_nan() {
//!         return Err(format!("loss is NaN at batch {}", batch.number()));
//!     }
//!     Ok(if batch.accuracy() > 0.99 { Control::stop("accurate enough") } else { Control::Continue })
//! }
//! ```
//!
//! # Order
//!
//! Hooks of one event run by descending `priority` (default 0), then by module path, function
//! name and location: never by link order. [`priority`] names the places of the built-in hooks,
//! and a priority may be a constant expression:
//!
//! ```
//! use trainmon::prelude::*;
//!
//! #[on_epoch_end(priority = 10)]
//! fn before_the_others() {}
//!
//! #[on_epoch_end(priority = trainmon::priority::CHECKPOINT - 1)]
//! fn after_checkpoints() {}
//! ```
//!
//! # Which hooks run
//!
//! By default every registered hook of the binary. [`Trainer::hooks`] narrows that down with
//! [`Hooks`]: none, some groups (`group = "name"` on the attribute), all but some (by group,
//! name or path). [`Trainer::add_hook`] adds hooks built at run time — a function or closure
//! over the same parameters ([`IntoHook`]), or a [`Hook`] struct — ordered with the others.
//! [`testing::Harness`] runs a hook without training, to unit-test it.
//!
//! ```
//! use trainmon::prelude::*;
//! use trainmon::Hooks;
//!
//! #[on_batch_end(every = 10, group = "verbose")]
//! fn chatty(batch: &BatchLogs) {
//!     println!("{}", batch.loss());
//! }
//!
//! # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! # let model = tch::nn::linear(vs.root(), 2, 2, Default::default());
//! let quiet = Trainer::new(&vs, &model).hooks(Hooks::all().except(["verbose"]));
//! # let _ = quiet;
//! ```
//!
//! Hooks defined in another crate are registered only if that crate is linked into the
//! binary: refer to it (`use my_hooks as _;`). A selected group with no hooks is warned about
//! when `fit` starts. If your `Cargo.toml` renames trainmon, say so with `crate`:
//!
//! ```
//! extern crate trainmon as tm;
//!
//! #[tm::on_epoch_end(crate = "tm")]
//! fn renamed(epoch: &tm::EpochLogs) {
//!     println!("{}", epoch.loss());
//! }
//! ```
//!
//! `#[cfg]` on a hook applies to its registration too.
//!
//! # Built-in hooks
//!
//! [`hooks`] has what users of Lightning, Ignite and Keras reach for — logging, early stopping,
//! checkpoints, NaN and time guards, learning-rate schedules, throughput, CSV/JSONL metric files,
//! TensorBoard event files, plots, a summary — each a struct with a builder, added with
//! [`Trainer::with`].
//!
//! # Resuming
//!
//! [`Trainer::resumable`] keeps a resume point at the end of every epoch — weights, optimizer
//! state ([`optim`]), counters, the shuffling generator, the history, and every hook's state —
//! and goes on from it when the program runs again. A hook's `Local<T>` is kept (serde handles
//! its `T`), an annotated function's and a closure's alike; a `Scratch<T>` is not:
//!
//! ```
//! use trainmon::prelude::*;
//!
//! // Kept in resume points: a resumed run goes on with the losses seen before the crash.
//! #[on_epoch_end]
//! fn moving_average(epoch: &EpochLogs, mut recent: Local<Vec<f64>>) {
//!     recent.push(epoch.loss());
//!     if recent.len() > 5 {
//!         recent.remove(0);
//!     }
//! }
//! ```
//!
//! # Cost
//!
//! A hook that is filtered out costs a few integer operations (about 1.5 ns), a no-op hook
//! that fires with two parameters 6 to 8 ns, measured by `cargo bench -p trainmon --bench
//! dispatch` (see the README for the figures).

#![warn(missing_docs)]

extern crate self as trainmon;

// The layers (ARCHITECTURE.md): each module imports only from its own layer or those above
// it in this list, and no import cycle exists (checked by `tests/architecture.rs`).
//
// 1. Vocabulary: what a fit is made of and what hooks see.
mod context;
mod control;
mod data;
mod error;
mod panics;
mod precision;
mod records;
mod resource;
mod schedule;
mod state;
mod step;
// 2. Hooks: the trait, typed parameters, the registry of annotated functions.
mod hook;
mod param;
mod registry;
// 3. The engine: optimizers, files, the trainer and its loop.
pub mod dist;
pub mod optim;
pub mod output;
mod trainer;
// 4. On top: the built-in hooks, logging, the test harness.
mod bench;
pub mod hooks;
pub mod logging;
pub mod testing;

pub use context::{HookContext, LearningRate};
pub use control::{Control, IntoControl, StopCause};
pub use data::batch::Batch;
pub use data::loader::{BatchLoader, Loader};
pub use data::{BatchDataset, Dataset, EpochBatches, Prefetched, PrefetchedBatches, TensorDataset};
pub use error::{BoxError, Error, Result};
pub use hook::{Hook, IntoHook, Plugin};
pub use param::{HookParam, Local, Scratch, StepBatch};
pub use precision::{GradScaler, Precision};
pub use records::history::{EpochLogs, Histogram, History, HookCost, Logged, LoggedValue, Skipped, StopReason};
pub use records::key::{MetricKey, Split};
pub use records::loss::{Loss, LossFn};
pub use records::metrics::{Accuracy, BatchLogs, Metric};
pub use records::saved::HookState;
pub use registry::{registrations, Hooks, Registration};
pub use resource::{Requirement, Res};
pub use schedule::event::{events, Event, Occurs};
pub use schedule::filter::{Counter, Filter};
pub use schedule::priority;
pub use schedule::spec::{HookInfo, HookLocation, HookSpec};
pub use state::{Dist, Settings, TrainState};
pub use step::{StepContext, StepOutput, TrainStep};
pub use trainer::{NanPolicy, Rollback, Trainer};
pub use trainmon_macros::Batch;

macro_rules! reexport_attributes {
    ($($variant:ident $attribute:ident $occurs:ident $doc:literal $attr_doc:literal)*) => {
        pub use trainmon_macros::{$($attribute),*};
    };
}
trainmon_events::for_each_event!(reexport_attributes);

/// Everything a file of hooks needs: `use trainmon::prelude::*;`.
pub mod prelude {
    macro_rules! attributes {
        ($($variant:ident $attribute:ident $occurs:ident $doc:literal $attr_doc:literal)*) => {
            pub use crate::{$($attribute),*};
        };
    }
    trainmon_events::for_each_event!(attributes);
    pub use crate::{
        Batch, BatchLogs, Control, Dist, EpochLogs, GradScaler, History, LearningRate, Loader, Local, Precision, Res,
        Scratch, StepBatch, StepContext, StepOutput, TensorDataset, TrainState, TrainStep, Trainer,
    };
    pub use tch::nn::VarStore;
}

/// Not public API: what the attributes' generated code refers to.
#[doc(hidden)]
pub mod __private {
    pub use crate::bench::DispatchBench;
    pub use crate::control::IntoControl;
    pub use crate::data::batch::{part_name, Batch};
    pub use crate::hook::{fn_hook, Hook};
    pub use crate::param::{
        fetch, init_state, param_at, HookParam, Persist, PersistNothing, PersistParam, Require, RequireNothing,
        RequireResource,
    };
    pub use crate::registry::Registration;
    pub use crate::resource::Requirement;
    pub use crate::schedule::event::{events, Event};
    pub use inventory;
    pub use tch::{Device, TchError, Tensor};
}
