// The gradient scaler's unscale-and-check, which tch does not bind (an in-place op on a list of
// tensors): `torch._amp_foreach_non_finite_check_and_unscale_`, one fused call for all the
// gradients, on their device (CPU or CUDA), with no read to the host. Called from
// trainmon/src/native.rs.
#include <ATen/ATen.h>

#include <cstring>
#include <exception>
#include <vector>

extern "C" {

// Multiplies each of the `n` tensors `grads` by `inv_scale` (a one-element float tensor) in
// place and sets `found_inf` (a one-element float tensor) to 1 if any value is inf or NaN (it is
// left alone otherwise). The tensors are tch's (`torch::Tensor *`). Returns 0, or 1 with
// libtorch's message in `error` (at most `error_len` bytes, NUL included).
int trainmon_amp_unscale(at::Tensor *const *grads, size_t n, at::Tensor *found_inf, const at::Tensor *inv_scale,
                         char *error, size_t error_len) {
  try {
    std::vector<at::Tensor> list;
    list.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      list.push_back(*grads[i]);
    }
    at::_amp_foreach_non_finite_check_and_unscale_(list, *found_inf, *inv_scale);
    return 0;
  } catch (const std::exception &e) {
    if (error_len > 0) {
      std::strncpy(error, e.what(), error_len - 1);
      error[error_len - 1] = '\0';
    }
    return 1;
  }
}
}
