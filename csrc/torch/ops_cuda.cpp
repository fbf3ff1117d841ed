// CUDA dispatch-key implementations (ops *_cuda): device guard, current stream,
// launch, error check. Schemas live in nvila_kernels/_ops.py.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../cuda/launchers.h"
#include "args.h"

namespace nvila::binding {
namespace {

void check(int code) { TORCH_CHECK(code == 0, "CUDA kernel launch failed: ", cuda::error_string(code)); }

void* stream_of(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cuda(), "x: expected a CUDA tensor, got ", x.device());
  return c10::cuda::getCurrentCUDAStream(x.device().index()).stream();
}

void spatial_compress_cuda(const at::Tensor& x, int64_t k, const std::optional<at::Tensor>& ln_weight,
                           const std::optional<at::Tensor>& ln_bias, double eps, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(x.device());
  void* stream = stream_of(x);
  check(cuda::spatial_compress(spatial_compress_args(x, k, ln_weight, ln_bias, eps, out), stream));
}

void temporal_pool_cuda(const at::Tensor& x, int64_t group, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(x.device());
  void* stream = stream_of(x);
  check(cuda::temporal_pool(temporal_pool_args(x, group, out), stream));
}

void multiscale_merge_cuda(const at::Tensor& features, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols,
                           int64_t h, int64_t w, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(features.device());
  void* stream = stream_of(features);
  check(cuda::multiscale_merge(multiscale_merge_args(features, scale_rows, scale_cols, h, w, out), stream));
}

void merge_compress_cuda(const at::Tensor& features, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols, int64_t h,
                         int64_t w, int64_t k, const std::optional<at::Tensor>& ln_weight,
                         const std::optional<at::Tensor>& ln_bias, double eps, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(features.device());
  void* stream = stream_of(features);
  check(cuda::merge_compress(
      merge_compress_args(features, scale_rows, scale_cols, h, w, k, ln_weight, ln_bias, eps, out), stream));
}

void multiscale_tile_cuda(const at::Tensor& image, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols,
                          const c10::List<bool>& vertical_first, const at::Tensor& xbounds, const at::Tensor& xweights,
                          const at::Tensor& ybounds, const at::Tensor& yweights, at::ArrayRef<double> mean,
                          at::ArrayRef<double> std, bool exact, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(image.device());
  void* stream = stream_of(image);
  check(cuda::multiscale_tile(multiscale_tile_args(image, scale_rows, scale_cols, vertical_first, xbounds, xweights,
                                                   ybounds, yweights, mean, std, exact, out),
                              stream));
}

void fp8_quantize_cuda(const at::Tensor& x, const std::optional<at::Tensor>& scale, at::Tensor& q,
                       at::Tensor& scale_out) {
  const c10::cuda::CUDAGuard guard(x.device());
  void* stream = stream_of(x);
  const at::Tensor workspace = at::empty({1}, x.options().dtype(at::kFloat));
  check(cuda::fp8_quantize(fp8_quantize_args(x, scale, q, scale_out, workspace), stream));
}

void fp8_gemm_cuda(const at::Tensor& a, const at::Tensor& b, const at::Tensor& scale_a, const at::Tensor& scale_b,
                   const std::optional<at::Tensor>& bias, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(a.device());
  void* stream = stream_of(a);
  check(cuda::fp8_gemm(fp8_gemm_args(a, b, scale_a, scale_b, bias, out), stream));
}

}  // namespace

TORCH_LIBRARY_IMPL(nvila, CUDA, m) {
  m.impl("fp8_quantize_cuda", &fp8_quantize_cuda);
  m.impl("fp8_gemm_cuda", &fp8_gemm_cuda);
  m.impl("spatial_compress_cuda", &spatial_compress_cuda);
  m.impl("temporal_pool_cuda", &temporal_pool_cuda);
  m.impl("multiscale_merge_cuda", &multiscale_merge_cuda);
  m.impl("merge_compress_cuda", &merge_compress_cuda);
  m.impl("multiscale_tile_cuda", &multiscale_tile_cuda);
}

}  // namespace nvila::binding
