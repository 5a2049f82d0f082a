//! trainmon's own C++ (`csrc/`, compiled by the build script against libtorch's headers): what
//! libtorch has and tch does not bind.

use std::os::raw::c_int;
use tch::{Device, Kind, Tensor};

extern "C" {
    fn trainmon_autocast_get(cuda: c_int, enabled: *mut c_int, dtype: *mut c_int);
    fn trainmon_autocast_set(cuda: c_int, enabled: c_int, dtype: c_int);
    fn trainmon_autocast_enter();
    fn trainmon_autocast_leave();
    fn trainmon_amp_unscale(
        grads: *const *mut torch_sys::C_tensor,
        n: usize,
        found_inf: *mut torch_sys::C_tensor,
        inv_scale: *const torch_sys::C_tensor,
        error: *mut std::os::raw::c_char,
        error_len: usize,
    ) -> c_int;
}

/// Autocast as it is for a device type: on or off, and its lower-precision type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Autocast {
    pub(crate) enabled: bool,
    pub(crate) kind: Kind,
}

/// `c10::ScalarType`'s number of the types autocast casts to (tch keeps its own private).
fn scalar_type(kind: Kind) -> c_int {
    match kind {
        Kind::Half => 5,
        Kind::BFloat16 => 15,
        _ => 6, // Float
    }
}

fn is_cuda(device: Device) -> c_int {
    c_int::from(device.is_cuda())
}

/// The autocast state of `device`'s type (the CPU, or CUDA).
pub(crate) fn autocast(device: Device) -> Autocast {
    let (mut enabled, mut dtype) = (0, 0);
    // SAFETY: plain reads of libtorch's thread-local autocast state into two ints.
    unsafe { trainmon_autocast_get(is_cuda(device), &mut enabled, &mut dtype) };
    let kind = [Kind::BFloat16, Kind::Half, Kind::Float]
        .into_iter()
        .find(|k| scalar_type(*k) == dtype)
        .unwrap_or(Kind::Float);
    Autocast {
        enabled: enabled != 0,
        kind,
    }
}

/// Runs `f` with autocast to `kind` on `device`'s type, as `torch.autocast(device, dtype)`
/// does: the state before is put back after, also when `f` panics.
pub(crate) fn with_autocast<T>(device: Device, kind: Kind, f: impl FnOnce() -> T) -> T {
    struct Restore(Device, Autocast);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: sets libtorch's thread-local autocast state back; leaves the region.
            unsafe {
                trainmon_autocast_set(is_cuda(self.0), c_int::from(self.1.enabled), scalar_type(self.1.kind));
                trainmon_autocast_leave();
            }
        }
    }
    let _restore = Restore(device, autocast(device));
    // SAFETY: sets libtorch's thread-local autocast state and enters a region; `Restore`
    // undoes both.
    unsafe {
        trainmon_autocast_set(is_cuda(device), 1, scalar_type(kind));
        trainmon_autocast_enter();
    }
    f()
}

/// `torch._amp_foreach_non_finite_check_and_unscale_`: multiplies every tensor of `grads` by
/// `inv_scale` in place, and sets `found_inf` to 1 if any of their values is inf or NaN (leaves
/// it alone otherwise). Both are one-element float tensors on the gradients' device; nothing is
/// read to the host.
pub(crate) fn amp_unscale(grads: &[Tensor], found_inf: &mut Tensor, inv_scale: &Tensor) -> Result<(), tch::TchError> {
    let pointers: Vec<*mut torch_sys::C_tensor> = grads.iter().map(|g| g.as_ptr() as *mut _).collect();
    let mut error = [0 as std::os::raw::c_char; 1024];
    // SAFETY: every pointer is a live tensor of tch's (borrowed for the call); the op changes
    // the gradients' and `found_inf`'s values in place, not the tensors' handles; libtorch's
    // exceptions are caught in the shim and come back as the message.
    let failed = unsafe {
        trainmon_amp_unscale(
            pointers.as_ptr(),
            pointers.len(),
            found_inf.as_mut_ptr(),
            inv_scale.as_ptr(),
            error.as_mut_ptr(),
            error.len(),
        )
    };
    if failed != 0 {
        // SAFETY: the shim wrote a NUL-terminated message into the buffer.
        let message = unsafe { std::ffi::CStr::from_ptr(error.as_ptr()) };
        return Err(tch::TchError::Torch(message.to_string_lossy().into_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matmul_under_cpu_autocast_is_bfloat16_and_the_state_comes_back() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let before = autocast(Device::Cpu);
        assert!(!before.enabled);
        let inside = with_autocast(Device::Cpu, Kind::BFloat16, || {
            assert_eq!(
                autocast(Device::Cpu),
                Autocast {
                    enabled: true,
                    kind: Kind::BFloat16
                }
            );
            a.matmul(&a).kind()
        });
        assert_eq!(inside, Kind::BFloat16);
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        assert_eq!(autocast(Device::Cpu), before);
    }
}

#[cfg(test)]
mod amp_tests {
    use super::*;

    #[test]
    fn unscaling_divides_in_place_and_flags_non_finite_values_only() {
        let grads = [Tensor::from_slice(&[2.0f32, 4.0]), Tensor::from_slice(&[8.0f32])];
        let mut found_inf = Tensor::zeros([], (Kind::Float, Device::Cpu));
        let inv_scale = Tensor::from_slice(&[0.5f32]).reshape([]);
        amp_unscale(&grads, &mut found_inf, &inv_scale).unwrap();
        assert_eq!(Vec::<f32>::try_from(&grads[0]).unwrap(), [1.0, 2.0]);
        assert_eq!(Vec::<f32>::try_from(&grads[1]).unwrap(), [4.0]);
        assert_eq!(found_inf.double_value(&[]), 0.0);
        let bad = [
            Tensor::from_slice(&[1.0f32, f32::INFINITY]),
            Tensor::from_slice(&[f32::NAN]),
        ];
        amp_unscale(&bad, &mut found_inf, &inv_scale).unwrap();
        assert_eq!(found_inf.double_value(&[]), 1.0);
        let wrong = Tensor::from_slice(&[0.5f64]).reshape([]);
        let error = amp_unscale(&grads, &mut found_inf, &wrong).unwrap_err();
        assert!(error.to_string().contains("inv_scale"), "{error}");
    }
}
