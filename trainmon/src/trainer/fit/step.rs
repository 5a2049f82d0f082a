//! The parts of a training step that can fail on the model or the data: the forward pass, the
//! loss (under autocast in mixed precision) or the user's step in their place, gradient
//! clipping; each failure an error naming the batch and the shapes.

use crate::error::{BoxError, Error, Result};
use crate::guard;
use crate::loss::Loss;
use crate::native;
use crate::step::{ErasedStep, StepContext, StepOutput};
use crate::trainer::Clip;
use std::any::Any;
use tch::nn::{ModuleT, VarStore};
use tch::{Kind, Tensor};

/// The forward pass and the loss of a batch: `(outputs, loss)`. With `autocast` (mixed
/// precision), both run under autocast to that type on the features' device type, as in
/// `with torch.autocast(device_type, dtype): loss = loss_fn(model(x), y)`; outputs of a 16-bit
/// type are cast back to fp32 first, so that the loss, the running loss and the metrics are
/// computed in fp32 (the cast is differentiable: the gradients reach the weights as fp32), and
/// so is a 16-bit loss (a custom loss with a matmul of its own).
pub(super) fn forward_loss(
    model: &dyn ModuleT,
    loss: &Loss,
    (x, y): (&Tensor, &Tensor),
    train: bool,
    autocast: Option<Kind>,
    at: &dyn Fn() -> String,
) -> Result<(Tensor, Tensor)> {
    let fp32 = |t: Tensor, what: &str| match t.kind() {
        Kind::Half | Kind::BFloat16 => t
            .f_to_kind(Kind::Float)
            .map_err(|e| Error::torch(format!("casting {what} to fp32 on {}", at()), e)),
        _ => Ok(t),
    };
    let run = || {
        let outputs = fp32(forward(model, x, train, at)?, "the model's outputs")?;
        let value = fp32(compute_loss(loss, &outputs, y, at)?, "the loss")?;
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
pub(super) fn step_loss(
    step: &mut (dyn ErasedStep + '_),
    batch: &dyn Any,
    ctx: StepContext<'_>,
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
    let mut run = || {
        guard::caught(|| match training {
            true => step.train(batch, &ctx),
            false => step.validate(batch, &ctx),
        })
    };
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
    let fp32 = |t: Tensor, what: &str| match t.kind() {
        Kind::Half | Kind::BFloat16 => t
            .f_to_kind(Kind::Float)
            .map_err(|e| Error::torch(format!("casting {what} to fp32 on {}", at()), e)),
        _ => Ok(t),
    };
    let loss = match loss.dim() {
        0 => loss,
        _ => loss
            .f_reshape([])
            .map_err(|e| Error::torch("reading the step's loss", e))?,
    };
    let loss = fp32(loss, "the loss")?;
    let outputs = match outputs {
        Some((outputs, targets)) => Some((fp32(outputs, "the step's outputs")?, targets)),
        None => None,
    };
    Ok((loss, outputs))
}

/// The model's forward pass; a libtorch failure (tch panics) becomes an error with the shapes.
pub(super) fn forward(model: &dyn ModuleT, x: &Tensor, train: bool, at: &dyn Fn() -> String) -> Result<Tensor> {
    guard::quietly(|| model.forward_t(x, train)).map_err(|panic| {
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

pub(super) fn compute_loss(loss: &Loss, outputs: &Tensor, y: &Tensor, at: &dyn Fn() -> String) -> Result<Tensor> {
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

/// Clips the gradients of `vs` on the device: no value is read to the host.
pub(super) fn clip_gradients(vs: &VarStore, clip: Clip) -> std::result::Result<(), tch::TchError> {
    clip_grads(crate::context::defined_grads(vs), clip)
}

/// Clips `grads` (the defined gradients of some variables) on the device.
pub(super) fn clip_grads(grads: Vec<Tensor>, clip: Clip) -> std::result::Result<(), tch::TchError> {
    let _no_grad = tch::no_grad_guard();
    if grads.is_empty() {
        return Ok(());
    }
    match clip {
        Clip::Value(max) => {
            for mut grad in grads {
                let _ = grad.f_clamp_(-max, max)?;
            }
        }
        Clip::Norm(max) => {
            let norms = grads
                .iter()
                .map(|g| g.f_norm())
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
            let coefficient = (total + 1e-6).f_reciprocal()?.f_mul_scalar(max)?.f_clamp_max(1.0)?;
            for mut grad in grads {
                let _ = grad.f_mul_(&coefficient)?;
            }
        }
    }
    Ok(())
}
