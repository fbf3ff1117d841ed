// Every inline-PTX instruction the CUDA kernels use, one wrapper each. Under the
// SIMT emulator (NVILA_EMU) each wrapper is a functional model of the instruction,
// so a kernel's arithmetic and data layout are tested on the CPU exactly as written.
#pragma once

#ifdef NVILA_EMU
#include <atomic>
#include <cstring>
#endif

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

// st.global.cs.v2.b32: the same for 8 bytes.
__device__ __forceinline__ void st_global_cs_v2(void* p, const void* src8) {
#ifdef NVILA_EMU
  std::memcpy(p, src8, 8);
#else
  const uint32_t* s = static_cast<const uint32_t*>(src8);
  asm volatile("st.global.cs.v2.b32 [%0], {%1, %2};" ::"l"(p), "r"(s[0]), "r"(s[1]) : "memory");
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
  emu_rt::note_store(smem_dst, 16);  // what the traffic counters see: one 16-byte shared store
  if (src_bytes > 0) emu_rt::note_load(gmem_src, size_t(src_bytes));  // and the global read
  emu_rt::raw_zero(smem_dst, 16);
  if (src_bytes > 0) emu_rt::raw_copy(smem_dst, gmem_src, size_t(src_bytes));
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

// ---- Hopper warpgroup MMA (sm_90a) -------------------------------------------------
// A warpgroup is 4 consecutive warps (128 threads, the first warp index a multiple of
// 4). wgmma.mma_async reads its operands from shared memory through 64-bit matrix
// descriptors and accumulates into registers of the 128 threads; it is asynchronous:
// wgmma.fence before it, wgmma.commit_group / wgmma.wait_group to wait for it.
// NVILA_WGMMA is defined where these instructions exist: sm_90a device code (and the
// emulator, which models them). Elsewhere the wrappers are empty and must not be called.
#if defined(NVILA_EMU) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define NVILA_WGMMA 1
#endif

// The 32-bit shared-window address of a pointer into shared memory (in the emulator:
// the offset into the block's dynamic shared memory).
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

// Layout type of a matrix descriptor (bits 62-63): how 16-byte chunks are permuted.
enum class Swizzle : uint32_t { None = 0, B128 = 1, B64 = 2, B32 = 3 };

// Shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format"), for an operand
// stored K-major, i.e. rows of M (A) or N (B) with K contiguous:
//   bits  0-13  start address >> 4
//   bits 16-29  leading-dimension byte offset (LBO) >> 4
//   bits 32-45  stride-dimension byte offset (SBO) >> 4
//   bits 49-51  base offset (0: every swizzled tile starts on its pattern's boundary)
//   bits 62-63  layout type (Swizzle)
// The canonical K-major layouts for 8-bit types, row r and K byte k of the operand:
//   None:      start + (r / 8) * SBO + (r % 8) * 16 + (k / 16) * LBO + k % 16
//              (8 x 16-byte "core matrices", 128 contiguous bytes each)
//   Bw (w = 32, 64, 128 bytes): x = start + (r / 8) * SBO + (r % 8) * w + k, read at
//              x ^ (((x >> 7) & (w / 16 - 1)) << 4): the 16-byte chunk index XOR the
//              row-in-pattern bits of the address; LBO is unused (a k32 step of 8-bit
//              data never crosses a w-byte row).
__device__ __forceinline__ uint64_t wgmma_desc(uint32_t start, uint32_t lbo, uint32_t sbo, Swizzle sw) {
  return uint64_t((start >> 4) & 0x3fffu) | uint64_t((lbo >> 4) & 0x3fffu) << 16 |
         uint64_t((sbo >> 4) & 0x3fffu) << 32 | uint64_t(sw) << 62;
}

#ifdef NVILA_EMU
// The shared-window address of byte k of row r of a K-major operand, decoded from its
// descriptor as above. Fails the launch on fields this model does not cover.
inline uint32_t wgmma_operand_addr(uint64_t desc, int r, int k) {
  const uint32_t start = uint32_t(desc & 0x3fffu) << 4;
  const uint32_t lbo = uint32_t((desc >> 16) & 0x3fffu) << 4;
  const uint32_t sbo = uint32_t((desc >> 32) & 0x3fffu) << 4;
  constexpr uint64_t kUnmodeled = 0x3ull << 14 | 0x3ull << 30 | 0xffffull << 46;  // reserved bits, base offset
  if (desc & kUnmodeled) emu_rt::g_launch->fail("wgmma: descriptor with reserved bits or a base offset set");
  const auto sw = static_cast<Swizzle>(desc >> 62);
  if (sw == Swizzle::None)
    return start + uint32_t(r / 8) * sbo + uint32_t(r % 8) * 16 + uint32_t(k / 16) * lbo + k % 16;
  const uint32_t w = sw == Swizzle::B128 ? 128 : sw == Swizzle::B64 ? 64 : 32;
  const uint32_t x = start + uint32_t(r / 8) * sbo + uint32_t(r % 8) * w + uint32_t(k);
  return x ^ (((x >> 7) & (w / 16 - 1)) << 4);
}
#endif

// wgmma.fence.sync.aligned: orders this thread's register accesses (the accumulators)
// before the wgmma.mma_async that follow.
__device__ __forceinline__ void wgmma_fence() {
#if !defined(NVILA_EMU) && defined(NVILA_WGMMA)
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#endif
}

// wgmma.commit_group.sync.aligned: closes the group of wgmma.mma_async issued so far.
__device__ __forceinline__ void wgmma_commit() {
#if !defined(NVILA_EMU) && defined(NVILA_WGMMA)
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
#endif
}

// wgmma.wait_group.sync.aligned N: waits until at most N committed groups are pending.
// The accumulators of the completed groups may then be read, their shared operands
// overwritten. Model: each wgmma.mma_async completes when issued.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if !defined(NVILA_EMU) && defined(NVILA_WGMMA)
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
#endif
}

// fence.proxy.async.shared::cta: makes this thread's writes to shared memory (st.shared,
// cp.async) visible to the async proxy that wgmma.mma_async reads operands through.
__device__ __forceinline__ void fence_proxy_async_shared() {
#ifdef NVILA_EMU
  std::atomic_thread_fence(std::memory_order_seq_cst);
#elif defined(NVILA_WGMMA)
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

// wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3: D (64 x 128, fp32) =
// A (64 x 32, E4M3, descriptor a) * B (32 x 128, E4M3, descriptor b; stored as 128 rows
// of 32 K bytes) + (scale_d ? D : 0), for the 128 threads of a warpgroup. Accumulator
// fragment (PTX ISA, "Register Fragments" of wgmma .m64nNk32 with .f32 D), thread
// i = 32 * w + 4 * g + t of the warpgroup:
//   d[4 * j + e] = D[16 * w + g + 8 * (e >> 1)][8 * j + 2 * t + (e & 1)]   (j < 16, e < 4)
// Model: each thread computes its own 64 elements when it issues the instruction,
// reading A and B from the emulated shared memory through the decoded descriptors and
// summing exact fp8 products in fp32 (k ascending).
__device__ __forceinline__ void wgmma_m64n128k32_e4m3(float d[64], uint64_t desc_a, uint64_t desc_b, int scale_d) {
#ifdef NVILA_EMU
  const int i = int(threadIdx.x % 128), w = i / 32, g = (i % 32) / 4, t = i % 4;
  if (i == 0) emu_rt::g_wgmma_count.fetch_add(1);
  float a[2][32], b[32][32];  // this thread's two rows of A and 32 columns of B, decoded
  for (int k = 0; k < 32; ++k) {
    for (int h = 0; h < 2; ++h)
      a[h][k] = fp8_decode<Fp8Format::E4M3>(*emu_rt::shared_window(wgmma_operand_addr(desc_a, 16 * w + g + 8 * h, k)));
    for (int c = 0; c < 32; ++c)  // column 8 * (c / 2) + 2 * t + c % 2
      b[c][k] = fp8_decode<Fp8Format::E4M3>(
          *emu_rt::shared_window(wgmma_operand_addr(desc_b, 8 * (c / 2) + 2 * t + c % 2, k)));
  }
  for (int j = 0; j < 16; ++j)
    for (int e = 0; e < 4; ++e) {
      float acc = scale_d ? d[4 * j + e] : 0.f;
      for (int k = 0; k < 32; ++k) acc += a[e >> 1][k] * b[2 * j + (e & 1)][k];
      d[4 * j + e] = acc;
    }
#elif defined(NVILA_WGMMA)
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 "
      "{"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      " %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      " %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      " %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p, 1, 1;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),
        "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),
        "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
        "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
#endif
}

}  // namespace nvila::ptx
