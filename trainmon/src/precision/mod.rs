//! Mixed precision as a fit is set up for it: the [`Precision`] of the forward pass and the
//! loss, and the [`GradScaler`]'s settings; the scaler at work (`scaler`: its scale on the
//! device, unscale and check, update); and what of libtorch they run that tch does not bind
//! (`native`: autocast, the fused unscale).

pub(crate) mod native;
pub(crate) mod scaler;

use tch::{Device, Kind};

/// The floating-point precision of the forward pass and the loss
/// ([`crate::Trainer::precision`]). The weights, their gradients and the optimizer's state stay
/// fp32 in every case: a mixed precision runs the model's matmuls, convolutions and linear
/// layers in 16 bits under autocast (as `torch.autocast(device_type, dtype)`), and computes the
/// loss, the running loss and the metrics from the outputs cast back to fp32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Everything in fp32 (the default).
    #[default]
    Fp32,
    /// bfloat16 autocast, on the CPU or CUDA. bfloat16 has fp32's range, so no gradient scaler
    /// is needed (one may be set with [`crate::Trainer::grad_scaler`]).
    Bf16Mixed,
    /// float16 autocast, on CUDA only, with a [`GradScaler`] ([`GradScaler::new`]'s settings
    /// unless [`crate::Trainer::grad_scaler`] gives others): float16's small range makes small
    /// gradients vanish without one.
    Fp16Mixed,
}

impl Precision {
    /// The type autocast casts to; `None` for fp32 (no autocast).
    pub fn autocast_kind(self) -> Option<Kind> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16Mixed => Some(Kind::BFloat16),
            Precision::Fp16Mixed => Some(Kind::Half),
        }
    }

    /// Why this precision cannot train on `device`, if it cannot.
    pub(crate) fn check(self, device: Device) -> Result<(), String> {
        match (self, device) {
            (Precision::Fp32, _) => Ok(()),
            (Precision::Fp16Mixed, Device::Cpu) => {
                Err("fp16 autocast needs CUDA; on the CPU use Precision::Bf16Mixed".into())
            }
            (_, Device::Cpu | Device::Cuda(_)) => Ok(()),
            (precision, device) => Err(format!(
                "{precision} autocast runs on the CPU and CUDA, not on {device:?}"
            )),
        }
    }
}

impl std::fmt::Display for Precision {
    /// `fp32`, `bf16-mixed`, `fp16-mixed` (Lightning's names, with the width spelled out).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16Mixed => "bf16-mixed",
            Precision::Fp16Mixed => "fp16-mixed",
        })
    }
}

/// A gradient scaler, as PyTorch's `torch.amp.GradScaler`: the loss is multiplied by a scale
/// before the backward pass, so that small gradients do not vanish in float16; at each optimizer
/// step the gradients are divided by it again (before the `on_after_backward` hooks of the
/// step's last batch, before clipping) and checked for inf/NaN on the device. A step with
/// non-finite gradients is skipped (counted in [`crate::History::scaler_skipped_steps`]) and
/// the scale multiplied by `backoff_factor`; after `growth_interval` steps in a row without,
/// it is multiplied by `growth_factor`. The scale and its count of good steps are kept in
/// resume points.
///
/// ```
/// use trainmon::{GradScaler, Precision, Trainer};
/// # let vs = tch::nn::VarStore::new(tch::Device::Cpu);
/// # let model = tch::nn::linear(vs.root(), 2, 2, Default::default());
/// let trainer = Trainer::new(&vs, &model)
///     .precision(Precision::Bf16Mixed)
///     .grad_scaler(GradScaler::new().init_scale(1024.0).growth_interval(500));
/// # let _ = trainer;
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradScaler {
    pub(crate) init_scale: f64,
    pub(crate) growth_factor: f64,
    pub(crate) backoff_factor: f64,
    pub(crate) growth_interval: u32,
}

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler::new()
    }
}

impl GradScaler {
    /// PyTorch's defaults: a scale of 2^16 at the start, doubled after 2000 good steps in a
    /// row, halved at each step with non-finite gradients.
    pub fn new() -> Self {
        GradScaler {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }

    /// The scale at the start (positive, and finite as a 32-bit float: the scale is one).
    pub fn init_scale(mut self, scale: f64) -> Self {
        self.init_scale = scale;
        self
    }

    /// What the scale is multiplied by after `growth_interval` good steps (above 1).
    pub fn growth_factor(mut self, factor: f64) -> Self {
        self.growth_factor = factor;
        self
    }

    /// What the scale is multiplied by at a step with non-finite gradients (between 0 and 1).
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.backoff_factor = factor;
        self
    }

    /// Good steps in a row after which the scale grows (at least 1).
    pub fn growth_interval(mut self, steps: u32) -> Self {
        self.growth_interval = steps;
        self
    }

    /// Why these settings cannot scale, if they cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        let scale = self.init_scale as f32;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(format!(
                "a gradient scaler's init_scale must be positive and finite as a 32-bit float (at most {:e}), got {}",
                f32::MAX,
                self.init_scale
            ));
        }
        if !(self.growth_factor.is_finite() && self.growth_factor > 1.0) {
            return Err(format!(
                "a gradient scaler's growth_factor must be finite and above 1, got {}",
                self.growth_factor
            ));
        }
        if !(self.backoff_factor > 0.0 && self.backoff_factor < 1.0) {
            return Err(format!(
                "a gradient scaler's backoff_factor must be between 0 and 1 (exclusive), got {}",
                self.backoff_factor
            ));
        }
        // libtorch counts good steps in a 32-bit int.
        if self.growth_interval == 0 || self.growth_interval > i32::MAX as u32 {
            return Err(format!(
                "a gradient scaler's growth_interval must be between 1 and {}, got {}",
                i32::MAX,
                self.growth_interval
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for GradScaler {
    /// `init 65536, ×2 after 2000 good steps, ×0.5 on overflow`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "init {}, ×{} after {} good steps, ×{} on overflow",
            self.init_scale, self.growth_factor, self.growth_interval, self.backoff_factor
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused_with_the_value() {
        assert!(GradScaler::new().check().is_ok());
        let refused = |s: GradScaler| s.check().unwrap_err();
        assert!(refused(GradScaler::new().init_scale(0.0)).contains("init_scale"));
        assert!(refused(GradScaler::new().init_scale(-1.0)).contains("got -1"));
        assert!(refused(GradScaler::new().init_scale(f64::NAN)).contains("init_scale"));
        assert!(
            refused(GradScaler::new().init_scale(1e39)).contains("got 1000"),
            "beyond f32"
        );
        assert!(GradScaler::new().init_scale(2f64.powi(127)).check().is_ok());
        assert!(refused(GradScaler::new().growth_factor(1.0)).contains("growth_factor"));
        assert!(refused(GradScaler::new().growth_factor(f64::INFINITY)).contains("growth_factor"));
        assert!(refused(GradScaler::new().backoff_factor(1.0)).contains("backoff_factor"));
        assert!(refused(GradScaler::new().backoff_factor(0.0)).contains("backoff_factor"));
        assert!(refused(GradScaler::new().growth_interval(0)).contains("growth_interval"));
    }

    #[test]
    fn fp16_on_the_cpu_is_refused() {
        assert_eq!(
            Precision::Fp16Mixed.check(Device::Cpu).unwrap_err(),
            "fp16 autocast needs CUDA; on the CPU use Precision::Bf16Mixed"
        );
        assert!(Precision::Bf16Mixed.check(Device::Cpu).is_ok());
        assert!(Precision::Fp16Mixed.check(Device::Cuda(0)).is_ok());
        assert!(Precision::Bf16Mixed.check(Device::Mps).is_err());
        assert_eq!(Precision::Bf16Mixed.to_string(), "bf16-mixed");
    }
}
