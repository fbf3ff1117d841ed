// CPU kernel of merge_compress. One job per output token (OpenMP, dynamic chunks of
// kChunk tokens: neighbouring tokens read neighbouring source pixels, and a thread
// held up by another process does not hold up the whole call). The token's k*k*S pieces
// (C channels each) are read straight from the tile features where a piece is one
// source token (a window of one pixel); a piece that is the area average of a larger
// window is averaged in fp32 and rounded to the feature dtype, as the merged map would
// hold it, into a per-thread row (D values, L1/L2 resident); padding pieces are a zero
// token. With LayerNorm the pieces go to PieceRowNorm (layernorm_row.h: statistics,
// then the normalized write with streaming stores for large outputs); without, they
// are copied. The averaging has an AVX2 version (avx2.h) and a portable one.
#include "nvila/merge_compress.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#include "avx2.h"
#include "layernorm_row.h"
#include "nvila/dtype.h"
#include "stream_store.h"

namespace nvila::cpu {
namespace {

// One scale's source windows and token offsets as lookup tables (the per-pixel
// divisions of MultiscaleMergeArgs::window and src_token, done once per call): merged
// row Y reads the scale's map rows [y0[Y], y1[Y]), column X columns [x0[X], x1[X]); the
// pixel (py, px) is token base + row_off[py] + col_off[px].
struct ScaleTable {
  std::vector<int64_t> y0, y1, x0, x1, row_off, col_off;
  int64_t base;

  ScaleTable(const MultiscaleMergeArgs& m, int64_t s) : base(m.tile0[s] * m.h * m.w) {
    const int64_t in_h = m.rows[s] * m.h, in_w = m.cols[s] * m.w, H = m.H(), W = m.W();
    for (int64_t Y = 0; Y < H; ++Y) {
      y0.push_back(MultiscaleMergeArgs::src_lo(Y, in_h, H));
      y1.push_back(MultiscaleMergeArgs::src_hi(Y, in_h, H));
    }
    for (int64_t X = 0; X < W; ++X) {
      x0.push_back(MultiscaleMergeArgs::src_lo(X, in_w, W));
      x1.push_back(MultiscaleMergeArgs::src_hi(X, in_w, W));
    }
    for (int64_t py = 0; py < in_h; ++py) row_off.push_back((py / m.h) * m.cols[s] * m.h * m.w + (py % m.h) * m.w);
    for (int64_t px = 0; px < in_w; ++px) col_off.push_back((px / m.w) * m.h * m.w + px % m.w);
  }
  int64_t token(int64_t py, int64_t px) const { return base + row_off[py] + col_off[px]; }
};

// dst = the merged values of one scale over window `win` (count() > 1): the fp32 sum of
// the window's pixels in row-major order, divided by the count, rounded to T. acc: C floats.
template <typename T>
void average_piece(T* dst, float* acc, const T* x, int64_t C, const ScaleTable& tab,
                   const MultiscaleMergeArgs::Window& win) {
  const float count = float(win.count());
  for (int64_t py = win.y0; py < win.y1; ++py)
    for (int64_t px = win.x0; px < win.x1; ++px) {
      const T* p = x + tab.token(py, px) * C;
      if (py == win.y0 && px == win.x0) {  // the first pixel initializes the sums
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) acc[c] = load_f32(p + c);
      } else {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) acc[c] += load_f32(p + c);
      }
    }
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) dst[c] = from_f32<T>(acc[c] / count);
}

#if NVILA_HAVE_AVX2_PATH
// average_piece, 16 channels per step, for windows of up to 4 pixels (every upsampling:
// a window spans at most 2 source pixels per axis), summed in registers; by a power of
// two the division is the exact multiplication by its reciprocal (the same result,
// without the slow divide). Larger windows take the portable loop.
template <typename T>
NVILA_AVX2 void average_piece_avx2(T* dst, float* acc, const T* x, int64_t C, const ScaleTable& tab,
                                   const MultiscaleMergeArgs::Window& win) {
  const int64_t count = win.count(), C16 = C & ~int64_t(15);
  if (count > 4) return average_piece(dst, acc, x, C, tab, win);  // not an upsampling window
  const T* src[4];
  int n = 0;
  for (int64_t py = win.y0; py < win.y1; ++py)
    for (int64_t px = win.x0; px < win.x1; ++px) src[n++] = x + tab.token(py, px) * C;
  const bool pow2 = (count & (count - 1)) == 0;
  const __m256 inv = _mm256_set1_ps(1.f / float(count)), vcount = _mm256_set1_ps(float(count));
  for (int64_t c = 0; c < C16; c += 16) {
    __m256 lo = load8(src[0] + c), hi = load8(src[0] + c + 8);
    for (int i = 1; i < n; ++i) {
      lo = _mm256_add_ps(lo, load8(src[i] + c));
      hi = _mm256_add_ps(hi, load8(src[i] + c + 8));
    }
    if (pow2)
      store16(dst + c, _mm256_mul_ps(lo, inv), _mm256_mul_ps(hi, inv), false);
    else
      store16(dst + c, _mm256_div_ps(lo, vcount), _mm256_div_ps(hi, vcount), false);
  }
  for (int64_t c = C16; c < C; ++c) {
    float v = load_f32(src[0] + c);
    for (int i = 1; i < n; ++i) v += load_f32(src[i] + c);
    dst[c] = from_f32<T>(v / float(count));
  }
}
#endif

template <typename T>
void average(T* dst, float* acc, const T* x, int64_t C, const ScaleTable& tab, const MultiscaleMergeArgs::Window& win,
             bool avx2) {
#if NVILA_HAVE_AVX2_PATH
  if (avx2) return average_piece_avx2(dst, acc, x, C, tab, win);
#endif
  average_piece(dst, acc, x, C, tab, win);
}

constexpr int kChunk = 16;

template <typename T>
void run(const MergeCompressArgs& a) {
  const T* x = static_cast<const T*>(a.m.x);
  T* out = static_cast<T*>(a.out);
  const MultiscaleMergeArgs& m = a.m;
  const int64_t S = m.S, C = m.C, D = a.D(), kk = a.k * a.k, tokens = a.tokens();
  const bool avx2 = use_avx2();
  const bool stream = tokens * D * int64_t(sizeof(T)) >= kStreamBytes;
  std::optional<PieceRowNorm<T>> norm;
  if (a.ln_weight) norm.emplace(a.ln_weight, a.ln_bias, D, C, a.eps);
  const std::vector<T> zeros(C, from_f32<T>(0.f));  // a padding piece
  std::vector<ScaleTable> tables;
  for (int64_t s = 0; s < S; ++s) tables.emplace_back(m, s);
#pragma omp parallel
  {
    std::vector<const T*> pieces(kk * S);
    std::vector<T> averaged(D);  // pieces that are area averages, at their place in the row
    std::vector<float> acc(C);
#pragma omp for schedule(dynamic, kChunk)
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t slot = 0; slot < kk; ++slot) {
        int64_t Y = 0, X = 0;
        const bool pixel = merge_compress_pixel(a, t, slot, Y, X);  // slot 0 is never padding
        for (int64_t s = 0; s < S; ++s) {
          const int64_t j = slot * S + s;
          if (!pixel) {
            pieces[j] = zeros.data();
            continue;
          }
          const ScaleTable& tab = tables[s];
          const MultiscaleMergeArgs::Window win{tab.y0[Y], tab.y1[Y], tab.x0[X], tab.x1[X]};
          if (win.count() == 1) {
            pieces[j] = x + tab.token(win.y0, win.x0) * C;
          } else {
            average(averaged.data() + j * C, acc.data(), x, C, tab, win, avx2);
            pieces[j] = averaged.data() + j * C;
          }
        }
      }
      T* dst = out + t * D;
      if (norm) {
        (*norm)(dst, pieces.data(), stream);
      } else {
        for (int64_t j = 0; j < kk * S; ++j) copy_out(dst + j * C, pieces[j], C * sizeof(T), stream);
      }
    }
    stream_fence();
  }
}

}  // namespace

void merge_compress(const MergeCompressArgs& a) {
  return dispatch_dtype(a.m.dtype, [&](auto t) { return run<decltype(t)>(a); });
}

}  // namespace nvila::cpu
