// NVILA's multi-scale merge (NVILA.md section 3): tile features of every scale are
// placed back into one map per scale, each map is resized to the last (largest)
// scale's size with area interpolation (adaptive average pooling, fp32 math), and
// the maps are concatenated along channels in scale order.
//
// Input  x   : (n_tiles, h*w, C) contiguous; tiles per scale row-major, scales in order.
// Output out : (S*C, H, W) contiguous, H = rows[S-1]*h, W = cols[S-1]*w.
// Output (s*C + c, y, x) averages the source pixels [y0(y), y1(y)) x [x0(x), x1(x)) of
// scale s's (rows[s]*h, cols[s]*w) map, with o -> [floor(o*in/out), ceil((o+1)*in/out)).
#pragma once

#include "nvila/common.h"

namespace nvila {

constexpr int kMergeMaxScales = 8;

struct MultiscaleMergeArgs {
  const void* x;
  void* out;
  int64_t S, C, h, w;
  int64_t rows[kMergeMaxScales], cols[kMergeMaxScales];
  int64_t tile0[kMergeMaxScales];  // index of the first tile of each scale
  DType dtype;

  NVILA_HD int64_t H() const { return rows[S - 1] * h; }
  NVILA_HD int64_t W() const { return cols[S - 1] * w; }
  // source range [lo, hi) of output index o when resizing `in` to `out` samples
  NVILA_HD static int64_t src_lo(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
  NVILA_HD static int64_t src_hi(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }
};

constexpr int kMultiscaleMergeThreads = 256;

// One thread per output element, grid-stride.
inline LaunchConfig multiscale_merge_launch_config(const MultiscaleMergeArgs& a, const LaunchTarget&) {
  LaunchConfig c;
  const int64_t total = a.S * a.C * a.H() * a.W();
  if (total == 0) return c;
  c.block = kMultiscaleMergeThreads;
  c.grid_x = min64(ceil_div(total, kMultiscaleMergeThreads), 65536 * 8);
  return c;
}

}  // namespace nvila
