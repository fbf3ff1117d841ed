// Memory-traffic counters of the SIMT emulator (csrc/emu/emu.h). Not instrumented itself.
//
// setup.py compiles the emulator translation units (build/emu/*_emu.cpp) with
// -fsanitize=kernel-address and an instrumentation-with-call threshold of 0: g++ then calls
// __asan_{load,store}{1,2,4,8,16,N}_noabort(addr[, size]) before every memory access it
// emits, and no ASan runtime is linked: the callbacks are the ones below. With counting off
// (the default) they return after one load of a global. With counting on, each emulated
// thread records (call site, address, size) of its accesses to global and shared memory:
//   shared: the launch's dynamic shared memory, or the module's writable data (where the
//           `__shared__` statics live) minus the emulator's own globals;
//   ignored: the thread's own stack (locals), its thread-local variables, the launching
//           thread's stack (the Launch, the kernel arguments), the warps' exchange slots,
//           the module's read-only segments (constants);
//   global: everything else (tensor memory).
// When a block ends, the accesses of each warp are grouped into warp-level requests: the
// n-th access of lane A from a call site and the n-th of lane B from the same call site are
// one request (the lanes of a converged warp run the same instruction stream). A global
// request costs the distinct 32-byte sectors its lanes touch; a shared request costs, per
// phase (32 lanes for accesses up to 4 bytes, 16 for 8 bytes, 8 for 16 bytes), the largest
// number of distinct 4-byte words that fall in one of the 32 banks (lanes reading the same
// word are a broadcast).
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <unordered_map>

#include "cuda/launchers.h"
#include "emu/emu.h"

namespace nvila::emu_rt {
namespace {

struct Range {
  uintptr_t lo = 0, hi = 0;
  bool has(uintptr_t a) const { return a >= lo && a < hi; }
};

struct Rec {
  uintptr_t ip, addr;
  uint32_t size;
  bool shared, store;
};

struct Lane {
  std::vector<Rec> recs;
  Range stack, tls;
};

struct TrafficLaunch {
  std::string kernel;
  std::vector<Lane> lanes;
  Range smem, warps, host_stack;
  nvila::emu::TrafficTotals tot;
};

struct Module {  // this shared object's loaded segments
  std::vector<Range> ro, rw;
  std::vector<Range> emu_globals;  // the emulator's globals in rw (not shared memory)
};

std::atomic<bool> g_on{false};
std::atomic<int> g_active{0};  // launches being counted now
thread_local Lane* t_lane = nullptr;
thread_local TrafficLaunch* t_launch = nullptr;
std::mutex g_totals_mutex;
std::map<std::string, nvila::emu::TrafficTotals> g_totals;

template <typename T>
Range range_of(const T& v) {
  const auto a = reinterpret_cast<uintptr_t>(&v);
  return {a, a + sizeof(T)};
}

Range stack_of_this_thread() {
  pthread_attr_t attr;
  Range r;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* addr = nullptr;
    size_t size = 0;
    if (pthread_attr_getstack(&attr, &addr, &size) == 0) r = {uintptr_t(addr), uintptr_t(addr) + size};
    pthread_attr_destroy(&attr);
  }
  return r;
}

int collect_segments(dl_phdr_info* info, size_t, void* data) {
  auto* m = static_cast<Module*>(data);
  const auto self = reinterpret_cast<uintptr_t>(&collect_segments);
  std::vector<Range> ro, rw;
  bool mine = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr) & ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    const Range r{info->dlpi_addr + ph.p_vaddr, info->dlpi_addr + ph.p_vaddr + ph.p_memsz};
    (ph.p_flags & PF_W ? rw : ro).push_back(r);
    mine = mine || r.has(self);
  }
  if (!mine) return 0;
  m->ro = ro;
  m->rw = rw;
  return 1;
}

const Module& module() {
  static const Module m = [] {
    Module m;
    dl_iterate_phdr(collect_segments, &m);
    m.emu_globals = {range_of(g_launch), range_of(g_launch_mutex), range_of(g_atomic_mutex),
                     range_of(g_compute_capability), range_of(g_wgmma_count)};
#if defined(__GLIBCXX__) && defined(__cpp_lib_atomic_wait)
    // the waiter pool of std::atomic::wait/notify (the Barriers): 16 entries in libstdc++
    const auto pool = reinterpret_cast<uintptr_t>(&std::__detail::__waiter_pool_base::_S_for(nullptr));
    m.emu_globals.push_back({pool, pool + 16 * sizeof(std::__detail::__waiter_pool_base)});
#endif
    return m;
  }();
  return m;
}

bool in_any(const std::vector<Range>& rs, uintptr_t a) {
  for (const Range& r : rs)
    if (r.has(a)) return true;
  return false;
}

inline void on_access(uintptr_t ip, uintptr_t a, uintptr_t size, bool store) {
  if (g_active.load(std::memory_order_relaxed) == 0) return;
  Lane* lane = t_lane;
  if (!lane || size == 0) return;
  if (lane->stack.has(a) || lane->tls.has(a)) return;
  const TrafficLaunch* T = t_launch;
  bool shared = false;
  if (T->smem.has(a)) {
    shared = true;
  } else if (T->host_stack.has(a) || T->warps.has(a)) {
    return;
  } else {
    const Module& m = module();
    if (in_any(m.rw, a)) {
      if (in_any(m.emu_globals, a)) return;
      shared = true;
    } else if (in_any(m.ro, a)) {
      return;
    }
  }
  lane->recs.push_back({ip, a, uint32_t(size), shared, store});
}

struct Access {
  unsigned lane;
  uintptr_t addr;
  uint32_t size;
};

struct Request {
  bool shared, store;
  std::vector<Access> acc;
};

void account_global(nvila::emu::TrafficTotals& t, const Request& r) {
  std::vector<uintptr_t> sectors;
  std::vector<std::pair<uintptr_t, uintptr_t>> spans;
  for (const Access& a : r.acc) {
    for (uintptr_t s = a.addr >> 5; s <= (a.addr + a.size - 1) >> 5; ++s) sectors.push_back(s);
    spans.push_back({a.addr, a.addr + a.size});
  }
  std::sort(sectors.begin(), sectors.end());
  const int64_t nsectors = std::unique(sectors.begin(), sectors.end()) - sectors.begin();
  std::sort(spans.begin(), spans.end());
  int64_t used = 0;
  uintptr_t end = 0;
  for (const auto& [lo, hi] : spans) {  // distinct bytes: the union of the lanes' byte ranges
    const uintptr_t from = std::max(lo, end);
    if (hi > from) used += int64_t(hi - from);
    end = std::max(end, hi);
  }
  if (r.store) {
    ++t.store_requests;
    t.store_sectors += nsectors;
    t.store_bytes_used += used;
  } else {
    ++t.load_requests;
    t.load_sectors += nsectors;
    t.load_bytes_used += used;
  }
}

void account_shared(nvila::emu::TrafficTotals& t, const Request& r) {
  uint32_t size = 1;
  for (const Access& a : r.acc) size = std::max(size, a.size);
  const unsigned lanes_per_phase = size <= 4 ? 32u : std::max(1u, 128u / size);
  std::map<unsigned, std::vector<std::vector<uintptr_t>>> phases;  // phase -> bank -> words
  for (const Access& a : r.acc) {
    auto& banks = phases[a.lane / lanes_per_phase];
    if (banks.empty()) banks.resize(32);
    for (uintptr_t w = a.addr >> 2; w <= (a.addr + a.size - 1) >> 2; ++w) banks[w % 32].push_back(w);
  }
  ++t.shared_requests;
  for (auto& [phase, banks] : phases) {
    size_t ways = 1;
    for (auto& words : banks) {
      std::sort(words.begin(), words.end());
      ways = std::max(ways, size_t(std::unique(words.begin(), words.end()) - words.begin()));
    }
    t.wavefronts += int64_t(ways);
    ++t.ideal_wavefronts;
  }
}

struct KeyHash {
  size_t operator()(const std::pair<uintptr_t, uint64_t>& k) const {
    return std::hash<uintptr_t>()(k.first) ^ (std::hash<uint64_t>()(k.second) * 0x9e3779b97f4a7c15ull);
  }
};

}  // namespace

void* traffic_begin(Launch* launch, unsigned nthreads, const char* kernel) {
  if (!g_on.load()) return nullptr;
  module();  // resolved once, before any emulated thread needs it
  auto* T = new TrafficLaunch;
  T->kernel = kernel ? kernel : "(unnamed kernel)";
  T->lanes.resize(nthreads);
  const auto smem = reinterpret_cast<uintptr_t>(launch->dyn_smem.data());
  T->smem = {smem, smem + launch->dyn_smem.size()};
  const auto warps = reinterpret_cast<uintptr_t>(launch->warps.data());
  T->warps = {warps, warps + launch->warps.size() * sizeof(Warp)};
  T->host_stack = stack_of_this_thread();
  g_active.fetch_add(1);
  return T;
}

void traffic_thread_begin(void* traffic, unsigned linear) {
  auto* T = static_cast<TrafficLaunch*>(traffic);
  Lane& lane = T->lanes[linear];
  lane.stack = stack_of_this_thread();
  // the emulator's thread-locals (threadIdx, blockIdx, ...): one block of this module's TLS
  const Range tls[] = {range_of(t_threadIdx), range_of(t_blockIdx), range_of(t_linear), range_of(t_last_error),
                       range_of(t_kernel_name)};
  lane.tls = tls[0];
  for (const Range& r : tls) lane.tls = {std::min(lane.tls.lo, r.lo), std::max(lane.tls.hi, r.hi)};
  t_launch = T;
  t_lane = &lane;
}

void raw_copy(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void raw_zero(void* dst, size_t bytes) { std::memset(dst, 0, bytes); }

void traffic_thread_end() {
  t_lane = nullptr;
  t_launch = nullptr;
}

void traffic_block_end(void* traffic) {
  auto* T = static_cast<TrafficLaunch*>(traffic);
  const unsigned n = unsigned(T->lanes.size());
  for (unsigned w0 = 0; w0 < n; w0 += 32) {
    std::unordered_map<std::pair<uintptr_t, uint64_t>, size_t, KeyHash> index;  // (call site, occurrence)
    std::vector<Request> reqs;
    for (unsigned l = w0; l < std::min(n, w0 + 32); ++l) {
      std::unordered_map<uintptr_t, uint64_t> occurrence;
      for (const Rec& r : T->lanes[l].recs) {
        const uint64_t occ = occurrence[r.ip]++;
        // the space is part of the key: a generic access may go to shared memory in some lanes
        const auto key = std::make_pair(r.ip, occ * 2 + (r.shared ? 1 : 0));
        auto [it, fresh] = index.try_emplace(key, reqs.size());
        if (fresh) reqs.push_back({r.shared, r.store, {}});
        reqs[it->second].acc.push_back({l - w0, r.addr, r.size});
      }
      T->lanes[l].recs.clear();
    }
    static const bool debug = std::getenv("NVILA_EMU_TRAFFIC_DEBUG") != nullptr;
    if (debug) {
      Dl_info info{};
      for (size_t i = 0; i < reqs.size(); ++i) {
        const Rec* first = nullptr;
        for (const auto& [key, at] : index)
          if (at == i) first = &T->lanes[0].recs.emplace_back(Rec{key.first, reqs[i].acc[0].addr, 0, false, false});
        if (first && dladdr(reinterpret_cast<void*>(first->ip), &info))
          std::fprintf(stderr, "traffic: %s %s ip+%#lx addr %#lx size %u lanes %zu\n",
                       reqs[i].shared ? "shared" : "global", reqs[i].store ? "st" : "ld",
                       (unsigned long)(first->ip - uintptr_t(info.dli_fbase)), (unsigned long)reqs[i].acc[0].addr,
                       reqs[i].acc[0].size, reqs[i].acc.size());
        T->lanes[0].recs.clear();
      }
    }
    for (const Request& r : reqs) (r.shared ? account_shared : account_global)(T->tot, r);
  }
}

void traffic_end(void* traffic) {
  auto* T = static_cast<TrafficLaunch*>(traffic);
  traffic_block_end(T);  // an aborted launch may leave records
  g_active.fetch_sub(1);
  {
    const std::lock_guard<std::mutex> lock(g_totals_mutex);
    nvila::emu::TrafficTotals& t = g_totals[T->kernel];
    const nvila::emu::TrafficTotals& d = T->tot;
    t.kernel = T->kernel;
    t.launches += 1;
    t.load_requests += d.load_requests;
    t.store_requests += d.store_requests;
    t.load_sectors += d.load_sectors;
    t.store_sectors += d.store_sectors;
    t.load_bytes_used += d.load_bytes_used;
    t.store_bytes_used += d.store_bytes_used;
    t.shared_requests += d.shared_requests;
    t.wavefronts += d.wavefronts;
    t.ideal_wavefronts += d.ideal_wavefronts;
  }
  delete T;
}

}  // namespace nvila::emu_rt

namespace nvila::emu {

bool set_traffic(bool on) { return emu_rt::g_on.exchange(on); }

std::vector<TrafficTotals> take_traffic() {
  const std::lock_guard<std::mutex> lock(emu_rt::g_totals_mutex);
  std::vector<TrafficTotals> out;
  for (auto& [name, t] : emu_rt::g_totals) out.push_back(t);
  emu_rt::g_totals.clear();
  return out;
}

}  // namespace nvila::emu

// The callbacks g++ emits under -fsanitize=kernel-address (call threshold 0). Every access
// of the instrumented code comes here: the caller's return address names the instruction.
#define NVILA_TRAFFIC_CALLBACK(kind, bytes, is_store)                                                          \
  extern "C" void __asan_##kind##bytes##_noabort(uintptr_t addr) {                                             \
    nvila::emu_rt::on_access(reinterpret_cast<uintptr_t>(__builtin_return_address(0)), addr, bytes, is_store); \
  }
NVILA_TRAFFIC_CALLBACK(load, 1, false)
NVILA_TRAFFIC_CALLBACK(load, 2, false)
NVILA_TRAFFIC_CALLBACK(load, 4, false)
NVILA_TRAFFIC_CALLBACK(load, 8, false)
NVILA_TRAFFIC_CALLBACK(load, 16, false)
NVILA_TRAFFIC_CALLBACK(store, 1, true)
NVILA_TRAFFIC_CALLBACK(store, 2, true)
NVILA_TRAFFIC_CALLBACK(store, 4, true)
NVILA_TRAFFIC_CALLBACK(store, 8, true)
NVILA_TRAFFIC_CALLBACK(store, 16, true)
#undef NVILA_TRAFFIC_CALLBACK
extern "C" void __asan_loadN_noabort(uintptr_t addr, uintptr_t size) {
  nvila::emu_rt::on_access(reinterpret_cast<uintptr_t>(__builtin_return_address(0)), addr, size, false);
}
extern "C" void __asan_storeN_noabort(uintptr_t addr, uintptr_t size) {
  nvila::emu_rt::on_access(reinterpret_cast<uintptr_t>(__builtin_return_address(0)), addr, size, true);
}
extern "C" void __asan_handle_no_return() {}
// dynamic initialization of globals (registration objects): nothing to check
extern "C" void __asan_before_dynamic_init(const char*) {}
extern "C" void __asan_after_dynamic_init() {}
