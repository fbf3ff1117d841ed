// nvila::fp8_quantize / fp8_gemm: the torch bindings (tensors -> Fp8QuantizeArgs / Fp8GemmArgs with the memory-safety
// checks, csrc/torch/binding.h) and the _cpu / _emu / _cuda implementations.
// Schemas: nvila_kernels/_ops.py.
#include "nvila/fp8_ops.h"

#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "binding.h"

namespace nvila::binding {
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

namespace {

void fp8_quantize_cpu(const at::Tensor& x, const std::optional<at::Tensor>& scale, at::Tensor& q,
                      at::Tensor& scale_out) {
  check_cpu(x);
  cpu::fp8_quantize(fp8_quantize_args(x, scale, q, scale_out, at::Tensor()));
}

// The amax workspace of the CUDA kernels' dynamic path: one float holding 0.
at::Tensor amax_workspace(const at::Tensor& x) { return at::zeros({1}, x.options().dtype(at::kFloat)); }

void fp8_quantize_emu(const at::Tensor& x, const std::optional<at::Tensor>& scale, at::Tensor& q,
                      at::Tensor& scale_out) {
  run_emu("fp8_quantize", x, fp8_quantize_args(x, scale, q, scale_out, amax_workspace(x)));
}

void fp8_quantize_cuda(const at::Tensor& x, const std::optional<at::Tensor>& scale, at::Tensor& q,
                       at::Tensor& scale_out) {
  const at::Tensor workspace = amax_workspace(x);  // alive until the kernels are queued (stream-ordered reuse)
  run_cuda("fp8_quantize", x, fp8_quantize_args(x, scale, q, scale_out, workspace));
}

void fp8_gemm_cpu(const at::Tensor& a, const at::Tensor& b, const at::Tensor& scale_a, const at::Tensor& scale_b,
                  const std::optional<at::Tensor>& bias, at::Tensor& out) {
  check_cpu(a);
  cpu::fp8_gemm(fp8_gemm_args(a, b, scale_a, scale_b, bias, out));
}

void fp8_gemm_emu(const at::Tensor& a, const at::Tensor& b, const at::Tensor& scale_a, const at::Tensor& scale_b,
                  const std::optional<at::Tensor>& bias, at::Tensor& out) {
  run_emu("fp8_gemm", a, fp8_gemm_args(a, b, scale_a, scale_b, bias, out));
}

void fp8_gemm_cuda(const at::Tensor& a, const at::Tensor& b, const at::Tensor& scale_a, const at::Tensor& scale_b,
                   const std::optional<at::Tensor>& bias, at::Tensor& out) {
  run_cuda("fp8_gemm", a, fp8_gemm_args(a, b, scale_a, scale_b, bias, out));
}

const bool fp8_quantize_layout = register_args_layout<Fp8QuantizeArgs>(
    "fp8_quantize", {NVILA_ARGS_FIELD(Fp8QuantizeArgs, x), NVILA_ARGS_FIELD(Fp8QuantizeArgs, dtype),
                     NVILA_ARGS_FIELD(Fp8QuantizeArgs, n), NVILA_ARGS_FIELD(Fp8QuantizeArgs, scale),
                     NVILA_ARGS_FIELD(Fp8QuantizeArgs, scale_out), NVILA_ARGS_FIELD(Fp8QuantizeArgs, workspace),
                     NVILA_ARGS_FIELD(Fp8QuantizeArgs, q), NVILA_ARGS_FIELD(Fp8QuantizeArgs, format)});

const bool fp8_gemm_layout = register_args_layout<Fp8GemmArgs>(
    "fp8_gemm",
    {NVILA_ARGS_FIELD(Fp8GemmArgs, a), NVILA_ARGS_FIELD(Fp8GemmArgs, b), NVILA_ARGS_FIELD(Fp8GemmArgs, scale_a),
     NVILA_ARGS_FIELD(Fp8GemmArgs, scale_b), NVILA_ARGS_FIELD(Fp8GemmArgs, bias), NVILA_ARGS_FIELD(Fp8GemmArgs, out),
     NVILA_ARGS_FIELD(Fp8GemmArgs, out_dtype), NVILA_ARGS_FIELD(Fp8GemmArgs, M), NVILA_ARGS_FIELD(Fp8GemmArgs, N),
     NVILA_ARGS_FIELD(Fp8GemmArgs, K)});

}  // namespace

NVILA_TORCH_IMPLS(fp8_quantize)
NVILA_TORCH_IMPLS(fp8_gemm)

}  // namespace nvila::binding
