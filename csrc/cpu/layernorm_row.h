// LayerNorm passes over one row staged as fp32 in an L1/L2-resident buffer, shared
// by the CPU kernels that fuse a gather with LayerNorm (spatial_compress,
// merge_compress). Statistics follow nvila/layernorm.h (shifted two-pass).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "avx2.h"
#include "nvila/dtype.h"
#include "nvila/layernorm.h"
#include "stream_store.h"

namespace nvila::cpu {

// Sums in fp32 over blocks of kBlock values (several vector lanes each), blocks
// added in double: a plain running sum drifts when one value repeats thousands of
// times (the zero padding of a row), which this does not.
constexpr int64_t kBlock = 256;

// sum over i of ((v[i] - shift) - mean)^2, blocked as above.
double block_sum_sq_dev(const float* v, int64_t n, float shift, float mean);

// v[i] = ((v[i] - shift) - mean) * rstd * w[i] (+ bias[i] when bias is given).
void normalize_inplace(float* v, int64_t n, RowStats st, const float* w, const float* bias);

// Stages C values of one source token as fp32 into b and returns their sum of
// (value - shift), blocked as above.
#if NVILA_HAVE_AVX2_PATH
template <typename T>
NVILA_AVX2 double load_token_avx2(float* b, const T* p, int64_t C, float shift) {
  const __m256 vshift = _mm256_set1_ps(shift);
  double total = 0.0;
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
    const int64_t m = std::min(kBlock, C - c0), m8 = m & ~int64_t(7);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t c = 0;
    for (; c + 32 <= m; c += 32)  // four independent sums (one would wait on the add latency)
      for (int j = 0; j < 4; ++j) {
        const __m256 v = load8(p + c0 + c + 8 * j);
        _mm256_storeu_ps(b + c0 + c + 8 * j, v);
        acc[j] = _mm256_add_ps(acc[j], _mm256_sub_ps(v, vshift));
      }
    for (; c < m8; c += 8) {
      const __m256 v = load8(p + c0 + c);
      _mm256_storeu_ps(b + c0 + c, v);
      acc[0] = _mm256_add_ps(acc[0], _mm256_sub_ps(v, vshift));
    }
    float s = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; c < m; ++c) {
      b[c0 + c] = load_f32(p + c0 + c);
      s += b[c0 + c] - shift;
    }
    total += s;
  }
  return total;
}
#endif

template <typename T>
double load_token(float* b, const T* p, int64_t C, float shift) {
#if NVILA_HAVE_AVX2_PATH
  if (use_avx2()) return load_token_avx2(b, p, C, shift);
#endif
  double total = 0.0;
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
    const int64_t m = std::min(kBlock, C - c0);
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < m; ++c) {
      const float v = load_f32(p + c0 + c);
      b[c0 + c] = v;
      s += v - shift;
    }
    total += s;
  }
  return total;
}

// Stores the normalized fp32 row v (n values) at dst as T, with streaming stores
// when `stream`. A 16-bit row is converted into tmp (n values) before it is
// streamed; tmp is unused otherwise.
template <typename T>
void store_row(T* dst, const float* v, int64_t n, bool stream, T* tmp) {
  if constexpr (std::is_same_v<T, float>) {
    if (stream)
      stream_copy(dst, v, n * sizeof(float));
    else
      std::memcpy(dst, v, n * sizeof(float));
  } else {
    T* o = stream ? tmp : dst;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = from_f32<T>(v[i]);
    if (stream) stream_copy(dst, o, n * sizeof(T));
  }
}

#if NVILA_HAVE_AVX2_PATH
// ((v - shift) - mean) * rstd * w (+ b) of 8 values
NVILA_AVX2 NVILA_INLINE __m256 norm8(const float* v, __m256 shift, __m256 mean, __m256 rstd, const float* w,
                                     const float* b) {
  const __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(v), shift), mean), rstd),
                                 _mm256_loadu_ps(w));
  return b ? _mm256_add_ps(y, _mm256_loadu_ps(b)) : y;
}

// Writes the staged row v as T, normalized with st when given (weight w, bias b or
// nullptr); streaming stores for the aligned middle when `stream`.
template <typename T>
NVILA_AVX2 void write_row_avx2(T* dst, const float* v, int64_t n, const RowStats* st, const float* w, const float* b,
                               bool stream) {
  const auto value = [&](int64_t i) { return st ? layernorm_apply(v[i], *st, w, b, i) : v[i]; };
  int64_t i = 0;
  if (reinterpret_cast<uintptr_t>(dst) % sizeof(T) != 0) stream = false;  // never aligns
  if (stream)
    for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % 32 != 0; ++i) dst[i] = from_f32<T>(value(i));
  if (st) {
    const __m256 shift = _mm256_set1_ps(st->shift), mean = _mm256_set1_ps(st->mean), rstd = _mm256_set1_ps(st->rstd);
    for (; i + 16 <= n; i += 16)
      store16(dst + i, norm8(v + i, shift, mean, rstd, w + i, b ? b + i : nullptr),
              norm8(v + i + 8, shift, mean, rstd, w + i + 8, b ? b + i + 8 : nullptr), stream);
  } else {
    for (; i + 16 <= n; i += 16) store16(dst + i, _mm256_loadu_ps(v + i), _mm256_loadu_ps(v + i + 8), stream);
  }
  for (; i < n; ++i) dst[i] = from_f32<T>(value(i));
}
#endif

// Writes the staged row v (n values) at dst as T, normalized with st when given
// (weight w, bias b or nullptr), with streaming stores when `stream`; v is changed.
// tmp (n values of T) is used by the portable path for a 16-bit row that streams.
template <typename T>
void write_row(T* dst, float* v, int64_t n, const RowStats* st, const float* w, const float* b, bool stream, T* tmp) {
#if NVILA_HAVE_AVX2_PATH
  if (use_avx2()) return write_row_avx2(dst, v, n, st, w, b, stream);
#endif
  if (st) normalize_inplace(v, n, *st, w, b);
  store_row(dst, v, n, stream, tmp);
}

}  // namespace nvila::cpu
