// Autocast for any device type: tch binds only CUDA's (`tch::autocast`), and mixed precision on
// the CPU (bfloat16) needs the CPU's. Called from trainmon/src/native.rs.
#include <ATen/autocast_mode.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

namespace {
c10::DeviceType device_type(int cuda) { return cuda ? c10::DeviceType::CUDA : c10::DeviceType::CPU; }
}  // namespace

extern "C" {

// Whether autocast is on for the CPU (`cuda` = 0) or CUDA, and its dtype (a c10::ScalarType).
void trainmon_autocast_get(int cuda, int *enabled, int *dtype) {
  auto device = device_type(cuda);
  *enabled = at::autocast::is_autocast_enabled(device) ? 1 : 0;
  *dtype = static_cast<int>(at::autocast::get_autocast_dtype(device));
}

// Turns autocast on or off for the CPU or CUDA, with `dtype` (a c10::ScalarType).
void trainmon_autocast_set(int cuda, int enabled, int dtype) {
  auto device = device_type(cuda);
  at::autocast::set_autocast_dtype(device, static_cast<c10::ScalarType>(dtype));
  at::autocast::set_autocast_enabled(device, enabled != 0);
}

// Enters an autocast region; leaving the outermost one clears the cast cache (as
// torch.autocast's __exit__ does).
void trainmon_autocast_enter(void) { at::autocast::increment_nesting(); }

void trainmon_autocast_leave(void) {
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
}
}
