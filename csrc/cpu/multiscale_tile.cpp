// CPU kernel of multiscale_tile. One job per tile (OpenMP, dynamic schedule). A job
// runs the first pass over the source lines its tile needs into a per-thread buffer
// (uint8 levels in exact mode, fp32 otherwise), then the second pass row by row into
// a planar (channel, x) accumulator row, and writes the normalized channels.
// Every pass with many MACs is written as "line += weight * line" over contiguous
// int32 (exact) or fp32 values, which the compiler vectorizes (the job function is
// also compiled for AVX2, target_clones): the vertical pass reads whole rows of the
// first pass's result. The horizontal pass of horizontal-first scales reads the
// source in bands of kBand rows, each transposed (16 x 16 byte SSE2 blocks) to one
// contiguous column of kBand rows x 3 channels per input pixel, so an output column
// of the band is a sum of whole input columns; 16 output columns at a time are
// transposed back (16 x 16 blocks again) into the rows of the first pass's result.
// Only the horizontal pass after a vertical one (vertical-first scales, on tile rows
// only) is a per-pixel dot product.
// Exact mode on a CPU with AVX2 (avx2.h, chosen at run time) runs the uint8 line
// sums, the clip to levels and the fp32 normalize with AVX2 intrinsics (the same
// integer and fp32 operations, so the same bits as the portable code); large fp32
// outputs are written with streaming stores.
#include "nvila/multiscale_tile.h"

#include <emmintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "avx2.h"
#include "nvila/dtype.h"
#include "stream_store.h"

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

#if NVILA_HAVE_AVX2_PATH
NVILA_AVX2 NVILA_INLINE __m256i widen8(const uint8_t* p) {  // 8 uint8 -> 8 int32
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// The exact weighted_lines on uint8 lines: kVec int32 vectors of 8 accumulators in
// registers across the taps (one widening load, multiply and add per vector and
// tap), then vectors of 8, then single values.
template <int kVec>
NVILA_AVX2 void weighted_lines_avx2(int32_t* dst, const uint8_t* src, int64_t stride, const int32_t* w, int32_t n,
                                    int64_t len) {
  const __m256i init = _mm256_set1_epi32(1 << (kResamplePrecisionBits - 1));
  int64_t e0 = 0;
  for (; e0 + 8 * kVec <= len; e0 += 8 * kVec) {
    __m256i acc[kVec];
    for (int v = 0; v < kVec; ++v) acc[v] = init;
    const uint8_t* p = src + e0;
    for (int32_t i = 0; i < n; ++i, p += stride) {
      const __m256i wi = _mm256_set1_epi32(w[i]);
      for (int v = 0; v < kVec; ++v) acc[v] = _mm256_add_epi32(acc[v], _mm256_mullo_epi32(widen8(p + 8 * v), wi));
    }
    for (int v = 0; v < kVec; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + e0 + 8 * v), acc[v]);
  }
  for (; e0 + 8 <= len; e0 += 8) {
    __m256i acc = init;
    const uint8_t* p = src + e0;
    for (int32_t i = 0; i < n; ++i, p += stride)
      acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(widen8(p), _mm256_set1_epi32(w[i])));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + e0), acc);
  }
  for (; e0 < len; ++e0) {
    int32_t acc = 1 << (kResamplePrecisionBits - 1);
    for (int32_t i = 0; i < n; ++i) acc += int32_t(src[i * stride + e0]) * w[i];
    dst[e0] = acc;
  }
}

// out[e] = clip8(acc[e]) for e < len, 16 at a time
NVILA_AVX2 void clip8_line_avx2(const int32_t* acc, uint8_t* out, int64_t len) {
  int64_t e = 0;
  for (; e + 16 <= len; e += 16) {
    const __m256i a =
        _mm256_srai_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + e)), kResamplePrecisionBits);
    const __m256i b =
        _mm256_srai_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + e + 8)), kResamplePrecisionBits);
    const __m256i ab = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);  // 16 int16 in order
    const __m128i v = _mm_packus_epi16(_mm256_castsi256_si128(ab), _mm256_extracti128_si256(ab, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + e), v);
  }
  for (; e < len; ++e) out[e] = uint8_t(clip8(acc[e]));
}
#endif

// dst[e] = init + sum_i weight(w[i]) * src[i * stride + e] for e < len: the taps of one
// output line summed over whole input lines. Chunks of kChunk accumulators stay in
// registers across the taps (exact mode on uint8 with AVX2: weighted_lines_avx2;
// otherwise vectorized by the compiler).
template <bool kExact, int64_t kChunk = 32, typename Src>
inline void weighted_lines(typename Mode<kExact>::Acc* __restrict__ dst, const Src* __restrict__ src, int64_t stride,
                           const int32_t* __restrict__ w, int32_t n, int64_t len) {
  using M = Mode<kExact>;
  using Acc = typename M::Acc;
#if NVILA_HAVE_AVX2_PATH
  if constexpr (kExact && std::is_same_v<Src, uint8_t> && kChunk % 8 == 0) {
    if (use_avx2()) return weighted_lines_avx2<kChunk / 8>(dst, src, stride, w, n, len);
  }
#endif
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

// dst[e] = finish(acc[e]) for e < len (exact mode with AVX2: clip8_line_avx2)
template <bool kExact>
inline void finish_line(const typename Mode<kExact>::Acc* acc, typename Mode<kExact>::Mid* dst, int64_t len) {
#if NVILA_HAVE_AVX2_PATH
  if constexpr (kExact)
    if (use_avx2()) return clip8_line_avx2(acc, dst, len);
#endif
  for (int64_t e = 0; e < len; ++e) dst[e] = Mode<kExact>::finish(acc[e]);
}

// x[c] = column c of the 16 x 16 byte block whose rows are x[0..15] (SSE2: four
// rounds of unpacks, each interleaving twice as many bytes).
inline void transpose16x16(__m128i x[16]) {
  __m128i t[16];
  for (int k = 0; k < 8; ++k) {  // t[h + k]: columns h..h+7 of rows 2k, 2k+1 (h = 0, 8)
    t[k] = _mm_unpacklo_epi8(x[2 * k], x[2 * k + 1]);
    t[k + 8] = _mm_unpackhi_epi8(x[2 * k], x[2 * k + 1]);
  }
  for (int h = 0; h < 16; h += 8)  // x[h + 4q + k]: columns h+4q..h+4q+3 of rows 4k..4k+3
    for (int k = 0; k < 4; ++k) {
      x[h + k] = _mm_unpacklo_epi16(t[h + 2 * k], t[h + 2 * k + 1]);
      x[h + k + 4] = _mm_unpackhi_epi16(t[h + 2 * k], t[h + 2 * k + 1]);
    }
  for (int g = 0; g < 16; g += 4)  // t[g + 2p + k]: columns g+2p, g+2p+1 of rows 8k..8k+7
    for (int k = 0; k < 2; ++k) {
      t[g + k] = _mm_unpacklo_epi32(x[g + 2 * k], x[g + 2 * k + 1]);
      t[g + k + 2] = _mm_unpackhi_epi32(x[g + 2 * k], x[g + 2 * k + 1]);
    }
  for (int c = 0; c < 16; c += 2) {
    x[c] = _mm_unpacklo_epi64(t[c], t[c + 1]);
    x[c + 1] = _mm_unpackhi_epi64(t[c], t[c + 1]);
  }
}

constexpr int64_t kBand = 16;  // source rows per band of the horizontal pass

#if NVILA_HAVE_AVX2_PATH
// transpose16x16 on both 128-bit lanes at once (AVX2 unpacks stay within lanes): the
// rows x[r] hold bytes j..j+15 of row r in lane 0 and bytes j+16..j+31 in lane 1.
// The same network as transpose16x16, written out again on purpose: one template over
// the vector type does not compile with GCC (its __m256i instance would need the avx2
// target, and the target attribute cannot differ between instances of one template;
// marking the whole template avx2 would put VEX code into the portable path).
NVILA_AVX2 NVILA_INLINE void transpose16x16x2(__m256i x[16]) {
  __m256i t[16];
  for (int k = 0; k < 8; ++k) {
    t[k] = _mm256_unpacklo_epi8(x[2 * k], x[2 * k + 1]);
    t[k + 8] = _mm256_unpackhi_epi8(x[2 * k], x[2 * k + 1]);
  }
  for (int h = 0; h < 16; h += 8)
    for (int k = 0; k < 4; ++k) {
      x[h + k] = _mm256_unpacklo_epi16(t[h + 2 * k], t[h + 2 * k + 1]);
      x[h + k + 4] = _mm256_unpackhi_epi16(t[h + 2 * k], t[h + 2 * k + 1]);
    }
  for (int g = 0; g < 16; g += 4)
    for (int k = 0; k < 2; ++k) {
      t[g + k] = _mm256_unpacklo_epi32(x[g + 2 * k], x[g + 2 * k + 1]);
      t[g + k + 2] = _mm256_unpackhi_epi32(x[g + 2 * k], x[g + 2 * k + 1]);
    }
  for (int c = 0; c < 16; c += 2) {
    x[c] = _mm256_unpacklo_epi64(t[c], t[c + 1]);
    x[c + 1] = _mm256_unpackhi_epi64(t[c], t[c + 1]);
  }
}

// The bytes [0, j) of transpose_band's rows, 32 at a time; returns j (a multiple of 32).
NVILA_AVX2 int64_t transpose_band_avx2(const uint8_t* const* row, int64_t len, uint8_t* band) {
  int64_t j = 0;
  for (; j + 32 <= len; j += 32) {
    __m256i x[16];
    for (int r = 0; r < 16; ++r) x[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row[r] + j));
    transpose16x16x2(x);
    __m128i* d = reinterpret_cast<__m128i*>(band + j * kBand);
    for (int k = 0; k < 16; ++k) {
      _mm_storeu_si128(d + k, _mm256_castsi256_si128(x[k]));
      _mm_storeu_si128(d + 16 + k, _mm256_extracti128_si256(x[k], 1));
    }
  }
  return j;
}
#endif

// Band of image rows [y0, y0 + n_rows) (n_rows <= kBand), input columns [xs, xe), as
// band[(p * 3 + c) * kBand + r] = image[y0 + r, xs + p, c]: column p is 3 * kBand
// contiguous bytes. Rows past n_rows repeat the last row (their results are not kept).
inline void transpose_band(const uint8_t* image, int64_t W, int64_t y0, int64_t n_rows, int64_t xs, int64_t xe,
                           uint8_t* band) {
  const uint8_t* row[kBand];
  for (int64_t r = 0; r < kBand; ++r) row[r] = image + ((y0 + std::min(r, n_rows - 1)) * W + xs) * 3;
  const int64_t len = (xe - xs) * 3;  // bytes per row
  int64_t j0 = 0;
#if NVILA_HAVE_AVX2_PATH
  if (use_avx2()) j0 = transpose_band_avx2(row, len, band);
#endif
  __m128i x[16];
  for (int64_t j = j0; j < len; j += 16) {
    const int64_t n = std::min<int64_t>(16, len - j);
    for (int r = 0; r < 16; ++r)
      if (n == 16) {
        x[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row[r] + j));
      } else {  // the last bytes of the rows: a 16-byte load could pass the end of the image
        alignas(16) uint8_t tail[16] = {};
        std::memcpy(tail, row[r] + j, n);
        x[r] = _mm_load_si128(reinterpret_cast<const __m128i*>(tail));
      }
    transpose16x16(x);
    __m128i* d = reinterpret_cast<__m128i*>(band + j * kBand);
    if (n == 16)
      for (int k = 0; k < 16; ++k) _mm_storeu_si128(d + k, x[k]);
    else
      for (int64_t k = 0; k < n; ++k) _mm_storeu_si128(d + k, x[k]);
  }
}

// The horizontal pass's results of up to 16 output columns x0 + k of one band,
// cols[k][c * kBand + r], into mid (rows, 3, T): mid[((r0 + r) * 3 + c) * T + x0 + k]
// for r < n_rows, k < n_cols. uint8: 16 x 16 byte transposes; fp32: element by element.
inline void store_columns(const uint8_t (*cols)[3 * kBand], int64_t n_cols, int64_t n_rows, uint8_t* mid, int64_t T) {
  for (int c = 0; c < 3; ++c) {
    __m128i x[16];
    for (int k = 0; k < 16; ++k)
      x[k] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cols[std::min<int64_t>(k, n_cols - 1)] + c * kBand));
    transpose16x16(x);
    for (int64_t r = 0; r < n_rows; ++r) {
      uint8_t* d = mid + (r * 3 + c) * T;
      if (n_cols == 16) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d), x[r]);
      } else {
        alignas(16) uint8_t v[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(v), x[r]);
        std::memcpy(d, v, n_cols);
      }
    }
  }
}

inline void store_columns(const float (*cols)[3 * kBand], int64_t n_cols, int64_t n_rows, float* mid, int64_t T) {
  for (int64_t r = 0; r < n_rows; ++r)
    for (int c = 0; c < 3; ++c)
      for (int64_t k = 0; k < n_cols; ++k) mid[(r * 3 + c) * T + k] = cols[k][c * kBand + r];
}

#if NVILA_HAVE_AVX2_PATH
// o[x] = normalize_level(clip8(acc[x]), mean, std) for x < len (the same fp32
// operations, 8 at a time); streaming stores when `stream` and o is 32-byte aligned.
NVILA_AVX2 void normalize_line_avx2(const int32_t* acc, float* o, int64_t len, float mean, float std, bool stream) {
  const __m256 k255 = _mm256_set1_ps(255.f), m = _mm256_set1_ps(mean), s = _mm256_set1_ps(std);
  const __m256i lo = _mm256_setzero_si256(), hi = _mm256_set1_epi32(255);
  stream = stream && reinterpret_cast<uintptr_t>(o) % 32 == 0;
  int64_t x = 0;
  for (; x + 8 <= len; x += 8) {
    __m256i l =
        _mm256_srai_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + x)), kResamplePrecisionBits);
    l = _mm256_min_epi32(_mm256_max_epi32(l, lo), hi);
    const __m256 v = _mm256_div_ps(_mm256_sub_ps(_mm256_div_ps(_mm256_cvtepi32_ps(l), k255), m), s);
    if (stream)
      _mm256_stream_ps(o + x, v);
    else
      _mm256_storeu_ps(o + x, v);
  }
  for (; x < len; ++x) o[x] = normalize_level(float(clip8(acc[x])), mean, std);
}
#endif

template <typename Out>
struct Writer {
  const MultiscaleTileArgs& a;
  Out* out;
  bool stream;  // streaming stores (a large fp32 output)
  explicit Writer(const MultiscaleTileArgs& args)
      : a(args), out(static_cast<Out*>(args.out)), stream(a.n_tiles() * 3 * a.T * a.T * 4 >= kStreamBytes) {}
  // row: planar (3, T) values of output row y of tile t: exact accumulators (int32),
  // levels (uint8) or unrounded fp32 levels
  template <typename V>
  void row(int64_t t, int64_t y, const V* v) const {
    const int64_t T = a.T;
    for (int c = 0; c < 3; ++c) {
      Out* __restrict__ o = out + ((t * 3 + c) * T + y) * T;
      const V* __restrict__ vc = v + c * T;
      const float mean = a.mean[c], std = a.std[c];
#if NVILA_HAVE_AVX2_PATH
      if constexpr (std::is_same_v<Out, float> && std::is_same_v<V, int32_t>)
        if (use_avx2()) {
          normalize_line_avx2(vc, o, T, mean, std, stream);
          continue;
        }
#endif
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
                                                                int64_t t, std::vector<uint8_t>& band,
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
    // horizontal pass over the source rows [ys, ye) and columns [xs, xe) the tile needs,
    // band by band -> mid (R, 3, T)
    const int64_t ys = yb[2 * oy0], ye = yb[2 * (oy0 + T - 1)] + yb[2 * (oy0 + T - 1) + 1];
    const int64_t xs = xb[2 * ox0], xe = xb[2 * (ox0 + T - 1)] + xb[2 * (ox0 + T - 1) + 1];
    const int64_t R = ye - ys;
    constexpr int64_t kCol = 3 * kBand;  // values per column of a band
    mid.resize(R * T * 3);
    band.resize((xe - xs) * kCol);
    for (int64_t r0 = 0; r0 < R; r0 += kBand) {
      const int64_t n_rows = std::min(kBand, R - r0);
      transpose_band(a.image, W, ys + r0, n_rows, xs, xe, band.data());
      for (int64_t x0 = 0; x0 < T; x0 += 16) {
        const int64_t n_cols = std::min<int64_t>(16, T - x0);
        typename M::Acc sum[kCol];
        Mid cols[16][kCol];
        for (int64_t k = 0; k < n_cols; ++k) {
          const int32_t lo = xb[2 * (ox0 + x0 + k)], n = xb[2 * (ox0 + x0 + k) + 1];
          const int32_t* w = a.xweights + (ox0 + x0 + k) * a.KX;
          weighted_lines<kExact, kCol>(sum, band.data() + (lo - xs) * kCol, kCol, w, n, kCol);
          finish_line<kExact>(sum, cols[k], kCol);
        }
        store_columns(cols, n_cols, n_rows, mid.data() + r0 * 3 * T + x0, T);
      }
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

template <bool kExact, typename Out>
void run(const MultiscaleTileArgs& a) {
  const Writer<Out> wr(a);
  const int64_t n = a.n_tiles();
#pragma omp parallel
  {
    std::vector<uint8_t> band;
    std::vector<typename Mode<kExact>::Mid> mid;
    std::vector<typename Mode<kExact>::Acc> acc;
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t t = 0; t < n; ++t) tile_job<kExact, Out>(a, wr, t, band, mid, acc);
    stream_fence();  // before the region's closing barrier
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
  return dispatch_dtype(a.dtype, [&](auto t) { return run_mode<decltype(t)>(a); });
}

}  // namespace nvila::cpu
