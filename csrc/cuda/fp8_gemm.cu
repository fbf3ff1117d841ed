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
//
// sm_90a (Hopper) runs mma.sync e4m3 without FP8 tensor cores (ptxas lowers it to
// fp16 HMMA); there the launcher takes fp8_gemm_wgmma_kernel instead: one warpgroup
// (4 warps) computes a 64 x 128 tile of out with wgmma.mma_async m64n128k32 e4m3,
// operands read by the tensor cores straight from shared memory in the 64-byte
// swizzled K-major layout their descriptors describe (see namespace wg).
#include "common.cuh"
#include "launchers.h"
#include "nvila/fp8_ops.h"
#include "ptx.cuh"

namespace nvila::NVILA_CUDA_NS {
namespace {

constexpr int BM = fp8_gemm_tiles::BM, BN = fp8_gemm_tiles::BN, BK = fp8_gemm_tiles::BK, PAD = 16, LDS = BK + PAD,
              kThreads = fp8_gemm_tiles::kThreads;

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

// Epilogue of two accumulators of one row m, columns n and n + 1 (n even): scale,
// bias, cast, store. With `pairs` (N even and out aligned to two elements) the two
// land in one 2-element store (bf16: 4 bytes a lane, half of each 32-byte sector a
// warp's store touches; single elements used a quarter).
template <typename OutT>
__device__ __forceinline__ void store_pair(const Fp8GemmArgs& p, OutT* __restrict__ out, int64_t m, int64_t n, float v0,
                                           float v1, float scale, bool pairs) {
  if (m >= p.M || n >= p.N) return;
  v0 *= scale, v1 *= scale;
  const bool second = n + 1 < p.N;
  if (p.bias) {
    v0 += p.bias[n];
    if (second) v1 += p.bias[n + 1];
  }
  if (pairs) {
    Vec<OutT, 2> o;
    o.v[0] = from_f32<OutT>(v0), o.v[1] = from_f32<OutT>(v1);
    *reinterpret_cast<Vec<OutT, 2>*>(out + m * p.N + n) = o;
  } else {
    out[m * p.N + n] = from_f32<OutT>(v0);
    if (second) out[m * p.N + n + 1] = from_f32<OutT>(v1);
  }
}

__device__ __forceinline__ bool pair_stores(const Fp8GemmArgs& p, int out_bytes) {
  return p.N % 2 == 0 && reinterpret_cast<unsigned long long>(p.out) % (2ull * out_bytes) == 0;
}

template <typename OutT, bool ALIGNED>
__global__ void __launch_bounds__(kThreads) fp8_gemm_kernel(Fp8GemmArgs p) {
  __shared__ __align__(16) uint8_t As[2][BM][LDS];
  __shared__ __align__(16) uint8_t Bs[2][BN][LDS];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int wm = warp / 2, wn = warp % 2;  // this warp's 32 x 32 quarter
  // 1-D grid, N tiles fastest (fp8_gemm_launch_config); 32-bit division (block ids < 2^31;
  // a 64-bit one is a call that makes the kernel spill)
  const uint32_t ntiles = uint32_t(ceil_div(p.N, BN));
  const int64_t m0 = int64_t(blockIdx.x / ntiles) * BM, n0 = int64_t(blockIdx.x % ntiles) * BN;
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
  const bool pairs = pair_stores(p, sizeof(OutT));
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; e += 2) {
        const int64_t m = m0 + wm * 32 + i * 16 + g + 8 * (e >> 1);
        const int64_t n = n0 + wn * 32 + j * 8 + 2 * t;
        store_pair(p, out, m, n, acc[i][j][e], acc[i][j][e + 1], s, pairs);
      }
}

// ---- sm_90a: warpgroup MMA ---------------------------------------------------------
namespace wg {

// A stage holds a 64 x 64-byte tile of a and a 128 x 64-byte tile of b; three stages
// (two K tiles in flight while one is multiplied) take 36 KiB of dynamic shared memory.
constexpr int BM = fp8_gemm_tiles::kWgBM, BN = fp8_gemm_tiles::kWgBN, BK = fp8_gemm_tiles::BK;
constexpr int kStages = fp8_gemm_tiles::kWgStages;
constexpr int kATile = BM * BK, kBTile = BN * BK, kStage = kATile + kBTile;
static_assert(fp8_gemm_tiles::kWgSmem == kStages * kStage + 1024);  // + slack to align the tiles to 1024 bytes

#ifdef NVILA_WGMMA
// Offset of byte k of row r in a tile: the canonical K-major layout with 64-byte swizzle
// (ptx::wgmma_desc): rows of 64 bytes one after another, the 16-byte chunk c of row r
// stored at chunk position c ^ ((r >> 1) & 3). The tiles start 1024-byte aligned, so
// (r >> 1) & 3 are the shared-address bits 7-8 from which the hardware takes the XOR.
// Eight rows (512 bytes) apart is the SBO of the descriptors; LBO is unused.
__device__ __forceinline__ int swizzled(int r, int k) { return r * BK + ((((k >> 4) ^ (r >> 1)) & 3) << 4) + (k & 15); }

// Loads rows [row0, row0 + ROWS) x bytes [k0, k0 + 64) of a row-major (rows, K) matrix
// into a swizzled tile; rows >= rows and k >= K are zero.
template <int ROWS, bool ALIGNED>
__device__ __forceinline__ void load_tile(uint8_t* tile, const uint8_t* __restrict__ src, int64_t rows, int64_t K,
                                          int64_t row0, int64_t k0) {
  if constexpr (ALIGNED) {
    for (int c = threadIdx.x; c < ROWS * (BK / 16); c += kThreads) {  // 16-byte chunks
      const int r = c / (BK / 16), kc = (c % (BK / 16)) * 16;
      const int64_t gr = row0 + r, gk = k0 + kc;
      const int64_t left = K - gk;
      const int bytes = gr < rows && left > 0 ? int(left < 16 ? left : 16) : 0;
      ptx::cp_async_16(tile + swizzled(r, kc), bytes > 0 ? src + gr * K + gk : src, bytes);
    }
  } else {
    for (int c = threadIdx.x; c < ROWS * BK; c += kThreads) {
      const int r = c / BK, k = c % BK;
      const int64_t gr = row0 + r, gk = k0 + k;
      tile[swizzled(r, k)] = gr < rows && gk < K ? src[gr * K + gk] : uint8_t(0);
    }
  }
}

// Descriptor of the k32 step `s` (0 or 1) of a swizzled tile at shared address `tile`:
// the step's 32 bytes of each row start 32 * s bytes into the (unswizzled) row.
__device__ __forceinline__ uint64_t desc(uint32_t tile, int s) {
  return ptx::wgmma_desc(tile + 32 * s, 16, 8 * BK, ptx::Swizzle::B64);
}

#endif
}  // namespace wg

// one 64 x 128 out tile per block (1-D grid, N tiles fastest); 128 threads = one warpgroup.
template <typename OutT, bool ALIGNED>
__global__ void __launch_bounds__(kThreads) fp8_gemm_wgmma_kernel(Fp8GemmArgs p) {
#ifdef NVILA_WGMMA
  constexpr int BM = wg::BM, BN = wg::BN, BK = wg::BK, kStages = wg::kStages, kStage = wg::kStage;
  NVILA_DYNAMIC_SMEM(uint8_t, raw);
  const uint32_t raw_addr = ptx::smem_addr(raw);
  uint8_t* smem = raw + (1024 - raw_addr % 1024) % 1024;
  const uint32_t smem_addr = raw_addr + uint32_t(smem - raw);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  // 1-D grid, N tiles fastest (fp8_gemm_launch_config); 32-bit division (block ids < 2^31;
  // a 64-bit one is a call that makes the kernel spill)
  const uint32_t ntiles = uint32_t(ceil_div(p.N, BN));
  const int64_t m0 = int64_t(blockIdx.x / ntiles) * BM, n0 = int64_t(blockIdx.x % ntiles) * BN;
  const int64_t ktiles = (p.K + BK - 1) / BK;
  auto load_stage = [&](int stage, int64_t kt) {
    wg::load_tile<BM, ALIGNED>(smem + stage * kStage, p.a, p.M, p.K, m0, kt * BK);
    wg::load_tile<BN, ALIGNED>(smem + stage * kStage + wg::kATile, p.b, p.N, p.K, n0, kt * BK);
  };

  float acc[BN / 2] = {};
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < ktiles) load_stage(s, s);
    ptx::cp_async_commit();
  }
  for (int64_t kt = 0; kt < ktiles; ++kt) {
    const int cur = int(kt % kStages);
    ptx::cp_async_wait<kStages - 2>();  // K tile kt has landed (one group per tile)
    ptx::fence_proxy_async_shared();    // ... and is visible to the tensor cores
    __syncthreads();                    // for every thread's part; and tile kt - 1 is consumed
    if (kt + kStages - 1 < ktiles) load_stage(int((kt + kStages - 1) % kStages), kt + kStages - 1);
    ptx::cp_async_commit();
    const uint32_t a = smem_addr + uint32_t(cur * kStage), b = a + wg::kATile;
    ptx::wgmma_fence();
#pragma unroll
    for (int s = 0; s < BK / 32; ++s) ptx::wgmma_m64n128k32_e4m3(acc, wg::desc(a, s), wg::desc(b, s), 1);
    ptx::wgmma_commit();
    ptx::wgmma_wait<0>();  // before the barrier above lets anyone refill this stage
  }

  // epilogue: scale, bias, cast, store
  const float scale = *p.scale_a * *p.scale_b;
  OutT* __restrict__ out = static_cast<OutT*>(p.out);
  const bool pairs = pair_stores(p, sizeof(OutT));
#pragma unroll
  for (int j = 0; j < BN / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; e += 2) {
      const int64_t m = m0 + 16 * warp + g + 8 * (e >> 1);
      const int64_t n = n0 + 8 * j + 2 * t;
      store_pair(p, out, m, n, acc[4 * j + e], acc[4 * j + e + 1], scale, pairs);
    }
#else
  __trap();  // never launched: the launcher takes this kernel only where it was built (sm_90a)
#endif
}

#ifndef __CUDACC_RTC__
// Every instance the planner may select, keyed by (dtype, variant): ALIGNED, wgmma.
const Kernel<Fp8GemmArgs> kKernels[] = {
    NVILA_KERNEL(F32, 0, 0, 0, fp8_gemm_kernel<float, false>),
    NVILA_KERNEL(F32, 1, 0, 0, fp8_gemm_kernel<float, true>),
    NVILA_KERNEL(F32, 0, 1, 0, fp8_gemm_wgmma_kernel<float, false>),
    NVILA_KERNEL(F32, 1, 1, 0, fp8_gemm_wgmma_kernel<float, true>),
    NVILA_KERNEL(F16, 0, 0, 0, fp8_gemm_kernel<nvila::half_t, false>),
    NVILA_KERNEL(F16, 1, 0, 0, fp8_gemm_kernel<nvila::half_t, true>),
    NVILA_KERNEL(F16, 0, 1, 0, fp8_gemm_wgmma_kernel<nvila::half_t, false>),
    NVILA_KERNEL(F16, 1, 1, 0, fp8_gemm_wgmma_kernel<nvila::half_t, true>),
    NVILA_KERNEL(BF16, 0, 0, 0, fp8_gemm_kernel<nvila::bf16_t, false>),
    NVILA_KERNEL(BF16, 1, 0, 0, fp8_gemm_kernel<nvila::bf16_t, true>),
    NVILA_KERNEL(BF16, 0, 1, 0, fp8_gemm_wgmma_kernel<nvila::bf16_t, false>),
    NVILA_KERNEL(BF16, 1, 1, 0, fp8_gemm_wgmma_kernel<nvila::bf16_t, true>),
};

NVILA_REGISTER_OP(fp8_gemm, Fp8GemmArgs, kKernels);
#endif
}  // namespace

}  // namespace nvila::NVILA_CUDA_NS
