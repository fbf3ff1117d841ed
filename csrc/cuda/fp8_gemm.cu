// CUDA FP8 GEMM: out = (a @ b^T) * (scale_a * scale_b) + bias, a (M, K) and
// b (N, K) E4M3 row-major, fp32 accumulation on tensor cores
// (mma.sync m16n8k32 e4m3, sm_89+), fused epilogue (scales, bias, cast).
//
// Tiling: a block of 4 warps computes a 64 x 64 tile of out; each warp a 32 x 32
// quarter = 2 x 4 mma tiles. K advances in 64-byte steps through a two-stage
// shared-memory ring filled by cp.async (the next tile loads while the current one
// is multiplied). Shared rows are padded to 80 bytes: the 32-bit fragment reads of
// a warp (8 rows x 4 words) then hit 32 distinct banks.
// Operands whose rows are not 16-byte aligned (K % 16 != 0) take the same kernel
// with byte-wise synchronous tile loads (ALIGNED = false).
#include "common.cuh"
#include "launchers.h"
#include "nvila/fp8_ops.h"
#include "ptx.cuh"

namespace nvila::NVILA_CUDA_NS {
namespace {

constexpr int BM = 64, BN = 64, BK = 64, PAD = 16, LDS = BK + PAD, kThreads = 128;

// Loads rows [row0, row0 + 64) x bytes [k0, k0 + 64) of a row-major (rows, K)
// matrix into tile[64][LDS]; rows >= rows and k >= K are zero.
template <bool ALIGNED>
__device__ __forceinline__ void load_tile(uint8_t (*tile)[LDS], const uint8_t* __restrict__ src, int64_t rows,
                                          int64_t K, int64_t row0, int64_t k0) {
  if constexpr (ALIGNED) {
    for (int c = threadIdx.x; c < 64 * (BK / 16); c += kThreads) {  // 16-byte chunks
      const int r = c / (BK / 16), kc = (c % (BK / 16)) * 16;
      const int64_t gr = row0 + r, gk = k0 + kc;
      const int64_t left = K - gk;
      const int bytes = gr < rows && left > 0 ? int(left < 16 ? left : 16) : 0;
      ptx::cp_async_16(&tile[r][kc], bytes > 0 ? src + gr * K + gk : src, bytes);
    }
  } else {
    for (int c = threadIdx.x; c < 64 * BK; c += kThreads) {
      const int r = c / BK, kc = c % BK;
      const int64_t gr = row0 + r, gk = k0 + kc;
      tile[r][kc] = gr < rows && gk < K ? src[gr * K + gk] : uint8_t(0);
    }
  }
}

__device__ __forceinline__ uint32_t lds32(const uint8_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

template <typename OutT, bool ALIGNED>
__global__ void __launch_bounds__(kThreads) fp8_gemm_kernel(Fp8GemmArgs p) {
  __shared__ __align__(16) uint8_t As[2][BM][LDS];
  __shared__ __align__(16) uint8_t Bs[2][BN][LDS];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int wm = warp / 2, wn = warp % 2;  // this warp's 32 x 32 quarter
  const int64_t m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;
  const int64_t ktiles = (p.K + BK - 1) / BK;

  float acc[2][4][4] = {};
  load_tile<ALIGNED>(As[0], p.a, p.M, p.K, m0, 0);
  load_tile<ALIGNED>(Bs[0], p.b, p.N, p.K, n0, 0);
  ptx::cp_async_commit();
  for (int64_t kt = 0; kt < ktiles; ++kt) {
    const int cur = int(kt & 1);
    if (kt + 1 < ktiles) {  // prefetch the next K tile into the other stage
      load_tile<ALIGNED>(As[cur ^ 1], p.a, p.M, p.K, m0, (kt + 1) * BK);
      load_tile<ALIGNED>(Bs[cur ^ 1], p.b, p.N, p.K, n0, (kt + 1) * BK);
    }
    ptx::cp_async_commit();
    ptx::cp_async_wait<1>();  // the current stage has landed
    __syncthreads();
#pragma unroll
    for (int ks = 0; ks < BK; ks += 32) {
      uint32_t af[2][4], bf[4][2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int r = wm * 32 + i * 16 + g;
        af[i][0] = lds32(&As[cur][r][ks + 4 * t]);
        af[i][1] = lds32(&As[cur][r + 8][ks + 4 * t]);
        af[i][2] = lds32(&As[cur][r][ks + 16 + 4 * t]);
        af[i][3] = lds32(&As[cur][r + 8][ks + 16 + 4 * t]);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int c = wn * 32 + j * 8 + g;
        bf[j][0] = lds32(&Bs[cur][c][ks + 4 * t]);
        bf[j][1] = lds32(&Bs[cur][c][ks + 16 + 4 * t]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) ptx::mma_m16n8k32_e4m3(acc[i][j], af[i], bf[j], acc[i][j]);
    }
    __syncthreads();  // everyone is done with `cur` before it is refilled
  }

  // epilogue: scale, bias, cast, store
  const float s = *p.scale_a * *p.scale_b;
  OutT* __restrict__ out = static_cast<OutT*>(p.out);
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t m = m0 + wm * 32 + i * 16 + g + 8 * (e >> 1);
        const int64_t n = n0 + wn * 32 + j * 8 + 2 * t + (e & 1);
        if (m < p.M && n < p.N) {
          float v = acc[i][j][e] * s;
          if (p.bias) v += p.bias[n];
          out[m * p.N + n] = from_f32<OutT>(v);
        }
      }
}

template <typename OutT>
int launch(const Fp8GemmArgs& p, void* stream) {
  if (p.M == 0 || p.N == 0) return 0;
  const int64_t gy = (p.M + BM - 1) / BM, gx = (p.N + BN - 1) / BN;
  if (gy > 65535 || gx > 0x7fffffff) return int(cudaErrorInvalidValue);
  const bool aligned =
      p.K % 16 == 0 && reinterpret_cast<uintptr_t>(p.a) % 16 == 0 && reinterpret_cast<uintptr_t>(p.b) % 16 == 0;
  void (*kernel)(Fp8GemmArgs) = aligned ? fp8_gemm_kernel<OutT, true> : fp8_gemm_kernel<OutT, false>;
  NVILA_LAUNCH(kernel, dim3(unsigned(gx), unsigned(gy)), dim3(kThreads), 0, stream)(p);
  return int(cudaGetLastError());
}

}  // namespace

int fp8_gemm(const Fp8GemmArgs& p, void* stream) {
  switch (p.out_dtype) {
    case DType::F32: return launch<float>(p, stream);
    case DType::F16: return launch<half_t>(p, stream);
    case DType::BF16: return launch<bf16_t>(p, stream);
  }
  return int(cudaErrorInvalidValue);
}

}  // namespace nvila::NVILA_CUDA_NS
