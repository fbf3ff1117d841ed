// CPU kernel of temporal_pool: out[g, n] = mean_t x[g*group + t, n], fp32 sums.
// Work is split over (group, chunk of N) so both long videos and few frames with
// many tokens keep every core busy; each chunk accumulates in a small fp32 buffer.
#include "nvila/temporal_pool.h"

#include <omp.h>

#include <algorithm>

#include "nvila/dtype.h"

namespace nvila::cpu {
namespace {

constexpr int64_t kChunk = 2048;

template <typename T>
void run(const TemporalPoolArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const int64_t G = a.groups(), N = a.N, group = a.group;
  const int64_t chunks = ceil_div(N, kChunk);
  const float count = float(group);
#pragma omp parallel for schedule(static)
  for (int64_t job = 0; job < G * chunks; ++job) {
    const int64_t g = job / chunks;
    const int64_t n0 = (job % chunks) * kChunk;
    const int64_t n = std::min(kChunk, N - n0);
    float acc[kChunk];
    for (int64_t i = 0; i < n; ++i) acc[i] = 0.f;
    for (int64_t t = 0; t < group; ++t) {
      const T* src = x + (g * group + t) * a.sT + n0;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) acc[i] += load_f32(src + i);
    }
    T* dst = out + g * N + n0;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dst[i] = from_f32<T>(acc[i] / count);
  }
}

}  // namespace

void temporal_pool(const TemporalPoolArgs& a) {
  return dispatch_dtype(a.dtype, [&](auto t) { return run<decltype(t)>(a); });
}

}  // namespace nvila::cpu
