// The row passes of layernorm_row.h. They run on an L1/L2-resident fp32 buffer; each
// has an AVX2 version (avx2.h, chosen at run time) and a portable one. (GCC's
// target_clones dispatch is not used: its "arch=haswell" clone is never picked on AMD
// CPUs, and on some VMs no AVX2 clone is picked at all.)
#include "layernorm_row.h"

#include "avx2.h"

namespace nvila::cpu {
namespace {

double block_sum_sq_dev_generic(const float* v, int64_t n, float shift, float mean) {
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

NVILA_INLINE void normalize_body(float* v, int64_t n, RowStats st, const float* w, const float* bias) {
  if (bias) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) v[i] = ((v[i] - st.shift) - st.mean) * st.rstd * w[i] + bias[i];
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) v[i] = ((v[i] - st.shift) - st.mean) * st.rstd * w[i];
  }
}

#if NVILA_HAVE_AVX2_PATH
// Four independent vector sums per block (one would wait on the add latency).
NVILA_AVX2 double block_sum_sq_dev_avx2(const float* v, int64_t n, float shift, float mean) {
  const __m256 vs = _mm256_set1_ps(shift), vm = _mm256_set1_ps(mean);
  double total = 0.0;
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t m = std::min(kBlock, n - i0);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= m; i += 32)
      for (int j = 0; j < 4; ++j) {
        const __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(v + i0 + i + 8 * j), vs), vm);
        acc[j] = _mm256_fmadd_ps(d, d, acc[j]);
      }
    for (; i + 8 <= m; i += 8) {
      const __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(v + i0 + i), vs), vm);
      acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
    }
    float s = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < m; ++i) {
      const float d = (v[i0 + i] - shift) - mean;
      s += d * d;
    }
    total += s;
  }
  return total;
}

NVILA_AVX2 void normalize_avx2(float* v, int64_t n, RowStats st, const float* w, const float* bias) {
  normalize_body(v, n, st, w, bias);
}
#endif

}  // namespace

double block_sum_sq_dev(const float* v, int64_t n, float shift, float mean) {
#if NVILA_HAVE_AVX2_PATH
  if (use_avx2()) return block_sum_sq_dev_avx2(v, n, shift, mean);
#endif
  return block_sum_sq_dev_generic(v, n, shift, mean);
}

void normalize_inplace(float* v, int64_t n, RowStats st, const float* w, const float* bias) {
#if NVILA_HAVE_AVX2_PATH
  if (use_avx2()) return normalize_avx2(v, n, st, w, bias);
#endif
  normalize_body(v, n, st, w, bias);
}

}  // namespace nvila::cpu
