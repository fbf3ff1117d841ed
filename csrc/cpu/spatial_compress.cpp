// CPU kernel of spatial_compress: one pass over the input. Each output token
// (a row of D = k*k*C values) gathers its k*k source tokens; with LayerNorm the
// row is staged once in an fp32 buffer (D*4 bytes, L1/L2 resident) for the two
// statistics passes and the normalized write, so every input element is read
// from memory once and every output element written once.
#include <omp.h>

#include <cstring>
#include <vector>

#include "kernels.h"
#include "nvila/dtype.h"
#include "nvila/layernorm.h"

namespace nvila::cpu {
namespace {

template <typename T>
void copy_rows(const SpatialCompressArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const int64_t C = a.C, D = a.D(), kk = a.k * a.k, rows = a.rows();
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    T* dst = out + row * D;
    for (int64_t s = 0; s < kk; ++s) {
      const int64_t src = spatial_compress_src(a, row, s);
      if (src < 0)
        std::memset(dst + s * C, 0, C * sizeof(T));
      else
        std::memcpy(dst + s * C, x + src, C * sizeof(T));
    }
  }
}

template <typename T>
void layernorm_rows(const SpatialCompressArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const float* w = a.ln_weight;
  const float* bias = a.ln_bias;
  const int64_t C = a.C, D = a.D(), kk = a.k * a.k, rows = a.rows();
#pragma omp parallel
  {
    std::vector<float> buf_storage(D);
    float* buf = buf_storage.data();
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      float sum = 0.f;
      for (int64_t s = 0; s < kk; ++s) {
        const int64_t src = spatial_compress_src(a, row, s);
        float* b = buf + s * C;
        if (src < 0) {
          std::memset(b, 0, C * sizeof(float));
          continue;
        }
        const T* p = x + src;
#pragma omp simd reduction(+ : sum)
        for (int64_t c = 0; c < C; ++c) {
          const float v = load_f32(p + c);
          b[c] = v;
          sum += v;
        }
      }
      const float mean = sum / float(D);
      float ssd = 0.f;
#pragma omp simd reduction(+ : ssd)
      for (int64_t i = 0; i < D; ++i) {
        const float d = buf[i] - mean;
        ssd += d * d;
      }
      const RowStats st{mean, layernorm_rstd(ssd, D, a.eps)};
      T* dst = out + row * D;
      if (bias) {
#pragma omp simd
        for (int64_t i = 0; i < D; ++i) dst[i] = from_f32<T>((buf[i] - st.mean) * st.rstd * w[i] + bias[i]);
      } else {
#pragma omp simd
        for (int64_t i = 0; i < D; ++i) dst[i] = from_f32<T>((buf[i] - st.mean) * st.rstd * w[i]);
      }
    }
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
  switch (a.dtype) {
    case DType::F32: return run<float>(a);
    case DType::F16: return run<half_t>(a);
    case DType::BF16: return run<bf16_t>(a);
  }
}

}  // namespace nvila::cpu
