// Tensor -> kernel-argument conversion shared by the CPU and CUDA bindings,
// with the checks every caller of the raw ops gets (the Python layer in
// nvila_kernels.functional checks the same things first, with friendlier text).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

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
  TORCH_CHECK(!ln_bias.has_value() || ln_weight.has_value(), "ln_bias: given without ln_weight");
  a.ln_weight = ln_param(ln_weight, a.D(), x, "ln_weight");
  a.ln_bias = ln_param(ln_bias, a.D(), x, "ln_bias");
  a.x = x.data_ptr();
  a.out = out.data_ptr();
  return a;
}

inline TemporalPoolArgs temporal_pool_args(const at::Tensor& x, int64_t group, const at::Tensor& out) {
  TORCH_CHECK(x.dim() >= 1, "x: expected at least one dimension (frames first)");
  TORCH_CHECK(group >= 1, "group: expected group >= 1, got ", group);
  TORCH_CHECK(x.size(0) % group == 0, "group: the number of frames (", x.size(0), ") is not divisible by group (",
              group, ")");
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

}  // namespace nvila::binding
