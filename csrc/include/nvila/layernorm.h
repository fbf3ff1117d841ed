// LayerNorm arithmetic shared by every kernel that normalizes a row:
// statistics in fp32, two-pass variance (mean first, then mean of squared
// deviations), biased variance, y = (x - mean) * rstd * w + b, as torch.layer_norm.
#pragma once

#include <cmath>

#include "nvila/common.h"

namespace nvila {

struct RowStats {
  float mean;
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
  float y = (x - s.mean) * s.rstd;
  if (w) y *= w[i];
  if (b) y += b[i];
  return y;
}

}  // namespace nvila
