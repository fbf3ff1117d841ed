// What every op's binding (csrc/torch/<op>.cpp) shares: tensor -> kernel-argument
// helpers and the three ways an op runs (CPU kernel, emulated CUDA kernel, CUDA kernel).
//
// Arguments are validated once, in nvila_kernels.functional, before a backend is
// chosen (docs/INPUTS.md). What the bindings check is what keeps a raw call of an op
// (torch.ops.nvila.<op>_<backend>, past the Python checks) memory-safe: the dtype,
// rank, shape, strides, contiguity and device of every tensor a kernel reads or
// writes, the sizes the kernels index, divide or launch by (k, group, h, w, grid
// sizes >= 1, non-empty tensors, at most kMergeMaxScales / kTileMaxScales scales),
// and the resampling bounds of CPU tensors. Rules that only decide what is computed
// (ln_bias without ln_weight, std != 0, T divisible by group, finite eps) are the
// Python layer's alone.
#pragma once

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <initializer_list>
#include <optional>

#include "../cuda/launchers.h"
#include "args_layout.h"
#include "nvila/multiscale_merge.h"

namespace nvila::binding {

inline DType to_dtype(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::F32;
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    default: TORCH_CHECK(false, name, ": expected float32, float16 or bfloat16, got ", t.scalar_type());
  }
}

inline const float* ln_param(const std::optional<at::Tensor>& t, int64_t D, const at::Tensor& x, const char* name) {
  if (!t.has_value()) return nullptr;
  TORCH_CHECK(t->scalar_type() == at::kFloat && t->dim() == 1 && t->size(0) == D && t->is_contiguous(), name,
              ": expected a contiguous float32 tensor of shape (", D, ",), got ", t->scalar_type(), " ", t->sizes());
  TORCH_CHECK(t->device() == x.device(), name, ": expected device ", x.device(), ", got ", t->device());
  return t->data_ptr<float>();
}

inline void check_out_like(const at::Tensor& out, const at::Tensor& x) {
  TORCH_CHECK(out.scalar_type() == x.scalar_type() && out.device() == x.device(), "out: expected ", x.scalar_type(),
              " on ", x.device(), ", got ", out.scalar_type(), " on ", out.device());
}

// The plan and features of multiscale_merge / merge_compress (a.out is left unset).
MultiscaleMergeArgs merge_plan_args(const at::Tensor& x, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols,
                                    int64_t h, int64_t w);

inline void check_cpu(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu(), "x: expected a CPU tensor, got ", x.device());
}

// Runs op `op` (registered by csrc/cuda/<op>.cu) under the SIMT emulator on CPU tensors.
void launch_emu(const char* op, const at::Tensor& x, const void* args, size_t size);

// Runs op `op` on CUDA tensors: this build's nvcc kernels, or, when nvila_kernels._nvrtc has
// set its launcher (_C without CUDA kernels), the NVRTC-compiled ones; either way the
// plan and the kernel instances are the op's registered planner and table.
void launch_cuda(const char* op, const at::Tensor& x, const void* args, size_t size);

template <typename Args>
void run_emu(const char* op, const at::Tensor& x, const Args& a) {
  launch_emu(op, x, &a, sizeof(Args));
}

template <typename Args>
void run_cuda(const char* op, const at::Tensor& x, const Args& a) {
  launch_cuda(op, x, &a, sizeof(Args));
}

// Registers the fields of op `op`'s args struct `Args` for the args_layout test hook, at
// static initialization: const bool registered = register_args_layout<Args>(op, {NVILA_ARGS_FIELD(Args, x), ...});
template <typename Args>
bool register_args_layout(const char* op, std::initializer_list<ArgsField> fields) {
  args_layouts().push_back({op, sizeof(Args), fields});
  return true;
}

// Whether the cuda backend goes through NVRTC (nvila_kernels._nvrtc set a launcher).
bool nvrtc_enabled();

}  // namespace nvila::binding

// The kernels of op `op` for the torch dispatcher: <op>_cpu and <op>_emu (CPU tensors) and
// <op>_cuda, the functions of that name in the including file (torch/library.h).
#define NVILA_TORCH_IMPLS(op)         \
  TORCH_LIBRARY_IMPL(nvila, CPU, m) { \
    m.impl(#op "_cpu", &op##_cpu);    \
    m.impl(#op "_emu", &op##_emu);    \
  }                                   \
  TORCH_LIBRARY_IMPL(nvila, CUDA, m) { m.impl(#op "_cuda", &op##_cuda); }
