// CUDA per-tensor FP8 quantization. Dynamic scaling takes two launches and no
// host sync: (1) amax of the finite |x| into a one-float workspace (per-thread
// max, warp shuffles, one atomicMax per block on the float's bits, which order
// like the values for non-negative floats); (2) every thread derives the scale
// from it and quantizes; one thread writes the scale out. Static scaling is (2)
// alone. q = fp8_encode(fp8_saturate(x / scale)), true division, bit-exact with
// the reference.
#include "common.cuh"
#include "launchers.h"
#include "nvila/fp8_ops.h"

namespace nvila::NVILA_CUDA_NS {
namespace {

constexpr int kThreads = kFp8QuantizeThreads;

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// Max of the finite |x| into p.workspace (zeroed before the launch).
template <typename T>
__global__ void __launch_bounds__(kThreads) fp8_amax_kernel(Fp8QuantizeArgs p) {
  __shared__ float red[32];
  const T* __restrict__ x = static_cast<const T*>(p.x);
  float m = 0.f;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < p.n; i += int64_t(gridDim.x) * kThreads) {
    const float v = load_f32(x + i);
    const float a = v < 0.f ? -v : v;
    if (a <= 3.402823466e38f && a > m) m = a;  // finite only: NaN and inf fail the test
  }
  m = warp_max(m);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = m;
  __syncthreads();
  if (threadIdx.x < 32) {
    m = warp_max(threadIdx.x < kThreads / 32 ? red[threadIdx.x] : 0.f);
    if (threadIdx.x == 0) atomicMax(reinterpret_cast<int*>(p.workspace), int(float_bits(m)));
  }
}

template <typename T, Fp8Format F>
__global__ void __launch_bounds__(kThreads) fp8_quantize_kernel(Fp8QuantizeArgs p) {
  const float scale = p.scale ? *p.scale : fp8_dynamic_scale(*p.workspace, F);
  if (blockIdx.x == 0 && threadIdx.x == 0) *p.scale_out = scale;
  const T* __restrict__ x = static_cast<const T*>(p.x);
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < p.n; i += int64_t(gridDim.x) * kThreads)
    p.q[i] = fp8_encode<F>(fp8_saturate<F>(load_f32(x + i) / scale));
}

#ifndef __CUDACC_RTC__
// Every instance the planner may select, keyed by (dtype, variant): dynamic (the amax kernel first), Fp8Format.
const Kernel<Fp8QuantizeArgs> kKernels[] = {
    NVILA_KERNEL(F32, 1, kAnyVariant, 0, fp8_amax_kernel<float>),
    NVILA_KERNEL(F16, 1, kAnyVariant, 0, fp8_amax_kernel<nvila::half_t>),
    NVILA_KERNEL(BF16, 1, kAnyVariant, 0, fp8_amax_kernel<nvila::bf16_t>),
    NVILA_KERNEL(F32, kAnyVariant, 0, 0, fp8_quantize_kernel<float, nvila::Fp8Format::E4M3>),
    NVILA_KERNEL(F32, kAnyVariant, 1, 0, fp8_quantize_kernel<float, nvila::Fp8Format::E5M2>),
    NVILA_KERNEL(F16, kAnyVariant, 0, 0, fp8_quantize_kernel<nvila::half_t, nvila::Fp8Format::E4M3>),
    NVILA_KERNEL(F16, kAnyVariant, 1, 0, fp8_quantize_kernel<nvila::half_t, nvila::Fp8Format::E5M2>),
    NVILA_KERNEL(BF16, kAnyVariant, 0, 0, fp8_quantize_kernel<nvila::bf16_t, nvila::Fp8Format::E4M3>),
    NVILA_KERNEL(BF16, kAnyVariant, 1, 0, fp8_quantize_kernel<nvila::bf16_t, nvila::Fp8Format::E5M2>),
};

NVILA_REGISTER_OP(fp8_quantize, Fp8QuantizeArgs, kKernels);
#endif
}  // namespace

}  // namespace nvila::NVILA_CUDA_NS
