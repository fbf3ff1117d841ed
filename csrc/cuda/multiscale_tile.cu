// CUDA kernel of multiscale_tile: one launch for all tiles of all scales, one thread
// per output pixel (tile, y, x), x fastest (coalesced stores), all 3 channels. The
// thread runs both separable passes for its pixel: for each tap of the second pass
// it recomputes the first pass's value at that source line (rounded and clipped
// to uint8 in exact mode, exactly as Pillow's intermediate image), so no
// intermediate buffer or second launch is needed; it costs taps_x * taps_y MACs per
// channel instead of taps_x + taps_y (a shared-memory version would share the first
// pass between the threads of a block). Coefficients come from global memory
// (small, cached). Grid-stride loop.
#include "common.cuh"
#include "launchers.h"
#include "nvila/multiscale_tile.h"

namespace nvila::NVILA_CUDA_NS {
namespace {

// accumulator type: Pillow's fixed point (exact) or fp32 (no <type_traits> under NVRTC)
template <bool kExact>
struct AccType {
  using T = float;
};
template <>
struct AccType<true> {
  using T = int32_t;
};

template <bool kExact>
struct Acc3 {
  using T = typename AccType<kExact>::T;
  T v[3];
  NVILA_DEVICE void init() {
    const T i = kExact ? T(1 << (kResamplePrecisionBits - 1)) : T(0);
    v[0] = v[1] = v[2] = i;
  }
  NVILA_DEVICE static T weight(int32_t w) {
    if constexpr (kExact)
      return w;
    else
      return weight_f32(w);
  }
  // first-pass result of one channel, as the second pass reads it
  NVILA_DEVICE T finish(int c) const {
    if constexpr (kExact)
      return clip8(v[c]);
    else
      return v[c];
  }
};

template <bool kExact, typename Out>
__global__ void __launch_bounds__(kMultiscaleTileThreads) multiscale_tile_kernel(MultiscaleTileArgs a) {
  Out* __restrict__ out = static_cast<Out*>(a.out);
  const uint8_t* __restrict__ img = a.image;
  const int64_t T = a.T, W = a.W;
  const int64_t total = a.n_tiles() * T * T;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t x = i % T, y = (i / T) % T, t = i / (T * T);
    const int64_t s = a.scale_of(t), k = t - a.tile0[s];
    const int64_t ox = a.xoff[s] + (k % a.cols[s]) * T + x;
    const int64_t oy = a.yoff[s] + (k / a.cols[s]) * T + y;
    const int32_t xlo = a.xbounds[2 * ox], xn = a.xbounds[2 * ox + 1];
    const int32_t ylo = a.ybounds[2 * oy], yn = a.ybounds[2 * oy + 1];
    const int32_t* __restrict__ wx = a.xweights + ox * a.KX;
    const int32_t* __restrict__ wy = a.yweights + oy * a.KY;
    Acc3<kExact> acc;
    acc.init();
    if (!a.vfirst[s]) {
      for (int32_t j = 0; j < yn; ++j) {
        const uint8_t* row = img + ((ylo + j) * W + xlo) * 3;
        Acc3<kExact> h;
        h.init();
        for (int32_t q = 0; q < xn; ++q) {
          const auto w = Acc3<kExact>::weight(wx[q]);
          for (int c = 0; c < 3; ++c) h.v[c] += row[3 * q + c] * w;
        }
        const auto w = Acc3<kExact>::weight(wy[j]);
        for (int c = 0; c < 3; ++c) acc.v[c] += h.finish(c) * w;
      }
    } else {
      for (int32_t q = 0; q < xn; ++q) {
        const uint8_t* col = img + (ylo * W + xlo + q) * 3;
        Acc3<kExact> v;
        v.init();
        for (int32_t j = 0; j < yn; ++j) {
          const auto w = Acc3<kExact>::weight(wy[j]);
          for (int c = 0; c < 3; ++c) v.v[c] += col[j * W * 3 + c] * w;
        }
        const auto w = Acc3<kExact>::weight(wx[q]);
        for (int c = 0; c < 3; ++c) acc.v[c] += v.finish(c) * w;
      }
    }
    for (int c = 0; c < 3; ++c) {
      const float level = kExact ? float(clip8(int32_t(acc.v[c]))) : clamp_level(float(acc.v[c]));
      out[((t * 3 + c) * T + y) * T + x] = from_f32<Out>(normalize_level(level, a.mean[c], a.std[c]));
    }
  }
}

#ifndef __CUDACC_RTC__
// Every instance the planner may select, keyed by (dtype, variant): EXACT.
const Kernel<MultiscaleTileArgs> kKernels[] = {
    NVILA_KERNEL(F32, 0, 0, 0, multiscale_tile_kernel<false, float>),
    NVILA_KERNEL(F32, 1, 0, 0, multiscale_tile_kernel<true, float>),
    NVILA_KERNEL(F16, 0, 0, 0, multiscale_tile_kernel<false, nvila::half_t>),
    NVILA_KERNEL(F16, 1, 0, 0, multiscale_tile_kernel<true, nvila::half_t>),
    NVILA_KERNEL(BF16, 0, 0, 0, multiscale_tile_kernel<false, nvila::bf16_t>),
    NVILA_KERNEL(BF16, 1, 0, 0, multiscale_tile_kernel<true, nvila::bf16_t>),
};

NVILA_REGISTER_OP(multiscale_tile, MultiscaleTileArgs, kKernels);
#endif
}  // namespace

}  // namespace nvila::NVILA_CUDA_NS
