// Arguments of the FP8 ops (per-tensor quantization and the scaled GEMM).
// Scales are pointers to one float in the tensors' memory (device memory for the
// CUDA kernels), so no launch needs the value on the host.
#pragma once

#include <cstdint>

#include "nvila/common.h"
#include "nvila/fp8.h"

namespace nvila {

// Dynamic scales use max(amax, kFp8AmaxFloor) / fp8_max (see reference.fp8_quantize).
constexpr float kFp8AmaxFloor = 1e-12f;

struct Fp8QuantizeArgs {
  const void* x;  // n contiguous elements of `dtype`
  DType dtype;
  int64_t n;
  const float* scale;  // static scale, or nullptr: dynamic (amax over the finite |x|)
  float* scale_out;    // written: the scale used (dequantization multiplier)
  float* workspace;    // one float the CUDA dynamic path may use for the amax (CPU: unused)
  uint8_t* q;          // n FP8 codes
  Fp8Format format;
};

// The scale of a dynamic quantization from the amax of the finite |x|.
NVILA_HD float fp8_dynamic_scale(float amax, Fp8Format f) {
  return (amax > kFp8AmaxFloor ? amax : kFp8AmaxFloor) / fp8_max(f);
}

struct Fp8GemmArgs {
  const uint8_t* a;  // (M, K) E4M3, row-major
  const uint8_t* b;  // (N, K) E4M3, row-major (nn.Linear weight layout)
  const float* scale_a;
  const float* scale_b;
  const float* bias;  // (N) fp32, or nullptr
  void* out;          // (M, N) row-major, `out_dtype`
  DType out_dtype;
  int64_t M, N, K;
};

}  // namespace nvila
