// Torch-free definitions shared by the CPU kernels, the CUDA kernels and the
// SIMT emulator. Nothing here may include a torch header.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(NVILA_EMU)
#define NVILA_HD __host__ __device__ __forceinline__
#define NVILA_DEVICE __device__ __forceinline__
#else
#define NVILA_HD inline
#define NVILA_DEVICE inline
#endif

namespace nvila {

// Element types the kernels read and write. Tensors of other dtypes never reach
// a kernel: nvila_kernels.functional rejects them with a clear error first.
enum class DType : int32_t { F32 = 0, F16 = 1, BF16 = 2 };

NVILA_HD int dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }

NVILA_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace nvila
