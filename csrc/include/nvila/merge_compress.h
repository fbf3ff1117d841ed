// NVILA's fused back half of Dynamic-S2 (NVILA.md sections 3-4): multiscale_merge,
// the cut of the merged map into rows x cols blocks of h x w, a k x k space-to-depth
// of each block with its own zero padding, and the projector's LayerNorm, in one
// pass from the tile features to the projector input.
//
// Input  x   : (n_tiles, h*w, C) tile features, as for multiscale_merge.
// Output out : (tokens, D) contiguous, D = k*k*S*C. The per-block Ho x Wo outputs
//              (Ho = ceil(h/k), Wo = ceil(w/k)) sit in a (rows*Ho) x (cols*Wo) grid
//              flattened row-major: token t = (bi*Ho + I)*(cols*Wo) + bj*Wo + J.
// Channel slot*(S*C) + s*C + c of token t (slot = dr*k + dc) is the merged map's
// channel s*C + c at pixel (bi*h + k*I + dr, bj*w + k*J + dc), or 0 when k*I + dr >= h
// or k*J + dc >= w (the block's padding). Merged values are area averages in fp32
// rounded to the feature dtype, as multiscale_merge stores them.
#pragma once

#include "nvila/common.h"
#include "nvila/dtype.h"
#include "nvila/layernorm.h"
#include "nvila/multiscale_merge.h"
#include "nvila/spatial_compress.h"

namespace nvila {

struct MergeCompressArgs {
  MultiscaleMergeArgs m;   // features, plan, h, w, C, dtype (m.out unused)
  void* out;               // (tokens(), D()) contiguous
  const float* ln_weight;  // (D) fp32, or nullptr for no LayerNorm
  const float* ln_bias;    // (D) fp32, or nullptr (zero bias)
  int64_t k;
  float eps;

  NVILA_HD int64_t Ho() const { return ceil_div(m.h, k); }
  NVILA_HD int64_t Wo() const { return ceil_div(m.w, k); }
  NVILA_HD int64_t SC() const { return m.S * m.C; }
  NVILA_HD int64_t D() const { return k * k * SC(); }
  NVILA_HD int64_t grid_cols() const { return m.cols[m.S - 1] * Wo(); }
  NVILA_HD int64_t tokens() const { return m.rows[m.S - 1] * Ho() * grid_cols(); }
};

// The merged-map pixel (Y, X) that slot `slot` of output token t reads; false when
// it is the block's zero padding.
NVILA_HD bool merge_compress_pixel(const MergeCompressArgs& a, int64_t t, int64_t slot, int64_t& Y, int64_t& X) {
  const int64_t ho = a.Ho(), wo = a.Wo(), gc = a.grid_cols();
  const int64_t gy = t / gc, gx = t - gy * gc;
  const int64_t bi = gy / ho, bj = gx / wo;
  int64_t y, x;
  if (!space_to_depth_source(gy - bi * ho, gx - bj * wo, slot, a.k, a.m.h, a.m.w, y, x)) return false;
  Y = bi * a.m.h + y;
  X = bj * a.m.w + x;
  return true;
}

// A value rounded to T and back (the merged map is stored in the feature dtype).
template <typename T>
NVILA_HD float round_to(float v) {
  const T r = from_f32<T>(v);
  return load_f32(&r);
}

// Where one (slot, scale) piece of a token reads from (the CUDA kernel's shared-memory table).
struct MergePieceSrc {
  int32_t tok[4];  // source tokens (rows of x, < 2^31: checked at launch) of pixel (y0 + dy, x0 + dx) at dy*2 + dx
  int32_t ny, nx;  // window size, at most 2 x 2; 0 x 0: padding; ny = -1: larger window, use `win`
  int32_t scale;
  int32_t win[4];  // y0, y1, x0, x1 of the window
};

constexpr int kMergeCompressMaxThreads = 256;

// Bytes of the piece table in shared memory, rounded up to 16 so that the fp32 row
// after it takes 16-byte accesses.
NVILA_HD int64_t merge_compress_table_bytes(int64_t npieces) {
  return (npieces * int64_t(sizeof(MergePieceSrc)) + 15) / 16 * 16;
}

// One block per output token (grid-stride). variant[0]: elements per access (16 bytes
// when C and the pointers allow, else 1); variant[1]: LayerNormVariant. The piece
// table, and the fp32 row when it fits (LnCached), are dynamic shared memory. A plan
// whose table does not fit or whose token indices pass 2^31 gets an over-limit grid:
// the launcher refuses it (grid_ok) with cudaErrorInvalidValue.
inline LaunchConfig merge_compress_launch_config(const MergeCompressArgs& a, const LaunchTarget& t) {
  const int64_t v = 16 / dtype_size(a.m.dtype);
  LaunchConfig c{a.m.dtype};
  c.variant[0] = a.m.C % v == 0 && aligned16(a.m.x) && aligned16(a.out) ? int32_t(v) : 1;
  const int64_t table = merge_compress_table_bytes(a.k * a.k * a.m.S);
  const LayerNormVariant ln = layernorm_variant(a.ln_weight != nullptr, a.D(), table, t.max_dynamic_smem);
  c.variant[1] = ln;
  const int64_t smem = table + layernorm_row_smem(ln, a.D());
  const int64_t tokens = a.tokens();
  if (tokens == 0) return c;
  c.block = 32;
  while (c.block < kMergeCompressMaxThreads && c.block * 2 <= a.D() / c.variant[0]) c.block *= 2;
  const int64_t n_tiles = a.m.tile0[a.m.S - 1] + a.m.rows[a.m.S - 1] * a.m.cols[a.m.S - 1];
  if (table > t.max_dynamic_smem || n_tiles > (int64_t(1) << 31) / (a.m.h * a.m.w)) {
    c.grid_x = int64_t(1) << 31;  // not launchable
    return c;
  }
  c.grid_x = min64(tokens, int64_t(1) << 30);
  c.smem = int32_t(smem);
  return c;
}

}  // namespace nvila

#ifndef __CUDACC_RTC__
// The CPU kernel (csrc/cpu; raw pointers, OpenMP).
namespace nvila::cpu {
void merge_compress(const MergeCompressArgs& a);
}  // namespace nvila::cpu
#endif
