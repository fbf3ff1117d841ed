// LayerNorm passes over one row staged as fp32 in an L1/L2-resident buffer, shared
// by the CPU kernels that fuse a gather with LayerNorm (spatial_compress,
// merge_compress). Statistics follow nvila/layernorm.h (shifted two-pass).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

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
template <typename T>
double load_token(float* b, const T* p, int64_t C, float shift) {
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

}  // namespace nvila::cpu
