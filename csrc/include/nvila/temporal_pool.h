// NVILA's temporal compression of video tokens: mean over non-overlapping groups
// of `group` consecutive frames along dim 0, accumulated in fp32.
//
// Input  x   : (T, N) viewed as T frames of N elements; frame stride sT, element stride 1.
// Output out : (T / group, N) contiguous.
#pragma once

#include "nvila/common.h"

namespace nvila {

struct TemporalPoolArgs {
  const void* x;
  void* out;
  int64_t T, N, group;
  int64_t sT;  // elements between consecutive frames of x
  DType dtype;

  NVILA_HD int64_t groups() const { return T / group; }
};

constexpr int kTemporalPoolThreads = 256;

// variant[0] = VEC, elements per thread and access: 16 bytes when sizes and pointers allow.
inline LaunchConfig temporal_pool_launch_config(const TemporalPoolArgs& a, const LaunchTarget&) {
  const int64_t v = 16 / dtype_size(a.dtype);
  LaunchConfig c{a.dtype};
  c.variant[0] = a.N % v == 0 && a.sT % v == 0 && aligned16(a.x) && aligned16(a.out) ? int32_t(v) : 1;
  const int64_t total = a.groups() * (a.N / c.variant[0]);
  if (total == 0) return c;
  c.block = kTemporalPoolThreads;
  c.grid_x = min64(ceil_div(total, kTemporalPoolThreads), 65536 * 8);
  return c;
}

}  // namespace nvila

#ifndef __CUDACC_RTC__
// The CPU kernel (csrc/cpu; raw pointers, OpenMP).
namespace nvila::cpu {
void temporal_pool(const TemporalPoolArgs& a);
}  // namespace nvila::cpu
#endif
