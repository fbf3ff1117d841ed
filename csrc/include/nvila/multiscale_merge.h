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

  // The source window of output pixel (oy, ox) in scale s's (rows[s]*h, cols[s]*w) map.
  struct Window {
    int64_t y0, y1, x0, x1;
    NVILA_HD int64_t count() const { return (y1 - y0) * (x1 - x0); }
  };
  NVILA_HD Window window(int64_t s, int64_t oy, int64_t ox) const {
    const int64_t in_h = rows[s] * h, in_w = cols[s] * w, H_ = H(), W_ = W();
    return {src_lo(oy, in_h, H_), src_hi(oy, in_h, H_), src_lo(ox, in_w, W_), src_hi(ox, in_w, W_)};
  }
  // The token (row of x seen as (n_tiles*h*w, C)) at pixel (py, px) of scale s's map.
  NVILA_HD int64_t src_token(int64_t s, int64_t py, int64_t px) const {
    const int64_t ti = py / h, tj = px / w;
    return ((tile0[s] + ti * cols[s] + tj) * h + (py - ti * h)) * w + (px - tj * w);
  }
};

constexpr int kMultiscaleMergeTile = 32;  // channels x output columns per job
constexpr int kMultiscaleMergeWarps = 8;  // warps per block (with 4 blocks per SM: no spills)
constexpr int kMultiscaleMergeThreads = kMultiscaleMergeTile * kMultiscaleMergeWarps;

// One block per job (32 channels x 32 output columns of one output row of one scale),
// grid-stride over jobs. The kernel indexes in 32 bits: a plan beyond that gets an
// over-limit grid, which the launcher refuses with cudaErrorInvalidValue (grid_ok).
inline LaunchConfig multiscale_merge_launch_config(const MultiscaleMergeArgs& a, const LaunchTarget&) {
  LaunchConfig c{a.dtype};
  const int64_t jobs = a.S * ceil_div(a.C, kMultiscaleMergeTile) * a.H() * ceil_div(a.W(), kMultiscaleMergeTile);
  if (jobs == 0) return c;
  c.block = kMultiscaleMergeThreads;
  const int64_t tokens = (a.tile0[a.S - 1] + a.rows[a.S - 1] * a.cols[a.S - 1]) * a.h * a.w;
  int64_t span = 0;  // the largest (output size + 1) * input size of the window formulas
  for (int64_t s = 0; s < a.S; ++s) {
    const int64_t sy = (a.H() + 1) * a.rows[s] * a.h, sx = (a.W() + 1) * a.cols[s] * a.w;
    span = span > sy ? span : sy;
    span = span > sx ? span : sx;
  }
  if (jobs >= (int64_t(1) << 31) || tokens >= (int64_t(1) << 31) || span >= (int64_t(1) << 32)) {
    c.grid_x = int64_t(1) << 31;  // not launchable: grid_ok() is false
    return c;
  }
  c.grid_x = min64(jobs, 65536 * 8);
  return c;
}

}  // namespace nvila

#ifndef __CUDACC_RTC__
// The CPU kernel (csrc/cpu; raw pointers, OpenMP).
namespace nvila::cpu {
void multiscale_merge(const MultiscaleMergeArgs& a);
}  // namespace nvila::cpu
#endif
