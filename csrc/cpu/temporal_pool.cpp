// CPU kernel of temporal_pool: out[g, n] = mean_t x[g*group + t, n], fp32 sums
// (0 + x[0] + x[1] + ... in frame order, then / group: every path rounds the same).
//
// The output, flattened to G*N values, is split into one contiguous range per thread,
// so each thread reads `group` long sequential streams (one per frame) that the
// hardware prefetcher can follow; a block of output values is summed in registers
// over the frames and written once, with streaming stores when the output is large.
#include "nvila/temporal_pool.h"

#include <omp.h>

#include <algorithm>

#include "avx2.h"
#include "nvila/dtype.h"
#include "stream_store.h"

namespace nvila::cpu {
namespace {

// out[i] for i in [n0, n1) of one group g: frame t of g starts at x + t*sT
template <typename T>
void pool_scalar(const T* x, int64_t sT, int64_t group, T* out, int64_t n0, int64_t n1) {
  const float count = float(group);
  for (int64_t i = n0; i < n1; ++i) {
    float acc = 0.f;
    for (int64_t t = 0; t < group; ++t) acc += load_f32(x + t * sT + i);
    out[i] = from_f32<T>(acc / count);
  }
}

// The portable path: blocks of kBlock values summed in a local buffer the compiler vectorizes.
template <typename T>
void pool_portable(const T* x, int64_t sT, int64_t group, T* out, int64_t n0, int64_t n1) {
  constexpr int64_t kBlock = 64;
  const float count = float(group);
  int64_t i = n0;
  for (; i + kBlock <= n1; i += kBlock) {
    float acc[kBlock] = {};
    for (int64_t t = 0; t < group; ++t) {
      const T* src = x + t * sT + i;
#pragma omp simd
      for (int64_t j = 0; j < kBlock; ++j) acc[j] += load_f32(src + j);
    }
#pragma omp simd
    for (int64_t j = 0; j < kBlock; ++j) out[i + j] = from_f32<T>(acc[j] / count);
  }
  pool_scalar(x, sT, group, out, i, n1);
}

#if NVILA_HAVE_AVX2_PATH
// 32 values a step (4 vectors in registers, 2 or 1 cache lines a frame); with `stream`
// the head up to a 32-byte-aligned destination is done by pool_scalar.
template <typename T>
NVILA_AVX2 void pool_avx2(const T* x, int64_t sT, int64_t group, T* out, int64_t n0, int64_t n1, bool stream) {
  int64_t i = n0;
  if (stream) {
    while (i < n1 && reinterpret_cast<uintptr_t>(out + i) % 32 != 0) ++i;
    pool_scalar(x, sT, group, out, n0, i);
  }
  const __m256 count = _mm256_set1_ps(float(group));
  for (; i + 32 <= n1; i += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const T* src = x + i;
    for (int64_t t = 0; t < group; ++t, src += sT) {
      a0 = _mm256_add_ps(a0, load8(src));
      a1 = _mm256_add_ps(a1, load8(src + 8));
      a2 = _mm256_add_ps(a2, load8(src + 16));
      a3 = _mm256_add_ps(a3, load8(src + 24));
    }
    store16(out + i, _mm256_div_ps(a0, count), _mm256_div_ps(a1, count), stream);
    store16(out + i + 16, _mm256_div_ps(a2, count), _mm256_div_ps(a3, count), stream);
  }
  pool_scalar(x, sT, group, out, i, n1);
}
#endif

template <typename T>
void run(const TemporalPoolArgs& a) {
  const T* x = static_cast<const T*>(a.x);
  T* out = static_cast<T*>(a.out);
  const int64_t G = a.groups(), N = a.N, group = a.group, total = G * N;
  const bool stream = total * int64_t(sizeof(T)) >= kStreamBytes, avx2 = use_avx2();
  // ranges of at least 4096 values, so a tiny input runs on one thread
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), ceil_div(total, 4096)));
#pragma omp parallel num_threads(threads)
  {
    const int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
    const int64_t begin = total * tid / nth, end = total * (tid + 1) / nth;
    // this thread's output range [begin, end), in pieces that lie in one group each
    for (int64_t pos = begin; pos < end;) {
      const int64_t g = pos / N, n0 = pos % N, n1 = std::min(N, n0 + (end - pos));
      const T* xg = x + g * group * a.sT;
      T* og = out + g * N;
#if NVILA_HAVE_AVX2_PATH
      if (avx2)
        pool_avx2(xg, a.sT, group, og, n0, n1, stream);
      else
#endif
        pool_portable(xg, a.sT, group, og, n0, n1);
      pos += n1 - n0;
    }
    if (stream) stream_fence();
  }
}

}  // namespace

void temporal_pool(const TemporalPoolArgs& a) {
  return dispatch_dtype(a.dtype, [&](auto t) { return run<decltype(t)>(a); });
}

}  // namespace nvila::cpu
