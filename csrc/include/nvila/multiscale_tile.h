// NVILA's Dynamic-S2 preprocessing (NVILA.md section 2): every tile of every scale of
// one uint8 RGB image, resized with Pillow's bicubic filter and normalized.
//
// Input  image : (H, W, 3) uint8, contiguous.
// Output out   : (n_tiles, 3, T, T), tiles of scale 0 (row-major), then scale 1, ...
// Scale s resizes the whole image to (rows[s]*T, cols[s]*T). Resampling weights are
// Pillow's fixed-point ones (2^22 = 1), computed on the host by
// nvila_kernels/resample.py for every output column of every scale (xbounds/xweights,
// scale s's columns start at row xoff[s]) and every output row (ybounds/yweights):
// bounds[o] = {first input sample, number of taps}, weights[o * K + j].
// Exact mode (Pillow): each pass computes clip8((sum_j w_j * v_j + 2^21) >> 22).
// Otherwise both passes run in fp32 on the same weights (w / 2^22) without rounding,
// and the result is clipped to [0, 255]. Pass order per scale: horizontal first
// unless vfirst[s] (Pillow 13's rule, see resample.py). The output value of level v
// is (v / 255 - mean[c]) / std[c] in fp32, converted to the output dtype.
#pragma once

#include "nvila/common.h"

namespace nvila {

constexpr int kTileMaxScales = 8;
constexpr int kResamplePrecisionBits = 22;

struct MultiscaleTileArgs {
  const uint8_t* image;
  void* out;
  int64_t H, W, T, S;
  int64_t rows[kTileMaxScales], cols[kTileMaxScales];
  int64_t tile0[kTileMaxScales];                       // index of the first tile of each scale
  int64_t xoff[kTileMaxScales], yoff[kTileMaxScales];  // first coefficient row of each scale
  bool vfirst[kTileMaxScales];
  const int32_t* xbounds;   // (sum_s cols[s]*T, 2)
  const int32_t* xweights;  // (sum_s cols[s]*T, KX)
  const int32_t* ybounds;   // (sum_s rows[s]*T, 2)
  const int32_t* yweights;  // (sum_s rows[s]*T, KY)
  int64_t KX, KY;
  float mean[3], std[3];
  bool exact;
  DType dtype;

  NVILA_HD int64_t n_tiles() const { return tile0[S - 1] + rows[S - 1] * cols[S - 1]; }
  // scale of tile t
  NVILA_HD int64_t scale_of(int64_t t) const {
    int64_t s = 0;
    while (s + 1 < S && t >= tile0[s + 1]) ++s;
    return s;
  }
};

constexpr int kMultiscaleTileThreads = 256;

// One thread per output pixel, grid-stride (64-bit indices). variant[0]: 1 for the
// exact (Pillow fixed-point) kernel, 0 for the fp32 one.
inline LaunchConfig multiscale_tile_launch_config(const MultiscaleTileArgs& a, const LaunchTarget&) {
  LaunchConfig c{a.dtype};
  c.variant[0] = a.exact ? 1 : 0;
  const int64_t total = a.n_tiles() * a.T * a.T;
  if (total == 0) return c;
  c.block = kMultiscaleTileThreads;
  c.grid_x = min64(ceil_div(total, kMultiscaleTileThreads), 65536 * 8);
  return c;
}

// Pillow's rounding and clipping of a fixed-point accumulator (which already holds
// the 2^21 rounding term) to a uint8 level.
NVILA_HD int32_t clip8(int32_t acc) {
  const int32_t v = acc >> kResamplePrecisionBits;
  return v < 0 ? 0 : (v > 255 ? 255 : v);
}

NVILA_HD float weight_f32(int32_t w) { return float(w) * (1.f / float(1 << kResamplePrecisionBits)); }

NVILA_HD float clamp_level(float v) { return v < 0.f ? 0.f : (v > 255.f ? 255.f : v); }

// (v / 255 - mean) / std, the order of operations of the reference.
NVILA_HD float normalize_level(float v, float mean, float std) { return (v / 255.f - mean) / std; }

}  // namespace nvila

#ifndef __CUDACC_RTC__
// The CPU kernel (csrc/cpu; raw pointers, OpenMP).
namespace nvila::cpu {
void multiscale_tile(const MultiscaleTileArgs& a);
}  // namespace nvila::cpu
#endif
