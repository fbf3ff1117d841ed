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

int compute_capability() {
#ifdef NVILA_EMU
  return emu_rt::g_compute_capability.load();
#else
  constexpr int kMaxDevices = 64;
  static int cache[kMaxDevices] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev >= kMaxDevices) return 0;
  if (cache[dev] == 0) {
    int major = 0, minor = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    cache[dev] = 10 * major + minor;
  }
  return cache[dev];
#endif
}

#ifdef NVILA_EMU
int set_compute_capability(int cc) { return emu_rt::g_compute_capability.exchange(cc); }
int64_t wgmma_count() { return emu_rt::g_wgmma_count.load(); }
#endif

const char* error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace nvila::NVILA_CUDA_NS
