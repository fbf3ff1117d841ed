// Torch-free definitions shared by the CPU kernels, the CUDA kernels and the
// SIMT emulator. Nothing here may include a torch header.
#pragma once

// NVRTC (the run-time compiler, nvila_kernels/_nvrtc.py) has no C++ standard headers:
// it gets the fixed-width integers here, and every other standard header is included
// only outside NVRTC (host-side code, which NVRTC never compiles).
#ifdef __CUDACC_RTC__
using int8_t = signed char;
using uint8_t = unsigned char;
using int16_t = short;
using uint16_t = unsigned short;
using int32_t = int;
using uint32_t = unsigned int;
using int64_t = long;  // LP64, as on the Linux host whose structs the kernels receive
using uint64_t = unsigned long;
using uintptr_t = unsigned long;
#else
#include <cstdint>
#endif

#if defined(__CUDACC__) || defined(NVILA_EMU)
#define NVILA_HD __host__ __device__ __forceinline__
#define NVILA_DEVICE __device__ __forceinline__
#else
#define NVILA_HD inline
#define NVILA_DEVICE inline
#endif

namespace nvila {

// Element types the kernels read and write. Tensors of other dtypes never reach
// a kernel: nvila_kernels.functional rejects them with a clear error first.
enum class DType : int32_t { F32 = 0, F16 = 1, BF16 = 2 };

NVILA_HD int dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

NVILA_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

NVILA_HD int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// ---- launch planning (host side) ---------------------------------------------------
// Each CUDA op's header has `LaunchConfig <op>_launch_config(const <Op>Args&, const
// LaunchTarget&)`: which instance of its kernels runs and with what shape. The instances
// are listed once, in the op's .cu file (a table of Kernel entries, csrc/cuda/common.cuh),
// keyed by (dtype, variant); the C++ launcher and the NVRTC path (csrc/torch/binding.h,
// nvila_kernels/_nvrtc.py) both launch the entries the plan's key selects.

// The device a launch is planned for.
struct LaunchTarget {
  int32_t cc;                // compute capability, major * 10 + minor
  int32_t max_dynamic_smem;  // bytes of dynamic shared memory one block may use (opt-in)
  int32_t sm90a;             // 1: the kernels were compiled with sm_90a code (wgmma)
};

struct LaunchConfig {
  DType dtype = DType::F32;        // the kernels' element type (their first template choice)
  int64_t grid_x = 0, grid_y = 1;  // grid_x == 0: nothing to launch
  int32_t block = 0;
  int32_t smem = 0;                // dynamic shared memory, bytes
  int32_t variant[3] = {0, 0, 0};  // the kernels' other template choices
};

// Which kernel instances a plan launches: those whose key equals (dtype, variant), in
// the order of the op's table; kAnyVariant in a key matches any value.
constexpr int32_t kAnyVariant = -1;
struct KernelKey {
  DType dtype;
  int32_t variant[3];
};
NVILA_HD bool selects(const LaunchConfig& c, const KernelKey& k) {
  for (int i = 0; i < 3; ++i)
    if (k.variant[i] != kAnyVariant && k.variant[i] != c.variant[i]) return false;
  return k.dtype == c.dtype;
}

// Whether the grid is within CUDA's limits (x < 2^31, y < 2^16).
NVILA_HD bool grid_ok(const LaunchConfig& c) { return c.grid_x <= 0x7fffffff && c.grid_y <= 65535; }

// Whether `p` is 16-byte aligned (16-byte vector accesses).
NVILA_HD bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace nvila
