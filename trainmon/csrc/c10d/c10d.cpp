// PyTorch's distributed engine (c10d) for trainmon: a TCPStore rendezvous, a Gloo process
// group for CPU tensors and, where built with NCCL (USE_C10D_NCCL), an NCCL one for CUDA
// tensors, made at the first collective on them (every rank reaches it at the same point), and
// the collectives the data-parallel loop needs, on tch's tensors in place (a tch
// Tensor is a `torch::Tensor*`). Compiled only where gloo's headers are found (the torch wheel
// ships c10d's headers and gloo's code inside libtorch_cpu, not gloo's headers); called from
// trainmon/src/dist.rs. Every function catches what libtorch throws and writes its message.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  int rank;
  int size;
  std::chrono::milliseconds timeout;
  // NCCL, for CUDA tensors: made at the first collective on one.
  c10::intrusive_ptr<c10d::Backend> nccl;
  bool left = false;
};

void fail(char *err, size_t len, const char *what) {
  if (len == 0) return;
  std::strncpy(err, what, len - 1);
  err[len - 1] = '\0';
}

std::vector<at::Tensor> tensors_of(at::Tensor **tensors, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*tensors[i]);
  return out;
}

}  // namespace

#define TRY(err, len, body)                     \
  try {                                         \
    body                                        \
  } catch (const std::exception &e) {           \
    fail(err, len, e.what());                   \
    return 1;                                   \
  }

extern "C" {

// Joins the group: connects to (or, with `host_store`, hosts) the TCPStore at `host:port`,
// under `prefix` when not empty (torchrun's agent store), then makes the Gloo group bound to
// `bind` (this machine's address the other ranks reach). Null and `err` on failure.
void *trainmon_c10d_new(const char *host, int port, int rank, int size, int host_store, const char *prefix,
                        const char *bind, long timeout_ms, char *err, size_t len) {
  try {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(port);
    options.isServer = host_store != 0;
    options.numWorkers = host_store ? std::optional<std::size_t>(size) : std::nullopt;
    options.waitWorkers = false;
    options.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(host, options);
    if (prefix[0] != '\0') store = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
    auto gloo = c10d::ProcessGroupGloo::Options::create(timeout);
    gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(bind));
    auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, gloo);
    return new Group{store, backend, rank, size, timeout};
  } catch (const std::exception &e) {
    fail(err, len, e.what());
    return nullptr;
  }
}

// Ends the group: NCCL's communicators shut down first (destroying a ProcessGroupNCCL that was
// not shut down leaks them, and PyTorch warns), then the store.
void trainmon_c10d_free(void *group) {
  auto g = static_cast<Group *>(group);
  if (g->nccl) {
    try {
      g->nccl->shutdown();
    } catch (const std::exception &) {
      // Ending anyway: nothing to tell.
    }
  }
  delete g;
}

// Leaves the group after a failure, keeping the store: the other ranks' Gloo collectives with
// this one fail at once (its connections close) while they can still read in the store why;
// NCCL's communicators are aborted (ncclCommAbort: nothing in flight is waited for).
void trainmon_c10d_close(void *group) {
  auto g = static_cast<Group *>(group);
  g->left = true;
  g->backend.reset();
  if (g->nccl) {
    try {
      g->nccl->abort();
    } catch (const std::exception &) {
      // Leaving anyway.
    }
    g->nccl.reset();
  }
}

namespace {
// The backend for `tensors`: NCCL for CUDA tensors, Gloo otherwise.
c10d::Backend &backend_of(void *group, const std::vector<at::Tensor> &tensors = {}) {
  auto g = static_cast<Group *>(group);
  if (g->left) throw std::runtime_error("this rank left the group after a failure");
  if (tensors.empty() || !tensors[0].is_cuda()) return *g->backend;
#ifdef USE_C10D_NCCL
  if (!g->nccl) {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = g->timeout;
    auto store = c10::make_intrusive<c10d::PrefixStore>("trainmon/nccl", g->store);
    g->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, g->rank, g->size, options);
  }
  return *g->nccl;
#else
  throw std::runtime_error(
      "collectives on CUDA tensors need NCCL, and this trainmon was built without it (CUDA's and NCCL's "
      "headers were not found beside libtorch when it was compiled)");
#endif
}
}  // namespace

// Whether this build has NCCL, for CUDA tensors.
int trainmon_c10d_has_nccl() {
#ifdef USE_C10D_NCCL
  return 1;
#else
  return 0;
#endif
}

// Sums `tensors` over the ranks, in place.
int trainmon_c10d_all_reduce_sum(void *group, at::Tensor **tensors, size_t n, char *err, size_t len) {
  TRY(err, len, {
    auto list = tensors_of(tensors, n);
    backend_of(group, list).allreduce(list)->wait();
    return 0;
  })
}

// Copies rank `root`'s `tensors` into every rank's, in place.
int trainmon_c10d_broadcast(void *group, at::Tensor **tensors, size_t n, int root, char *err, size_t len) {
  TRY(err, len, {
    auto list = tensors_of(tensors, n);
    c10d::BroadcastOptions options;
    options.rootRank = root;
    backend_of(group, list).broadcast(list, options)->wait();
    return 0;
  })
}

int trainmon_c10d_barrier(void *group, char *err, size_t len) {
  TRY(err, len, {
    backend_of(group).barrier()->wait();
    return 0;
  })
}

// Sets `key` in the group's store.
int trainmon_c10d_store_set(void *group, const char *key, const uint8_t *value, size_t n, char *err, size_t len) {
  TRY(err, len, {
    static_cast<Group *>(group)->store->set(key, std::vector<uint8_t>(value, value + n));
    return 0;
  })
}

// Whether `key` is in the group's store now: 1 if it is, 0 if not, -1 and `err` on failure.
int trainmon_c10d_store_check(void *group, const char *key, char *err, size_t len) {
  try {
    return static_cast<Group *>(group)->store->check({key}) ? 1 : 0;
  } catch (const std::exception &e) {
    fail(err, len, e.what());
    return -1;
  }
}

// Gets `key` from the group's store, waiting for it up to the store's timeout; the value is
// written to `out` (up to `cap` bytes) and its whole length to `*n`.
int trainmon_c10d_store_get(void *group, const char *key, uint8_t *out, size_t cap, size_t *n, char *err,
                            size_t len) {
  TRY(err, len, {
    auto value = static_cast<Group *>(group)->store->get(key);
    *n = value.size();
    std::memcpy(out, value.data(), std::min(cap, value.size()));
    return 0;
  })
}
}
