// 16-bit float storage types with bit-exact conversions, usable on the host, in
// CUDA device code and under the SIMT emulator. Kernels compute in fp32 and only
// load/store these; rounding to 16 bits is round-to-nearest-even, NaN stays NaN,
// exactly as torch's .to(torch.float16 / torch.bfloat16).
#pragma once

#include "nvila/common.h"

#ifndef __CUDACC_RTC__
#include <cstring>
#endif

namespace nvila {

struct alignas(2) half_t {
  uint16_t bits;
};
struct alignas(2) bf16_t {
  uint16_t bits;
};

NVILA_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

NVILA_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// ---- bfloat16 -------------------------------------------------------------
NVILA_HD float to_float(bf16_t v) { return bits_float(uint32_t(v.bits) << 16); }

NVILA_HD bf16_t bf16_from_float(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_t{uint16_t((u >> 16) | 0x40u)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                                  // round to nearest even
  return bf16_t{uint16_t(u >> 16)};
}

// ---- float16 --------------------------------------------------------------
NVILA_HD float to_float(half_t v) {
#if defined(__CUDA_ARCH__)
  float f;  // __half2float, without cuda_fp16.h (which NVRTC lacks)
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
  return f;
#else
  const uint32_t sign = uint32_t(v.bits & 0x8000u) << 16;
  const uint32_t exp = (v.bits >> 10) & 0x1fu;
  const uint32_t man = v.bits & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp != 0) return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
  // zero or subnormal: man * 2^-24 is exact in fp32
  const float mag = float(man) * 5.9604644775390625e-08f;
  return sign ? -mag : mag;
#endif
}

NVILA_HD half_t half_from_float(float f) {
#if defined(__CUDA_ARCH__)
  half_t h;  // __float2half_rn
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f));
  return h;
#else
  const uint32_t u = float_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return half_t{uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu))};  // NaN
  if (a >= 0x477ff000u) return half_t{uint16_t(sign | 0x7c00u)};                        // rounds to inf
  if (a >= 0x38800000u) {                                                               // normal half
    const uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
    return half_t{uint16_t(sign | (r >> 13))};
  }
  // subnormal half (or zero): round a * 2^24 to an integer, ties to even
  const float mag = bits_float(a) * 16777216.0f;  // exact scaling
  uint32_t q = uint32_t(mag);
  const float rem = mag - float(q);
  if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
  return half_t{uint16_t(sign | q)};
#endif
}

// ---- generic load / store used by kernels templated on the element type -----
NVILA_HD float load_f32(const float* p) { return *p; }
NVILA_HD float load_f32(const half_t* p) { return to_float(*p); }
NVILA_HD float load_f32(const bf16_t* p) { return to_float(*p); }

template <typename T>
NVILA_HD T from_f32(float v);
template <>
NVILA_HD float from_f32<float>(float v) {
  return v;
}
template <>
NVILA_HD half_t from_f32<half_t>(float v) {
  return half_from_float(v);
}
template <>
NVILA_HD bf16_t from_f32<bf16_t>(float v) {
  return bf16_from_float(v);
}

#ifndef __CUDACC_RTC__
// The one dtype switch of the host code: f(T{}) with T the element type of `t`
// (float, half_t or bf16_t); launchers and CPU kernels write
//   return dispatch_dtype(a.dtype, [&](auto t) { return run<decltype(t)>(a); });
template <typename F>
inline decltype(auto) dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::F16: return f(half_t{});
    case DType::BF16: return f(bf16_t{});
    case DType::F32: break;
  }
  return f(float{});
}
#endif

}  // namespace nvila
