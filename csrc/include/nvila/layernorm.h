// LayerNorm arithmetic shared by every kernel that normalizes a row:
// statistics in fp32, two-pass variance (mean first, then mean of squared
// deviations), biased variance, y = (x - mean) * rstd * w + b, as torch.layer_norm.
//
// Shifted data: every statistic is taken of (x - shift), shift = the row's first
// value. For nearly constant rows (tiny variance, rstd up to 1/sqrt(eps)) this
// keeps the mean's rounding error proportional to the spread of the row rather
// than to its magnitude; without it such rows lose ~3 more digits than torch.
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

}  // namespace nvila
