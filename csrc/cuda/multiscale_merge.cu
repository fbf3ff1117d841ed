// CUDA kernel of multiscale_merge: one thread per output element (s*C + c, y, x),
// x fastest (coalesced stores); it averages its source window of scale s's map in
// fp32 (windows are 1..ceil(in/out)+1 pixels per axis). Grid-stride loop.
#include "common.cuh"
#include "launchers.h"
#include "nvila/multiscale_merge.h"

namespace nvila::NVILA_CUDA_NS {
namespace {

template <typename T>
__global__ void __launch_bounds__(kMultiscaleMergeThreads) multiscale_merge_kernel(MultiscaleMergeArgs a) {
  const T* __restrict__ x = static_cast<const T*>(a.x);
  T* __restrict__ out = static_cast<T*>(a.out);
  const int64_t H = a.H(), W = a.W(), C = a.C, h = a.h, w = a.w;
  const int64_t total = a.S * C * H * W;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ox = i % W;
    const int64_t oy = (i / W) % H;
    const int64_t sc = i / (W * H);
    const int64_t s = sc / C, c = sc - s * C;
    const int64_t in_h = a.rows[s] * h, in_w = a.cols[s] * w;
    const int64_t y0 = MultiscaleMergeArgs::src_lo(oy, in_h, H), y1 = MultiscaleMergeArgs::src_hi(oy, in_h, H);
    const int64_t x0 = MultiscaleMergeArgs::src_lo(ox, in_w, W), x1 = MultiscaleMergeArgs::src_hi(ox, in_w, W);
    float acc = 0.f;
    for (int64_t py = y0; py < y1; ++py) {
      const int64_t ti = py / h, ty = py - ti * h;
      for (int64_t px = x0; px < x1; ++px) {
        const int64_t tj = px / w, tx = px - tj * w;
        const int64_t tile = a.tile0[s] + ti * a.cols[s] + tj;
        acc += load_f32(x + ((tile * h + ty) * w + tx) * C + c);
      }
    }
    out[i] = from_f32<T>(acc / float((y1 - y0) * (x1 - x0)));
  }
}

#ifndef __CUDACC_RTC__
template <typename T>
int launch(const MultiscaleMergeArgs& a, void* stream) {
  return launch_planned(multiscale_merge_kernel<T>, multiscale_merge_launch_config(a, launch_target()), a, stream);
}
#endif
}  // namespace

#ifndef __CUDACC_RTC__
int multiscale_merge(const MultiscaleMergeArgs& a, void* stream) {
  switch (a.dtype) {
    case DType::F32: return launch<float>(a, stream);
    case DType::F16: return launch<half_t>(a, stream);
    case DType::BF16: return launch<bf16_t>(a, stream);
  }
  return int(cudaErrorInvalidValue);
}
#endif

}  // namespace nvila::NVILA_CUDA_NS
