// LayerNorm arithmetic shared by every kernel that normalizes a row:
// statistics in fp32, two-pass variance (mean first, then mean of squared
// deviations), biased variance, y = (x - mean) * rstd * w + b, as torch.layer_norm.
//
// Shifted data: every statistic is taken of (x - shift), shift = the row's first
// value. For nearly constant rows (tiny variance, rstd up to 1/sqrt(eps)) this
// keeps the mean's rounding error proportional to the spread of the row rather
// than to its magnitude; without it such rows lose ~3 more digits than torch.
//
// The CPU kernels (csrc/cpu/layernorm_row.h) shift by the mean of the row's first
// 256 values instead, take both sums in one pass (the bound on what that costs is
// there), and write ((x - shift) * rstd - mean * rstd) * w + b with fused
// multiply-adds: the same statistics and output up to rounding.
#pragma once

#ifndef __CUDACC_RTC__
#include <cmath>
#endif

#include "nvila/common.h"

namespace nvila {

struct RowStats {
  float shift;  // subtracted from every value before the statistics
  float mean;   // mean of (x - shift)
  float rstd;
};

NVILA_HD float layernorm_rstd(float sum_sq_dev, int64_t n, float eps) {
#if defined(__CUDA_ARCH__)
  return rsqrtf(sum_sq_dev / float(n) + eps);
#else
  return 1.0f / std::sqrt(sum_sq_dev / float(n) + eps);
#endif
}

NVILA_HD float layernorm_apply(float x, RowStats s, const float* w, const float* b, int64_t i) {
  float y = ((x - s.shift) - s.mean) * s.rstd;
  if (w) y *= w[i];
  if (b) y += b[i];
  return y;
}

// How a CUDA kernel that makes one LayerNorm-ed row per block holds the row (the
// kernels' LN and CACHED template flags): no LayerNorm, the row as fp32 in dynamic
// shared memory, or re-read from global memory when it does not fit.
enum LayerNormVariant : int32_t { kLayerNormNone = 0, kLayerNormCached = 1, kLayerNormUncached = 2 };

// The variant for a row of `D` values, when `other_smem` bytes of the
// `max_dynamic_smem` a block may use are taken already.
NVILA_HD LayerNormVariant layernorm_variant(bool layernorm, int64_t D, int64_t other_smem, int64_t max_dynamic_smem) {
  if (!layernorm) return kLayerNormNone;
  return other_smem + D * 4 <= max_dynamic_smem ? kLayerNormCached : kLayerNormUncached;
}

// Dynamic shared memory the row takes in variant `v`.
NVILA_HD int64_t layernorm_row_smem(LayerNormVariant v, int64_t D) { return v == kLayerNormCached ? D * 4 : 0; }

}  // namespace nvila
