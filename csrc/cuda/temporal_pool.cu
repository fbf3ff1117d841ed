// CUDA kernel of temporal_pool: out[g, n] = mean over t < group of x[g*group + t, n].
// Each thread owns VEC consecutive elements of one output frame (16-byte loads
// when aligned) and sums its `group` input frames in fp32; grid-stride loop.
#include "common.cuh"
#include "launchers.h"
#include "nvila/temporal_pool.h"
#include "ptx.cuh"

namespace nvila::NVILA_CUDA_NS {
namespace {

template <typename T, int VEC>
__global__ void __launch_bounds__(kTemporalPoolThreads) temporal_pool_kernel(TemporalPoolArgs a) {
  const T* __restrict__ x = static_cast<const T*>(a.x);
  T* __restrict__ out = static_cast<T*>(a.out);
  const int64_t per_frame = a.N / VEC;
  const int64_t total = a.groups() * per_frame;
  const float count = float(a.group);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = i / per_frame;
    const int64_t n = (i - g * per_frame) * VEC;
    float acc[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) acc[j] = 0.f;
    const T* src = x + g * a.group * a.sT + n;
    for (int64_t t = 0; t < a.group; ++t, src += a.sT) {
      const Vec<T, VEC> v = *reinterpret_cast<const Vec<T, VEC>*>(src);
#pragma unroll
      for (int j = 0; j < VEC; ++j) acc[j] += load_f32(&v.v[j]);
    }
    Vec<T, VEC> o;
#pragma unroll
    for (int j = 0; j < VEC; ++j) o.v[j] = from_f32<T>(acc[j] / count);
    if constexpr (sizeof(o) == 16)
      ptx::st_global_cs_v4(out + g * a.N + n, &o);
    else
      *reinterpret_cast<Vec<T, VEC>*>(out + g * a.N + n) = o;
  }
}

#ifndef __CUDACC_RTC__
// Every instance the planner may select, keyed by (dtype, variant): VEC.
const Kernel<TemporalPoolArgs> kKernels[] = {
    NVILA_KERNEL(F32, 1, 0, 0, temporal_pool_kernel<float, 1>),
    NVILA_KERNEL(F32, 4, 0, 0, temporal_pool_kernel<float, 4>),
    NVILA_KERNEL(F16, 1, 0, 0, temporal_pool_kernel<nvila::half_t, 1>),
    NVILA_KERNEL(F16, 8, 0, 0, temporal_pool_kernel<nvila::half_t, 8>),
    NVILA_KERNEL(BF16, 1, 0, 0, temporal_pool_kernel<nvila::bf16_t, 1>),
    NVILA_KERNEL(BF16, 8, 0, 0, temporal_pool_kernel<nvila::bf16_t, 8>),
};

NVILA_REGISTER_OP(temporal_pool, TemporalPoolArgs, kKernels);
#endif
}  // namespace

}  // namespace nvila::NVILA_CUDA_NS
