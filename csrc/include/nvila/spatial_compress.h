// NVILA's k x k space-to-depth ("spatial-to-channel" compression), shared by the
// CPU kernel, the CUDA kernel and the fused merge_compress kernels.
//
// Input  x   : (B, H, W, C) token grid, tokens row-major, channel stride 1.
// Output out : (B, Ho, Wo, k*k*C), Ho = ceil(H/k), Wo = ceil(W/k), contiguous.
// Zero padding: missing rows at the bottom, then missing columns on the right.
// Output cell (I, J) channel  slot*C + c,  slot = dr*k + dc,  reads input token
// (k*I + dr, k*J + dc), or 0 when that token is padding.
#pragma once

#include "nvila/common.h"
#include "nvila/layernorm.h"

namespace nvila {

struct SpatialCompressArgs {
  const void* x;           // (B, H, W, C) with strides (sB, sH, sW, 1), in elements
  void* out;               // (B, Ho, Wo, k*k*C) contiguous
  const float* ln_weight;  // (k*k*C) fp32, or nullptr for no LayerNorm
  const float* ln_bias;    // (k*k*C) fp32, or nullptr (zero bias)
  int64_t B, H, W, C, k;
  int64_t sB, sH, sW;
  float eps;
  DType dtype;

  NVILA_HD int64_t Ho() const { return ceil_div(H, k); }
  NVILA_HD int64_t Wo() const { return ceil_div(W, k); }
  NVILA_HD int64_t D() const { return k * k * C; }
  NVILA_HD int64_t rows() const { return B * Ho() * Wo(); }
};

// The input cell (h, w) that slot `slot` of output cell (I, J) reads in a k x k
// space-to-depth of an H x W grid; false when that cell is zero padding.
NVILA_HD bool space_to_depth_source(int64_t I, int64_t J, int64_t slot, int64_t k, int64_t H, int64_t W, int64_t& h,
                                    int64_t& w) {
  h = I * k + slot / k;
  w = J * k + slot % k;
  return h < H && w < W;
}

// Where slot `slot` of output token `row` (row = (b*Ho + I)*Wo + J) reads from:
// the element offset of channel 0 of the source token, or -1 for padding.
NVILA_HD int64_t spatial_compress_src(const SpatialCompressArgs& a, int64_t row, int64_t slot) {
  const int64_t wo = a.Wo(), ho = a.Ho();
  const int64_t J = row % wo;
  const int64_t I = (row / wo) % ho;
  const int64_t b = row / (wo * ho);
  int64_t h, w;
  if (!space_to_depth_source(I, J, slot, a.k, a.H, a.W, h, w)) return -1;
  return b * a.sB + h * a.sH + w * a.sW;
}

// 256 threads at most (see spatial_compress_kernel's launch bounds).
constexpr int kSpatialCompressMaxThreads = 256;

// variant[0] = VEC (16 bytes per access when sizes, strides and pointers allow),
// variant[1] = LayerNormVariant (nvila/layernorm.h). One block per output token (at most 2^30 blocks,
// grid-stride beyond), the smallest power-of-two block >= 32 that covers a row's vectors.
inline LaunchConfig spatial_compress_launch_config(const SpatialCompressArgs& a, const LaunchTarget& t) {
  const int64_t v = 16 / dtype_size(a.dtype);
  LaunchConfig c{a.dtype};
  c.variant[0] = a.C % v == 0 && a.sB % v == 0 && a.sH % v == 0 && a.sW % v == 0 && aligned16(a.x) && aligned16(a.out)
                     ? int32_t(v)
                     : 1;
  const int64_t rows = a.rows();
  if (rows == 0) return c;
  const int64_t nvec = a.D() / c.variant[0];
  c.block = 32;
  while (c.block < kSpatialCompressMaxThreads && c.block * 2 <= nvec) c.block *= 2;
  c.grid_x = min64(rows, int64_t(1) << 30);
  const LayerNormVariant ln = layernorm_variant(a.ln_weight != nullptr, a.D(), 0, t.max_dynamic_smem);
  c.variant[1] = ln;
  c.smem = int32_t(layernorm_row_smem(ln, a.D()));
  return c;
}

}  // namespace nvila

#ifndef __CUDACC_RTC__
// The CPU kernel (csrc/cpu; raw pointers, OpenMP).
namespace nvila::cpu {
void spatial_compress(const SpatialCompressArgs& a);
}  // namespace nvila::cpu
#endif
