// CUDA kernel of multiscale_merge. The features are token-major (C contiguous per
// token) and the output is channel-first (x contiguous per channel), so the kernel
// is a transpose with averaging: each block job is one output row y of one scale,
// 32 channels x 32 output columns, staged through a shared-memory tile.
//   gather: warp w takes output columns x0 + w, x0 + w + 8, ...; its lanes are 32
//           consecutive channels of the same source tokens (coalesced loads); each
//           averages its source window in fp32.
//   store:  warp w takes channels c0 + w, c0 + w + 8, ...; its lanes are 32
//           consecutive output columns (coalesced stores).
// Grid-stride loop over jobs; 256 threads (warp = threadIdx.x / 32). Index math is 32-bit where it runs per
// element (token and job counts < 2^31, checked at launch): 64-bit divisions are
// subroutine calls that made ptxas spill. The source token of pixel (py, px) of
// scale s is row_part(py) + col_part(px) (src_token of nvila/multiscale_merge.h,
// split by axis).

#include "common.cuh"
#include "launchers.h"
#include "nvila/multiscale_merge.h"

namespace nvila::NVILA_CUDA_NS {
namespace {

constexpr int kTile = kMultiscaleMergeTile;
constexpr int kWarps = kMultiscaleMergeWarps;

template <typename T>
__global__ void __launch_bounds__(kMultiscaleMergeThreads, 4) multiscale_merge_kernel(MultiscaleMergeArgs a) {
  __shared__ float tile[kTile][kTile + 1];  // [output column][channel], +1: no bank conflicts on the store side
  __shared__ uint32_t xwin[kTile][2];       // source column window of each output column of the job
  const T* __restrict__ x = static_cast<const T*>(a.x);
  T* __restrict__ out = static_cast<T*>(a.out);
  const int64_t H = a.H(), W = a.W(), C = a.C;
  const uint32_t h = uint32_t(a.h), w = uint32_t(a.w), hw = h * w;
  const uint32_t xtiles = uint32_t(ceil_div(W, kTile)), ctiles = uint32_t(ceil_div(C, kTile));
  const uint32_t jobs = uint32_t(a.S) * ctiles * uint32_t(H) * xtiles;
  const int lane = threadIdx.x % kTile, warp = threadIdx.x / kTile;
  for (uint32_t job = blockIdx.x; job < jobs; job += gridDim.x) {
    const uint32_t xt = job % xtiles;
    const uint32_t oy = (job / xtiles) % uint32_t(H);
    const uint32_t ct = (job / (xtiles * uint32_t(H))) % ctiles;
    const uint32_t s = job / (xtiles * uint32_t(H) * ctiles);
    const int64_t x0 = int64_t(xt) * kTile, c = int64_t(ct) * kTile + lane;
    const uint32_t cols = uint32_t(a.cols[s]), tile0 = uint32_t(a.tile0[s]);
    // area windows as MultiscaleMergeArgs::src_lo / src_hi, in 32 bits
    const uint32_t in_h = uint32_t(a.rows[s]) * h, in_w = cols * w, Hu = uint32_t(H), Wu = uint32_t(W);
    const uint32_t y0 = oy * in_h / Hu, y1 = ((oy + 1) * in_h + Hu - 1) / Hu;
    if (warp == 0 && x0 + lane < W) {
      const uint32_t ox = uint32_t(x0) + lane;
      xwin[lane][0] = ox * in_w / Wu;
      xwin[lane][1] = ((ox + 1) * in_w + Wu - 1) / Wu;
    }
    __syncthreads();
    for (int j = warp; j < kTile; j += kWarps) {
      float v = 0.f;
      if (x0 + j < W && c < C) {
        const uint32_t px0 = xwin[j][0], px1 = xwin[j][1];
        for (uint32_t py = y0; py < y1; ++py) {
          const uint32_t row_part = (tile0 + (py / h) * cols) * hw + (py % h) * w;
          for (uint32_t px = px0; px < px1; ++px) {
            const uint32_t col_part = (px / w) * hw + px % w;
            v += load_f32(x + int64_t(row_part + col_part) * C + c);
          }
        }
        v /= float((y1 - y0) * (px1 - px0));
      }
      tile[j][lane] = v;
    }
    __syncthreads();
    for (int j = warp; j < kTile; j += kWarps) {
      const int64_t oc = int64_t(ct) * kTile + j, ox = x0 + lane;
      if (oc < C && ox < W) out[((s * C + oc) * H + oy) * W + ox] = from_f32<T>(tile[lane][j]);
    }
    __syncthreads();  // the tile is rewritten by the next job
  }
}

#ifndef __CUDACC_RTC__
// Every instance the planner may select, keyed by (dtype, variant): the element type only.
const Kernel<MultiscaleMergeArgs> kKernels[] = {
    NVILA_KERNEL(F32, 0, 0, 0, multiscale_merge_kernel<float>),
    NVILA_KERNEL(F16, 0, 0, 0, multiscale_merge_kernel<nvila::half_t>),
    NVILA_KERNEL(BF16, 0, 0, 0, multiscale_merge_kernel<nvila::bf16_t>),
};

NVILA_REGISTER_OP(multiscale_merge, MultiscaleMergeArgs, kKernels);
#endif
}  // namespace

}  // namespace nvila::NVILA_CUDA_NS
