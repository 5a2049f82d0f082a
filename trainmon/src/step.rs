//! Your own training step: a [`TrainStep`] computes a batch's loss — from any [`Batch`](crate::Batch), with
//! any number of models, inputs and losses — and the trainer does the rest around it, as for
//! its own classifier step: the backward pass, gradient accumulation, clipping, the gradient
//! scaler, the optimizer step, data-parallel averaging, every hook event at its place, running
//! loss and metrics, resume points.
//!
//! ```
//! use tch::{nn, nn::Module, Kind, Tensor};
//! use trainmon::prelude::*;
//! use trainmon::{BatchDataset, BoxError};
//!
//! /// Two inputs and whether they are alike.
//! #[derive(Batch)]
//! struct Pairs {
//!     left: Tensor,
//!     right: Tensor,
//!     alike: Tensor,
//! }
//!
//! struct PairSet(Pairs);
//!
//! impl BatchDataset for PairSet {
//!     type Batch = Pairs;
//!     fn len(&self) -> usize {
//!         self.0.alike.size()[0] as usize
//!     }
//!     fn batch(&self, indices: &[i64]) -> trainmon::Result<Pairs> {
//!         let at = Tensor::from_slice(indices);
//!         let pick = |t: &Tensor| t.index_select(0, &at);
//!         Ok(Pairs { left: pick(&self.0.left), right: pick(&self.0.right), alike: pick(&self.0.alike) })
//!     }
//! }
//!
//! /// One encoder for both inputs; the loss compares their codes' similarity with `alike`.
//! struct Siamese<'m> {
//!     encoder: &'m nn::Linear,
//! }
//!
//! impl TrainStep<Pairs> for Siamese<'_> {
//!     fn training_step(&mut self, batch: &Pairs, _: &StepContext<'_>) -> Result<StepOutput, BoxError> {
//!         let (a, b) = (self.encoder.forward(&batch.left), self.encoder.forward(&batch.right));
//!         let similarity = Tensor::f_cosine_similarity(&a, &b, 1, 1e-8)?;
//!         Ok(StepOutput::loss(similarity.f_mse_loss(&batch.alike, tch::Reduction::Mean)?))
//!     }
//! }
//!
//! # fn main() -> trainmon::Result<()> {
//! let vs = nn::VarStore::new(tch::Device::Cpu);
//! let encoder = nn::linear(vs.root() / "encoder", 16, 8, Default::default());
//! let left = Tensor::randn([64, 16], tch::kind::FLOAT_CPU);
//! let right = Tensor::randn([64, 16], tch::kind::FLOAT_CPU);
//! let alike = Tensor::ones([64], tch::kind::FLOAT_CPU);
//! let data = PairSet(Pairs { left, right, alike });
//! let history = Trainer::for_steps(&vs)
//!     .optimizer(nn::Adam::default(), 1e-2)
//!     .epochs(3)
//!     .hooks(trainmon::Hooks::none())
//!     .fit_steps(&mut Siamese { encoder: &encoder }, &data, None)?;
//! assert_eq!(history.len(), 3);
//! # Ok(())
//! # }
//! ```

use crate::error::BoxError;
use crate::state::TrainState;
use std::any::Any;
use std::cell::RefCell;
use tch::{Device, Tensor};

/// A training step of your own over batches of `B`: given a batch, the loss to minimise (and,
/// for metrics, outputs and targets). The trainer runs it under autocast in mixed precision,
/// then runs the backward pass, the optimizer step and the hooks around it.
///
/// The model(s) are the step's own (borrowed, usually); their variables must be those of the
/// trainer's `VarStore` for its optimizer to train them.
pub trait TrainStep<B> {
    /// The loss of `batch`, a scalar with a gradient (and, with metrics, the outputs and
    /// targets they compare: [`StepOutput::with_outputs`]). `ctx` says whether this is
    /// training (`ctx.training()`: dropout on) and where the fit is. An error ends the fit with
    /// an [`crate::Error::Step`] naming the batch.
    fn training_step(&mut self, batch: &B, ctx: &StepContext<'_>) -> Result<StepOutput, BoxError>;

    /// The loss (and outputs) of a validation batch, under `no_grad` with `ctx.training()`
    /// false. By default the training step's.
    fn validation_step(&mut self, batch: &B, ctx: &StepContext<'_>) -> Result<StepOutput, BoxError> {
        self.training_step(batch, ctx)
    }

    /// Whether the step runs the backward passes and the optimizer steps itself, through its
    /// context — `ctx.zero_grad(name)`, `ctx.backward(&loss)`, `ctx.optimizer_step(name)` —
    /// over the trainer's named optimizers ([`crate::Trainer::optimizer_for`]): a GAN's two,
    /// stepped in turn. The default, `false`: the trainer runs them after the step, on the
    /// loss it returns. A manual step's loss is only logged (no gradient needed). In
    /// validation its context's `zero_grad`, `backward` and `optimizer_step` do nothing, so the
    /// default validation step (the training step) computes the losses alone. Each batch counts
    /// one global step (one accumulation window, with `accumulate_gradients`); the events of its
    /// backward passes and optimizer steps fire at each call, with that step's counters (a hook
    /// filtered by step runs at each).
    ///
    /// Every setting of the trainer applies as for its own step: with `accumulate_gradients(k)`
    /// the context's `backward` divides the loss by `k`, `zero_grad` acts at a window's first
    /// batch and `optimizer_step` at its last; with a gradient scaler, `backward` scales the
    /// loss and `optimizer_step` unscales and checks the optimizer's gradients (skipping the
    /// step if they are not finite; the scale is updated once after the batch); with
    /// `rollback`, each loss given to `backward` and the loss the step returns are judged, and a
    /// bad batch is rolled back.
    fn manual_optimization(&self) -> bool {
        false
    }
}

/// What a step returns: the loss, and the outputs and targets the metrics compare.
#[derive(Debug)]
pub struct StepOutput {
    pub(crate) loss: Tensor,
    pub(crate) outputs: Option<(Tensor, Tensor)>,
}

impl StepOutput {
    /// A step's loss: a scalar tensor, with a gradient when training.
    pub fn loss(loss: Tensor) -> Self {
        StepOutput { loss, outputs: None }
    }

    /// The outputs and targets of the batch, for the metrics ([`crate::Trainer::metric`]):
    /// what a classifier's metrics get from its model and its targets.
    pub fn with_outputs(mut self, outputs: Tensor, targets: Tensor) -> Self {
        self.outputs = Some((outputs, targets));
        self
    }

    /// The loss, without the outputs (a step that wraps another's).
    pub fn into_loss(self) -> Tensor {
        self.loss
    }
}

/// What a step sees besides its batch — and, for a step that optimizes by hand
/// ([`TrainStep::manual_optimization`]), how it runs the backward passes and optimizer steps
/// with the trainer's hooks around them.
pub struct StepContext<'a> {
    pub(crate) training: bool,
    pub(crate) state: TrainState,
    /// Whether the step optimizes by hand.
    pub(crate) by_hand: bool,
    /// The loop, lent to a step that optimizes by hand while it trains (not in validation).
    pub(crate) manual: RefCell<Option<&'a mut dyn Manual>>,
}

/// The batch being trained or validated as hooks see it (`StepBatch` parameters), and its
/// type's name.
pub(crate) type Seen<'a> = (&'a dyn Any, &'static str);

/// The loop's side of a step that optimizes by hand.
pub(crate) trait Manual {
    fn backward(&mut self, loss: &Tensor) -> crate::Result<()>;
    fn zero_grad(&mut self, optimizer: &str) -> crate::Result<()>;
    fn optimizer_step(&mut self, optimizer: &str) -> crate::Result<()>;
}

impl StepContext<'_> {
    /// Whether this is a training step (`forward_t(x, ctx.training())`): false in validation.
    pub fn training(&self) -> bool {
        self.training
    }

    /// Where the fit is: epoch, batch, global step.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The training device (the batch is on it already).
    pub fn device(&self) -> Device {
        self.state.device()
    }

    fn manual(&self, what: &str, run: impl FnOnce(&mut dyn Manual) -> crate::Result<()>) -> crate::Result<()> {
        match (self.manual.borrow_mut().as_deref_mut(), self.by_hand) {
            (Some(manual), _) => run(manual),
            // Validation: nothing to optimize, and no gradient to compute.
            (None, true) => Ok(()),
            (None, false) => Err(crate::Error::config(
                "TrainStep::manual_optimization",
                format!(
                    "`ctx.{what}` in a step that does not optimize by hand: a step that calls it says so \
                 (`TrainStep::manual_optimization` returns true)"
                ),
            )),
        }
    }

    /// The backward pass of `loss`, between the `on_before_backward` and `on_after_backward`
    /// hooks (a step that optimizes by hand). In validation, nothing: the default
    /// `validation_step`, the training step's, then computes its losses alone.
    pub fn backward(&self, loss: &Tensor) -> crate::Result<()> {
        self.manual("backward", |m| m.backward(loss))
    }

    /// Unsets the gradients of the variables of the optimizer named `optimizer`
    /// ([`crate::Trainer::optimizer_for`]); nothing in validation.
    pub fn zero_grad(&self, optimizer: &str) -> crate::Result<()> {
        self.manual("zero_grad", |m| m.zero_grad(optimizer))
    }

    /// One step of the optimizer named `optimizer`: its variables' gradients clipped (as the
    /// trainer is set to), the `on_before_optimizer_step` hooks, then the step; nothing in
    /// validation.
    pub fn optimizer_step(&self, optimizer: &str) -> crate::Result<()> {
        self.manual("optimizer_step", |m| m.optimizer_step(optimizer))
    }
}
