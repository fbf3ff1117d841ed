// CPU kernel of merge_compress. One job per output token (OpenMP, dynamic chunks of
// kChunk tokens: neighbouring tokens read neighbouring source pixels, and a thread
// held up by another process does not hold up the whole call). The token's k*k*S pieces
// (C channels each) are gathered straight from the tile features: a piece is one
// source token (integer upsampling) or the fp32 area average of its window, rounded
// to the feature dtype as the merged map would be. The row is staged once as fp32
// (D*4 bytes, L2 resident) with its sum fused into the gather; then the shared
// sum-of-squares pass and one pass that normalizes, converts and writes the output
// row (streaming stores for large outputs: no read-for-ownership of the output).
// The gather (here) and the last pass (write_row, layernorm_row.h) have an AVX2
// version (avx2.h) and a portable one.
#include "nvila/merge_compress.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "avx2.h"
#include "layernorm_row.h"
#include "nvila/dtype.h"
#include "nvila/layernorm.h"
#include "stream_store.h"

namespace nvila::cpu {
namespace {

// Stages the merged values of scale s at merged pixel (Y, X) (C channels) as fp32
// into dst; returns their sum of (value - shift).
template <typename T>
double stage_piece(float* dst, const T* x, const MultiscaleMergeArgs& m, int64_t s, int64_t Y, int64_t X, float shift) {
  const int64_t C = m.C;
  const MultiscaleMergeArgs::Window win = m.window(s, Y, X);
  if (win.count() == 1) return load_token(dst, x + m.src_token(s, win.y0, win.x0) * C, C, shift);
  const float count = float(win.count());
  double total = 0.0;
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
    const int64_t n = std::min(kBlock, C - c0);
    float* d = dst + c0;
    for (int64_t py = win.y0; py < win.y1; ++py)
      for (int64_t px = win.x0; px < win.x1; ++px) {
        const T* p = x + m.src_token(s, py, px) * C + c0;
        if (py == win.y0 && px == win.x0) {  // the first pixel initializes the sums
#pragma omp simd
          for (int64_t c = 0; c < n; ++c) d[c] = load_f32(p + c);
        } else {
#pragma omp simd
          for (int64_t c = 0; c < n; ++c) d[c] += load_f32(p + c);
        }
      }
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < n; ++c) {
      const float v = round_to<T>(d[c] / count);
      d[c] = v;
      sum += v - shift;
    }
    total += sum;
  }
  return total;
}

// The merged value of scale s, channel 0, at merged pixel (Y, X): the row's shift.
template <typename T>
float merged_first_value(const T* x, const MultiscaleMergeArgs& m, int64_t s, int64_t Y, int64_t X) {
  const MultiscaleMergeArgs::Window win = m.window(s, Y, X);
  float acc = 0.f;
  for (int64_t py = win.y0; py < win.y1; ++py)
    for (int64_t px = win.x0; px < win.x1; ++px) acc += load_f32(x + m.src_token(s, py, px) * m.C);
  return win.count() == 1 ? acc : round_to<T>(acc / float(win.count()));
}

#if NVILA_HAVE_AVX2_PATH
// stage_piece with 8 channels per vector
template <typename T>
NVILA_AVX2 double stage_piece_avx2(float* dst, const T* x, const MultiscaleMergeArgs& m, int64_t s, int64_t Y,
                                   int64_t X, float shift) {
  const int64_t C = m.C;
  const MultiscaleMergeArgs::Window win = m.window(s, Y, X);
  const bool single = win.count() == 1;
  const T* src = x + m.src_token(s, win.y0, win.x0) * C;
  const float count = float(win.count());
  const __m256 vshift = _mm256_set1_ps(shift), vcount = _mm256_set1_ps(count);
  double total = 0.0;
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
    const int64_t n = std::min(kBlock, C - c0), n8 = n & ~int64_t(7);
    float* d = dst + c0;
    __m256 acc = _mm256_setzero_ps();
    float sum = 0.f;
    if (single) {
      const T* p = src + c0;
      for (int64_t c = 0; c < n8; c += 8) {
        const __m256 v = load8(p + c);
        _mm256_storeu_ps(d + c, v);
        acc = _mm256_add_ps(acc, _mm256_sub_ps(v, vshift));
      }
      for (int64_t c = n8; c < n; ++c) {
        d[c] = load_f32(p + c);
        sum += d[c] - shift;
      }
    } else {
      for (int64_t py = win.y0; py < win.y1; ++py)
        for (int64_t px = win.x0; px < win.x1; ++px) {
          const T* p = x + m.src_token(s, py, px) * C + c0;
          const bool first = py == win.y0 && px == win.x0;  // the first pixel initializes the sums
          for (int64_t c = 0; c < n8; c += 8) {
            const __m256 v = load8(p + c);
            _mm256_storeu_ps(d + c, first ? v : _mm256_add_ps(_mm256_loadu_ps(d + c), v));
          }
          for (int64_t c = n8; c < n; ++c) d[c] = first ? load_f32(p + c) : d[c] + load_f32(p + c);
        }
      for (int64_t c = 0; c < n8; c += 8) {
        const __m256 v = round8<T>(_mm256_div_ps(_mm256_loadu_ps(d + c), vcount));
        _mm256_storeu_ps(d + c, v);
        acc = _mm256_add_ps(acc, _mm256_sub_ps(v, vshift));
      }
      for (int64_t c = n8; c < n; ++c) {
        d[c] = round_to<T>(d[c] / count);
        sum += d[c] - shift;
      }
    }
    total += double(hsum(acc) + sum);
  }
  return total;
}

#endif

template <typename T>
double stage(float* dst, const T* x, const MultiscaleMergeArgs& m, int64_t s, int64_t Y, int64_t X, float shift,
             bool avx2) {
#if NVILA_HAVE_AVX2_PATH
  if (avx2) return stage_piece_avx2(dst, x, m, s, Y, X, shift);
#endif
  return stage_piece(dst, x, m, s, Y, X, shift);
}

constexpr int kChunk = 16;

template <typename T>
void run(const MergeCompressArgs& a) {
  const T* x = static_cast<const T*>(a.m.x);
  T* out = static_cast<T*>(a.out);
  const MultiscaleMergeArgs& m = a.m;
  const int64_t S = m.S, C = m.C, SC = a.SC(), D = a.D(), kk = a.k * a.k, tokens = a.tokens();
  const bool ln = a.ln_weight != nullptr, avx2 = use_avx2();
  const bool stream = tokens * D * int64_t(sizeof(T)) >= kStreamBytes;
#pragma omp parallel
  {
    std::vector<float> buf_storage(D);
    std::vector<T> tmp((std::is_same_v<T, float> || avx2) ? 0 : D);  // 16-bit row before it is streamed
    float* buf = buf_storage.data();
#pragma omp for schedule(dynamic, kChunk)
    for (int64_t t = 0; t < tokens; ++t) {
      // stage the row as fp32 and sum (x - shift), shift = the row's first value
      // (slot 0 of scale 0 is never padding); padding pieces are zeros
      int64_t Y = 0, X = 0;
      merge_compress_pixel(a, t, 0, Y, X);
      const float shift = ln ? merged_first_value(x, m, 0, Y, X) : 0.f;
      double total = 0.0;
      for (int64_t slot = 0; slot < kk; ++slot) {
        float* dst = buf + slot * SC;
        if (!merge_compress_pixel(a, t, slot, Y, X)) {
          std::memset(dst, 0, SC * sizeof(float));
          total -= double(shift) * double(SC);
          continue;
        }
        for (int64_t s = 0; s < S; ++s) total += stage(dst + s * C, x, m, s, Y, X, shift, avx2);
      }
      RowStats st{};
      if (ln) {
        const float mean = float(total / double(D));
        const float ssd = float(block_sum_sq_dev(buf, D, shift, mean));
        st = RowStats{shift, mean, layernorm_rstd(ssd, D, a.eps)};
      }
      const RowStats* stp = ln ? &st : nullptr;
      write_row(out + t * D, buf, D, stp, a.ln_weight, a.ln_bias, stream, tmp.data());
    }
    stream_fence();
  }
}

}  // namespace

void merge_compress(const MergeCompressArgs& a) {
  return dispatch_dtype(a.m.dtype, [&](auto t) { return run<decltype(t)>(a); });
}

}  // namespace nvila::cpu
