// Non-temporal (streaming) stores for CPU kernels whose outputs are too large to
// stay in cache: they skip the read-for-ownership of every destination line.
// SSE2 only (the x86-64 baseline), so the build stays portable.
#pragma once

#include <emmintrin.h>

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

// memcpy, or stream_copy when `stream`
inline void copy_out(void* dst, const void* src, size_t bytes, bool stream) {
  if (stream)
    stream_copy(dst, src, bytes);
  else
    std::memcpy(dst, src, bytes);
}

// No madvise(MADV_HUGEPAGE) on outputs: a fresh output's pages are the allocator's
// business, as for every torch op (torch asks for huge pages when THP_MEM_ALLOC_ENABLE=1).
// Asking for them here was tried and removed: with the kernel's THP defrag setting
// "madvise" the first touch of a fresh 170 MB output then waited on memory compaction,
// 0.2-2.7 s per process on the 2-core VM, against 0.11-0.15 s of plain 4 KiB faults.

}  // namespace nvila::cpu
