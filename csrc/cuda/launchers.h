// Host-side entry points of the CUDA kernels. The same .cu sources are built
// twice: by nvcc into nvila::cuda (real GPU launches) and by g++ with
// csrc/emu/emu.h into nvila::emu (SIMT emulation on the CPU, for the tests).
// `stream` is a cudaStream_t (ignored by the emulator). Each returns 0 or a CUDA
// error code that error_string() describes. No CUDA or torch headers needed.
#pragma once

#include "nvila/fp8_ops.h"
#include "nvila/merge_compress.h"
#include "nvila/multiscale_merge.h"
#include "nvila/multiscale_tile.h"
#include "nvila/spatial_compress.h"
#include "nvila/temporal_pool.h"

#define NVILA_DECLARE_LAUNCHERS(NS)                                 \
  namespace nvila::NS {                                             \
  int spatial_compress(const SpatialCompressArgs& a, void* stream); \
  int temporal_pool(const TemporalPoolArgs& a, void* stream);       \
  int multiscale_merge(const MultiscaleMergeArgs& a, void* stream); \
  int merge_compress(const MergeCompressArgs& a, void* stream);     \
  int multiscale_tile(const MultiscaleTileArgs& a, void* stream);   \
  int fp8_quantize(const Fp8QuantizeArgs& a, void* stream);         \
  int fp8_gemm(const Fp8GemmArgs& a, void* stream);                 \
  const char* error_string(int code);                               \
  }

NVILA_DECLARE_LAUNCHERS(cuda)
NVILA_DECLARE_LAUNCHERS(emu)

// Test hooks of the emulator: the compute capability the emulated device reports
// (major * 10 + minor, default 89; launchers that choose kernels by architecture
// follow it), returning the previous one; and the number of warpgroup MMAs
// (wgmma.mma_async) executed so far.
namespace nvila::emu {
int set_compute_capability(int cc);
int64_t wgmma_count();
}  // namespace nvila::emu
