// SIMT emulation of the CUDA execution model, so that the kernels in csrc/cuda
// run unchanged on the CPU (compiled by g++) inside the tests.
//
// Model: the blocks of a grid run one after another; the threads of a block are
// real OS threads. __syncthreads is a barrier over the block's running threads,
// warp-synchronous intrinsics (shuffles, votes, __syncwarp) are barriers over
// the 32 lanes of a warp followed by an exchange through a slot array.
// `__shared__` variables are function-local statics: with one block alive at a
// time that is exactly one copy per block. Dynamic shared memory is a buffer
// filled with 0xFF bytes (NaN for floats) before each block, so a kernel that
// reads shared memory it did not write sees garbage, as on a GPU. It is also the
// shared window: __cvta_generic_to_shared gives offsets into it, which is where the
// models of instructions taking shared addresses (wgmma descriptors) read.
// Only converged warps are modeled: a warp intrinsic whose mask does not name
// every live lane of the warp aborts the launch with an error.
// Launches are serialized by a global mutex (the shared statics are global).
// Memory-traffic counters (off by default; csrc/emu/traffic.cpp): setup.py compiles the
// emulator translation units with -fsanitize=kernel-address, which makes g++ call
// __asan_{load,store}*_noabort before every memory access; traffic.cpp defines those
// callbacks, which return at once unless counting is on (nvila::emu::set_traffic).
//
// Usage: a translation unit that includes this header and then the .cu file (setup.py
// generates one per csrc/cuda/*.cu, build/emu/<name>_emu.cpp); the launchers in the .cu
// file land in namespace nvila::emu instead of nvila::cuda.
#pragma once

#define NVILA_EMU 1
#define NVILA_CUDA_NS emu

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
#define __launch_bounds__(...)

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;
using cudaError_t = int;
using cudaStream_t = void*;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
inline const char* cudaGetErrorString(cudaError_t e) { return e == 0 ? "no error" : "invalid value (emulator)"; }

namespace nvila::emu_rt {

struct Abort {};  // unwinds every thread of a launch after a failure

// Reusable barrier whose party count can shrink while a phase is open (a thread
// that leaves the kernel early no longer takes part in __syncthreads). Lock-free:
// one 64-bit word holds (parties << 32 | arrived), so the thread that completes a
// phase, by arriving or by leaving, is decided by a single atomic operation;
// waiters sleep on the phase counter (futex via std::atomic::wait).
class Barrier {
 public:
  void reset(int parties) { word_.store(uint64_t(uint32_t(parties)) << 32); }
  void arrive_and_wait(const std::atomic<bool>& aborted) {
    const uint32_t phase = phase_.load(std::memory_order_acquire);
    const uint64_t w = word_.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (arrived(w) >= parties(w)) return complete(w);
    for (;;) {
      phase_.wait(phase, std::memory_order_acquire);
      if (aborted.load()) throw Abort{};
      if (phase_.load(std::memory_order_acquire) != phase) return;
    }
  }
  void drop() {
    const uint64_t w = word_.fetch_sub(uint64_t(1) << 32, std::memory_order_acq_rel) - (uint64_t(1) << 32);
    if (arrived(w) > 0 && arrived(w) >= parties(w)) complete(w);
  }
  void wake_all() {  // after an abort: waiters wake, see the flag and unwind
    phase_.fetch_add(1, std::memory_order_acq_rel);
    phase_.notify_all();
  }

 private:
  static uint32_t arrived(uint64_t w) { return uint32_t(w); }
  static uint32_t parties(uint64_t w) { return uint32_t(w >> 32); }
  void complete(uint64_t w) {
    word_.fetch_sub(arrived(w), std::memory_order_acq_rel);  // everyone else is asleep in this phase
    phase_.fetch_add(1, std::memory_order_acq_rel);
    phase_.notify_all();
  }
  std::atomic<uint64_t> word_{0};
  std::atomic<uint32_t> phase_{0};
};

struct Warp {
  Barrier bar;
  int lanes = 32;     // lanes that exist in this warp (last warp may be partial)
  unsigned live = 0;  // bit mask of lanes still inside the kernel
  uint64_t slots[32] = {};
  std::mutex m;
};

struct Launch {
  dim3 grid, block;
  void* traffic = nullptr;  // the traffic counters of this launch (traffic.cpp), if counting
  Barrier block_bar;
  std::vector<Warp> warps;
  std::vector<unsigned char> dyn_smem;
  std::atomic<bool> aborted{false};
  std::mutex err_m;
  std::string error;

  void fail(const std::string& msg) {
    {
      std::lock_guard<std::mutex> lk(err_m);
      if (error.empty()) error = msg;
    }
    aborted = true;
    block_bar.wake_all();
    for (auto& w : warps) w.bar.wake_all();
    throw Abort{};
  }
};

inline Launch* g_launch = nullptr;  // the launch in progress (one at a time)
inline std::mutex g_launch_mutex;
inline std::mutex g_atomic_mutex;
inline thread_local dim3 t_threadIdx, t_blockIdx;
inline thread_local unsigned t_linear = 0;
inline thread_local cudaError_t t_last_error = cudaSuccess;  // of the calling (host) thread

// ---- memory-traffic counters (defined in csrc/emu/traffic.cpp, not instrumented) ----
inline thread_local const char* t_kernel_name = nullptr;                     // set by record_launch for the next launch
void* traffic_begin(Launch* launch, unsigned nthreads, const char* kernel);  // nullptr when counting is off
void traffic_thread_begin(void* traffic, unsigned linear);                   // on each emulated thread
void traffic_thread_end();
void traffic_block_end(void* traffic);  // every thread of the block parked: group the lanes' accesses
void traffic_end(void* traffic);        // adds the launch to the totals, frees `traffic`

inline Warp& my_warp() { return g_launch->warps[t_linear / 32]; }
inline int lane_id() { return int(t_linear % 32); }

inline void check_mask(unsigned mask, const char* what) {
  Warp& w = my_warp();
  unsigned live;
  {
    std::lock_guard<std::mutex> lk(w.m);
    live = w.live;
  }
  if ((mask & live) != live)
    g_launch->fail(std::string(what) + ": mask does not cover every live lane (divergent warps are not emulated)");
}

// All live lanes publish `v`, then each reads the slot `src(lane)`.
template <typename T, typename F>
T exchange(unsigned mask, T v, F src, const char* what) {
  static_assert(sizeof(T) <= 8, "warp exchange of values wider than 8 bytes");
  check_mask(mask, what);
  Warp& w = my_warp();
  const int lane = lane_id();
  std::memcpy(&w.slots[lane], &v, sizeof(T));
  w.bar.arrive_and_wait(g_launch->aborted);
  int s = src(lane);
  if (s < 0 || s >= w.lanes || !((w.live >> s) & 1u)) s = lane;
  T r;
  std::memcpy(&r, &w.slots[s], sizeof(T));
  w.bar.arrive_and_wait(g_launch->aborted);
  return r;
}

// An access the compiler does not instrument (a memset, a memcpy of variable size) as the
// traffic counters see it: one request of `bytes` from this lane at this call site.
extern "C" void __asan_loadN_noabort(uintptr_t addr, uintptr_t size);
extern "C" void __asan_storeN_noabort(uintptr_t addr, uintptr_t size);
// memcpy / memset that the traffic counters do not see (defined in traffic.cpp, not instrumented):
// for models of instructions that announce their accesses with note_load / note_store.
void raw_copy(void* dst, const void* src, size_t bytes);
void raw_zero(void* dst, size_t bytes);
__attribute__((always_inline)) inline void note_load(const void* p, size_t bytes) {
  __asan_loadN_noabort(reinterpret_cast<uintptr_t>(p), bytes);
}
__attribute__((always_inline)) inline void note_store(const void* p, size_t bytes) {
  __asan_storeN_noabort(reinterpret_cast<uintptr_t>(p), bytes);
}

inline unsigned* dyn_smem_ptr() { return reinterpret_cast<unsigned*>(g_launch->dyn_smem.data()); }

// The shared window is the block's dynamic shared memory: a shared address is an
// offset into it (instructions that take shared addresses, like wgmma descriptors,
// need their operands there, not in `__shared__` statics).
inline const unsigned char* shared_window(uint32_t addr) {
  if (addr >= g_launch->dyn_smem.size()) g_launch->fail("shared address out of the dynamic shared memory");
  return g_launch->dyn_smem.data() + addr;
}

// What the emulated device reports to the launchers, as major * 10 + minor (kernels
// chosen by architecture follow it; tests change it), and a count of the warpgroup
// MMAs executed (ptx::wgmma_*), so that tests can tell which kernel ran.
inline std::atomic<int> g_compute_capability{89};
inline std::atomic<int64_t> g_wgmma_count{0};

}  // namespace nvila::emu_rt

#define threadIdx (::nvila::emu_rt::t_threadIdx)
#define blockIdx (::nvila::emu_rt::t_blockIdx)
#define blockDim (::nvila::emu_rt::g_launch->block)
#define gridDim (::nvila::emu_rt::g_launch->grid)
constexpr int warpSize = 32;

// Dynamic shared memory: `NVILA_DYNAMIC_SMEM(float, buf);` declares `float* buf`.
#define NVILA_DYNAMIC_SMEM(T, name) T* name = reinterpret_cast<T*>(::nvila::emu_rt::dyn_smem_ptr())

inline void __syncthreads() { nvila::emu_rt::g_launch->block_bar.arrive_and_wait(nvila::emu_rt::g_launch->aborted); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  nvila::emu_rt::check_mask(mask, "__syncwarp");
  nvila::emu_rt::my_warp().bar.arrive_and_wait(nvila::emu_rt::g_launch->aborted);
}
inline size_t __cvta_generic_to_shared(const void* p) {
  const auto& smem = nvila::emu_rt::g_launch->dyn_smem;
  const auto* c = static_cast<const unsigned char*>(p);
  if (c < smem.data() || c >= smem.data() + smem.size())
    nvila::emu_rt::g_launch->fail("__cvta_generic_to_shared: not a pointer into dynamic shared memory");
  return size_t(c - smem.data());
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return nvila::emu_rt::exchange(
      mask, v, [&](int lane) { return (lane / width) * width + (src_lane % width); }, "__shfl_sync");
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return nvila::emu_rt::exchange(
      mask, v,
      [&](int lane) {
        const int s = lane ^ lane_mask;
        return (s / width == lane / width) ? s : lane;
      },
      "__shfl_xor_sync");
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return nvila::emu_rt::exchange(
      mask, v,
      [&](int lane) {
        const int s = lane + int(delta);
        return (s / width == lane / width) ? s : lane;
      },
      "__shfl_down_sync");
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return nvila::emu_rt::exchange(
      mask, v,
      [&](int lane) {
        const int s = lane - int(delta);
        return (s >= 0 && s / width == lane / width) ? s : lane;
      },
      "__shfl_up_sync");
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  using namespace nvila::emu_rt;
  check_mask(mask, "__ballot_sync");
  Warp& w = my_warp();
  w.slots[lane_id()] = pred != 0;
  w.bar.arrive_and_wait(g_launch->aborted);
  unsigned bits = 0;
  for (int l = 0; l < w.lanes; ++l)
    if (((w.live >> l) & 1u) && w.slots[l]) bits |= 1u << l;
  w.bar.arrive_and_wait(g_launch->aborted);
  return bits & mask;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) {
  return __ballot_sync(mask, pred) == (mask & nvila::emu_rt::my_warp().live);
}

// ---- atomics (one global lock: correctness, not speed) ----------------------
template <typename T>
T atomicAdd(T* p, T v) {
  std::lock_guard<std::mutex> lk(nvila::emu_rt::g_atomic_mutex);
  const T old = *p;
  *p = old + v;
  return old;
}
template <typename T>
T atomicMax(T* p, T v) {
  std::lock_guard<std::mutex> lk(nvila::emu_rt::g_atomic_mutex);
  const T old = *p;
  *p = old < v ? v : old;
  return old;
}
template <typename T>
T atomicMin(T* p, T v) {
  std::lock_guard<std::mutex> lk(nvila::emu_rt::g_atomic_mutex);
  const T old = *p;
  *p = v < old ? v : old;
  return old;
}
template <typename T>
T atomicExch(T* p, T v) {
  std::lock_guard<std::mutex> lk(nvila::emu_rt::g_atomic_mutex);
  const T old = *p;
  *p = v;
  return old;
}
template <typename T>
T atomicCAS(T* p, T compare, T v) {
  std::lock_guard<std::mutex> lk(nvila::emu_rt::g_atomic_mutex);
  const T old = *p;
  if (old == compare) *p = v;
  return old;
}

// ---- device math and bit intrinsics -----------------------------------------
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return std::exp(x); }
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
template <typename T>
T __ldg(const T* p) {
  return *p;
}

// ---- runtime API used by launchers ------------------------------------------
namespace nvila::emu_rt {

// Per-device limits the launchers query; the emulator reports a small shared
// memory budget so that the tests reach the launchers' large-row code paths.
constexpr int kMaxDynamicSmem = 48 * 1024;

template <typename... KArgs, typename... Args>
cudaError_t launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, Args... args) {
  const unsigned nthreads = block.x * block.y * block.z;
  const uint64_t nblocks = uint64_t(grid.x) * grid.y * grid.z;
  if (nthreads == 0 || nthreads > 1024 || smem > size_t(kMaxDynamicSmem)) return t_last_error = cudaErrorInvalidValue;
  if (nblocks == 0) return cudaSuccess;
  std::lock_guard<std::mutex> guard(g_launch_mutex);
  Launch L;
  L.grid = grid;
  L.block = block;
  L.dyn_smem.assign(smem + 16, 0xff);
  const unsigned nwarps = (nthreads + 31) / 32;
  L.warps = std::vector<Warp>(nwarps);
  Barrier end_bar;
  L.traffic = traffic_begin(&L, nthreads, std::exchange(t_kernel_name, nullptr));
  auto start_block = [&] {  // runs with every thread parked at end_bar
    if (L.traffic) traffic_block_end(L.traffic);
    L.block_bar.reset(int(nthreads));
    for (unsigned w = 0; w < nwarps; ++w) {
      Warp& warp = L.warps[w];
      warp.lanes = int(std::min(32u, nthreads - 32 * w));
      warp.live = warp.lanes == 32 ? 0xffffffffu : ((1u << warp.lanes) - 1u);
      warp.bar.reset(warp.lanes);
    }
    std::memset(L.dyn_smem.data(), 0xff, L.dyn_smem.size());
  };
  start_block();
  end_bar.reset(int(nthreads));
  g_launch = &L;

  auto worker = [&](unsigned linear) {
    if (L.traffic) traffic_thread_begin(L.traffic, linear);
    t_linear = linear;
    t_threadIdx = dim3(linear % block.x, (linear / block.x) % block.y, linear / (block.x * block.y));
    for (uint64_t b = 0; b < nblocks && !L.aborted; ++b) {
      t_blockIdx =
          dim3(unsigned(b % grid.x), unsigned((b / grid.x) % grid.y), unsigned(b / (uint64_t(grid.x) * grid.y)));
      try {
        kernel(args...);
      } catch (Abort&) {
        return;
      } catch (std::exception& e) {
        try {
          L.fail(std::string("exception in emulated kernel: ") + e.what());
        } catch (Abort&) {
        }
        return;
      }
      // leave this block: no longer part of its barriers
      L.block_bar.drop();
      Warp& w = L.warps[linear / 32];
      {
        std::lock_guard<std::mutex> lk(w.m);
        w.live &= ~(1u << (linear % 32));
      }
      w.bar.drop();
      // wait for the whole block, then the last thread to arrive re-arms it
      try {
        end_bar.arrive_and_wait(L.aborted);
      } catch (Abort&) {
        return;
      }
      if (linear == 0) start_block();
      try {
        end_bar.arrive_and_wait(L.aborted);
      } catch (Abort&) {
        return;
      }
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(nthreads);
  for (unsigned i = 0; i < nthreads; ++i)
    threads.emplace_back([w = &worker, i] {  // worker's captures stay on this stack (the counters ignore it)
      (*w)(i);
      traffic_thread_end();
    });
  for (auto& t : threads) t.join();
  g_launch = nullptr;
  if (L.traffic) traffic_end(std::exchange(L.traffic, nullptr));
  if (!L.error.empty()) throw std::runtime_error("CUDA emulator: " + L.error);
  return cudaSuccess;
}

}  // namespace nvila::emu_rt

// Launch syntax shared with real CUDA: NVILA_LAUNCH(kernel, grid, block, smem, stream)(args...)
#define NVILA_LAUNCH(kernel, grid, block, smem, stream) \
  [&](auto... launch_args) { return ::nvila::emu_rt::launch(kernel, grid, block, smem, launch_args...); }

inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t = nullptr) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = nvila::emu_rt::t_last_error;
  nvila::emu_rt::t_last_error = cudaSuccess;
  return e;
}
