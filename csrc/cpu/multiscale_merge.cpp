// CPU kernel of multiscale_merge. One job per (scale, output row): the row's source
// rows and every output column's source columns are precomputed per axis; each
// output pixel sums its window of C-channel feature rows (contiguous reads) into an
// fp32 row buffer (W x C), which is then written transposed to the channel-first
// output, contiguous along x for each channel.
#include "nvila/multiscale_merge.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "nvila/dtype.h"

namespace nvila::cpu {
namespace {

template <typename T>
void run(const MultiscaleMergeArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const int64_t S = a.S, C = a.C, h = a.h, w = a.w, H = a.H(), W = a.W();
  const int64_t hw = h * w;
  // per scale: the source column range of every output column
  std::vector<int64_t> xlo(S * W), xhi(S * W);
  for (int64_t s = 0; s < S; ++s) {
    const int64_t in_w = a.cols[s] * w;
    for (int64_t o = 0; o < W; ++o) {
      xlo[s * W + o] = MultiscaleMergeArgs::src_lo(o, in_w, W);
      xhi[s * W + o] = MultiscaleMergeArgs::src_hi(o, in_w, W);
    }
  }
#pragma omp parallel
  {
    std::vector<float> acc(W * C);
#pragma omp for schedule(static)
    for (int64_t job = 0; job < S * H; ++job) {
      const int64_t s = job / H, y = job % H;
      const int64_t in_h = a.rows[s] * h, cols = a.cols[s];
      const int64_t y0 = MultiscaleMergeArgs::src_lo(y, in_h, H), y1 = MultiscaleMergeArgs::src_hi(y, in_h, H);
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t ox = 0; ox < W; ++ox) {
        const int64_t x0 = xlo[s * W + ox], x1 = xhi[s * W + ox];
        float* dst = acc.data() + ox * C;
        for (int64_t py = y0; py < y1; ++py) {
          const int64_t ti = py / h, ty = py % h;
          for (int64_t px = x0; px < x1; ++px) {
            const int64_t tj = px / w, tx = px % w;
            const T* src = x + ((a.tile0[s] + ti * cols + tj) * hw + ty * w + tx) * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) dst[c] += load_f32(src + c);
          }
        }
        const float count = float((y1 - y0) * (x1 - x0));
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) dst[c] /= count;
      }
      for (int64_t c = 0; c < C; ++c) {
        T* o = out + ((s * C + c) * H + y) * W;
        for (int64_t ox = 0; ox < W; ++ox) o[ox] = from_f32<T>(acc[ox * C + c]);
      }
    }
  }
}

}  // namespace

void multiscale_merge(const MultiscaleMergeArgs& a) {
  return dispatch_dtype(a.dtype, [&](auto t) { return run<decltype(t)>(a); });
}

}  // namespace nvila::cpu
