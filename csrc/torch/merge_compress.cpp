// nvila::merge_compress: the torch binding (tensors -> MergeCompressArgs with the memory-safety
// checks, csrc/torch/binding.h) and the _cpu / _emu / _cuda implementations.
// Schemas: nvila_kernels/_ops.py.
#include "nvila/merge_compress.h"

#include <torch/library.h>

#include "binding.h"

namespace nvila::binding {
inline MergeCompressArgs merge_compress_args(const at::Tensor& x, at::IntArrayRef scale_rows,
                                             at::IntArrayRef scale_cols, int64_t h, int64_t w, int64_t k,
                                             const std::optional<at::Tensor>& ln_weight,
                                             const std::optional<at::Tensor>& ln_bias, double eps,
                                             const at::Tensor& out) {
  TORCH_CHECK(k >= 1, "k: expected k >= 1, got ", k);
  MergeCompressArgs a{};
  a.m = merge_plan_args(x, scale_rows, scale_cols, h, w);
  a.k = k;
  a.eps = float(eps);
  TORCH_CHECK(out.scalar_type() == x.scalar_type() && out.device() == x.device(), "out: expected ", x.scalar_type(),
              " on ", x.device(), ", got ", out.scalar_type(), " on ", out.device());
  TORCH_CHECK(out.is_contiguous() && out.dim() == 2 && out.size(0) == a.tokens() && out.size(1) == a.D(),
              "out: expected a contiguous tensor of shape (", a.tokens(), ", ", a.D(), "), got ", out.sizes());
  a.ln_weight = ln_param(ln_weight, a.D(), x, "ln_weight");
  a.ln_bias = ln_param(ln_bias, a.D(), x, "ln_bias");
  a.out = out.data_ptr();
  return a;
}

namespace {

void merge_compress_cpu(const at::Tensor& features, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols, int64_t h,
                        int64_t w, int64_t k, const std::optional<at::Tensor>& ln_weight,
                        const std::optional<at::Tensor>& ln_bias, double eps, at::Tensor& out) {
  check_cpu(features);
  cpu::merge_compress(merge_compress_args(features, scale_rows, scale_cols, h, w, k, ln_weight, ln_bias, eps, out));
}

void merge_compress_emu(const at::Tensor& features, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols, int64_t h,
                        int64_t w, int64_t k, const std::optional<at::Tensor>& ln_weight,
                        const std::optional<at::Tensor>& ln_bias, double eps, at::Tensor& out) {
  run_emu("merge_compress", features,
          merge_compress_args(features, scale_rows, scale_cols, h, w, k, ln_weight, ln_bias, eps, out));
}

void merge_compress_cuda(const at::Tensor& features, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols, int64_t h,
                         int64_t w, int64_t k, const std::optional<at::Tensor>& ln_weight,
                         const std::optional<at::Tensor>& ln_bias, double eps, at::Tensor& out) {
  run_cuda("merge_compress", features,
           merge_compress_args(features, scale_rows, scale_cols, h, w, k, ln_weight, ln_bias, eps, out));
}

const bool merge_compress_layout = register_args_layout<MergeCompressArgs>(
    "merge_compress", {NVILA_ARGS_FIELD(MergeCompressArgs, m), NVILA_ARGS_FIELD(MergeCompressArgs, out),
                       NVILA_ARGS_FIELD(MergeCompressArgs, ln_weight), NVILA_ARGS_FIELD(MergeCompressArgs, ln_bias),
                       NVILA_ARGS_FIELD(MergeCompressArgs, k), NVILA_ARGS_FIELD(MergeCompressArgs, eps)});

}  // namespace

NVILA_TORCH_IMPLS(merge_compress)

}  // namespace nvila::binding
