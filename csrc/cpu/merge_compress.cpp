// CPU kernel of merge_compress. One job per output token (OpenMP, static chunks:
// neighbouring tokens read neighbouring source pixels). The token's k*k*S pieces
// (C channels each) are gathered straight from the tile features: a piece is one
// source token (integer upsampling) or the fp32 area average of its window, rounded
// to the feature dtype as the merged map would be. The row is staged once as fp32
// (D*4 bytes, L2 resident) with its sum fused into the gather; then the shared
// LayerNorm passes and a single write of the output row (streaming stores for
// large outputs).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels.h"
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

template <typename T>
void run(const MergeCompressArgs& a) {
  const T* x = static_cast<const T*>(a.m.x);
  T* out = static_cast<T*>(a.out);
  const MultiscaleMergeArgs& m = a.m;
  const int64_t S = m.S, C = m.C, SC = a.SC(), D = a.D(), kk = a.k * a.k, tokens = a.tokens();
  const bool ln = a.ln_weight != nullptr;
  const bool stream = tokens * D * int64_t(sizeof(T)) >= kStreamBytes;
#pragma omp parallel
  {
    std::vector<float> buf_storage(D);
    std::vector<T> out_storage(std::is_same_v<T, float> ? 0 : D);  // 16-bit row before it is written
    float* buf = buf_storage.data();
#pragma omp for schedule(static)
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
        for (int64_t s = 0; s < S; ++s) total += stage_piece(dst + s * C, x, m, s, Y, X, shift);
      }
      if (ln) {
        const float mean = float(total / double(D));
        const float ssd = float(block_sum_sq_dev(buf, D, shift, mean));
        normalize_inplace(buf, D, RowStats{shift, mean, layernorm_rstd(ssd, D, a.eps)}, a.ln_weight, a.ln_bias);
      }
      T* dst = out + t * D;
      if constexpr (std::is_same_v<T, float>) {
        if (stream)
          stream_copy(dst, buf, D * sizeof(float));
        else
          std::memcpy(dst, buf, D * sizeof(float));
      } else {
        T* o = stream ? out_storage.data() : dst;
#pragma omp simd
        for (int64_t i = 0; i < D; ++i) o[i] = from_f32<T>(buf[i]);
        if (stream) stream_copy(dst, o, D * sizeof(T));
      }
    }
    stream_fence();
  }
}

}  // namespace

void merge_compress(const MergeCompressArgs& a) {
  switch (a.m.dtype) {
    case DType::F32: return run<float>(a);
    case DType::F16: return run<half_t>(a);
    case DType::BF16: return run<bf16_t>(a);
  }
}

}  // namespace nvila::cpu
