// The CPU kernels' AVX2 paths: function-level target attributes (NVILA_AVX2), chosen
// at run time with use_avx2(), so the build stays portable. Each such kernel keeps a
// portable fallback; NVILA_KERNELS_CPU_ISA=generic forces it (for its tests).
#pragma once

#include <cstdlib>
#include <cstring>

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
#endif

}  // namespace nvila::cpu
