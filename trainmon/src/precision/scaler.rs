//! The gradient scaler at work ([`GradScaler`]'s settings): its scale and count of good steps
//! on the device, as `torch.amp.GradScaler` keeps them, so that scaling the loss, unscaling the
//! gradients and updating the scale read nothing to the host; only the decision to skip a step
//! reads one value, once per optimizer step.

use super::native;
use super::GradScaler;
use tch::{Device, Kind, TchError, Tensor};

/// A gradient scaler during a fit.
pub(crate) struct Scaler {
    settings: GradScaler,
    /// The scale: a one-element fp32 tensor on the training device, updated in place (a hook
    /// context holds a shallow copy of it).
    scale: Tensor,
    /// Good steps in a row since the scale last changed: a one-element int32 tensor.
    growth_tracker: Tensor,
    /// Whether the last unscale found inf or NaN (1) or not (0): a one-element fp32 tensor.
    found_inf: Tensor,
    /// Whether any unscale since the last update found inf or NaN (above 0): what the update
    /// backs off on — an optimizer's step is skipped on its own check, the scale updated once
    /// after all of them, as `torch.amp.GradScaler` does with several optimizers.
    found_any: Tensor,
}

/// What the scaler could not do (`"could not update its scale"`), and libtorch's error: a
/// [`crate::Error::Torch`] where the loop meets it.
#[derive(Debug)]
pub(crate) struct Failed(pub &'static str, pub TchError);

type Result<T> = std::result::Result<T, Failed>;

fn failed(what: &'static str) -> impl Fn(TchError) -> Failed {
    move |e| Failed(what, e)
}

impl Scaler {
    /// A scaler at its initial scale on `device` (the settings are checked already).
    pub fn new(settings: GradScaler, device: Device) -> Self {
        Scaler {
            settings,
            scale: Tensor::full([], settings.init_scale, (Kind::Float, device)),
            growth_tracker: Tensor::zeros([], (Kind::Int, device)),
            found_inf: Tensor::zeros([], (Kind::Float, device)),
            found_any: Tensor::zeros([], (Kind::Float, device)),
        }
    }

    /// The scale tensor, shared (a shallow copy: it follows the updates).
    pub fn scale_tensor(&self) -> Tensor {
        self.scale.shallow_clone()
    }

    /// `loss × scale`, for the backward pass (on the device).
    pub fn scale(&self, loss: &Tensor) -> std::result::Result<Tensor, tch::TchError> {
        loss.f_mul(&self.scale)
    }

    /// Divides `grads` (the defined gradients of some variables) by the scale, in place, and
    /// records whether any is inf or NaN — on the device, in one fused call.
    pub fn unscale(&mut self, grads: &[Tensor]) -> Result<()> {
        let _no_grad = tch::no_grad_guard();
        let _ = self.found_inf.f_zero_().map_err(failed("could not reset its check"))?;
        if grads.is_empty() {
            return Ok(());
        }
        // As PyTorch: the reciprocal in double, then fp32.
        let inv_scale = (self.scale.f_to_kind(Kind::Double))
            .and_then(|s| s.f_reciprocal())
            .and_then(|s| s.f_to_kind(Kind::Float))
            .map_err(failed("could not invert its scale"))?;
        native::amp_unscale(grads, &mut self.found_inf, &inv_scale).map_err(failed("could not unscale the gradients"))
    }

    /// The last unscale's check (above 0: inf or NaN found), on the device. Data-parallel, the
    /// ranks sum theirs in place (one scalar's all-reduce), so that they skip the same steps
    /// and keep one scale.
    pub fn check(&self) -> &Tensor {
        &self.found_inf
    }

    /// Whether the last unscale found inf or NaN: the one value read to the host, per step.
    /// The check counts for the next update.
    pub fn found_inf(&mut self) -> Result<bool> {
        let _ = (self.found_any.f_add_(&self.found_inf)).map_err(failed("could not keep its check"))?;
        let found = self
            .found_inf
            .f_double_value(&[])
            .map_err(failed("could not read its check"))?;
        Ok(found != 0.0)
    }

    /// Forgets the checks since the last update (a batch rolled back).
    pub fn forget(&mut self) -> Result<()> {
        let _ = self.found_any.f_zero_().map_err(failed("could not reset its check"))?;
        Ok(())
    }

    /// After a step (taken or skipped): backs the scale off if the last unscale found inf or
    /// NaN, or grows it after `growth_interval` good steps in a row — on the device.
    pub fn update(&mut self) -> Result<()> {
        let s = &self.settings;
        let _ = self
            .scale
            .f_internal_amp_update_scale_(
                &self.growth_tracker,
                &self.found_any,
                s.growth_factor,
                s.backoff_factor,
                i64::from(s.growth_interval),
            )
            .map_err(failed("could not update its scale"))?;
        self.forget()
    }

    /// The state, for a resume point: the scale (exact: an fp32 value in an f64) and the good
    /// steps since it last changed (two reads to the host).
    pub fn state(&self) -> Result<(f64, i64)> {
        let scale = self
            .scale
            .f_double_value(&[])
            .map_err(failed("could not read its scale"))?;
        let growth_tracker = (self.growth_tracker.f_int64_value(&[])).map_err(failed("could not read its count"))?;
        Ok((scale, growth_tracker))
    }

    /// Takes a state [`Scaler::state`] gave back, into the same tensors (the hook contexts'
    /// copy follows).
    pub fn restore(&mut self, (scale, growth_tracker): (f64, i64)) -> Result<()> {
        let _no_grad = tch::no_grad_guard();
        let _ = self
            .scale
            .f_fill_(scale)
            .map_err(failed("could not restore its scale"))?;
        let _ = (self.growth_tracker.f_fill_(growth_tracker)).map_err(failed("could not restore its count"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;

    /// The scale after each step, given whether its gradients were finite.
    fn scales(settings: GradScaler, finite: &[bool]) -> Vec<f64> {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2], tch::nn::Init::Const(1.0));
        let mut scaler = Scaler::new(settings, Device::Cpu);
        let mut out = Vec::new();
        for &ok in finite {
            let loss = (&w * if ok { 1.0 } else { f64::INFINITY }).sum(Kind::Float);
            scaler.scale(&loss).unwrap().backward();
            scaler.unscale(&crate::context::defined_grads(&vs)).unwrap();
            assert_eq!(scaler.found_inf().unwrap(), !ok);
            if ok {
                assert_eq!(Vec::<f32>::try_from(w.grad()).unwrap(), [1.0, 1.0], "unscaled");
            }
            scaler.update().unwrap();
            out.push(scaler.state().unwrap().0);
            let _ = w.grad().zero_();
        }
        out
    }

    #[test]
    fn the_scale_backs_off_at_overflow_and_grows_after_the_interval() {
        let settings = GradScaler::new().init_scale(1024.0).growth_interval(2);
        assert_eq!(
            scales(settings, &[false, true, true, true, false, true]),
            [512.0, 512.0, 1024.0, 1024.0, 512.0, 512.0]
        );
    }

    #[test]
    fn a_state_comes_back_into_the_shared_tensor() {
        let mut scaler = Scaler::new(GradScaler::new(), Device::Cpu);
        let shared = scaler.scale_tensor();
        let state = (2f64.powi(-3), 7);
        scaler.restore(state).unwrap();
        assert_eq!(scaler.state().unwrap(), state);
        assert_eq!(shared.double_value(&[]), 0.125);
    }
}
