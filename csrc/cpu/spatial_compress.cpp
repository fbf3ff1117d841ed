// CPU kernel of spatial_compress: one pass over the input. Each output token
// (a row of D = k*k*C values) gathers its k*k source tokens; with LayerNorm the
// row is staged once in an fp32 buffer (D*4 bytes, L1/L2 resident) for the
// statistics passes and the normalized write, so every input element is read
// from memory once and every output element written once.
// The staging (load_token) and the last pass (write_row) of layernorm_row.h have an
// AVX2 version.
#include "nvila/spatial_compress.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "layernorm_row.h"
#include "nvila/dtype.h"
#include "nvila/layernorm.h"
#include "stream_store.h"

namespace nvila::cpu {
namespace {

template <typename T>
void copy_rows(const SpatialCompressArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const int64_t C = a.C, D = a.D(), kk = a.k * a.k, rows = a.rows();
  const bool stream = rows * D * int64_t(sizeof(T)) >= kStreamBytes;
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      T* dst = out + row * D;
      for (int64_t s = 0; s < kk; ++s) {
        const int64_t src = spatial_compress_src(a, row, s);
        if (src < 0)
          std::memset(dst + s * C, 0, C * sizeof(T));
        else if (stream)
          stream_copy(dst + s * C, x + src, C * sizeof(T));
        else
          std::memcpy(dst + s * C, x + src, C * sizeof(T));
      }
    }
    stream_fence();
  }
}

template <typename T>
void layernorm_rows(const SpatialCompressArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const float* w = a.ln_weight;
  const float* bias = a.ln_bias;
  const int64_t C = a.C, D = a.D(), kk = a.k * a.k, rows = a.rows();
  const bool stream = rows * D * int64_t(sizeof(T)) >= kStreamBytes;
#pragma omp parallel
  {
    std::vector<float> buf_storage(D);
    std::vector<T> out_storage(stream ? D : 0);  // 16-bit rows, converted before streaming out
    float* buf = buf_storage.data();
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      // pass 1: stage the row as fp32 and sum (x - shift), shift = the row's first
      // value (slot 0 is never padding); padding tokens are zeros
      const float shift = load_f32(x + spatial_compress_src(a, row, 0));
      double total = 0.0;
      for (int64_t s = 0; s < kk; ++s) {
        const int64_t src = spatial_compress_src(a, row, s);
        if (src < 0) {
          std::memset(buf + s * C, 0, C * sizeof(float));
          total -= double(shift) * double(C);
        } else {
          total += load_token(buf + s * C, x + src, C, shift);
        }
      }
      const float mean = float(total / double(D));
      // pass 2: squared deviations; pass 3: normalize in place, then store
      const float ssd = float(block_sum_sq_dev(buf, D, shift, mean));
      const RowStats st{shift, mean, layernorm_rstd(ssd, D, a.eps)};
      write_row(out + row * D, buf, D, &st, w, bias, stream, out_storage.data());
    }
    stream_fence();
  }
}

template <typename T>
void run(const SpatialCompressArgs& a) {
  if (a.ln_weight)
    layernorm_rows<T>(a);
  else
    copy_rows<T>(a);
}

}  // namespace

void spatial_compress(const SpatialCompressArgs& a) {
  return dispatch_dtype(a.dtype, [&](auto t) { return run<decltype(t)>(a); });
}

}  // namespace nvila::cpu
