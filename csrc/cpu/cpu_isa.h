// Run-time choice of the CPU kernels' AVX2 paths. Those paths are functions with a
// target attribute (NVILA_AVX2), called only when use_avx2() says the CPU has AVX2,
// FMA and F16C, so the build stays portable (no -march flags). Setting
// NVILA_KERNELS_CPU_ISA=generic forces the portable fallbacks (for their tests).
#pragma once

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define NVILA_HAVE_AVX2_PATH 1
#define NVILA_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define NVILA_HAVE_AVX2_PATH 0
#endif

#define NVILA_INLINE inline __attribute__((always_inline))

namespace nvila::cpu {

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

}  // namespace nvila::cpu
