// Host-side entry points of the CUDA kernels. The same .cu sources are built
// twice: by nvcc into nvila::cuda (real GPU launches) and by g++ with
// csrc/emu/emu.h into nvila::emu (SIMT emulation on the CPU, for the tests).
// Each .cu file registers its ops here (NVILA_REGISTER_OP, csrc/cuda/common.cuh): the
// launch planner, the kernel instances and the launcher, looked up by op name; the
// bindings (csrc/torch) launch through it and NVRTC compiles the instances it names.
// No CUDA or torch headers needed; NVRTC sees none of it.
#pragma once

#ifndef __CUDACC_RTC__
#include <cstddef>
#include <string>
#include <vector>

#include "nvila/common.h"

namespace nvila {

// One kernel instance of an op: the plan key that selects it and its name expression
// inside namespace nvila::cuda, e.g. "spatial_compress_kernel<nvila::half_t, 8, true, true>".
struct KernelName {
  KernelKey key;
  const char* name;
};

// One op's CUDA code as built in one namespace (cuda or emu). The launch functions take
// the op's args struct (`args_size` bytes) by address.
struct OpLaunchers {
  const char* op;      // nvila::<op>_cuda / _emu
  std::string source;  // the .cu file, relative to csrc/cuda
  size_t args_size;
  std::vector<KernelName> kernels;
  LaunchConfig (*plan)(const void* args, const LaunchTarget& t);
  int (*launch)(const void* args, void* stream);  // plans for the current device and launches: 0 or an error code
};

// What the emulator launched (test hook, nvila::emu::take_launches).
struct LaunchRecord {
  std::string kernel;  // the KernelName's name
  LaunchConfig config;
  std::string args;  // the args struct's bytes
};

}  // namespace nvila

#define NVILA_DECLARE_LAUNCHERS(NS)                                   \
  namespace nvila::NS {                                               \
  std::vector<OpLaunchers>& registry();                               \
  /* nullptr if no .cu file registered `op` (or args_size differs) */ \
  const OpLaunchers* find_op(const char* op, size_t args_size);       \
  const char* error_string(int code);                                 \
  }

NVILA_DECLARE_LAUNCHERS(cuda)
NVILA_DECLARE_LAUNCHERS(emu)

// Test hooks of the emulator: the compute capability the emulated device reports
// (major * 10 + minor, default 89; launchers that choose kernels by architecture
// follow it), returning the previous one; the number of warpgroup MMAs
// (wgmma.mma_async) executed so far; and the launches since the last call.
namespace nvila::emu {
int set_compute_capability(int cc);
int64_t wgmma_count();
std::vector<LaunchRecord> take_launches();

// Memory-traffic counters of the emulator (csrc/emu/traffic.cpp), per kernel name: global
// accesses grouped into warp-level requests and the 32-byte sectors each touches, shared
// accesses and their wavefronts (bank conflicts). Off by default; set_traffic returns the
// previous state, take_traffic the totals since the last call (and resets them).
struct TrafficTotals {
  std::string kernel;
  int64_t launches = 0;
  int64_t load_requests = 0, store_requests = 0;      // global, warp-level
  int64_t load_sectors = 0, store_sectors = 0;        // 32-byte sectors, summed over requests
  int64_t load_bytes_used = 0, store_bytes_used = 0;  // distinct bytes the lanes of each request access
  int64_t shared_requests = 0, wavefronts = 0;
  int64_t ideal_wavefronts = 0;  // one per phase a request needs (8-byte: 2, 16-byte: 4)
};
bool set_traffic(bool on);
std::vector<TrafficTotals> take_traffic();
// Micro-kernels with known traffic (csrc/emu/traffic_probe.cu), run on the emulator: 0 on success.
int traffic_probe(int kind);
}  // namespace nvila::emu
#endif
