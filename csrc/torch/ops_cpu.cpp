// CPU dispatch-key implementations: the C++ CPU kernels (ops *_cpu) and the CUDA
// kernels run by the SIMT emulator (ops *_emu). Schemas live in nvila_kernels/_ops.py.
#include <torch/library.h>

#include "../cpu/kernels.h"
#include "../cuda/launchers.h"
#include "args.h"

namespace nvila::binding {
namespace {

void check_cpu(const at::Tensor& x) { TORCH_CHECK(x.device().is_cpu(), "x: expected a CPU tensor, got ", x.device()); }

void spatial_compress_cpu(const at::Tensor& x, int64_t k, const std::optional<at::Tensor>& ln_weight,
                          const std::optional<at::Tensor>& ln_bias, double eps, at::Tensor& out) {
  check_cpu(x);
  cpu::spatial_compress(spatial_compress_args(x, k, ln_weight, ln_bias, eps, out));
}

void temporal_pool_cpu(const at::Tensor& x, int64_t group, at::Tensor& out) {
  check_cpu(x);
  cpu::temporal_pool(temporal_pool_args(x, group, out));
}

void check_emu(int code) { TORCH_CHECK(code == 0, "CUDA emulator launch failed: ", emu::error_string(code)); }

void spatial_compress_emu(const at::Tensor& x, int64_t k, const std::optional<at::Tensor>& ln_weight,
                          const std::optional<at::Tensor>& ln_bias, double eps, at::Tensor& out) {
  check_cpu(x);
  check_emu(emu::spatial_compress(spatial_compress_args(x, k, ln_weight, ln_bias, eps, out), nullptr));
}

void temporal_pool_emu(const at::Tensor& x, int64_t group, at::Tensor& out) {
  check_cpu(x);
  check_emu(emu::temporal_pool(temporal_pool_args(x, group, out), nullptr));
}

}  // namespace

TORCH_LIBRARY_IMPL(nvila, CPU, m) {
  m.impl("spatial_compress_cpu", &spatial_compress_cpu);
  m.impl("temporal_pool_cpu", &temporal_pool_cpu);
  m.impl("spatial_compress_emu", &spatial_compress_emu);
  m.impl("temporal_pool_emu", &temporal_pool_emu);
}

}  // namespace nvila::binding
