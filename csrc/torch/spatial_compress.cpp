// nvila::spatial_compress: the torch binding (tensors -> SpatialCompressArgs with the memory-safety
// checks, csrc/torch/binding.h) and the _cpu / _emu / _cuda implementations.
// Schemas: nvila_kernels/_ops.py.
#include "nvila/spatial_compress.h"

#include <torch/library.h>

#include "binding.h"

namespace nvila::binding {
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

namespace {

void spatial_compress_cpu(const at::Tensor& x, int64_t k, const std::optional<at::Tensor>& ln_weight,
                          const std::optional<at::Tensor>& ln_bias, double eps, at::Tensor& out) {
  check_cpu(x);
  cpu::spatial_compress(spatial_compress_args(x, k, ln_weight, ln_bias, eps, out));
}

void spatial_compress_emu(const at::Tensor& x, int64_t k, const std::optional<at::Tensor>& ln_weight,
                          const std::optional<at::Tensor>& ln_bias, double eps, at::Tensor& out) {
  run_emu("spatial_compress", x, spatial_compress_args(x, k, ln_weight, ln_bias, eps, out));
}

void spatial_compress_cuda(const at::Tensor& x, int64_t k, const std::optional<at::Tensor>& ln_weight,
                           const std::optional<at::Tensor>& ln_bias, double eps, at::Tensor& out) {
  run_cuda("spatial_compress", x, spatial_compress_args(x, k, ln_weight, ln_bias, eps, out));
}

const bool spatial_compress_layout = register_args_layout<SpatialCompressArgs>(
    "spatial_compress",
    {NVILA_ARGS_FIELD(SpatialCompressArgs, x), NVILA_ARGS_FIELD(SpatialCompressArgs, out),
     NVILA_ARGS_FIELD(SpatialCompressArgs, ln_weight), NVILA_ARGS_FIELD(SpatialCompressArgs, ln_bias),
     NVILA_ARGS_FIELD(SpatialCompressArgs, B), NVILA_ARGS_FIELD(SpatialCompressArgs, H),
     NVILA_ARGS_FIELD(SpatialCompressArgs, W), NVILA_ARGS_FIELD(SpatialCompressArgs, C),
     NVILA_ARGS_FIELD(SpatialCompressArgs, k), NVILA_ARGS_FIELD(SpatialCompressArgs, sB),
     NVILA_ARGS_FIELD(SpatialCompressArgs, sH), NVILA_ARGS_FIELD(SpatialCompressArgs, sW),
     NVILA_ARGS_FIELD(SpatialCompressArgs, eps), NVILA_ARGS_FIELD(SpatialCompressArgs, dtype)});

}  // namespace

NVILA_TORCH_IMPLS(spatial_compress)

}  // namespace nvila::binding
