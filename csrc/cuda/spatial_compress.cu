// CUDA kernel of spatial_compress (space-to-depth with NVILA's padding and
// channel order, optionally fused with LayerNorm). One block per output token
// (grid-stride over tokens); the block gathers the token's k*k source tokens
// with 16-byte loads where alignment allows.
//
// With LayerNorm, the row of D = k*k*C values is staged in shared memory as fp32
// (CACHED) so global memory is read once and written once; statistics are two
// block reductions (mean, then sum of squared deviations). The cached variant's
// second and third pass walk the staged row in output order, 4 channels a thread
// (layernorm_row.cuh: 16-byte shared and LayerNorm-parameter loads, consecutive
// lanes, no bank conflicts). When D*4 bytes exceed the device's shared memory, the
// uncached variant re-reads the row from global memory (L2 hits) for the second and
// third pass, in the gather's order.
#include "common.cuh"
#include "launchers.h"
#include "layernorm_row.cuh"
#include "nvila/layernorm.h"
#include "nvila/spatial_compress.h"
#include "vec_io.cuh"

namespace nvila::NVILA_CUDA_NS {
namespace {

// 256 threads; at least 4 resident blocks per SM (a 13824-channel cached row is
// 54 KiB of shared memory, so 4 blocks is also what the shared memory allows).
// The register cap this implies (64) is also what keeps ptxas from spilling: with
// no minimum it chose ~48 registers and spilled in the uncached fp16 variant.
constexpr int kMaxThreads = kSpatialCompressMaxThreads;

// The VEC-wide piece `i` of output row `row`: its slot, and where it comes from
// (element offset into x, or -1 for padding). Indices inside a row fit in 32 bits.
struct Piece {
  int64_t src;
  uint32_t dst;  // element offset inside the output row
};

template <int VEC>
__device__ __forceinline__ Piece piece(const SpatialCompressArgs& a, int64_t row, uint32_t i, uint32_t cvecs) {
  const uint32_t slot = i / cvecs;
  const uint32_t c = (i - slot * cvecs) * VEC;
  const int64_t src = spatial_compress_src(a, row, slot);
  return {src < 0 ? -1 : src + c, uint32_t(slot * a.C + c)};
}

template <typename T, int VEC, bool LN, bool CACHED>
__global__ void __launch_bounds__(kMaxThreads, 4) spatial_compress_kernel(SpatialCompressArgs a) {
  NVILA_DYNAMIC_SMEM(float, row_buf);  // D floats, used when CACHED
  __shared__ float red[32];
  const T* __restrict__ x = static_cast<const T*>(a.x);
  T* __restrict__ out = static_cast<T*>(a.out);
  const uint32_t cvecs = uint32_t(a.C / VEC);
  const uint32_t nvec = uint32_t(a.k * a.k) * cvecs;
  const int64_t D = a.D(), rows = a.rows();

  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    T* dst = out + row * D;
    if constexpr (!LN) {
      for (uint32_t i = threadIdx.x; i < nvec; i += blockDim.x) {
        const Piece p = piece<VEC>(a, row, i, cvecs);
        Vec<T, VEC> v;
        if (p.src < 0) {
#pragma unroll
          for (int j = 0; j < VEC; ++j) v.v[j] = from_f32<T>(0.f);
        } else {
          v = load_vec<T, VEC>(x + p.src);
        }
        store_vec<T, VEC>(dst + p.dst, v);
      }
      continue;
    } else {
      // pass 1: gather (and stage) the row, sum for the mean. Statistics are of
      // (x - shift), shift = the row's first value (always a real token).
      const float shift = load_f32(x + spatial_compress_src(a, row, 0));
      float sum = 0.f;
      for (uint32_t i = threadIdx.x; i < nvec; i += blockDim.x) {
        const Piece p = piece<VEC>(a, row, i, cvecs);
        Vec<T, VEC> v;
        if (p.src >= 0) v = load_vec<T, VEC>(x + p.src);
        float f[VEC];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          f[j] = p.src < 0 ? 0.f : load_f32(&v.v[j]);
          sum += f[j] - shift;
        }
        if constexpr (CACHED) stage_row<VEC>(row_buf + p.dst, f);
      }
      // (block_sum's barrier also makes the staged row visible to every thread)
      const float mean = block_sum(sum, red) / float(D);
      if constexpr (CACHED) {
        layernorm_staged_row<T, VEC>(row_buf, D, shift, mean, a.eps, a.ln_weight, a.ln_bias, dst, red);
        __syncthreads();  // row_buf is rewritten by the next row only after every thread is done
        continue;
      }

      // uncached: the row's value at piece i, lane j (pass 2 and 3), re-read from x
      auto value = [&](const Piece& p, const Vec<T, VEC>& v, int j) -> float {
        return p.src < 0 ? 0.f : load_f32(&v.v[j]);
      };
      auto reload = [&](const Piece& p) {
        Vec<T, VEC> v{};
        if (p.src >= 0) v = *reinterpret_cast<const Vec<T, VEC>*>(x + p.src);
        return v;
      };

      // pass 2: sum of squared deviations
      float ssd = 0.f;
      for (uint32_t i = threadIdx.x; i < nvec; i += blockDim.x) {
        const Piece p = piece<VEC>(a, row, i, cvecs);
        const Vec<T, VEC> v = reload(p);
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const float d = (value(p, v, j) - shift) - mean;
          ssd += d * d;
        }
      }
      const RowStats st{shift, mean, layernorm_rstd(block_sum(ssd, red), D, a.eps)};

      // pass 3: normalize, scale, shift, store
      for (uint32_t i = threadIdx.x; i < nvec; i += blockDim.x) {
        const Piece p = piece<VEC>(a, row, i, cvecs);
        const Vec<T, VEC> v = reload(p);
        Vec<T, VEC> o;
#pragma unroll
        for (int j = 0; j < VEC; ++j)
          o.v[j] = from_f32<T>(layernorm_apply(value(p, v, j), st, a.ln_weight, a.ln_bias, p.dst + j));
        store_vec<T, VEC>(dst + p.dst, o);
      }
    }
  }
}

#ifndef __CUDACC_RTC__
// Every instance the planner may select, keyed by (dtype, variant): VEC, LayerNormVariant.
const Kernel<SpatialCompressArgs> kKernels[] = {
    NVILA_KERNEL(F32, 1, kLayerNormNone, 0, spatial_compress_kernel<float, 1, false, false>),
    NVILA_KERNEL(F32, 1, kLayerNormCached, 0, spatial_compress_kernel<float, 1, true, true>),
    NVILA_KERNEL(F32, 1, kLayerNormUncached, 0, spatial_compress_kernel<float, 1, true, false>),
    NVILA_KERNEL(F32, 4, kLayerNormNone, 0, spatial_compress_kernel<float, 4, false, false>),
    NVILA_KERNEL(F32, 4, kLayerNormCached, 0, spatial_compress_kernel<float, 4, true, true>),
    NVILA_KERNEL(F32, 4, kLayerNormUncached, 0, spatial_compress_kernel<float, 4, true, false>),
    NVILA_KERNEL(F16, 1, kLayerNormNone, 0, spatial_compress_kernel<nvila::half_t, 1, false, false>),
    NVILA_KERNEL(F16, 1, kLayerNormCached, 0, spatial_compress_kernel<nvila::half_t, 1, true, true>),
    NVILA_KERNEL(F16, 1, kLayerNormUncached, 0, spatial_compress_kernel<nvila::half_t, 1, true, false>),
    NVILA_KERNEL(F16, 8, kLayerNormNone, 0, spatial_compress_kernel<nvila::half_t, 8, false, false>),
    NVILA_KERNEL(F16, 8, kLayerNormCached, 0, spatial_compress_kernel<nvila::half_t, 8, true, true>),
    NVILA_KERNEL(F16, 8, kLayerNormUncached, 0, spatial_compress_kernel<nvila::half_t, 8, true, false>),
    NVILA_KERNEL(BF16, 1, kLayerNormNone, 0, spatial_compress_kernel<nvila::bf16_t, 1, false, false>),
    NVILA_KERNEL(BF16, 1, kLayerNormCached, 0, spatial_compress_kernel<nvila::bf16_t, 1, true, true>),
    NVILA_KERNEL(BF16, 1, kLayerNormUncached, 0, spatial_compress_kernel<nvila::bf16_t, 1, true, false>),
    NVILA_KERNEL(BF16, 8, kLayerNormNone, 0, spatial_compress_kernel<nvila::bf16_t, 8, false, false>),
    NVILA_KERNEL(BF16, 8, kLayerNormCached, 0, spatial_compress_kernel<nvila::bf16_t, 8, true, true>),
    NVILA_KERNEL(BF16, 8, kLayerNormUncached, 0, spatial_compress_kernel<nvila::bf16_t, 8, true, false>),
};

NVILA_REGISTER_OP(spatial_compress, SpatialCompressArgs, kKernels);
#endif
}  // namespace

}  // namespace nvila::NVILA_CUDA_NS
