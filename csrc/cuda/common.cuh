// Shared pieces of the CUDA kernels. Compiled by nvcc for the GPU, or by g++
// with csrc/emu/emu.h (which defines NVILA_EMU) for the CPU emulation. No torch
// headers here or in any .cu file: they compile in seconds without them.
#pragma once

#ifndef NVILA_EMU
#include <cuda_runtime.h>
#define NVILA_CUDA_NS cuda
// Dynamic shared memory: `NVILA_DYNAMIC_SMEM(float, buf);` declares `float* buf`.
#define NVILA_DYNAMIC_SMEM(T, name)                            \
  extern __shared__ __align__(16) unsigned char nvila_smem_[]; \
  T* name = reinterpret_cast<T*>(nvila_smem_)
// Launch syntax shared with the emulator: NVILA_LAUNCH(kernel, grid, block, smem, stream)(args...)
#define NVILA_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, static_cast<cudaStream_t>(stream)>>>
#endif

#include "nvila/common.h"
#include "nvila/dtype.h"

namespace nvila::NVILA_CUDA_NS {

// Largest dynamic shared memory one block of the current device may use (with
// the opt-in attribute). The emulator reports 48 KiB.
int max_dynamic_smem();

// Compute capability of the current device as major * 10 + minor (the emulator
// reports emu_rt::g_compute_capability).
int compute_capability();

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
