// The CPU kernels' AVX2 paths: function-level target attributes (NVILA_AVX2), chosen
// at run time with use_avx2(), so the build stays portable. Each such kernel keeps a
// portable fallback; NVILA_KERNELS_CPU_ISA=generic forces it (for its tests).
#pragma once

#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "nvila/dtype.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define NVILA_HAVE_AVX2_PATH 1
#define NVILA_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define NVILA_HAVE_AVX2_PATH 0
#endif

#define NVILA_INLINE inline __attribute__((always_inline))

namespace nvila::cpu {

// True when the CPU has AVX2, FMA and F16C and NVILA_KERNELS_CPU_ISA is not "generic".
inline bool use_avx2() {
#if NVILA_HAVE_AVX2_PATH
  static const bool ok = [] {
    const char* isa = std::getenv("NVILA_KERNELS_CPU_ISA");
    if (isa && std::strcmp(isa, "generic") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }();
  return ok;
#else
  return false;
#endif
}

#if NVILA_HAVE_AVX2_PATH
// 8 values as fp32 (exact for every dtype)
NVILA_AVX2 NVILA_INLINE __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
NVILA_AVX2 NVILA_INLINE __m256 load8(const bf16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
NVILA_AVX2 NVILA_INLINE __m256 load8(const half_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

NVILA_AVX2 NVILA_INLINE float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// v rounded to T and back, as from_f32<T> then load_f32 (round to nearest even; a
// NaN stays a quiet NaN)
template <typename T>
NVILA_AVX2 NVILA_INLINE __m256 round8(__m256 v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else if constexpr (std::is_same_v<T, half_t>) {
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  } else {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
    const __m256i nan =
        _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    const __m256i q = _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x00400000)), nan);
    return _mm256_castsi256_ps(_mm256_and_si256(q, _mm256_set1_epi32(int32_t(0xffff0000u))));
  }
}

// Stores 16 values (lo, hi) as T; dst 32-byte aligned when streaming.
template <typename T>
NVILA_AVX2 NVILA_INLINE void store16(T* dst, __m256 lo, __m256 hi, bool stream) {
  if constexpr (std::is_same_v<T, float>) {
    if (stream) {
      _mm256_stream_ps(dst, lo);
      _mm256_stream_ps(dst + 8, hi);
    } else {
      _mm256_storeu_ps(dst, lo);
      _mm256_storeu_ps(dst + 8, hi);
    }
  } else {
    __m256i h;
    if constexpr (std::is_same_v<T, half_t>) {
      constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
      h = _mm256_set_m128i(_mm256_cvtps_ph(hi, kRound), _mm256_cvtps_ph(lo, kRound));
    } else {  // bf16 bits in the low halves, packed per 128-bit lane, then the lanes put in order
      const __m256i l = _mm256_srli_epi32(_mm256_castps_si256(round8<T>(lo)), 16);
      const __m256i u = _mm256_srli_epi32(_mm256_castps_si256(round8<T>(hi)), 16);
      h = _mm256_permute4x64_epi64(_mm256_packus_epi32(l, u), _MM_SHUFFLE(3, 1, 2, 0));
    }
    auto* d = reinterpret_cast<__m256i*>(dst);
    if (stream)
      _mm256_stream_si256(d, h);
    else
      _mm256_storeu_si256(d, h);
  }
}
#endif

}  // namespace nvila::cpu
