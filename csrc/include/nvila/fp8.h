// FP8 (OCP E4M3FN and E5M2) encode/decode, bit-exact with torch's
// .to(torch.float8_e4m3fn / torch.float8_e5m2) of a value already clamped to the
// format's range: round to nearest even, subnormals kept, NaN stays NaN.
// Saturation (the quantize policy: +-inf and out-of-range values become +-max)
// is fp8_saturate(), applied before encoding.
#pragma once

#include "nvila/common.h"
#include "nvila/dtype.h"

namespace nvila {

enum class Fp8Format : int32_t { E4M3 = 0, E5M2 = 1 };

template <Fp8Format F>
struct Fp8Traits;
template <>
struct Fp8Traits<Fp8Format::E4M3> {
  static constexpr int kMan = 3, kBias = 7;
  static constexpr float kMax = 448.0f;
};
template <>
struct Fp8Traits<Fp8Format::E5M2> {
  static constexpr int kMan = 2, kBias = 15;
  static constexpr float kMax = 57344.0f;
};

NVILA_HD float fp8_max(Fp8Format f) { return f == Fp8Format::E4M3 ? 448.0f : 57344.0f; }

// Clamp to [-max, max]; NaN passes through (comparisons with NaN are false).
template <Fp8Format F>
NVILA_HD float fp8_saturate(float v) {
  constexpr float m = Fp8Traits<F>::kMax;
  return v > m ? m : (v < -m ? -m : v);
}

// Encode a value with |v| <= max (or NaN).
template <Fp8Format F>
NVILA_HD uint8_t fp8_encode(float v) {
  constexpr int M = Fp8Traits<F>::kMan, B = Fp8Traits<F>::kBias;
  const uint32_t u = float_bits(v);
  const uint8_t sign = uint8_t((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint8_t(sign | 0x7fu);  // NaN (the code torch uses in both formats)
  constexpr uint32_t min_normal = uint32_t(127 + 1 - B) << 23;
  if (a < min_normal) {
    // subnormal: |v| * 2^(B - 1 + M) rounded to an integer, ties to even (adding
    // 2^23 makes the FPU round at the units place); 1 << M rounds up to min normal
    const float scaled = bits_float(a) * bits_float(uint32_t(127 + B - 1 + M) << 23);
    const uint32_t q = float_bits(scaled + 8388608.0f) - 0x4b000000u;
    return uint8_t(sign | q);
  }
  uint32_t r = a + ((1u << (22 - M)) - 1u) + ((a >> (23 - M)) & 1u);  // round to nearest even
  r -= uint32_t(127 - B) << 23;
  return uint8_t(sign | (r >> (23 - M)));
}

template <Fp8Format F>
NVILA_HD float fp8_decode(uint8_t b) {
  constexpr int M = Fp8Traits<F>::kMan, B = Fp8Traits<F>::kBias;
  const uint32_t sign = uint32_t(b & 0x80u) << 24;
  const uint32_t e = (b & 0x7fu) >> M;
  const uint32_t m = b & ((1u << M) - 1u);
  if (F == Fp8Format::E4M3 && (b & 0x7fu) == 0x7fu) return bits_float(sign | 0x7fc00000u);
  if (F == Fp8Format::E5M2 && e == 31u) return bits_float(sign | 0x7f800000u | (m << 21));  // inf / NaN
  if (e == 0) {
    const float mag = float(m) * bits_float(uint32_t(127 - (B - 1 + M)) << 23);
    return sign ? -mag : mag;
  }
  return bits_float(sign | ((e + 127u - B) << 23) | (m << (23 - M)));
}

}  // namespace nvila
