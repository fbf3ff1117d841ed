// The row passes of layernorm_row.h. They run on an L1/L2-resident fp32 buffer and
// are compiled twice, for Haswell-class CPUs (AVX2 + FMA) and for baseline x86-64,
// picked at load time.
#include "layernorm_row.h"

#define NVILA_CPU_CLONES __attribute__((target_clones("arch=haswell", "default")))

namespace nvila::cpu {

NVILA_CPU_CLONES double block_sum_sq_dev(const float* v, int64_t n, float shift, float mean) {
  double total = 0.0;
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t m = std::min(kBlock, n - i0);
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < m; ++i) {
      const float d = (v[i0 + i] - shift) - mean;
      s += d * d;
    }
    total += s;
  }
  return total;
}

NVILA_CPU_CLONES void normalize_inplace(float* v, int64_t n, RowStats st, const float* w, const float* bias) {
  if (bias) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) v[i] = ((v[i] - st.shift) - st.mean) * st.rstd * w[i] + bias[i];
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) v[i] = ((v[i] - st.shift) - st.mean) * st.rstd * w[i];
  }
}

}  // namespace nvila::cpu
