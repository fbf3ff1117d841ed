// Tensor -> kernel-argument conversion shared by the CPU and CUDA bindings.
//
// Arguments are validated once, in nvila_kernels.functional, before a backend is
// chosen (docs/INPUTS.md). What stays here is what keeps a raw call of an op
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

#include <optional>

#include "nvila/fp8_ops.h"
#include "nvila/merge_compress.h"
#include "nvila/multiscale_merge.h"
#include "nvila/multiscale_tile.h"
#include "nvila/spatial_compress.h"
#include "nvila/temporal_pool.h"

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

inline SpatialCompressArgs spatial_compress_args(const at::Tensor& x, int64_t k,
                                                 const std::optional<at::Tensor>& ln_weight,
                                                 const std::optional<at::Tensor>& ln_bias, double eps,
                                                 const at::Tensor& out) {
  TORCH_CHECK(x.dim() == 4, "x: expected a (B, H, W, C) tensor, got shape ", x.sizes());
  TORCH_CHECK(k >= 1, "k: expected k >= 1, got ", k);
  TORCH_CHECK(x.size(3) == 1 || x.stride(3) == 1, "x: expected channel stride 1, got strides ", x.strides());
  SpatialCompressArgs a{};
  a.dtype = to_dtype(x, "x");
  a.B = x.size(0);
  a.H = x.size(1);
  a.W = x.size(2);
  a.C = x.size(3);
  a.k = k;
  a.sB = x.stride(0);
  a.sH = x.stride(1);
  a.sW = x.stride(2);
  a.eps = float(eps);
  TORCH_CHECK(out.scalar_type() == x.scalar_type() && out.device() == x.device(), "out: expected ", x.scalar_type(),
              " on ", x.device(), ", got ", out.scalar_type(), " on ", out.device());
  TORCH_CHECK(out.is_contiguous() && out.dim() == 4 && out.size(0) == a.B && out.size(1) == a.Ho() &&
                  out.size(2) == a.Wo() && out.size(3) == a.D(),
              "out: expected a contiguous tensor of shape (", a.B, ", ", a.Ho(), ", ", a.Wo(), ", ", a.D(), "), got ",
              out.sizes());
  a.ln_weight = ln_param(ln_weight, a.D(), x, "ln_weight");
  a.ln_bias = ln_param(ln_bias, a.D(), x, "ln_bias");
  a.x = x.data_ptr();
  a.out = out.data_ptr();
  return a;
}

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

// The plan and features of multiscale_merge / merge_compress (a.out is left unset).
inline MultiscaleMergeArgs merge_plan_args(const at::Tensor& x, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols,
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

// One axis of resampling coefficients: bounds (n, 2) and weights (n, K) int32 on `ref`'s
// device. On CPU tensors every {first, taps} is checked against the input size.
inline int64_t tile_coeffs(const at::Tensor& bounds, const at::Tensor& weights, int64_t n, int64_t in_size,
                           const at::Tensor& ref, const char* bname, const char* wname) {
  TORCH_CHECK(bounds.scalar_type() == at::kInt && bounds.dim() == 2 && bounds.size(0) == n && bounds.size(1) == 2 &&
                  bounds.is_contiguous() && bounds.device() == ref.device(),
              bname, ": expected a contiguous int32 tensor of shape (", n, ", 2) on ", ref.device(), ", got ",
              bounds.scalar_type(), " ", bounds.sizes(), " on ", bounds.device());
  TORCH_CHECK(weights.scalar_type() == at::kInt && weights.dim() == 2 && weights.size(0) == n && weights.size(1) >= 1 &&
                  weights.is_contiguous() && weights.device() == ref.device(),
              wname, ": expected a contiguous int32 tensor of shape (", n, ", K) on ", ref.device(), ", got ",
              weights.scalar_type(), " ", weights.sizes(), " on ", weights.device());
  const int64_t K = weights.size(1);
  if (bounds.device().is_cpu()) {
    const int32_t* b = bounds.data_ptr<int32_t>();
    for (int64_t o = 0; o < n; ++o)
      TORCH_CHECK(b[2 * o] >= 0 && b[2 * o + 1] >= 1 && b[2 * o + 1] <= K && b[2 * o] + b[2 * o + 1] <= in_size, bname,
                  ": row ", o, " = {", b[2 * o], ", ", b[2 * o + 1], "} is outside an input of ", in_size,
                  " samples with K = ", K);
  }
  return K;
}

inline MultiscaleTileArgs multiscale_tile_args(const at::Tensor& image, at::IntArrayRef scale_rows,
                                               at::IntArrayRef scale_cols, const c10::List<bool>& vertical_first,
                                               const at::Tensor& xbounds, const at::Tensor& xweights,
                                               const at::Tensor& ybounds, const at::Tensor& yweights,
                                               at::ArrayRef<double> mean, at::ArrayRef<double> std, bool exact,
                                               const at::Tensor& out) {
  TORCH_CHECK(image.scalar_type() == at::kByte && image.dim() == 3 && image.size(2) == 3 && image.size(0) >= 1 &&
                  image.size(1) >= 1 && image.is_contiguous(),
              "image: expected a contiguous non-empty uint8 tensor of shape (H, W, 3), got ", image.scalar_type(), " ",
              image.sizes());
  const int64_t S = int64_t(scale_rows.size());
  TORCH_CHECK(S >= 1 && S <= kTileMaxScales, "scale_rows: expected 1 to ", kTileMaxScales, " scales, got ", S);
  TORCH_CHECK(int64_t(scale_cols.size()) == S && int64_t(vertical_first.size()) == S,
              "scale_cols, vertical_first: expected ", S, " scales (as scale_rows), got ", scale_cols.size(), ", ",
              vertical_first.size());
  TORCH_CHECK(mean.size() == 3 && std.size() == 3, "mean, std: expected 3 values each, got ", mean.size(), ", ",
              std.size());
  TORCH_CHECK(out.dim() == 4 && out.size(1) == 3 && out.size(2) == out.size(3) && out.size(3) >= 1,
              "out: expected shape (n_tiles, 3, T, T), got ", out.sizes());
  MultiscaleTileArgs a{};
  a.H = image.size(0);
  a.W = image.size(1);
  a.T = out.size(3);
  a.S = S;
  int64_t n_tiles = 0, nx = 0, ny = 0;
  for (int64_t s = 0; s < S; ++s) {
    TORCH_CHECK(scale_rows[s] >= 1 && scale_cols[s] >= 1, "scale_rows, scale_cols: expected ints >= 1, got ",
                scale_rows, ", ", scale_cols);
    a.rows[s] = scale_rows[s];
    a.cols[s] = scale_cols[s];
    a.vfirst[s] = vertical_first.get(s);
    a.tile0[s] = n_tiles;
    a.xoff[s] = nx;
    a.yoff[s] = ny;
    n_tiles += scale_rows[s] * scale_cols[s];
    nx += scale_cols[s] * a.T;
    ny += scale_rows[s] * a.T;
  }
  for (int c = 0; c < 3; ++c) {
    a.mean[c] = float(mean[c]);
    a.std[c] = float(std[c]);
  }
  a.dtype = to_dtype(out, "out");
  TORCH_CHECK(out.is_contiguous() && out.size(0) == n_tiles && out.device() == image.device(),
              "out: expected a contiguous tensor of shape (", n_tiles, ", 3, ", a.T, ", ", a.T, ") on ", image.device(),
              ", got ", out.sizes(), " on ", out.device());
  a.KX = tile_coeffs(xbounds, xweights, nx, a.W, image, "xbounds", "xweights");
  a.KY = tile_coeffs(ybounds, yweights, ny, a.H, image, "ybounds", "yweights");
  a.exact = exact;
  a.image = image.data_ptr<uint8_t>();
  a.xbounds = xbounds.data_ptr<int32_t>();
  a.xweights = xweights.data_ptr<int32_t>();
  a.ybounds = ybounds.data_ptr<int32_t>();
  a.yweights = yweights.data_ptr<int32_t>();
  a.out = out.data_ptr();
  return a;
}

inline const float* scale_ptr(const at::Tensor& s, const at::Tensor& ref, const char* name) {
  TORCH_CHECK(s.scalar_type() == at::kFloat && s.numel() == 1, name,
              ": expected a float32 tensor with one element, got ", s.scalar_type(), " ", s.sizes());
  TORCH_CHECK(s.device() == ref.device(), name, ": expected device ", ref.device(), ", got ", s.device());
  return s.data_ptr<float>();
}

inline Fp8Format fp8_format(const at::Tensor& q, const char* name) {
  if (q.scalar_type() == at::kFloat8_e4m3fn) return Fp8Format::E4M3;
  if (q.scalar_type() == at::kFloat8_e5m2) return Fp8Format::E5M2;
  TORCH_CHECK(false, name, ": expected float8_e4m3fn or float8_e5m2, got ", q.scalar_type());
}

// `workspace`: one float in x's memory space for the CUDA dynamic path (may be undefined on CPU).
inline Fp8QuantizeArgs fp8_quantize_args(const at::Tensor& x, const std::optional<at::Tensor>& scale,
                                         const at::Tensor& q, const at::Tensor& scale_out,
                                         const at::Tensor& workspace) {
  TORCH_CHECK(x.is_contiguous() && x.numel() > 0, "x: expected a non-empty contiguous tensor");
  TORCH_CHECK(q.is_contiguous() && q.numel() == x.numel() && q.device() == x.device(),
              "q: expected a contiguous tensor with as many elements as x on ", x.device());
  Fp8QuantizeArgs a{};
  a.dtype = to_dtype(x, "x");
  a.format = fp8_format(q, "q");
  a.n = x.numel();
  a.x = x.data_ptr();
  a.q = static_cast<uint8_t*>(q.data_ptr());
  a.scale = scale.has_value() ? scale_ptr(*scale, x, "scale") : nullptr;
  a.scale_out = const_cast<float*>(scale_ptr(scale_out, x, "scale_out"));
  a.workspace = workspace.defined() ? workspace.data_ptr<float>() : nullptr;
  return a;
}

inline Fp8GemmArgs fp8_gemm_args(const at::Tensor& a, const at::Tensor& b, const at::Tensor& scale_a,
                                 const at::Tensor& scale_b, const std::optional<at::Tensor>& bias,
                                 const at::Tensor& out) {
  TORCH_CHECK(a.scalar_type() == at::kFloat8_e4m3fn && a.dim() == 2 && a.is_contiguous(),
              "a: expected a contiguous 2-D float8_e4m3fn tensor, got ", a.scalar_type(), " ", a.sizes());
  TORCH_CHECK(b.scalar_type() == at::kFloat8_e4m3fn && b.dim() == 2 && b.is_contiguous(),
              "b: expected a contiguous 2-D float8_e4m3fn tensor, got ", b.scalar_type(), " ", b.sizes());
  TORCH_CHECK(b.size(1) == a.size(1), "b: expected (N, K) with K = ", a.size(1), ", got ", b.sizes());
  TORCH_CHECK(b.device() == a.device(), "b: expected device ", a.device(), ", got ", b.device());
  Fp8GemmArgs g{};
  g.M = a.size(0);
  g.N = b.size(0);
  g.K = a.size(1);
  TORCH_CHECK(
      out.is_contiguous() && out.dim() == 2 && out.size(0) == g.M && out.size(1) == g.N && out.device() == a.device(),
      "out: expected a contiguous (", g.M, ", ", g.N, ") tensor on ", a.device(), ", got ", out.sizes());
  g.out_dtype = to_dtype(out, "out");
  g.a = static_cast<const uint8_t*>(a.data_ptr());
  g.b = static_cast<const uint8_t*>(b.data_ptr());
  g.scale_a = scale_ptr(scale_a, a, "scale_a");
  g.scale_b = scale_ptr(scale_b, a, "scale_b");
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->dim() == 1 && bias->size(0) == g.N &&
                    bias->is_contiguous() && bias->device() == a.device(),
                "bias: expected a contiguous float32 tensor of shape (", g.N, ",) on ", a.device());
    g.bias = bias->data_ptr<float>();
  }
  g.out = out.data_ptr();
  return g;
}

}  // namespace nvila::binding
