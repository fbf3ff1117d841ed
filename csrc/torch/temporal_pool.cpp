// nvila::temporal_pool: the torch binding (tensors -> TemporalPoolArgs with the memory-safety
// checks, csrc/torch/binding.h) and the _cpu / _emu / _cuda implementations.
// Schemas: nvila_kernels/_ops.py.
#include "nvila/temporal_pool.h"

#include <torch/library.h>

#include "binding.h"

namespace nvila::binding {
inline TemporalPoolArgs temporal_pool_args(const at::Tensor& x, int64_t group, const at::Tensor& out) {
  TORCH_CHECK(x.dim() >= 1, "x: expected at least one dimension (frames first)");
  TORCH_CHECK(group >= 1, "group: expected group >= 1, got ", group);
  TORCH_CHECK(x.numel() > 0, "x: expected a non-empty tensor, got shape ", x.sizes());
  TORCH_CHECK(x.dim() == 1 || x[0].is_contiguous(), "x: expected each frame x[t] to be contiguous");
  TemporalPoolArgs a{};
  a.dtype = to_dtype(x, "x");
  a.T = x.size(0);
  a.N = x.numel() / x.size(0);
  a.group = group;
  a.sT = x.stride(0);
  auto expect = x.sizes().vec();
  expect[0] = a.T / group;
  TORCH_CHECK(out.scalar_type() == x.scalar_type() && out.device() == x.device(), "out: expected ", x.scalar_type(),
              " on ", x.device(), ", got ", out.scalar_type(), " on ", out.device());
  TORCH_CHECK(out.is_contiguous() && out.sizes() == at::IntArrayRef(expect),
              "out: expected a contiguous tensor of shape ", at::IntArrayRef(expect), ", got ", out.sizes());
  a.x = x.data_ptr();
  a.out = out.data_ptr();
  return a;
}

namespace {

void temporal_pool_cpu(const at::Tensor& x, int64_t group, at::Tensor& out) {
  check_cpu(x);
  cpu::temporal_pool(temporal_pool_args(x, group, out));
}

void temporal_pool_emu(const at::Tensor& x, int64_t group, at::Tensor& out) {
  run_emu("temporal_pool", x, temporal_pool_args(x, group, out));
}

void temporal_pool_cuda(const at::Tensor& x, int64_t group, at::Tensor& out) {
  run_cuda("temporal_pool", x, temporal_pool_args(x, group, out));
}

const bool temporal_pool_layout = register_args_layout<TemporalPoolArgs>(
    "temporal_pool", {NVILA_ARGS_FIELD(TemporalPoolArgs, x), NVILA_ARGS_FIELD(TemporalPoolArgs, out),
                      NVILA_ARGS_FIELD(TemporalPoolArgs, T), NVILA_ARGS_FIELD(TemporalPoolArgs, N),
                      NVILA_ARGS_FIELD(TemporalPoolArgs, group), NVILA_ARGS_FIELD(TemporalPoolArgs, sT),
                      NVILA_ARGS_FIELD(TemporalPoolArgs, dtype)});

}  // namespace

NVILA_TORCH_IMPLS(temporal_pool)

}  // namespace nvila::binding
