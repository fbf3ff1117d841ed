// CPU kernel of multiscale_tile. One job per tile (OpenMP, dynamic schedule). A job
// runs the first pass over the source lines its tile needs into a per-thread buffer
// (uint8 levels in exact mode, fp32 otherwise), then the second pass row by row into
// an interleaved (x, channel) accumulator row, and writes the normalized channels.
// Every pass with many MACs is written as "line += weight * line" over contiguous
// int32 (exact) or fp32 values, which the compiler vectorizes (the job function is
// also compiled for AVX2, target_clones): the vertical pass reads whole rows, and
// the horizontal pass of horizontal-first scales reads the image transposed once per
// call to (W, H, 3), so an output column is a sum of whole source columns; its result
// is transposed back per tile. Only the horizontal pass after a vertical one
// (vertical-first scales, on tile rows only) is a per-pixel dot product.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "nvila/dtype.h"

namespace nvila::cpu {
namespace {

template <bool kExact>
struct Mode {
  using Acc = std::conditional_t<kExact, int32_t, float>;
  using Mid = std::conditional_t<kExact, uint8_t, float>;  // first-pass result
  static Acc init() { return kExact ? Acc(1 << (kResamplePrecisionBits - 1)) : Acc(0); }
  static Acc weight(int32_t w) {
    if constexpr (kExact)
      return w;
    else
      return weight_f32(w);
  }
  static Mid finish(Acc a) {
    if constexpr (kExact)
      return Mid(clip8(a));
    else
      return a;
  }
};

// dst[e] = init + sum_i weight(w[i]) * src[i * stride + e] for e < len: the taps of one
// output line summed over whole input lines. Chunks of kChunk accumulators stay in
// registers across the taps (vectorized by the compiler).
template <bool kExact, typename Src>
inline void weighted_lines(typename Mode<kExact>::Acc* __restrict__ dst, const Src* __restrict__ src, int64_t stride,
                           const int32_t* __restrict__ w, int32_t n, int64_t len) {
  using M = Mode<kExact>;
  using Acc = typename M::Acc;
  constexpr int64_t kChunk = 32;
  int64_t e0 = 0;
  for (; e0 + kChunk <= len; e0 += kChunk) {
    Acc acc[kChunk];
    for (int64_t k = 0; k < kChunk; ++k) acc[k] = M::init();
    for (int32_t i = 0; i < n; ++i) {
      const Acc wi = M::weight(w[i]);
      const Src* p = src + i * stride + e0;
      for (int64_t k = 0; k < kChunk; ++k) acc[k] += Acc(p[k]) * wi;
    }
    for (int64_t k = 0; k < kChunk; ++k) dst[e0 + k] = acc[k];
  }
  for (int64_t e = e0; e < len; ++e) {
    Acc acc = M::init();
    for (int32_t i = 0; i < n; ++i) acc += Acc(src[i * stride + e]) * M::weight(w[i]);
    dst[e] = acc;
  }
}

// Horizontal pass of one line: dst[c*n_out + x] (planar) for the n_out outputs starting at coefficient o0,
// reading src (a line of interleaved RGB samples whose sample 0 is input column x0).
template <bool kExact, typename Src>
inline void horizontal_line(const MultiscaleTileArgs& a, const Src* src, int64_t x0, int64_t o0, int64_t n_out,
                            typename Mode<kExact>::Mid* dst) {
  using M = Mode<kExact>;
  for (int64_t x = 0; x < n_out; ++x) {
    const int32_t lo = a.xbounds[2 * (o0 + x)], n = a.xbounds[2 * (o0 + x) + 1];
    const int32_t* w = a.xweights + (o0 + x) * a.KX;
    const Src* p = src + (lo - x0) * 3;
    typename M::Acc r = M::init(), g = M::init(), b = M::init();
    for (int32_t i = 0; i < n; ++i) {
      const typename M::Acc wi = M::weight(w[i]);
      r += typename M::Acc(p[3 * i]) * wi;
      g += typename M::Acc(p[3 * i + 1]) * wi;
      b += typename M::Acc(p[3 * i + 2]) * wi;
    }
    dst[x] = M::finish(r);
    dst[n_out + x] = M::finish(g);
    dst[2 * n_out + x] = M::finish(b);
  }
}

template <typename Out>
struct Writer {
  const MultiscaleTileArgs& a;
  Out* out;
  explicit Writer(const MultiscaleTileArgs& args) : a(args), out(static_cast<Out*>(args.out)) {}
  // row: planar (3, T) values of output row y of tile t: exact accumulators (int32),
  // levels (uint8) or unrounded fp32 levels
  template <typename V>
  void row(int64_t t, int64_t y, const V* v) const {
    const int64_t T = a.T;
    for (int c = 0; c < 3; ++c) {
      Out* __restrict__ o = out + ((t * 3 + c) * T + y) * T;
      const V* __restrict__ vc = v + c * T;
      const float mean = a.mean[c], std = a.std[c];
      for (int64_t x = 0; x < T; ++x) {
        float level;
        if constexpr (std::is_same_v<V, int32_t>)
          level = float(clip8(vc[x]));
        else if constexpr (std::is_same_v<V, uint8_t>)
          level = float(vc[x]);
        else
          level = clamp_level(vc[x]);
        o[x] = from_f32<Out>(normalize_level(level, mean, std));
      }
    }
  }
};

template <bool kExact, typename Out>
__attribute__((target_clones("avx2", "default"))) void tile_job(const MultiscaleTileArgs& a, const Writer<Out>& wr,
                                                                const uint8_t* imageT, int64_t t,
                                                                std::vector<typename Mode<kExact>::Mid>& mid,
                                                                std::vector<typename Mode<kExact>::Acc>& acc) {
  using M = Mode<kExact>;
  using Mid = typename M::Mid;
  const int64_t T = a.T, W = a.W;
  const int64_t s = a.scale_of(t), k = t - a.tile0[s];
  const int64_t ox0 = a.xoff[s] + (k % a.cols[s]) * T;  // coefficient rows of the tile's columns
  const int64_t oy0 = a.yoff[s] + (k / a.cols[s]) * T;
  const int32_t* xb = a.xbounds;
  const int32_t* yb = a.ybounds;
  acc.resize(3 * T);
  if (!a.vfirst[s]) {
    // horizontal pass over the source rows [ys, ye) the tile needs, one output column at a
    // time from the transposed image -> col (rows, 3), stored to mid (rows, 3, T)
    const int64_t ys = yb[2 * oy0], ye = yb[2 * (oy0 + T - 1)] + yb[2 * (oy0 + T - 1) + 1];
    const int64_t R = ye - ys;
    mid.resize(R * T * 3);
    acc.resize(std::max<int64_t>(3 * T, 3 * R));
    for (int64_t x = 0; x < T; ++x) {
      const int32_t lo = xb[2 * (ox0 + x)], n = xb[2 * (ox0 + x) + 1];
      const int32_t* w = a.xweights + (ox0 + x) * a.KX;
      weighted_lines<kExact>(acc.data(), imageT + (lo * a.H + ys) * 3, a.H * 3, w, n, 3 * R);
      Mid* m = mid.data() + x;  // mid (R, 3, T)
      for (int64_t r = 0; r < R; ++r)
        for (int c = 0; c < 3; ++c) m[(r * 3 + c) * T] = M::finish(acc[3 * r + c]);
    }
    for (int64_t y = 0; y < T; ++y) {
      const int32_t lo = yb[2 * (oy0 + y)], n = yb[2 * (oy0 + y) + 1];
      const int32_t* w = a.yweights + (oy0 + y) * a.KY;
      weighted_lines<kExact>(acc.data(), mid.data() + (lo - ys) * T * 3, T * 3, w, n, 3 * T);
      wr.row(t, y, acc.data());  // planar (3, T); exact: clip8 of the accumulators
    }
  } else {
    // vertical pass over the source columns [xs, xe) the tile needs -> mid (T, cols, 3)
    const int64_t xs = xb[2 * ox0], xe = xb[2 * (ox0 + T - 1)] + xb[2 * (ox0 + T - 1) + 1];
    const int64_t nc = (xe - xs) * 3;
    mid.resize(T * nc);
    std::vector<typename M::Acc> col(nc);
    for (int64_t y = 0; y < T; ++y) {
      const int32_t lo = yb[2 * (oy0 + y)], n = yb[2 * (oy0 + y) + 1];
      const int32_t* w = a.yweights + (oy0 + y) * a.KY;
      weighted_lines<kExact>(col.data(), a.image + (lo * W + xs) * 3, W * 3, w, n, nc);
      Mid* m = mid.data() + y * nc;
      for (int64_t e = 0; e < nc; ++e) m[e] = M::finish(col[e]);
    }
    std::vector<Mid> line(3 * T);
    for (int64_t y = 0; y < T; ++y) {
      horizontal_line<kExact>(a, mid.data() + y * nc, xs, ox0, T, line.data());
      wr.row(t, y, line.data());
    }
  }
}

// (H, W, 3) -> (W, H, 3), in 32 x 32 pixel blocks. A pixel moves as one 4-byte load and
// store whose 4th byte is rewritten by the next pixel of the column; the last pixel of
// a block column (whose 4th byte belongs to another block) and the image's last
// column (whose 4-byte load would pass the end of the image) move as 3 bytes.
void transpose_image(const uint8_t* src, int64_t H, int64_t W, uint8_t* dst) {
  constexpr int64_t B = 32;
#pragma omp for schedule(static) collapse(2)
  for (int64_t y0 = 0; y0 < H; y0 += B)
    for (int64_t x0 = 0; x0 < W; x0 += B) {
      const int64_t y1 = std::min(H, y0 + B);
      for (int64_t x = x0; x < std::min(W, x0 + B); ++x) {
        uint8_t* d = dst + (x * H + y0) * 3;
        const uint8_t* s = src + (y0 * W + x) * 3;
        int64_t y = y0;
        if (x + 1 < W)
          for (; y + 1 < y1; ++y, d += 3, s += W * 3) {
            uint32_t v;
            std::memcpy(&v, s, 4);
            std::memcpy(d, &v, 4);
          }
        for (; y < y1; ++y, d += 3, s += W * 3) std::memcpy(d, s, 3);
      }
    }
}

template <bool kExact, typename Out>
void run(const MultiscaleTileArgs& a) {
  const Writer<Out> wr(a);
  const int64_t n = a.n_tiles();
  bool any_hfirst = false;
  for (int64_t s = 0; s < a.S; ++s) any_hfirst |= !a.vfirst[s];
  std::vector<uint8_t> imageT(any_hfirst ? a.H * a.W * 3 : 0);
#pragma omp parallel
  {
    if (any_hfirst) transpose_image(a.image, a.H, a.W, imageT.data());  // ends with a barrier
    std::vector<typename Mode<kExact>::Mid> mid;
    std::vector<typename Mode<kExact>::Acc> acc;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < n; ++t) tile_job<kExact, Out>(a, wr, imageT.data(), t, mid, acc);
  }
}

template <typename Out>
void run_mode(const MultiscaleTileArgs& a) {
  if (a.exact)
    run<true, Out>(a);
  else
    run<false, Out>(a);
}

}  // namespace

void multiscale_tile(const MultiscaleTileArgs& a) {
  switch (a.dtype) {
    case DType::F32: return run_mode<float>(a);
    case DType::F16: return run_mode<half_t>(a);
    case DType::BF16: return run_mode<bf16_t>(a);
  }
}

}  // namespace nvila::cpu
