// Micro-kernels with known memory traffic, for the emulator's traffic counters
// (csrc/emu/traffic.cpp, tests/test_emu_traffic.py). Compiled only for the emulator
// (setup.py: build/emu/traffic_probe_emu.cpp); one block of one warp each.
#include <cstdlib>
#include <cstring>

#include "cuda/common.cuh"
#include "cuda/ptx.cuh"

namespace nvila::NVILA_CUDA_NS {

enum ProbeKind : int {
  kCoalesced = 0,        // out[lane] = in[lane]
  kStride2 = 1,          // out[lane] = in[2 * lane]
  kShared32Way = 2,      // shared word lane * 32: every lane in bank 0
  kSharedBroadcast = 3,  // lane 0 writes shared word 0, every lane reads it
  kVec16 = 4,            // 16-byte loads and stores through ptx.cuh (ld.global.nc / st.global.cs)
  kShared16 = 5,         // 16-byte shared accesses, lane l at byte 16 * l (dynamic shared memory)
  kShared16Stride2 = 6,  // 16-byte shared accesses, lane l at byte 32 * l
  kSharedPadded = 7,     // shared word lane * 33 (a padded tile's column)
  kCpAsync = 8,          // cp.async of 16 bytes per lane into dynamic shared memory, then read back
  kProbeCount = 9,
};

using Float4 = Vec<float, 4>;

template <int K>
__global__ void traffic_probe_kernel(const float* in, float* out) {
  const int lane = int(threadIdx.x);
  __shared__ float s[32 * 33];
  NVILA_DYNAMIC_SMEM(Float4, dyn);
  if constexpr (K == kCoalesced) {
    out[lane] = in[lane];
  } else if constexpr (K == kStride2) {
    out[lane] = in[2 * lane];
  } else if constexpr (K == kShared32Way) {
    s[lane * 32] = in[lane];
    __syncwarp();
    out[lane] = s[lane * 32];
  } else if constexpr (K == kSharedBroadcast) {
    // dynamic shared memory: g++ does not instrument accesses to a static at a constant address
    float* d = reinterpret_cast<float*>(dyn);
    if (lane == 0) d[0] = in[0];
    __syncwarp();
    out[lane] = d[0];
  } else if constexpr (K == kVec16) {
    Float4 v;
    ptx::ld_global_nc_na_v4(&v, in + 4 * lane);
    ptx::st_global_cs_v4(out + 4 * lane, &v);
  } else if constexpr (K == kShared16) {
    dyn[lane] = reinterpret_cast<const Float4*>(in)[lane];
    __syncwarp();
    reinterpret_cast<Float4*>(out)[lane] = dyn[lane];
  } else if constexpr (K == kShared16Stride2) {
    dyn[2 * lane] = reinterpret_cast<const Float4*>(in)[lane];
    __syncwarp();
    reinterpret_cast<Float4*>(out)[lane] = dyn[2 * lane];
  } else if constexpr (K == kSharedPadded) {
    s[lane * 33] = in[lane];
    __syncwarp();
    out[lane] = s[lane * 33];
  } else if constexpr (K == kCpAsync) {
    ptx::cp_async_16(dyn + lane, in + 4 * lane, 16);
    ptx::cp_async_commit();
    ptx::cp_async_wait<0>();
    __syncwarp();
    reinterpret_cast<Float4*>(out)[lane] = dyn[lane];
  }
}

template <int K>
int run_probe(const float* in, float* out) {
  static const char* const names[] = {"probe_coalesced",        "probe_stride2",       "probe_shared_32way",
                                      "probe_shared_broadcast", "probe_vec16",         "probe_shared16",
                                      "probe_shared16_stride2", "probe_shared_padded", "probe_cp_async"};
  emu_rt::t_kernel_name = names[K];
  NVILA_LAUNCH(traffic_probe_kernel<K>, dim3(1), dim3(32), 64 * sizeof(Float4), nullptr)(in, out);
  return int(cudaGetLastError());
}

int traffic_probe(int kind) {
  // 256-byte aligned buffers, so that sector counts are exact: in[i] = i, out zeroed
  constexpr size_t kBytes = 4096;
  auto* in = static_cast<float*>(std::aligned_alloc(256, kBytes));
  auto* out = static_cast<float*>(std::aligned_alloc(256, kBytes));
  for (size_t i = 0; i < kBytes / sizeof(float); ++i) in[i] = float(i);
  std::memset(out, 0, kBytes);
  int err = 0;
  switch (kind) {
    case kCoalesced: err = run_probe<kCoalesced>(in, out); break;
    case kStride2: err = run_probe<kStride2>(in, out); break;
    case kShared32Way: err = run_probe<kShared32Way>(in, out); break;
    case kSharedBroadcast: err = run_probe<kSharedBroadcast>(in, out); break;
    case kVec16: err = run_probe<kVec16>(in, out); break;
    case kShared16: err = run_probe<kShared16>(in, out); break;
    case kShared16Stride2: err = run_probe<kShared16Stride2>(in, out); break;
    case kSharedPadded: err = run_probe<kSharedPadded>(in, out); break;
    case kCpAsync: err = run_probe<kCpAsync>(in, out); break;
    default: err = -1;
  }
  // the kernel ran: each lane wrote what its pattern says
  for (int lane = 0; lane < 32 && err == 0; ++lane) {
    const bool vec = kind == kVec16 || kind == kShared16 || kind == kShared16Stride2 || kind == kCpAsync;
    const float want = kind == kStride2           ? float(2 * lane)
                       : kind == kSharedBroadcast ? 0.f
                                                  : float(vec ? 4 * lane : lane);
    if (out[vec ? 4 * lane : lane] != want) err = -2;
  }
  std::free(in);
  std::free(out);
  return err;
}

}  // namespace nvila::NVILA_CUDA_NS
