// CUDA kernel of merge_compress (multiscale_merge + per-block space-to-depth +
// LayerNorm in one pass). One block per output token (grid-stride over tokens).
//
// Per token, the first k*k*S threads fill a shared table with where each
// (slot, scale) piece comes from: the source tokens of its area window (up to 2x2,
// which covers every upsampling), the window itself for larger windows, or padding.
// Then the block walks the row's VEC-wide pieces (16-byte loads where aligned),
// averaging the window in fp32 and rounding to the feature dtype as the merged map
// would be. LayerNorm as in spatial_compress.cu: the row staged in shared memory
// as fp32 (CACHED; layernorm_row.cuh) so the features are read once and the output
// written once; the
// uncached variant (rows too large for shared memory) recomputes the pieces for
// the second and third pass (L2 hits).
#include "common.cuh"
#include "launchers.h"
#include "layernorm_row.cuh"
#include "nvila/layernorm.h"
#include "nvila/merge_compress.h"
#include "vec_io.cuh"

namespace nvila::NVILA_CUDA_NS {
namespace {

// 256 threads, at least 3 resident blocks per SM: a register cap of 85, which the
// 64-bit index math of the pieces needs to run without spills (at 64 it spilled).
constexpr int kMaxThreads = kMergeCompressMaxThreads;
constexpr int kMinBlocks = 3;

using PieceSrc = MergePieceSrc;

__device__ __forceinline__ PieceSrc piece_src(const MergeCompressArgs& a, int64_t t, int64_t slot, int64_t s) {
  PieceSrc p{};
  p.scale = int32_t(s);
  int64_t Y = 0, X = 0;
  if (!merge_compress_pixel(a, t, slot, Y, X)) return p;  // 0 x 0: padding
  const MultiscaleMergeArgs::Window w = a.m.window(s, Y, X);
  p.win[0] = int32_t(w.y0), p.win[1] = int32_t(w.y1), p.win[2] = int32_t(w.x0), p.win[3] = int32_t(w.x1);
  p.ny = int32_t(w.y1 - w.y0), p.nx = int32_t(w.x1 - w.x0);
  if (p.ny > 2 || p.nx > 2) {
    p.ny = -1;
    return p;
  }
#pragma unroll
  for (int dy = 0; dy < 2; ++dy)
#pragma unroll
    for (int dx = 0; dx < 2; ++dx)
      if (dy < p.ny && dx < p.nx) p.tok[dy * 2 + dx] = int32_t(a.m.src_token(s, w.y0 + dy, w.x0 + dx));
  return p;
}

// The merged values of channels c..c+VEC of piece p, in fp32 (rounded to T).
template <typename T, int VEC>
__device__ __forceinline__ void piece_values(const MergeCompressArgs& a, const T* __restrict__ x, const PieceSrc& p,
                                             int64_t c, float (&f)[VEC]) {
#pragma unroll
  for (int j = 0; j < VEC; ++j) f[j] = 0.f;
  if (p.ny == 0) return;
  const int64_t C = a.m.C;
  auto add = [&](int64_t tok) {
    const Vec<T, VEC> v = load_vec<T, VEC>(x + tok * C + c);
#pragma unroll
    for (int j = 0; j < VEC; ++j) f[j] += load_f32(&v.v[j]);
  };
  if (p.ny > 0) {
    for (int dy = 0; dy < p.ny; ++dy)
      for (int dx = 0; dx < p.nx; ++dx) add(p.tok[dy * 2 + dx]);
  } else {
    for (int64_t py = p.win[0]; py < p.win[1]; ++py)
      for (int64_t px = p.win[2]; px < p.win[3]; ++px) add(a.m.src_token(p.scale, py, px));
  }
  const int32_t count = (p.win[1] - p.win[0]) * (p.win[3] - p.win[2]);
  if (count > 1) {
#pragma unroll
    for (int j = 0; j < VEC; ++j) f[j] = round_to<T>(f[j] / float(count));
  }
}

template <typename T, int VEC, bool LN, bool CACHED>
__global__ void __launch_bounds__(kMaxThreads, kMinBlocks) merge_compress_kernel(MergeCompressArgs a) {
  // dynamic shared memory: the piece table (k*k*S entries), then the fp32 row (CACHED)
  NVILA_DYNAMIC_SMEM(PieceSrc, table);
  __shared__ float red[32];
  const T* __restrict__ x = static_cast<const T*>(a.m.x);
  T* __restrict__ out = static_cast<T*>(a.out);
  const uint32_t S = uint32_t(a.m.S), kk = uint32_t(a.k * a.k), npieces = kk * S;
  float* row_buf =
      reinterpret_cast<float*>(reinterpret_cast<unsigned char*>(table) + merge_compress_table_bytes(npieces));
  const uint32_t cvecs = uint32_t(a.m.C / VEC);
  const uint32_t nvec = npieces * cvecs;
  const int64_t D = a.D(), tokens = a.tokens();

  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    for (uint32_t i = threadIdx.x; i < npieces; i += blockDim.x) table[i] = piece_src(a, t, i / S, i % S);
    __syncthreads();
    T* dst = out + t * D;
    // VEC-wide piece i of the row: table entry i / cvecs (= slot*S + scale), channel offset
    auto src_of = [&](uint32_t i, uint32_t& e, int64_t& c) {
      e = i / cvecs;
      c = int64_t(i - e * cvecs) * VEC;
    };
    if constexpr (!LN) {
      for (uint32_t i = threadIdx.x; i < nvec; i += blockDim.x) {
        uint32_t e;
        int64_t c;
        src_of(i, e, c);
        float f[VEC];
        piece_values<T, VEC>(a, x, table[e], c, f);
        Vec<T, VEC> o;
#pragma unroll
        for (int j = 0; j < VEC; ++j) o.v[j] = from_f32<T>(f[j]);
        store_vec<T, VEC>(dst + int64_t(i) * VEC, o);
      }
    } else {
      // pass 1: gather (and stage) the row, sum for the mean; statistics of (x - shift),
      // shift = the row's first value (slot 0, scale 0, channel 0: never padding)
      float shift;
      {
        float f[1];
        piece_values<T, 1>(a, x, table[0], 0, f);
        shift = f[0];
      }
      float sum = 0.f;
      for (uint32_t i = threadIdx.x; i < nvec; i += blockDim.x) {
        uint32_t e;
        int64_t c;
        src_of(i, e, c);
        float f[VEC];
        piece_values<T, VEC>(a, x, table[e], c, f);
#pragma unroll
        for (int j = 0; j < VEC; ++j) sum += f[j] - shift;
        if constexpr (CACHED) stage_row<VEC>(row_buf + i * VEC, f);
      }
      // (block_sum's barrier also makes the staged row visible to every thread)
      const float mean = block_sum(sum, red) / float(D);
      if constexpr (CACHED) {
        layernorm_staged_row<T, VEC>(row_buf, D, shift, mean, a.eps, a.ln_weight, a.ln_bias, dst, red);
      } else {
        // uncached: the row's values of piece i (pass 2 and 3), recomputed from x
        auto values = [&](uint32_t i, float (&f)[VEC]) {
          uint32_t e;
          int64_t c;
          src_of(i, e, c);
          piece_values<T, VEC>(a, x, table[e], c, f);
        };

        // pass 2: sum of squared deviations
        float ssd = 0.f;
        for (uint32_t i = threadIdx.x; i < nvec; i += blockDim.x) {
          float f[VEC];
          values(i, f);
#pragma unroll
          for (int j = 0; j < VEC; ++j) {
            const float d = (f[j] - shift) - mean;
            ssd += d * d;
          }
        }
        const RowStats st{shift, mean, layernorm_rstd(block_sum(ssd, red), D, a.eps)};

        // pass 3: normalize, scale, shift, store
        for (uint32_t i = threadIdx.x; i < nvec; i += blockDim.x) {
          float f[VEC];
          values(i, f);
          Vec<T, VEC> o;
#pragma unroll
          for (int j = 0; j < VEC; ++j)
            o.v[j] = from_f32<T>(layernorm_apply(f[j], st, a.ln_weight, a.ln_bias, int64_t(i) * VEC + j));
          store_vec<T, VEC>(dst + int64_t(i) * VEC, o);
        }
      }
    }
    // the table (and row_buf) are rewritten by the next token only after every thread is done
    __syncthreads();
  }
}

#ifndef __CUDACC_RTC__
// Every instance the planner may select, keyed by (dtype, variant): VEC, LayerNormVariant.
const Kernel<MergeCompressArgs> kKernels[] = {
    NVILA_KERNEL(F32, 1, kLayerNormNone, 0, merge_compress_kernel<float, 1, false, false>),
    NVILA_KERNEL(F32, 1, kLayerNormCached, 0, merge_compress_kernel<float, 1, true, true>),
    NVILA_KERNEL(F32, 1, kLayerNormUncached, 0, merge_compress_kernel<float, 1, true, false>),
    NVILA_KERNEL(F32, 4, kLayerNormNone, 0, merge_compress_kernel<float, 4, false, false>),
    NVILA_KERNEL(F32, 4, kLayerNormCached, 0, merge_compress_kernel<float, 4, true, true>),
    NVILA_KERNEL(F32, 4, kLayerNormUncached, 0, merge_compress_kernel<float, 4, true, false>),
    NVILA_KERNEL(F16, 1, kLayerNormNone, 0, merge_compress_kernel<nvila::half_t, 1, false, false>),
    NVILA_KERNEL(F16, 1, kLayerNormCached, 0, merge_compress_kernel<nvila::half_t, 1, true, true>),
    NVILA_KERNEL(F16, 1, kLayerNormUncached, 0, merge_compress_kernel<nvila::half_t, 1, true, false>),
    NVILA_KERNEL(F16, 8, kLayerNormNone, 0, merge_compress_kernel<nvila::half_t, 8, false, false>),
    NVILA_KERNEL(F16, 8, kLayerNormCached, 0, merge_compress_kernel<nvila::half_t, 8, true, true>),
    NVILA_KERNEL(F16, 8, kLayerNormUncached, 0, merge_compress_kernel<nvila::half_t, 8, true, false>),
    NVILA_KERNEL(BF16, 1, kLayerNormNone, 0, merge_compress_kernel<nvila::bf16_t, 1, false, false>),
    NVILA_KERNEL(BF16, 1, kLayerNormCached, 0, merge_compress_kernel<nvila::bf16_t, 1, true, true>),
    NVILA_KERNEL(BF16, 1, kLayerNormUncached, 0, merge_compress_kernel<nvila::bf16_t, 1, true, false>),
    NVILA_KERNEL(BF16, 8, kLayerNormNone, 0, merge_compress_kernel<nvila::bf16_t, 8, false, false>),
    NVILA_KERNEL(BF16, 8, kLayerNormCached, 0, merge_compress_kernel<nvila::bf16_t, 8, true, true>),
    NVILA_KERNEL(BF16, 8, kLayerNormUncached, 0, merge_compress_kernel<nvila::bf16_t, 8, true, false>),
};

NVILA_REGISTER_OP(merge_compress, MergeCompressArgs, kKernels);
#endif
}  // namespace

}  // namespace nvila::NVILA_CUDA_NS
