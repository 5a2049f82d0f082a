//! The work of a step, typed by its batch: the trainer's own (the model's forward pass and the
//! loss, on a dataset's `(features, targets)`) or the user's [`TrainStep`]; each failure an
//! error naming the batch and the shapes. Everything around the work — backward passes,
//! optimizer steps, hooks — is the engine's.

use crate::data::batch::Batch;
use crate::error::{BoxError, Error, Result};
use crate::panics;
use crate::precision::native;
use crate::records::loss::Loss;
use crate::step::{StepContext, StepOutput, TrainStep};
use tch::nn::ModuleT;
use tch::{Kind, Tensor};

/// A batch's loss, and the outputs and targets its metrics compare (if the work gives them).
pub(super) struct Computed<'b> {
    pub loss: Tensor,
    pub outputs: Option<(Tensor, Truth<'b>)>,
}

/// The targets a batch's outputs are compared with: the batch's own (the trainer's step: no
/// copy of the tensor a batch), or those a step returned with its outputs.
pub(super) enum Truth<'b> {
    Batch(&'b Tensor),
    Step(Tensor),
}

impl Computed<'_> {
    /// The outputs and targets, for the running metrics.
    pub fn outputs(&self) -> Option<(&Tensor, &Tensor)> {
        self.outputs.as_ref().map(|(outputs, truth)| match truth {
            Truth::Batch(targets) => (outputs, *targets),
            Truth::Step(targets) => (outputs, targets),
        })
    }
}

/// What computes a batch's loss, over batches of `B`.
pub(super) trait Work<B> {
    /// The loss of `batch` — in training (`ctx.training()`) or validation —, under autocast to
    /// `autocast` in mixed precision; `at` names the batch in errors.
    fn compute<'b>(
        &mut self,
        batch: &'b B,
        ctx: &StepContext<'_>,
        autocast: Option<Kind>,
        at: &dyn Fn() -> String,
    ) -> Result<Computed<'b>>;

    /// Whether the work runs the backward passes and optimizer steps itself, through its
    /// context ([`TrainStep::manual_optimization`]).
    fn by_hand(&self) -> bool {
        false
    }

    /// Whether every batch's outputs and targets are of one size, from rank to rank (the
    /// trainer's own step: the batches' are); a step's may not be (unpadded sequences).
    fn outputs_of_one_size(&self) -> bool {
        false
    }
}

/// The trainer's own step: the model's forward pass, then the loss.
pub(super) struct Model<'m> {
    pub model: &'m dyn ModuleT,
    pub loss: &'m Loss,
}

impl Work<(Tensor, Tensor)> for Model<'_> {
    fn compute<'b>(
        &mut self,
        (x, y): &'b (Tensor, Tensor),
        ctx: &StepContext<'_>,
        autocast: Option<Kind>,
        at: &dyn Fn() -> String,
    ) -> Result<Computed<'b>> {
        let (outputs, loss) = forward_loss(self.model, self.loss, (x, y), ctx.training(), autocast, at)?;
        Ok(Computed {
            loss,
            outputs: Some((outputs, Truth::Batch(y))),
        })
    }

    fn outputs_of_one_size(&self) -> bool {
        true
    }
}

/// The user's step.
pub(super) struct Stepped<'s, S> {
    pub step: &'s mut S,
}

impl<B: Batch, S: TrainStep<B>> Work<B> for Stepped<'_, S> {
    fn compute<'b>(
        &mut self,
        batch: &'b B,
        ctx: &StepContext<'_>,
        autocast: Option<Kind>,
        at: &dyn Fn() -> String,
    ) -> Result<Computed<'b>> {
        let step = &mut *self.step;
        let (loss, outputs) = step_loss(
            || match ctx.training() {
                true => step.training_step(batch, ctx),
                false => step.validation_step(batch, ctx),
            },
            ctx,
            autocast,
            at,
        )?;
        Ok(Computed {
            loss,
            outputs: outputs.map(|(outputs, targets)| (outputs, Truth::Step(targets))),
        })
    }

    fn by_hand(&self) -> bool {
        self.step.manual_optimization()
    }
}

/// The forward pass and the loss of a batch: `(outputs, loss)`. With `autocast` (mixed
/// precision), both run under autocast to that type on the features' device type, as in
/// `with torch.autocast(device_type, dtype): loss = loss_fn(model(x), y)`; outputs of a 16-bit
/// type are cast back to fp32 first, so that the loss, the running loss and the metrics are
/// computed in fp32 (the cast is differentiable: the gradients reach the weights as fp32), and
/// so is a 16-bit loss (a custom loss with a matmul of its own).
fn forward_loss(
    model: &dyn ModuleT,
    loss: &Loss,
    (x, y): (&Tensor, &Tensor),
    train: bool,
    autocast: Option<Kind>,
    at: &dyn Fn() -> String,
) -> Result<(Tensor, Tensor)> {
    let run = || {
        let outputs = fp32(forward(model, x, train, at)?, "the model's outputs", at)?;
        let value = fp32(compute_loss(loss, &outputs, y, at)?, "the loss", at)?;
        Ok((outputs, value))
    };
    match autocast {
        Some(kind) => native::with_autocast(x.device(), kind, run),
        None => run(),
    }
}

/// The loss of a batch by the user's step (and its outputs and targets, if it gave them), under
/// autocast as [`forward_loss`] runs the model's; the validation step under `no_grad` (the
/// loop's). The loss must be a scalar — with a gradient, when training —: anything else is an
/// [`Error::Step`] naming the batch, before any backward pass. 16-bit losses and outputs are
/// cast to fp32, as the trainer's own step does.
fn step_loss(
    run: impl FnOnce() -> std::result::Result<StepOutput, BoxError>,
    ctx: &StepContext<'_>,
    autocast: Option<Kind>,
    at: &dyn Fn() -> String,
) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
    // The loop's own errors (a hook's, through the context of a step that optimizes by hand)
    // come back as they were.
    let failed = |source: BoxError| match source.downcast::<Error>() {
        Ok(own) => *own,
        Err(source) => Error::Step {
            at: at(),
            // libtorch's message without its C++ stack (`TorchError::full_message` keeps it).
            source: match source.downcast::<tch::TchError>() {
                Ok(tch) => Box::new(Error::torch("libtorch refused an operation", *tch)),
                Err(other) => other,
            },
        },
    };
    let (training, by_hand, device) = (ctx.training, ctx.by_hand, ctx.state.device());
    let run = || panics::caught(run);
    let output = match autocast {
        Some(kind) => native::with_autocast(device, kind, run),
        None => run(),
    };
    let StepOutput { loss, outputs } = output
        .map_err(|panic| failed(format!("panicked: {panic}").into()))?
        .map_err(failed)?;
    if loss.numel() != 1 {
        return Err(failed(
            format!(
                "it returned a loss of shape {:?}: a loss is one number (reduce it, e.g. with `.mean(Kind::Float)`)",
                loss.size()
            )
            .into(),
        ));
    }
    if training && !by_hand && !loss.requires_grad() {
        return Err(failed(
            "it returned a loss without a gradient: computed under `no_grad`, detached, or from no trainable variable \
             (are the model's variables in the trainer's VarStore?)"
                .into(),
        ));
    }
    let loss = match loss.dim() {
        0 => loss,
        _ => loss
            .f_reshape([])
            .map_err(|e| Error::torch("reading the step's loss", e))?,
    };
    let loss = fp32(loss, "the loss", at)?;
    let outputs = match outputs {
        Some((outputs, targets)) => Some((fp32(outputs, "the step's outputs", at)?, targets)),
        None => None,
    };
    Ok((loss, outputs))
}

/// `t` in fp32 if it is of a 16-bit float type (mixed precision's outputs and losses), as it
/// is otherwise; `what` and `at` name it in errors.
fn fp32(t: Tensor, what: &str, at: &dyn Fn() -> String) -> Result<Tensor> {
    match t.kind() {
        Kind::Half | Kind::BFloat16 => t
            .f_to_kind(Kind::Float)
            .map_err(|e| Error::torch(format!("casting {what} to fp32 on {}", at()), e)),
        _ => Ok(t),
    }
}

/// The model's forward pass; a libtorch failure (tch panics) becomes an error with the shapes.
fn forward(model: &dyn ModuleT, x: &Tensor, train: bool, at: &dyn Fn() -> String) -> Result<Tensor> {
    panics::quietly(|| model.forward_t(x, train)).map_err(|panic| {
        Error::torch_panic(
            format!(
                "the model's forward pass failed on {} (features of shape {:?}, {:?})",
                at(),
                x.size(),
                x.kind()
            ),
            &panic,
        )
    })
}

fn compute_loss(loss: &Loss, outputs: &Tensor, y: &Tensor, at: &dyn Fn() -> String) -> Result<Tensor> {
    loss.compute(outputs, y).map_err(|e| {
        Error::torch(
            format!(
                "the {loss} failed on {} (model output of shape {:?}, targets of shape {:?}; {})",
                at(),
                outputs.size(),
                y.size(),
                loss.expects()
            ),
            e,
        )
    })
}
