// Every inline-PTX instruction the CUDA kernels use, one wrapper each. Under the
// SIMT emulator (NVILA_EMU) each wrapper is a functional model of the instruction,
// so a kernel's arithmetic is tested on the CPU exactly as written.
#pragma once

#include <cstdint>
#include <cstring>

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

}  // namespace nvila::ptx
