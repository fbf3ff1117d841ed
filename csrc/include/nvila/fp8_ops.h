// Arguments of the FP8 ops (per-tensor quantization and the scaled GEMM).
// Scales are pointers to one float in the tensors' memory (device memory for the
// CUDA kernels), so no launch needs the value on the host.
#pragma once

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
  float* workspace;    // CUDA dynamic path: one float holding 0.0f, the amax accumulator (CPU: unused)
  uint8_t* q;          // n FP8 codes
  Fp8Format format;
};

// The scale of a dynamic quantization from the amax of the finite |x|.
NVILA_HD float fp8_dynamic_scale(float amax, Fp8Format f) {
  return (amax > kFp8AmaxFloor ? amax : kFp8AmaxFloor) / fp8_max(f);
}

constexpr int kFp8QuantizeThreads = 256;

// variant[0] = 1: dynamic scaling (the amax kernel runs first, same shape; `workspace` must
// hold 0.0f), variant[1] = the Fp8Format. At most 4096 blocks, grid-stride beyond.
inline LaunchConfig fp8_quantize_launch_config(const Fp8QuantizeArgs& p, const LaunchTarget&) {
  LaunchConfig c{p.dtype};
  c.variant[0] = p.scale ? 0 : 1;
  c.variant[1] = int32_t(p.format);
  if (p.n == 0) return c;
  c.block = kFp8QuantizeThreads;
  c.grid_x = min64(ceil_div(p.n, kFp8QuantizeThreads), 4096);
  return c;
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

// Tiles of the CUDA fp8_gemm kernels (csrc/cuda/fp8_gemm.cu), 128 threads each: mma.sync
// 64 x 64 out tiles (static shared memory); on sm_90a wgmma 64 x 128 out tiles, K in
// 64-byte slices through 3 dynamic shared-memory stages (+ 1 KiB to align them).
namespace fp8_gemm_tiles {
constexpr int kThreads = 128, BM = 64, BN = 64, BK = 64;
constexpr int kWgBM = 64, kWgBN = 128, kWgStages = 3;
constexpr int kWgSmem = kWgStages * (kWgBM + kWgBN) * BK + 1024;
}  // namespace fp8_gemm_tiles

// variant[0] = ALIGNED (K and both operands 16-byte aligned: cp.async tile loads),
// variant[1] = 1: the wgmma kernel (sm_90a code on a compute capability 9.0 device).
// Grid: 1-D, one block per output tile, N tiles fastest (block b: M tile b / N tiles,
// N tile b % N tiles), so M is bounded by grid_x < 2^31 tiles, not by grid_y's 65535.
inline LaunchConfig fp8_gemm_launch_config(const Fp8GemmArgs& p, const LaunchTarget& t) {
  namespace tiles = fp8_gemm_tiles;
  LaunchConfig c{p.out_dtype};
  c.variant[0] = p.K % 16 == 0 && aligned16(p.a) && aligned16(p.b) ? 1 : 0;
  c.variant[1] = t.sm90a && t.cc == 90 ? 1 : 0;
  if (p.M == 0 || p.N == 0) return c;
  const int bm = c.variant[1] ? tiles::kWgBM : tiles::BM, bn = c.variant[1] ? tiles::kWgBN : tiles::BN;
  c.grid_x = ceil_div(p.N, bn) * ceil_div(p.M, bm);
  c.block = tiles::kThreads;
  c.smem = c.variant[1] ? tiles::kWgSmem : 0;
  return c;
}

}  // namespace nvila

#ifndef __CUDACC_RTC__
// The CPU kernels (csrc/cpu; raw pointers, OpenMP).
namespace nvila::cpu {
void fp8_quantize(const Fp8QuantizeArgs& a);
void fp8_gemm(const Fp8GemmArgs& a);
// The instruction set of fp8_gemm on this CPU (NVILA_KERNELS_CPU_ISA applied): "avx512bf16"
// (VDPBF16PS, both paths), "avx2" (F16C decode + fp32 FMA) or "generic" (portable C++).
const char* fp8_gemm_isa();
// out[i] = the exact fp32 value of the E4M3 code q[i] (NaN codes give NaN), i < n.
void fp8_e4m3_to_f32(const uint8_t* q, float* out, int64_t n);
}  // namespace nvila::cpu
#endif
