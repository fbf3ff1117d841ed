// PieceRowNorm (layernorm_row.h): the statistics and the write of a row of pieces. Each
// has an AVX2 version (avx2.h, chosen at run time) and a portable one. (GCC's
// target_clones dispatch is not used: its "arch=haswell" clone is never picked on AMD
// CPUs, and on some VMs no AVX2 clone is picked at all.)
#include "layernorm_row.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <type_traits>

#include "avx2.h"
#include "nvila/dtype.h"

namespace nvila::cpu {
namespace {

template <typename T>
void block_sums_generic(const T* p, int64_t m, float pivot, double& s1, double& s2) {
  float a = 0.f, q = 0.f;
#pragma omp simd reduction(+ : a, q)
  for (int64_t i = 0; i < m; ++i) {
    const float d = load_f32(p + i) - pivot;
    a += d;
    q += d * d;
  }
  s1 += a;
  s2 += q;
}

template <typename T>
void write_piece_generic(T* dst, const T* p, int64_t C, RowStats st, const float* w, const float* b) {
  const float c = -st.mean * st.rstd;
#pragma omp simd
  for (int64_t i = 0; i < C; ++i) dst[i] = from_f32<T>(((load_f32(p + i) - st.shift) * st.rstd + c) * w[i] + b[i]);
}

#if NVILA_HAVE_AVX2_PATH
// 16 bf16 values at p as fp32: the even-indexed ones in e, the odd-indexed ones in o
NVILA_AVX2 NVILA_INLINE void split16(const bf16_t* p, __m256& e, __m256& o) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  o = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(int32_t(0xffff0000u))));
  e = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

// 32 values at p as four vectors of fp32, in an order only sums may use
template <typename T>
NVILA_AVX2 NVILA_INLINE void load32(const T* p, __m256 v[4]) {
  if constexpr (std::is_same_v<T, bf16_t>) {
    split16(p, v[0], v[1]);
    split16(p + 16, v[2], v[3]);
  } else {
    for (int j = 0; j < 4; ++j) v[j] = load8(p + 8 * j);
  }
}

// Four independent pairs of vector sums (one would wait on the add latency).
template <typename T>
NVILA_AVX2 void block_sums_avx2(const T* p, int64_t m, float pivot, double& s1, double& s2) {
  const int64_t m32 = m & ~int64_t(31);
  const __m256 vk = _mm256_set1_ps(pivot);
  __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  __m256 q[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}, v[4];
  for (int64_t c = 0; c < m32; c += 32) {
    load32(p + c, v);
    for (int j = 0; j < 4; ++j) {
      const __m256 d = _mm256_sub_ps(v[j], vk);
      a[j] = _mm256_add_ps(a[j], d);
      q[j] = _mm256_fmadd_ps(d, d, q[j]);
    }
  }
  float sa = hsum(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
  float sq = hsum(_mm256_add_ps(_mm256_add_ps(q[0], q[1]), _mm256_add_ps(q[2], q[3])));
  for (int64_t c = m32; c < m; ++c) {
    const float d = load_f32(p + c) - pivot;
    sa += d;
    sq += d * d;
  }
  s1 += sa;
  s2 += sq;
}

// (x - shift) * rstd - mean * rstd, times w plus b, of 8 values
NVILA_AVX2 NVILA_INLINE __m256 norm8(__m256 x, __m256 shift, __m256 rstd, __m256 c, const float* w, const float* b) {
  return _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_sub_ps(x, shift), rstd, c), _mm256_loadu_ps(w), _mm256_loadu_ps(b));
}

// v rounded to bf16 (to nearest even), the bits in the high halves. Not for NaN: a NaN
// whose payload sits in the low bits would come out as an infinity.
NVILA_AVX2 NVILA_INLINE __m256i round_bf16_no_nan(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  return _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
}

// Writes one piece (C values). bf16: 16 values a step from their even and odd halves,
// w and b in that order; `any_nan` when a NaN may come in (the NaN-safe rounding).
template <typename T>
NVILA_AVX2 void write_piece_avx2(T* dst, const T* p, int64_t C, RowStats st, const float* w, const float* b,
                                 bool stream, bool any_nan) {
  const float cs = -st.mean * st.rstd;
  const __m256 shift = _mm256_set1_ps(st.shift), rstd = _mm256_set1_ps(st.rstd), c = _mm256_set1_ps(cs);
  const bool nt = stream && reinterpret_cast<uintptr_t>(dst) % 32 == 0;
  int64_t i = 0;
  if constexpr (std::is_same_v<T, bf16_t>) {
    for (; i + 16 <= C; i += 16) {
      __m256 e, o;
      split16(p + i, e, o);
      const __m256 ye = norm8(e, shift, rstd, c, w + i, b + i), yo = norm8(o, shift, rstd, c, w + i + 8, b + i + 8);
      const __m256i re = any_nan ? _mm256_castps_si256(round8<T>(ye)) : round_bf16_no_nan(ye);
      const __m256i ro = any_nan ? _mm256_castps_si256(round8<T>(yo)) : round_bf16_no_nan(yo);
      // each 32-bit lane: the even value's bits low, the odd value's high
      const __m256i r = _mm256_blend_epi16(ro, _mm256_srli_epi32(re, 16), 0x55);
      auto* d = reinterpret_cast<__m256i*>(dst + i);
      if (nt)
        _mm256_stream_si256(d, r);
      else
        _mm256_storeu_si256(d, r);
    }
  } else {
    for (; i + 16 <= C; i += 16)
      store16(dst + i, norm8(load8(p + i), shift, rstd, c, w + i, b + i),
              norm8(load8(p + i + 8), shift, rstd, c, w + i + 8, b + i + 8), nt);
  }
  for (; i < C; ++i) dst[i] = from_f32<T>(std::fma(std::fma(load_f32(p + i) - st.shift, st.rstd, cs), w[i], b[i]));
}
#endif

}  // namespace

template <typename T>
PieceRowNorm<T>::PieceRowNorm(const float* w, const float* b, int64_t D, int64_t C, float eps)
    : D_(D), C_(C), eps_(eps), w_(w, w + D), b_(D, 0.f), avx2_(use_avx2()) {
  if (C <= 0 || D % C != 0) throw std::invalid_argument("PieceRowNorm: D must be a multiple of C");
  if (b) std::copy(b, b + D, b_.begin());
  params_finite_ = std::all_of(w_.begin(), w_.end(), [](float v) { return std::isfinite(v); }) &&
                   std::all_of(b_.begin(), b_.end(), [](float v) { return std::isfinite(v); });
  if (std::is_same_v<T, bf16_t> && avx2_)  // each full group of 16 of a piece: evens, then odds
    for (int64_t p0 = 0; p0 < D; p0 += C)
      for (int64_t g = p0; g + 16 <= p0 + C; g += 16)
        for (int64_t j = 0; j < 8; ++j) {
          w_[g + j] = w[g + 2 * j];
          w_[g + 8 + j] = w[g + 2 * j + 1];
          b_[g + j] = b ? b[g + 2 * j] : 0.f;
          b_[g + 8 + j] = b ? b[g + 2 * j + 1] : 0.f;
        }
}

template <typename T>
void PieceRowNorm<T>::block_sums(const T* p, int64_t m, float pivot, double& s1, double& s2) const {
#if NVILA_HAVE_AVX2_PATH
  if (avx2_) return block_sums_avx2(p, m, pivot, s1, s2);
#endif
  block_sums_generic(p, m, pivot, s1, s2);
}

template <typename T>
void PieceRowNorm<T>::operator()(T* dst, const T* const* p, bool stream) const {
  const int64_t n = D_ / C_, C = C_;
  // the pivot: the mean of the row's first kBlock values (about the first value)
  const float first = load_f32(p[0]);
  double s1 = 0.0, s2 = 0.0;
  int64_t m0 = 0;
  for (int64_t j = 0; j < n && m0 < kBlock; ++j) {
    const int64_t m = std::min(C, kBlock - m0);
    block_sums(p[j], m, first, s1, s2);
    m0 += m;
  }
  const float shift = first + float(s1 / double(m0));
  s1 = s2 = 0.0;
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c0 = 0; c0 < C; c0 += kBlock) block_sums(p[j] + c0, std::min(kBlock, C - c0), shift, s1, s2);
  double dev = s2 - s1 * (s1 / double(D_));  // sum of squared deviations from the mean
  if (dev < 0.0) dev = 0.0;                  // rounding; a NaN stays
  const float mean = float(s1 / double(D_)), ssd = float(dev);
  const RowStats st{shift, mean, layernorm_rstd(ssd, D_, eps_)};
  // finite statistics mean finite inputs; with finite w and b a NaN can only be made by
  // the arithmetic (the default NaN, which the fast bf16 rounding keeps)
  const bool any_nan = !(params_finite_ && std::isfinite(shift) && std::isfinite(mean) && std::isfinite(ssd) &&
                         std::isfinite(st.rstd) && std::isfinite(mean * st.rstd));
  for (int64_t j = 0; j < n; ++j) {
    const float* w = w_.data() + j * C;
    const float* b = b_.data() + j * C;
#if NVILA_HAVE_AVX2_PATH
    if (avx2_) {
      write_piece_avx2(dst + j * C, p[j], C, st, w, b, stream, any_nan);
      continue;
    }
#endif
    write_piece_generic(dst + j * C, p[j], C, st, w, b);
  }
}

template class PieceRowNorm<float>;
template class PieceRowNorm<half_t>;
template class PieceRowNorm<bf16_t>;

}  // namespace nvila::cpu
