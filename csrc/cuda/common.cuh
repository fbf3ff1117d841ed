// Shared pieces of the CUDA kernels. Compiled by nvcc for the GPU, or by g++
// with csrc/emu/emu.h (which defines NVILA_EMU) for the CPU emulation. No torch
// headers here or in any .cu file: they compile in seconds without them.
#pragma once

#if !defined(NVILA_EMU)
#define NVILA_CUDA_NS cuda
// Dynamic shared memory: `NVILA_DYNAMIC_SMEM(float, buf);` declares `float* buf`.
#define NVILA_DYNAMIC_SMEM(T, name)                            \
  extern __shared__ __align__(16) unsigned char nvila_smem_[]; \
  T* name = reinterpret_cast<T*>(nvila_smem_)
#endif
// NVRTC (nvila_kernels/_nvrtc.py) compiles only the kernels: the host-side launchers are
// left out of its compilation (#ifndef __CUDACC_RTC__) and launched from Python instead.
#if !defined(NVILA_EMU) && !defined(__CUDACC_RTC__)
#include <cuda_runtime.h>
// Launch syntax shared with the emulator: NVILA_LAUNCH(kernel, grid, block, smem, stream)(args...)
#define NVILA_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, static_cast<cudaStream_t>(stream)>>>
#endif

#include "launchers.h"
#include "nvila/common.h"
#include "nvila/dtype.h"

namespace nvila::NVILA_CUDA_NS {

#ifndef __CUDACC_RTC__
// Largest dynamic shared memory one block of the current device may use (with
// the opt-in attribute). The emulator reports 48 KiB.
int max_dynamic_smem();

// Compute capability of the current device as major * 10 + minor (the emulator
// reports emu_rt::g_compute_capability).
int compute_capability();

// The current device as the launch planners see it (nvila/common.h).
LaunchTarget launch_target();

// Lets `kernel` use `bytes` of dynamic shared memory (needed above 48 KiB).
template <typename Kernel>
cudaError_t allow_dynamic_smem(Kernel kernel, size_t bytes) {
#ifdef NVILA_EMU
  (void)kernel;
  (void)bytes;
  return cudaSuccess;
#else
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
#endif
}

// One kernel instance in an op's table: the plan key that selects it, its name
// expression (NVRTC compiles and looks it up by this name) and the function.
// NVILA_KERNEL(F32, 4, 1, 0, kernel<float, 4, true, true>) spells the name once: the
// name is the stringized template-id, qualified as it must be at global scope.
template <typename Args>
struct Kernel {
  KernelName id;
  void (*fn)(Args);
};
#define NVILA_KERNEL(dtype, v0, v1, v2, ...) {{{::nvila::DType::dtype, {v0, v1, v2}}, #__VA_ARGS__}, __VA_ARGS__}

#ifdef NVILA_EMU
void record_launch(const char* kernel, const LaunchConfig& c, const void* args, size_t size);
#endif

// Launches `k(args)` as planned by `c` on `stream`; 0 or a CUDA error code.
template <typename Args>
int launch_planned(const Kernel<Args>& k, const LaunchConfig& c, const Args& args, void* stream) {
  if (c.grid_x == 0) return 0;
  if (!grid_ok(c)) return int(cudaErrorInvalidValue);
  if (const cudaError_t e = allow_dynamic_smem(k.fn, size_t(c.smem)); e != cudaSuccess) return int(e);
#ifdef NVILA_EMU
  record_launch(k.id.name, c, &args, sizeof(Args));
#endif
  NVILA_LAUNCH(k.fn, dim3(unsigned(c.grid_x), unsigned(c.grid_y)), dim3(unsigned(c.block)), size_t(c.smem),
               stream)(args);
  return int(cudaGetLastError());
}

// Launches, in table order, every kernel of `table` the plan `c` selects (nvila/common.h
// selects()); none selected is a planner/table mismatch: invalid value.
template <typename Args, size_t N>
int launch_selected(const Kernel<Args> (&table)[N], const LaunchConfig& c, const Args& args, void* stream) {
  if (c.grid_x == 0) return 0;
  bool any = false;
  for (const Kernel<Args>& k : table) {
    if (!selects(c, k.id.key)) continue;
    any = true;
    if (const int e = launch_planned(k, c, args, stream); e != 0) return e;
  }
  return any ? 0 : int(cudaErrorInvalidValue);
}

// Registers an op's planner `Plan` and kernel table `Table` under the name `op` in this
// namespace's registry (launchers.h); its launcher plans for the current device and
// launches the kernels of `Table` the plan selects.
template <typename Args, LaunchConfig (*Plan)(const Args&, const LaunchTarget&), const auto& Table>
struct OpRegistration {
  OpRegistration(const char* op, const char* file) {
    std::string source = file;
    source = source.substr(source.find_last_of('/') + 1);
    std::vector<KernelName> names;
    for (const Kernel<Args>& k : Table) names.push_back(k.id);
    registry().push_back(
        OpLaunchers{op, source, sizeof(Args), names,
                    [](const void* a, const LaunchTarget& t) { return Plan(*static_cast<const Args*>(a), t); },
                    [](const void* a, void* stream) {
                      const Args& args = *static_cast<const Args*>(a);
                      return launch_selected(Table, Plan(args, launch_target()), args, stream);
                    }});
  }
};
#define NVILA_REGISTER_OP(op, Args, table) \
  const OpRegistration<Args, op##_launch_config, table> op##_registration(#op, __FILE__)
#endif

// N elements of T moved as one (16-byte when N * sizeof(T) == 16) access.
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum of `v` over the block, returned to every thread. `red` holds 32 floats of
// shared memory; the trailing barrier makes it reusable right away.
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int nwarps = (blockDim.x + 31) / 32;
  v = warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = warp_sum(lane < nwarps ? red[lane] : 0.f);
  __syncthreads();
  return v;
}

}  // namespace nvila::NVILA_CUDA_NS
