//! Unit-testing hooks without training: a [`Harness`] holds what hooks see — where training
//! is, the history, the running logs of a batch, the learning rate, resources, a `VarStore` —
//! and runs a hook at an event, as the training loop would, returning its [`Control`].
//!
//! ```
//! use trainmon::prelude::*;
//! use trainmon::testing::Harness;
//! use trainmon::Event;
//!
//! // The hook under test: stop when the loss has not improved for 2 epochs.
//! fn early_stop(epoch: &EpochLogs, mut best: Local<Option<f64>>, mut bad: Local<u32>) -> Control {
//!     match *best {
//!         Some(best) if epoch.loss() >= best => *bad += 1,
//!         _ => (*best, *bad) = (Some(epoch.loss()), 0),
//!     }
//!     if *bad >= 2 { Control::stop("no improvement") } else { Control::Continue }
//! }
//!
//! # fn main() -> Result<(), trainmon::BoxError> {
//! let mut harness = Harness::new();
//! let mut hook = harness.hook(Event::EpochEnd, early_stop)?;
//! let mut controls = Vec::new();
//! for loss in [1.0, 0.8, 0.9, 0.85] {
//!     harness.next_epoch(&[("loss", loss)]);
//!     controls.push(harness.run(Event::EpochEnd, &mut *hook)?);
//! }
//! assert_eq!(controls.last(), Some(&Control::stop("no improvement")));
//! assert_eq!(harness.state().epoch(), 4);
//! # Ok(())
//! # }
//! ```
//!
//! The same works for the attributes' functions (the function itself is given, its
//! attribute's filter is not applied), for closures, and for built-in hooks
//! (`harness.run(Event::EpochEnd, &mut EarlyStopping::new("loss"))`).

use crate::context::Scene;
use crate::control::Control;
use crate::error::{BoxError, Error, Result};
use crate::hook::{Hook, IntoHook};
use crate::records::history::{EpochLogs, History};
use crate::records::metrics::{Accuracy, BatchLogs};
use crate::resource::Resources;
use crate::schedule::event::Event;
use crate::state::TrainState;
use std::time::{Duration, Instant};
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// What hooks see, set by hand, and a way to run them; see the [module](self).
pub struct Harness {
    scene: Scene,
    vs: VarStore,
    resources: Resources,
    batch: BatchLogs,
    /// Whether the current epoch has begun (a batch ran in it).
    begun: bool,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// Before the first epoch of 100 planned, of 1 batch each, at learning rate 0.1, on the
    /// CPU, with an empty `VarStore` and no resources.
    pub fn new() -> Self {
        Harness {
            scene: Scene::new(TrainState {
                epoch: 0,
                epochs: 100,
                batch: 0,
                batches: 1,
                global_step: 0,
                started: Instant::now(),
                device: Device::Cpu,
                learning_rate: 0.1,
            }),
            vs: VarStore::new(Device::Cpu),
            resources: Resources::default(),
            batch: BatchLogs::new(false, vec![Box::new(Accuracy::new())], false),
            begun: false,
        }
    }

    /// Epochs planned ([`TrainState::epochs`]).
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.scene.state.epochs = epochs;
        self
    }

    /// Batches per epoch ([`TrainState::batches_per_epoch`]).
    pub fn batches_per_epoch(mut self, batches: usize) -> Self {
        self.scene.state.batches = batches;
        self
    }

    /// The learning rate in force; hooks may change it ([`Harness::learning_rate`]).
    pub fn with_learning_rate(mut self, learning_rate: f64) -> Self {
        self.scene.state.learning_rate = learning_rate;
        self.scene.learning_rate.set(learning_rate);
        self
    }

    /// A value hooks take as `Res<T>`, as [`crate::Trainer::resource`] gives it.
    pub fn resource<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.resources.insert(value);
        self
    }

    /// The `VarStore` hooks see (empty; add variables to it through its root).
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// Where training is, as hooks see it.
    pub fn state(&self) -> &TrainState {
        &self.scene.state
    }

    /// The epochs ended so far.
    pub fn history(&self) -> &History {
        &self.scene.history
    }

    /// The running logs of the batches so far in this epoch.
    pub fn batch_logs(&self) -> &BatchLogs {
        &self.batch
    }

    /// The learning rate, as the last hook run left it.
    pub fn learning_rate(&self) -> f64 {
        self.scene.learning_rate.get()
    }

    /// Makes `hook` a hook to run at `event`; an error when one of its parameters does not exist
    /// there (as `fit` would refuse it).
    pub fn hook<M>(&self, event: Event, hook: impl IntoHook<M>) -> Result<Box<dyn Hook>> {
        check::<M, _>(&hook, event)?;
        Ok(hook.into_hook())
    }

    /// Ends the epoch — the one the last batches ran in, or else the next — with these logs
    /// (`loss`, `val_loss`, any name), as the loop does before its `on_validation_end` and
    /// `on_epoch_end` hooks.
    pub fn next_epoch(&mut self, values: &[(&str, f64)]) -> &mut Self {
        let state = &mut self.scene.state;
        if !std::mem::take(&mut self.begun) {
            state.epoch += 1;
        }
        self.scene.history.epochs.push(EpochLogs {
            epoch: state.epoch,
            time: Duration::from_millis(10),
            batches: state.batch.max(1),
            samples: self.batch.samples().max(1),
            values: values.iter().map(|(n, v)| (crate::MetricKey::parse(n), *v)).collect(),
            learning_rate: state.learning_rate,
        });
        state.batch = 0;
        self
    }

    /// Trains the next batch, as far as hooks can tell: counters up by one (batch, optimizer
    /// step; the first batch after an epoch's end begins the next epoch), the running logs
    /// updated with its loss and its model outputs against the targets (accuracy is tracked).
    pub fn next_batch(&mut self, loss: f64, outputs: &Tensor, targets: &Tensor) -> Result<&mut Self> {
        let state = &mut self.scene.state;
        if !self.begun {
            self.begun = true;
            state.epoch += 1;
            state.batch = 0;
            self.batch.reset();
        }
        state.batch += 1;
        state.global_step += 1;
        self.batch.update(&Tensor::from(loss as f32), outputs, targets)?;
        Ok(self)
    }

    /// Runs `hook` at `event` as the loop would, now: with the batch logs at batch ends, the
    /// last epoch's logs at epoch and validation ends, and `error` for `on_exception` hooks
    /// ([`Harness::run_exception`]). Returns what the hook asked, or its error (a panic is a
    /// panic: tests see it as such).
    pub fn run(&mut self, event: Event, hook: &mut dyn Hook) -> std::result::Result<Control, BoxError> {
        let ctx = self.scene.context(event, &self.vs, &self.resources);
        let ctx = match event {
            Event::BatchEnd | Event::ValidationBatchEnd => ctx.with_batch(&self.batch),
            _ => ctx,
        };
        let control = hook.call(&ctx);
        self.scene.keep_logged();
        self.scene.state.learning_rate = self.scene.learning_rate.get();
        control
    }

    /// Runs an `on_exception` hook with the error that ended training.
    pub fn run_exception(&mut self, error: &Error, hook: &mut dyn Hook) -> std::result::Result<Control, BoxError> {
        let ctx = self
            .scene
            .context(Event::Exception, &self.vs, &self.resources)
            .with_error(error);
        hook.call(&ctx)
    }
}

fn check<M, H: IntoHook<M>>(_: &H, event: Event) -> Result<()> {
    H::check(event).map_err(|why| Error::config("hooks", format!("a hook at `{event}`: {why}")))
}
