// NVILA's temporal compression of video tokens: mean over non-overlapping groups
// of `group` consecutive frames along dim 0, accumulated in fp32.
//
// Input  x   : (T, N) viewed as T frames of N elements; frame stride sT, element stride 1.
// Output out : (T / group, N) contiguous.
#pragma once

#include <cstdint>

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

}  // namespace nvila
