// CPU kernel of multiscale_tile. One job per tile (OpenMP, dynamic schedule). A job
// runs the first pass over the source lines its tile needs into a per-thread buffer
// (uint8 levels in exact mode, fp32 otherwise), then the second pass row by row into
// an interleaved (x, channel) accumulator row, and writes the normalized channels.
// The vertical pass (the first pass of vertical-first scales and the second of the
// others) is a sum of whole rows times one weight: contiguous int32 MACs that the
// compiler vectorizes; the job function is also compiled for AVX2 (target_clones).
#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "nvila/dtype.h"

namespace nvila::cpu {
namespace {

// acc[e] += w * src[e] for e < n (exact: int32, otherwise fp32)
template <typename Acc, typename Src>
inline void axpy(Acc* __restrict__ acc, const Src* __restrict__ src, Acc w, int64_t n) {
  for (int64_t e = 0; e < n; ++e) acc[e] += Acc(src[e]) * w;
}

template <bool kExact>
struct Mode {
  using Acc = std::conditional_t<kExact, int32_t, float>;
  using Mid = std::conditional_t<kExact, uint8_t, float>;  // first-pass result
  static Acc init() { return kExact ? Acc(1 << (kResamplePrecisionBits - 1)) : Acc(0); }
  static Acc weight(int32_t w) {
    if constexpr (kExact) return w;
    else return weight_f32(w);
  }
  static Mid finish(Acc a) {
    if constexpr (kExact) return Mid(clip8(a));
    else return a;
  }
};

// Horizontal pass of one line: dst[x*3 + c] for the n_out outputs starting at coefficient o0,
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
    dst[3 * x] = M::finish(r);
    dst[3 * x + 1] = M::finish(g);
    dst[3 * x + 2] = M::finish(b);
  }
}

template <typename Out>
struct Writer {
  const MultiscaleTileArgs& a;
  Out* out;
  float lut[3][256];
  explicit Writer(const MultiscaleTileArgs& args) : a(args), out(static_cast<Out*>(args.out)) {
    for (int c = 0; c < 3; ++c)
      for (int v = 0; v < 256; ++v) lut[c][v] = normalize_level(float(v), a.mean[c], a.std[c]);
  }
  // row: T interleaved (x, c) values of output row y of tile t: exact accumulators
  // (int32), levels (uint8) or unrounded fp32 levels
  template <typename V>
  void row(int64_t t, int64_t y, const V* v) const {
    const int64_t T = a.T;
    for (int c = 0; c < 3; ++c) {
      Out* o = out + ((t * 3 + c) * T + y) * T;
      for (int64_t x = 0; x < T; ++x) {
        if constexpr (std::is_same_v<V, int32_t>) o[x] = from_f32<Out>(lut[c][clip8(v[3 * x + c])]);
        else if constexpr (std::is_same_v<V, uint8_t>) o[x] = from_f32<Out>(lut[c][v[3 * x + c]]);
        else o[x] = from_f32<Out>(normalize_level(clamp_level(v[3 * x + c]), a.mean[c], a.std[c]));
      }
    }
  }
};

template <bool kExact, typename Out>
__attribute__((target_clones("avx2", "default"))) void tile_job(const MultiscaleTileArgs& a, const Writer<Out>& wr,
                                                                 int64_t t,
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
    // horizontal pass over the source rows [ys, ye) the tile needs -> mid (rows, T, 3)
    const int64_t ys = yb[2 * oy0], ye = yb[2 * (oy0 + T - 1)] + yb[2 * (oy0 + T - 1) + 1];
    mid.resize((ye - ys) * T * 3);
    for (int64_t y = ys; y < ye; ++y)
      horizontal_line<kExact>(a, a.image + y * W * 3, 0, ox0, T, mid.data() + (y - ys) * T * 3);
    for (int64_t y = 0; y < T; ++y) {
      const int32_t lo = yb[2 * (oy0 + y)], n = yb[2 * (oy0 + y) + 1];
      const int32_t* w = a.yweights + (oy0 + y) * a.KY;
      std::fill(acc.begin(), acc.end(), M::init());
      for (int32_t j = 0; j < n; ++j) axpy(acc.data(), mid.data() + (lo + j - ys) * T * 3, M::weight(w[j]), 3 * T);
      wr.row(t, y, acc.data());  // exact: clip8 of the accumulators
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
      std::fill(col.begin(), col.end(), M::init());
      for (int32_t j = 0; j < n; ++j) axpy(col.data(), a.image + ((lo + j) * W + xs) * 3, M::weight(w[j]), nc);
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

template <bool kExact, typename Out>
void run(const MultiscaleTileArgs& a) {
  const Writer<Out> wr(a);
  const int64_t n = a.n_tiles();
#pragma omp parallel
  {
    std::vector<typename Mode<kExact>::Mid> mid;
    std::vector<typename Mode<kExact>::Acc> acc;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < n; ++t) tile_job<kExact, Out>(a, wr, t, mid, acc);
  }
}

template <typename Out>
void run_mode(const MultiscaleTileArgs& a) {
  if (a.exact) run<true, Out>(a);
  else run<false, Out>(a);
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
