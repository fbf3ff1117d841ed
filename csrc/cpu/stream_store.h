// Non-temporal (streaming) stores for CPU kernels whose outputs are too large to
// stay in cache: they skip the read-for-ownership of every destination line.
// SSE2 only (the x86-64 baseline), so the build stays portable.
#pragma once

#include <emmintrin.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace nvila::cpu {

// Outputs at least this large are written with streaming stores.
constexpr int64_t kStreamBytes = int64_t(8) << 20;

// memcpy with non-temporal stores for the 16-byte-aligned middle of dst. Call
// stream_fence() once a thread is done streaming.
inline void stream_copy(void* dst, const void* src, size_t bytes) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  const size_t head = std::min(bytes, size_t((16 - reinterpret_cast<uintptr_t>(d) % 16) % 16));
  std::memcpy(d, s, head);
  size_t i = head;
  for (; i + 16 <= bytes; i += 16)
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
  std::memcpy(d + i, s + i, bytes - i);
}

inline void stream_fence() { _mm_sfence(); }

// For an output of `bytes` at p about to be written whole: when its first 2 MiB-aligned
// page is not yet mapped (a fresh allocation), asks for transparent huge pages on its
// 2 MiB-aligned interior, so that first touch faults once per 2 MiB instead of once
// per 4 KiB (on a VM the faults of a fresh 170 MB output cost more than the kernel).
// Memory already in use is left alone.
inline void advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  unsigned char resident = 1;
  if (hi <= lo || mincore(reinterpret_cast<void*>(lo), 4096, &resident) != 0 || (resident & 1)) return;
  madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
  (void)p, (void)bytes;
#endif
}

}  // namespace nvila::cpu
