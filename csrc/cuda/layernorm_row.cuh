// LayerNorm of a row staged in shared memory as fp32 (the CACHED variants of
// spatial_compress and merge_compress): the staging stores, then the second and
// third pass over the staged row in output order.
#pragma once

#include "common.cuh"
#include "nvila/layernorm.h"
#include "vec_io.cuh"

namespace nvila::NVILA_CUDA_NS {

// row_buf[0 .. VEC) = f with 16-byte shared stores when VEC is 4 or 8. Consecutive
// lanes stage VEC floats apart. With VEC = 8 (32 bytes a lane), the 8 lanes of a
// 16-byte phase would meet every bank twice if all wrote their first half first:
// lanes 4-7 of each 8 write their second half first, which spreads each phase over
// the 32 banks (lane L's first store at word 8L + 4 * (L & 4 ? 1 : 0)).
template <int VEC>
__device__ __forceinline__ void stage_row(float* row_buf, const float (&f)[VEC]) {
  using F4 = Vec<float, 4>;
  if constexpr (VEC == 8) {
    F4 lo, hi;
#pragma unroll
    for (int j = 0; j < 4; ++j) lo.v[j] = f[j], hi.v[j] = f[4 + j];
    F4* q = reinterpret_cast<F4*>(row_buf);
    const bool swap = (threadIdx.x & 4) != 0;
    q[swap ? 1 : 0] = swap ? hi : lo;
    q[swap ? 0 : 1] = swap ? lo : hi;
  } else if constexpr (VEC == 4) {
    F4 v;
#pragma unroll
    for (int j = 0; j < 4; ++j) v.v[j] = f[j];
    *reinterpret_cast<F4*>(row_buf) = v;
  } else {
#pragma unroll
    for (int j = 0; j < VEC; ++j) row_buf[j] = f[j];
  }
}

// Passes 2 and 3 of a staged row of D floats (after a barrier that made it visible):
// the sum of squared deviations from `mean` (of x - shift), then LayerNorm with
// weight w and bias b (either may be null) stored to dst as T. L = 4 channels a
// thread and step when VEC >= 4 (then D % 4 == 0 and dst is 4 * sizeof(T)-aligned),
// else 1: consecutive lanes read consecutive 16-byte pieces of the row (no bank
// conflicts) and of w and b (whole sectors; scalar loads if they are not 16-byte
// aligned), and store L * sizeof(T) bytes each.
template <typename T, int VEC>
__device__ __forceinline__ void layernorm_staged_row(const float* row_buf, int64_t D, float shift, float mean,
                                                     float eps, const float* w, const float* b, T* dst, float* red) {
  constexpr int L = VEC >= 4 ? 4 : 1;
  using FL = Vec<float, L>;
  const FL* row = reinterpret_cast<const FL*>(row_buf);
  const uint32_t n = uint32_t(D / L);
  float ssd = 0.f;
  for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
    const FL v = row[i];
#pragma unroll
    for (int j = 0; j < L; ++j) {
      const float d = (v.v[j] - shift) - mean;
      ssd += d * d;
    }
  }
  const RowStats st{shift, mean, layernorm_rstd(block_sum(ssd, red), D, eps)};
  const bool wide =
      L == 4 && ((reinterpret_cast<unsigned long long>(w) | reinterpret_cast<unsigned long long>(b)) & 15ull) == 0;
  for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
    const FL v = row[i];
    FL wv, bv;
    if (wide) {
      if (w) wv = reinterpret_cast<const FL*>(w)[i];
      if (b) bv = reinterpret_cast<const FL*>(b)[i];
    } else {
#pragma unroll
      for (int j = 0; j < L; ++j) {
        if (w) wv.v[j] = w[int64_t(i) * L + j];
        if (b) bv.v[j] = b[int64_t(i) * L + j];
      }
    }
    Vec<T, L> o;
#pragma unroll
    for (int j = 0; j < L; ++j)
      o.v[j] = from_f32<T>(layernorm_apply(v.v[j], st, w ? wv.v : nullptr, b ? bv.v : nullptr, j));
    store_vec<T, L>(dst + int64_t(i) * L, o);
  }
}

}  // namespace nvila::NVILA_CUDA_NS
