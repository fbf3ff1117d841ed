// CPU dispatch-key implementations: the C++ CPU kernels (ops *_cpu) and the CUDA
// kernels run by the SIMT emulator (ops *_emu). Schemas live in nvila_kernels/_ops.py.
#include <ATen/ops/empty.h>
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

void multiscale_merge_cpu(const at::Tensor& features, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols, int64_t h,
                          int64_t w, at::Tensor& out) {
  check_cpu(features);
  cpu::multiscale_merge(multiscale_merge_args(features, scale_rows, scale_cols, h, w, out));
}

void merge_compress_cpu(const at::Tensor& features, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols, int64_t h,
                        int64_t w, int64_t k, const std::optional<at::Tensor>& ln_weight,
                        const std::optional<at::Tensor>& ln_bias, double eps, at::Tensor& out) {
  check_cpu(features);
  cpu::merge_compress(merge_compress_args(features, scale_rows, scale_cols, h, w, k, ln_weight, ln_bias, eps, out));
}

void multiscale_tile_cpu(const at::Tensor& image, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols,
                         const c10::List<bool>& vertical_first, const at::Tensor& xbounds, const at::Tensor& xweights,
                         const at::Tensor& ybounds, const at::Tensor& yweights, at::ArrayRef<double> mean,
                         at::ArrayRef<double> std, bool exact, at::Tensor& out) {
  check_cpu(image);
  cpu::multiscale_tile(multiscale_tile_args(image, scale_rows, scale_cols, vertical_first, xbounds, xweights, ybounds,
                                            yweights, mean, std, exact, out));
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

void multiscale_merge_emu(const at::Tensor& features, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols, int64_t h,
                          int64_t w, at::Tensor& out) {
  check_cpu(features);
  check_emu(emu::multiscale_merge(multiscale_merge_args(features, scale_rows, scale_cols, h, w, out), nullptr));
}

void merge_compress_emu(const at::Tensor& features, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols, int64_t h,
                        int64_t w, int64_t k, const std::optional<at::Tensor>& ln_weight,
                        const std::optional<at::Tensor>& ln_bias, double eps, at::Tensor& out) {
  check_cpu(features);
  check_emu(emu::merge_compress(
      merge_compress_args(features, scale_rows, scale_cols, h, w, k, ln_weight, ln_bias, eps, out), nullptr));
}

void multiscale_tile_emu(const at::Tensor& image, at::IntArrayRef scale_rows, at::IntArrayRef scale_cols,
                         const c10::List<bool>& vertical_first, const at::Tensor& xbounds, const at::Tensor& xweights,
                         const at::Tensor& ybounds, const at::Tensor& yweights, at::ArrayRef<double> mean,
                         at::ArrayRef<double> std, bool exact, at::Tensor& out) {
  check_cpu(image);
  check_emu(emu::multiscale_tile(multiscale_tile_args(image, scale_rows, scale_cols, vertical_first, xbounds, xweights,
                                                      ybounds, yweights, mean, std, exact, out),
                                 nullptr));
}

void fp8_quantize_cpu(const at::Tensor& x, const std::optional<at::Tensor>& scale, at::Tensor& q,
                      at::Tensor& scale_out) {
  check_cpu(x);
  cpu::fp8_quantize(fp8_quantize_args(x, scale, q, scale_out, at::Tensor()));
}

void fp8_gemm_cpu(const at::Tensor& a, const at::Tensor& b, const at::Tensor& scale_a, const at::Tensor& scale_b,
                  const std::optional<at::Tensor>& bias, at::Tensor& out) {
  check_cpu(a);
  cpu::fp8_gemm(fp8_gemm_args(a, b, scale_a, scale_b, bias, out));
}

void fp8_quantize_emu(const at::Tensor& x, const std::optional<at::Tensor>& scale, at::Tensor& q,
                      at::Tensor& scale_out) {
  check_cpu(x);
  const at::Tensor workspace = at::empty({1}, x.options().dtype(at::kFloat));
  check_emu(emu::fp8_quantize(fp8_quantize_args(x, scale, q, scale_out, workspace), nullptr));
}

void fp8_gemm_emu(const at::Tensor& a, const at::Tensor& b, const at::Tensor& scale_a, const at::Tensor& scale_b,
                  const std::optional<at::Tensor>& bias, at::Tensor& out) {
  check_cpu(a);
  check_emu(emu::fp8_gemm(fp8_gemm_args(a, b, scale_a, scale_b, bias, out), nullptr));
}

}  // namespace

TORCH_LIBRARY_IMPL(nvila, CPU, m) {
  m.impl("fp8_quantize_cpu", &fp8_quantize_cpu);
  m.impl("fp8_gemm_cpu", &fp8_gemm_cpu);
  m.impl("fp8_quantize_emu", &fp8_quantize_emu);
  m.impl("fp8_gemm_emu", &fp8_gemm_emu);
  m.impl("spatial_compress_cpu", &spatial_compress_cpu);
  m.impl("temporal_pool_cpu", &temporal_pool_cpu);
  m.impl("spatial_compress_emu", &spatial_compress_emu);
  m.impl("temporal_pool_emu", &temporal_pool_emu);
  m.impl("multiscale_merge_cpu", &multiscale_merge_cpu);
  m.impl("multiscale_merge_emu", &multiscale_merge_emu);
  m.impl("merge_compress_cpu", &merge_compress_cpu);
  m.impl("merge_compress_emu", &merge_compress_emu);
  m.impl("multiscale_tile_cpu", &multiscale_tile_cpu);
  m.impl("multiscale_tile_emu", &multiscale_tile_emu);
}

}  // namespace nvila::binding
