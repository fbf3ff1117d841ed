// Device queries and error strings shared by the launchers.
#include <cstring>
#include <mutex>
#include <utility>

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

// Whether this build has sm_90a code (fp8_gemm_wgmma_kernel): setup.py passes the arch
// list (e.g. "8.0;8.6;8.9;9.0a"); the emulator always has it.
#if defined(NVILA_EMU)
constexpr bool kHasSm90a = true;
#elif defined(NVILA_CUDA_ARCHS)
constexpr bool contains(const char* s, const char* word) {
  for (; *s; ++s) {
    int i = 0;
    while (word[i] && s[i] == word[i]) ++i;
    if (!word[i]) return true;
  }
  return false;
}
constexpr bool kHasSm90a = contains(NVILA_CUDA_ARCHS, "9.0a");
#else
constexpr bool kHasSm90a = false;
#endif

LaunchTarget launch_target() { return {compute_capability(), max_dynamic_smem(), kHasSm90a ? 1 : 0}; }

#ifdef NVILA_EMU
int set_compute_capability(int cc) { return emu_rt::g_compute_capability.exchange(cc); }
int64_t wgmma_count() { return emu_rt::g_wgmma_count.load(); }

namespace {
std::mutex g_records_mutex;
std::vector<LaunchRecord> g_records;
}  // namespace

void record_launch(const char* kernel, const LaunchConfig& c, const void* args, size_t size) {
  emu_rt::t_kernel_name = kernel;  // names the launch in the traffic counters
  const std::lock_guard<std::mutex> lock(g_records_mutex);
  if (g_records.size() < 1024) g_records.push_back({kernel, c, std::string(static_cast<const char*>(args), size)});
}

std::vector<LaunchRecord> take_launches() {
  const std::lock_guard<std::mutex> lock(g_records_mutex);
  return std::exchange(g_records, {});
}
#endif

std::vector<OpLaunchers>& registry() {
  static std::vector<OpLaunchers> ops;  // filled by the .cu files' static NVILA_REGISTER_OP objects
  return ops;
}

const OpLaunchers* find_op(const char* op, size_t args_size) {
  for (const OpLaunchers& o : registry())
    if (std::strcmp(o.op, op) == 0 && o.args_size == args_size) return &o;
  return nullptr;
}

const char* error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace nvila::NVILA_CUDA_NS
