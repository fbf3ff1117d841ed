// nvila::multiscale_merge: the torch binding (tensors -> MultiscaleMergeArgs with the memory-safety
// checks, csrc/torch/binding.h) and the _cpu / _emu / _cuda implementations.
// Schemas: nvila_kernels/_ops.py.
#include "nvila/multiscale_merge.h"

#include <torch/library.h>

#include "binding.h"

namespace nvila::binding {
MultiscaleMergeArgs merge_plan_args(const at::Tensor& x, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols,
                                    int64_t h, int64_t w) {
  const int64_t S = int64_t(scale_rows.size());
  TORCH_CHECK(S >= 1 && S <= kMergeMaxScales, "scale_rows: expected 1 to ", kMergeMaxScales, " scales, got ", S);
  TORCH_CHECK(int64_t(scale_cols.size()) == S, "scale_cols: expected ", S, " scales (as scale_rows), got ",
              scale_cols.size());
  TORCH_CHECK(h >= 1 && w >= 1, "h, w: expected ints >= 1, got ", h, ", ", w);
  MultiscaleMergeArgs a{};
  a.S = S;
  a.h = h;
  a.w = w;
  int64_t n_tiles = 0;
  for (int64_t s = 0; s < S; ++s) {
    TORCH_CHECK(scale_rows[s] >= 1 && scale_cols[s] >= 1, "scale_rows, scale_cols: expected ints >= 1, got ",
                scale_rows, ", ", scale_cols);
    a.rows[s] = scale_rows[s];
    a.cols[s] = scale_cols[s];
    a.tile0[s] = n_tiles;
    n_tiles += scale_rows[s] * scale_cols[s];
  }
  TORCH_CHECK(x.dim() == 3 && x.size(0) == n_tiles && x.size(1) == h * w && x.size(2) >= 1,
              "features: expected shape (", n_tiles, ", ", h * w, ", C) for the plan and h=", h, ", w=", w, ", got ",
              x.sizes());
  TORCH_CHECK(x.is_contiguous(), "features: expected a contiguous tensor");
  a.dtype = to_dtype(x, "features");
  a.C = x.size(2);
  a.x = x.data_ptr();
  return a;
}

inline MultiscaleMergeArgs multiscale_merge_args(const at::Tensor& x, at::IntArrayRef scale_rows,
                                                 at::IntArrayRef scale_cols, int64_t h, int64_t w,
                                                 const at::Tensor& out) {
  MultiscaleMergeArgs a = merge_plan_args(x, scale_rows, scale_cols, h, w);
  TORCH_CHECK(out.scalar_type() == x.scalar_type() && out.device() == x.device(), "out: expected ", x.scalar_type(),
              " on ", x.device(), ", got ", out.scalar_type(), " on ", out.device());
  TORCH_CHECK(
      out.is_contiguous() && out.dim() == 3 && out.size(0) == a.S * a.C && out.size(1) == a.H() && out.size(2) == a.W(),
      "out: expected a contiguous tensor of shape (", a.S * a.C, ", ", a.H(), ", ", a.W(), "), got ", out.sizes());
  a.out = out.data_ptr();
  return a;
}

namespace {

void multiscale_merge_cpu(const at::Tensor& features, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols, int64_t h,
                          int64_t w, at::Tensor& out) {
  check_cpu(features);
  cpu::multiscale_merge(multiscale_merge_args(features, scale_rows, scale_cols, h, w, out));
}

void multiscale_merge_emu(const at::Tensor& features, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols, int64_t h,
                          int64_t w, at::Tensor& out) {
  run_emu("multiscale_merge", features, multiscale_merge_args(features, scale_rows, scale_cols, h, w, out));
}

void multiscale_merge_cuda(const at::Tensor& features, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols,
                           int64_t h, int64_t w, at::Tensor& out) {
  run_cuda("multiscale_merge", features, multiscale_merge_args(features, scale_rows, scale_cols, h, w, out));
}

const bool multiscale_merge_layout = register_args_layout<MultiscaleMergeArgs>(
    "multiscale_merge", {NVILA_ARGS_FIELD(MultiscaleMergeArgs, x), NVILA_ARGS_FIELD(MultiscaleMergeArgs, out),
                         NVILA_ARGS_FIELD(MultiscaleMergeArgs, S), NVILA_ARGS_FIELD(MultiscaleMergeArgs, C),
                         NVILA_ARGS_FIELD(MultiscaleMergeArgs, h), NVILA_ARGS_FIELD(MultiscaleMergeArgs, w),
                         NVILA_ARGS_FIELD(MultiscaleMergeArgs, rows), NVILA_ARGS_FIELD(MultiscaleMergeArgs, cols),
                         NVILA_ARGS_FIELD(MultiscaleMergeArgs, tile0), NVILA_ARGS_FIELD(MultiscaleMergeArgs, dtype)});

}  // namespace

NVILA_TORCH_IMPLS(multiscale_merge)

}  // namespace nvila::binding
