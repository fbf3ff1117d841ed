// Device queries and error strings shared by the launchers.
#include "common.cuh"
#include "launchers.h"

namespace nvila::NVILA_CUDA_NS {

int max_dynamic_smem() {
#ifdef NVILA_EMU
  return emu_rt::kMaxDynamicSmem;
#else
  constexpr int kMaxDevices = 64;
  static int cache[kMaxDevices] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev >= kMaxDevices) return 48 * 1024;
  if (cache[dev] == 0) {
    int v = 48 * 1024;
    cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    cache[dev] = v;
  }
  return cache[dev];
#endif
}

const char* error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace nvila::NVILA_CUDA_NS
