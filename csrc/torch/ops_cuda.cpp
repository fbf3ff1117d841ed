// CUDA dispatch-key implementations (ops *_cuda): device guard, current stream,
// launch, error check. Schemas live in nvila_kernels/_ops.py.
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

}  // namespace

TORCH_LIBRARY_IMPL(nvila, CUDA, m) {
  m.impl("spatial_compress_cuda", &spatial_compress_cuda);
  m.impl("temporal_pool_cuda", &temporal_pool_cuda);
}

}  // namespace nvila::binding
