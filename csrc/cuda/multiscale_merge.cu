// CUDA kernel of multiscale_merge. The features are token-major (C contiguous per
// token) and the output is channel-first (x contiguous per channel), so the kernel
// is a transpose with averaging: each block job is one output row y of one scale,
// 32 channels x 32 output columns, staged through a shared-memory tile.
//   gather: warp w takes output columns x0 + w, x0 + w + 8, ...; its lanes are 32
//           consecutive channels of the same source tokens (coalesced loads); each
//           averages its source window in fp32.
//   store:  warp w takes channels c0 + w, c0 + w + 8, ...; its lanes are 32
//           consecutive output columns (coalesced stores).
// Grid-stride loop over jobs; 32 x 8 threads.
#include "common.cuh"
#include "launchers.h"
#include "nvila/multiscale_merge.h"

namespace nvila::NVILA_CUDA_NS {
namespace {

constexpr int kTile = 32;  // channels x output columns per job
constexpr int kWarps = 8;

template <typename T>
__global__ void __launch_bounds__(kTile* kWarps) multiscale_merge_kernel(MultiscaleMergeArgs a) {
  __shared__ float tile[kTile][kTile + 1];  // [output column][channel], +1: no bank conflicts on the store side
  const T* __restrict__ x = static_cast<const T*>(a.x);
  T* __restrict__ out = static_cast<T*>(a.out);
  const int64_t H = a.H(), W = a.W(), C = a.C;
  const int64_t xtiles = ceil_div(W, kTile), ctiles = ceil_div(C, kTile);
  const int64_t jobs = a.S * ctiles * H * xtiles;
  const int lane = threadIdx.x, warp = threadIdx.y;
  for (int64_t job = blockIdx.x; job < jobs; job += gridDim.x) {
    const int64_t xt = job % xtiles;
    const int64_t oy = (job / xtiles) % H;
    const int64_t ct = (job / (xtiles * H)) % ctiles;
    const int64_t s = job / (xtiles * H * ctiles);
    const int64_t x0 = xt * kTile, c0 = ct * kTile;
    for (int j = warp; j < kTile; j += kWarps) {
      const int64_t ox = x0 + j, c = c0 + lane;
      float v = 0.f;
      if (ox < W && c < C) {
        const MultiscaleMergeArgs::Window win = a.window(s, oy, ox);
        for (int64_t py = win.y0; py < win.y1; ++py)
          for (int64_t px = win.x0; px < win.x1; ++px) v += load_f32(x + a.src_token(s, py, px) * C + c);
        v /= float(win.count());
      }
      tile[j][lane] = v;
    }
    __syncthreads();
    for (int j = warp; j < kTile; j += kWarps) {
      const int64_t c = c0 + j, ox = x0 + lane;
      if (c < C && ox < W) out[((s * C + c) * H + oy) * W + ox] = from_f32<T>(tile[lane][j]);
    }
    __syncthreads();  // the tile is rewritten by the next job
  }
}

template <typename T>
int launch(const MultiscaleMergeArgs& a, void* stream) {
  const int64_t jobs = a.S * ceil_div(a.C, kTile) * a.H() * ceil_div(a.W(), kTile);
  if (jobs == 0) return 0;
  const unsigned grid = unsigned(jobs < 65536 * 8 ? jobs : 65536 * 8);
  auto kernel = multiscale_merge_kernel<T>;
  NVILA_LAUNCH(kernel, dim3(grid), dim3(kTile, kWarps), 0, stream)(a);
  return int(cudaGetLastError());
}

}  // namespace

int multiscale_merge(const MultiscaleMergeArgs& a, void* stream) {
  switch (a.dtype) {
    case DType::F32: return launch<float>(a, stream);
    case DType::F16: return launch<half_t>(a, stream);
    case DType::BF16: return launch<bf16_t>(a, stream);
  }
  return int(cudaErrorInvalidValue);
}

}  // namespace nvila::NVILA_CUDA_NS
