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
//! if let Some(stop) = history.stop_reason() {
//!     println!("stopped early: {stop}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Hooks
//!
//! | attribute | runs | `every = N` counts |
//! |---|---|---|
//! | `#[on_train_begin]` | once, when `fit` starts | — |
//! | `#[on_epoch_begin]` | at the start of each epoch | epochs, from 1 |
//! | `#[on_batch_begin]` | before each batch | batches within the epoch, from 1 |
//! | `#[on_batch_end]` | after each batch's optimizer step | batches within the epoch, from 1 |
//! | `#[on_epoch_end]` | at the end of each epoch | epochs, from 1 |
//! | `#[on_train_end]` | once, when training ends | — |
//!
//! Options: `every = N` (repeating events), `priority = i32` (higher runs first; default 0),
//! `crate = "path"` (where `trainmon` is, if the dependency is renamed).
//!
//! **Parameters** are taken by type, in any order (see [`param`]): `&TrainState`, `&BatchLogs`
//! (`on_batch_end`), `&EpochLogs` (`on_epoch_end`), `&History`, and `Local<T>`.
//!
//! **Returns**: `()`, [`Control`] (to stop training, with a reason), or a `Result` of either
//! (an error stops training with [`Error::Hook`], naming the hook and its file:line).
//!
//! **Order**: hooks of one event run by descending `priority`, then by module path, function
//! name and location: never by link order.
//!
//! A parameter that does not exist at the hook's event is a compile error under it:
//!
//! ```compile_fail
//! use trainmon::prelude::*;
//!
//! #[on_train_begin]
//! fn too_early(batch: &BatchLogs) {} // no batch has run yet
//! ```
//!
//! Hooks defined in another crate are registered only if that crate is linked: refer to it
//! (`use my_hooks as _;`) from the binary.

#![warn(missing_docs)]

extern crate self as trainmon;

pub mod control;
pub mod data;
pub mod error;
pub mod event;
pub mod filter;
pub mod history;
pub mod hook;
pub mod metrics;
pub mod output;
pub mod param;
pub mod registry;
pub mod trainer;

pub use control::Control;
pub use data::TensorDataset;
pub use error::{BoxError, Error, Result};
pub use event::{events, Event};
pub use filter::{Counter, Filter};
pub use history::{EpochLogs, History, StopReason};
pub use hook::{hook_fn, Hook, HookContext};
pub use metrics::BatchLogs;
pub use param::{LearningRate, Local};
pub use registry::{HookInfo, HookSpec, Hooks};
pub use trainer::{TrainState, Trainer};
pub use trainmon_macros::{
    on_after_backward, on_batch_begin, on_batch_end, on_before_backward, on_before_optimizer_step, on_epoch_begin,
    on_epoch_end, on_exception, on_train_begin, on_train_end, on_validation_batch_end, on_validation_begin,
    on_validation_end,
};

/// Everything a file of hooks needs: `use trainmon::prelude::*;`.
pub mod prelude {
    pub use crate::{
        on_after_backward, on_batch_begin, on_batch_end, on_before_backward, on_before_optimizer_step, on_epoch_begin,
        on_epoch_end, on_exception, on_train_begin, on_train_end, on_validation_batch_end, on_validation_begin,
        on_validation_end, BatchLogs, Control, EpochLogs, History, LearningRate, Local, TensorDataset, TrainState,
        Trainer,
    };
    pub use tch::nn::VarStore;
}

mod bench;

/// Not public API: what the attributes' generated code refers to.
#[doc(hidden)]
pub mod __private {
    pub use crate::bench::DispatchBench;
    pub use crate::control::IntoControl;
    pub use crate::hook::fn_hook;
    pub use crate::param::{fetch, param_at, HookParam};
    pub use crate::registry::Registration;
    pub use inventory;
}
