// CPU kernel of spatial_compress: one pass over the input. Each output token
// (a row of D = k*k*C values) gathers its k*k source tokens; with LayerNorm the
// tokens are the row's pieces for PieceRowNorm (layernorm_row.h: statistics from
// memory, then the normalized write re-reading them from L1/L2), so every input
// element is read from memory once and every output element written once.
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
        else
          copy_out(dst + s * C, x + src, C * sizeof(T), stream);
      }
    }
    stream_fence();
  }
}

template <typename T>
void layernorm_rows(const SpatialCompressArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const int64_t C = a.C, D = a.D(), kk = a.k * a.k, rows = a.rows();
  const bool stream = rows * D * int64_t(sizeof(T)) >= kStreamBytes;
  const PieceRowNorm<T> norm(a.ln_weight, a.ln_bias, D, C, a.eps);
  const std::vector<T> zeros(C, from_f32<T>(0.f));  // the padding token
#pragma omp parallel
  {
    std::vector<const T*> pieces(kk);
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      for (int64_t s = 0; s < kk; ++s) {
        const int64_t src = spatial_compress_src(a, row, s);
        pieces[s] = src < 0 ? zeros.data() : x + src;  // slot 0 is never padding
      }
      norm(out + row * D, pieces.data(), stream);
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
