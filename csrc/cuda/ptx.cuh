// Every inline-PTX instruction the CUDA kernels use, one wrapper each. Under the
// SIMT emulator (NVILA_EMU) each wrapper is a functional model of the instruction,
// so a kernel's arithmetic and data layout are tested on the CPU exactly as written.
#pragma once

#include <cstdint>
#include <cstring>

#include "nvila/fp8.h"

namespace nvila::ptx {

// st.global.cs.v4.b32: 16-byte store with the streaming ("evict first") cache
// hint, for outputs the kernel never reads back.
__device__ __forceinline__ void st_global_cs_v4(void* p, const void* src16) {
#ifdef NVILA_EMU
  std::memcpy(p, src16, 16);
#else
  const uint32_t* s = static_cast<const uint32_t*>(src16);
  asm volatile("st.global.cs.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(s[0]), "r"(s[1]), "r"(s[2]), "r"(s[3])
               : "memory");
#endif
}

// ld.global.nc.L1::no_allocate.v4.b32: 16-byte read-only load that does not
// allocate in L1, for inputs each block reads exactly once.
__device__ __forceinline__ void ld_global_nc_na_v4(void* dst16, const void* p) {
#ifdef NVILA_EMU
  std::memcpy(dst16, p, 16);
#else
  uint32_t* d = static_cast<uint32_t*>(dst16);
  asm volatile("ld.global.nc.L1::no_allocate.v4.b32 {%0, %1, %2, %3}, [%4];"
               : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
               : "l"(p));
#endif
}

// cp.async.cg.shared.global [dst], [src], 16, src_bytes: asynchronous 16-byte
// global -> shared copy (bypassing L1); bytes past src_bytes (0..16) are zero-filled.
// Model: the copy happens at once (a legal schedule of an asynchronous copy).
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src, int src_bytes) {
#ifdef NVILA_EMU
  std::memset(smem_dst, 0, 16);
  if (src_bytes > 0) std::memcpy(smem_dst, gmem_src, size_t(src_bytes));
#else
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(gmem_src), "r"(src_bytes) : "memory");
#endif
}

// cp.async.commit_group: close the group of cp.async issued so far.
__device__ __forceinline__ void cp_async_commit() {
#ifndef NVILA_EMU
  asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}

// cp.async.wait_group N: wait until at most N committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifndef NVILA_EMU
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#endif
}

// mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32: D = A (16x32) * B (32x8) + C
// on FP8 E4M3 operands, fp32 accumulation, one warp. Fragments (PTX ISA, "Matrix
// Fragments for mma.m16n8k32"), g = lane / 4, t = lane % 4:
//   a[r] byte j: A[g + 8*(r & 1)][16*(r >> 1) + 4*t + j]          (r = 0..3)
//   b[r] byte j: B[16*r + 4*t + j][g]                               (r = 0..1)
//   c[i], d[i]:  C[g + 8*(i >> 1)][2*t + (i & 1)]                   (i = 0..3)
// Native on sm_89 and newer. On older GPUs (no FP8 tensor cores) and under the
// emulator, the same instruction is computed by the warp with shuffles: each lane
// gathers its two output rows of A and two columns of B and sums exact fp8 products
// in fp32 (k ascending). The emulator thereby checks the kernel's fragment layout.
__device__ __forceinline__ void mma_m16n8k32_e4m3(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                  const float c[4]) {
#if !defined(NVILA_EMU) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
  const int lane = int(threadIdx.x % 32), g = lane / 4, t = lane % 4;
  float acc[4] = {c[0], c[1], c[2], c[3]};
  for (int half = 0; half < 2; ++half) {  // k in [0, 16), then [16, 32)
    for (int q = 0; q < 4; ++q) {         // the four lanes of a group hold 4 bytes each
      // A rows g and g+8, k = 16*half + 4*q + j, held by lane 4*g + q
      const uint32_t a_lo = __shfl_sync(0xffffffffu, a[2 * half], 4 * g + q);
      const uint32_t a_hi = __shfl_sync(0xffffffffu, a[2 * half + 1], 4 * g + q);
      // B columns 2t and 2t+1, same k, held by lanes 4*(2t) + q and 4*(2t+1) + q
      const uint32_t b0 = __shfl_sync(0xffffffffu, b[half], 4 * (2 * t) + q);
      const uint32_t b1 = __shfl_sync(0xffffffffu, b[half], 4 * (2 * t + 1) + q);
      for (int j = 0; j < 4; ++j) {
        const float x_lo = fp8_decode<Fp8Format::E4M3>(uint8_t(a_lo >> (8 * j)));
        const float x_hi = fp8_decode<Fp8Format::E4M3>(uint8_t(a_hi >> (8 * j)));
        const float y0 = fp8_decode<Fp8Format::E4M3>(uint8_t(b0 >> (8 * j)));
        const float y1 = fp8_decode<Fp8Format::E4M3>(uint8_t(b1 >> (8 * j)));
        acc[0] += x_lo * y0;
        acc[1] += x_lo * y1;
        acc[2] += x_hi * y0;
        acc[3] += x_hi * y1;
      }
    }
  }
  for (int i = 0; i < 4; ++i) d[i] = acc[i];
#endif
}

}  // namespace nvila::ptx
