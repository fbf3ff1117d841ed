"""nn.Modules to drop into models: Fp8Linear (W8A8 FP8, per-tensor scales) with
quantize_linears, SpatialCompress (the projector's space-to-depth + LayerNorm) and
TemporalPool (video frame averaging).

    model = quantize_linears(model, filter=lambda name, lin: "mlp" in name)

Weights are quantized once to float8_e4m3fn (scale = amax(W) / 448); activations
are quantized on every call, with a dynamic scale (amax(x) / 448, computed on the
device) or a calibrated static one; the product runs as one FP8 GEMM with fp32
accumulation and the scales and bias applied in its epilogue.

On CPU tensors the product takes one of two paths per shape (fp8_cpu_path): the fp8_gemm
kernel, or, where the CPU lacks AVX512-BF16 and M is large, the FP8 operands decoded to
fp32 and multiplied by torch.matmul (MKL), which is then the faster one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import torch
from torch import nn

from . import backends
from .functional import fp8_gemm, fp8_quantize, spatial_compress, temporal_pool

__all__ = [
    "Fp8Linear",
    "quantize_linears",
    "fp8_cpu_path",
    "fp8_gemm_dequantized",
    "SpatialCompress",
    "TemporalPool",
    "FP8_DTYPE",
]

FP8_DTYPE = torch.float8_e4m3fn

logger = logging.getLogger("nvila_kernels")

# Largest M at which Fp8Linear keeps the CPU fp8_gemm kernel, per instruction set of the
# kernel's large-M path (backends.cpu_isa()); above it the dequantize path runs.
# avx512bf16: no limit: the VDPBF16PS kernel is faster than fp32 torch.matmul at the
# prefill shapes (the LLM's 3104 x 3584 x {3584, 512, 18944}, the vision tower's
# 17408 x 1152 x {1152, 4304}). avx2 / generic: the fp32 FMA kernel (and the portable one)
# is slower than MKL's sgemm at those shapes (3104 x 3584 x 18944: 4.7 s against 3.4 s,
# 2 threads), and the decode costs little next to the product, so the dequantize path
# wins once M leaves the kernel's decode path (M <= 16), which streams the FP8 weight once
# and is several times faster than reading fp32 weights.
# Measured with bench/bench_fp8_paths.py (bench/README.md, "FP8 on CPU").
KERNEL_MAX_M = {"avx512bf16": None, "avx2": 16, "generic": 16}

# fp32 bytes (about, at most) of each of the two decode buffers of the dequantize path
# (blocks of rows of a and of b). They are kept per thread after the first call: a fresh
# buffer costs one page fault per 4 KiB on every call, as much as the decode itself.
# 256 MB: at NVILA-8B's prefill shapes (3104 x 3584 x 18944 both ways) 64 MB blocks were
# 4-9% slower than fp32 torch.matmul and 256 MB ones at parity (idle run, bench/README.md);
# the largest pair there is 371 MB (down_proj: a 3104 x 18944, b in two 1792-row blocks).
_BLOCK_BYTES = 256 << 20
_scratch = threading.local()

_logged_shapes: set[tuple[int, int, str]] = set()


def fp8_cpu_path(m: int, n: int, k: int) -> str:
    """The path Fp8Linear takes on CPU tensors for an (m, k) x (n, k)^T product:
    "kernel" (nvila_kernels.fp8_gemm, the compiled CPU kernel) or "dequantize"
    (fp8_gemm_dequantized: the FP8 operands decoded to fp32, then torch.matmul).

    The rule (KERNEL_MAX_M, from measurements): the kernel at every shape where its
    large-M path has AVX512-BF16; elsewhere the kernel up to M = 16 (its weight-streaming
    decode path) and the dequantize path above. n and k do not change the choice today.
    """
    for name, v in (("m", m), ("n", n), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    isa = backends.cpu_isa()
    if isa is None:
        raise RuntimeError(f"fp8_cpu_path: the compiled extension is not available ({backends.state['ext_error']})")
    limit = KERNEL_MAX_M[isa]
    return "kernel" if limit is None or m <= limit else "dequantize"


def _decode_e4m3(codes: torch.Tensor, out: torch.Tensor) -> None:
    """out (r, K) float32 = the values of codes (r, K) float8_e4m3fn, both contiguous CPU."""
    backends.state["ext"].fp8_e4m3_to_float32(codes.view(torch.uint8).numpy(), out.numpy())


def fp8_gemm_dequantized(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """fp8_gemm's product on CPU tensors through torch: (a @ b^T) * (scale_a * scale_b) + bias
    with a (M, K) and b (N, K) float8_e4m3fn decoded exactly to fp32 and multiplied by
    torch.addmm (fp32 accumulation): the kernel's sums up to order.

    Blocks of rows of a and b are decoded at a time into two buffers of up to 256 MB kept per
    thread, so no fp32 copy of a whole large weight is ever made.
    """
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor) or t.dtype != FP8_DTYPE or t.dim() != 2 or t.device.type != "cpu":
            raise TypeError(f"{name}: expected a 2-D float8_e4m3fn CPU tensor, got {_describe(t)}")
    M, K = a.shape
    N = b.shape[0]
    if b.shape[1] != K:
        raise ValueError(f"b: expected shape (N, {K}) (a is {tuple(a.shape)}), got {tuple(b.shape)}")
    if bias is not None and tuple(bias.shape) != (N,):
        raise ValueError(f"bias: expected shape ({N},), got {tuple(bias.shape)}")
    a, b = a.contiguous(), b.contiguous()
    s = float(scale_a.float() * scale_b.float())  # the fp32 product, as the kernel's epilogue
    bias32 = bias.float() if bias is not None else None
    rows_a, rows_b = _block_rows(M, K), _block_rows(N, K)  # rows of a and of b per decoded block
    y = torch.empty(M, N)
    need = (rows_a + rows_b) * K
    if getattr(_scratch, "buf", None) is None or _scratch.buf.numel() < need:
        _scratch.buf = torch.empty(need)
    a_buf = _scratch.buf[: rows_a * K].view(-1, K)
    b_buf = _scratch.buf[rows_a * K : need].view(-1, K)
    for m0 in range(0, M, rows_a):
        m1 = min(M, m0 + rows_a)
        a32 = a_buf[: m1 - m0]  # (rows of a, K)
        _decode_e4m3(a[m0:m1], a32)
        for n0 in range(0, N, rows_b):
            n1 = min(N, n0 + rows_b)
            b32 = b_buf[: n1 - n0]  # (rows of b, K)
            _decode_e4m3(b[n0:n1], b32)
            y_block = y[m0:m1, n0:n1]  # a strided view: the GEMM writes it in place
            if bias32 is None:
                torch.mm(a32, b32.t(), out=y_block)
                y_block.mul_(s)
            else:
                torch.addmm(bias32[n0:n1], a32, b32.t(), alpha=s, out=y_block)
    return y if out_dtype == torch.float32 else y.to(out_dtype)


def _block_rows(rows: int, K: int) -> int:
    """Rows per decoded block of a (rows, K) operand: at most about _BLOCK_BYTES of fp32, the
    operand cut into equal blocks of a multiple of 64 rows. MKL's sgemm was measured 1.4x
    slower on blocks of an odd width (3104 x 3584 by 4681 rows: 4.6 s for the five blocks
    against 3.3 s with 4736-row blocks and 2.9 s unblocked)."""
    limit = max(64, _BLOCK_BYTES // (4 * K))
    blocks = -(-rows // limit)  # ceil
    per_block = -(-rows // blocks)
    return min(rows, -(-per_block // 64) * 64)


def _describe(t) -> str:
    if not isinstance(t, torch.Tensor):
        return type(t).__name__
    return f"{t.dtype} {t.device.type} tensor of shape {tuple(t.shape)}"


class Fp8Linear(nn.Module):
    """y = x @ W^T + b with W and x quantized to FP8 (float8_e4m3fn), per-tensor scales.

    x: (..., in_features), float32/float16/bfloat16 -> y: (..., out_features), x's dtype.

    Buffers (all in state_dict):
      weight        (out_features, in_features) float8_e4m3fn, W ~ weight * weight_scale
      weight_scale  0-d float32
      input_scale   0-d float32, only with a static activation scale
    Parameter: bias (out_features,) in the original Linear's dtype, or None.

    activation_scale: "dynamic" (per call, amax of the activations, no host sync) or
    a positive float (static, calibrated offline). Loading a state_dict that holds
    an input_scale makes the layer static.
    backend: None for automatic selection, or a name from nvila_kernels.backends;
    used for both the activation quantization and the GEMM.
    Build from a trained layer with Fp8Linear.from_linear(linear).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation_scale: str | float = "dynamic",
        *,
        backend: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.backend = backend
        self.register_buffer("weight", torch.zeros((out_features, in_features), dtype=FP8_DTYPE, device=device))
        self.register_buffer("weight_scale", torch.ones((), dtype=torch.float32, device=device))
        if activation_scale == "dynamic":
            self.register_buffer("input_scale", None)
        elif isinstance(activation_scale, (int, float)) and not isinstance(activation_scale, bool):
            if not (0 < activation_scale < float("inf")):
                raise ValueError(f"activation_scale: expected a positive finite float, got {activation_scale!r}")
            self.register_buffer("input_scale", torch.tensor(float(activation_scale), device=device))
        else:
            raise ValueError(f"activation_scale: expected 'dynamic' or a positive float, got {activation_scale!r}")
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device), requires_grad=False)
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, activation_scale: str | float = "dynamic", *, backend: str | None = None
    ) -> Fp8Linear:
        """An Fp8Linear computing `linear`: its weight (out, in) quantized per tensor, its bias kept."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear: expected a torch.nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach()
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            activation_scale=activation_scale,
            backend=backend,
            device=w.device,
            dtype=w.dtype,
        )
        q, scale = fp8_quantize(w, fp8_dtype=FP8_DTYPE, backend=backend)
        layer.weight.copy_(q)
        layer.weight_scale.copy_(scale)
        if linear.bias is not None:
            layer.bias.data = linear.bias.detach().clone()
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected last dim {self.in_features} (in_features), got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # (M, K)
        if x2.shape[0] == 0:
            return x.new_empty((*lead, self.out_features))
        q, scale = fp8_quantize(x2, self.input_scale, FP8_DTYPE, backend=self.backend)
        if self._path(x2.shape[0], x2.device) == "dequantize":
            y = fp8_gemm_dequantized(q, self.weight, scale, self.weight_scale, self.bias, x.dtype)  # (M, N)
        else:
            y = fp8_gemm(q, self.weight, scale, self.weight_scale, self.bias, x.dtype, backend=self.backend)
        return y.reshape(*lead, self.out_features)

    def _path(self, m: int, device: torch.device) -> str:
        """fp8_cpu_path for this call when fp8_gemm would run the CPU kernel, else "kernel"."""
        if device.type != "cpu" or backends.resolve("fp8_gemm", self.backend, device) != "cpu":
            return "kernel"
        path = fp8_cpu_path(m, self.out_features, self.in_features)
        key = (self.out_features, self.in_features, path)
        if path == "dequantize" and key not in _logged_shapes:
            _logged_shapes.add(key)
            logger.info(
                "nvila_kernels: Fp8Linear %d -> %d at M = %d on CPU (fp8_gemm ISA %s): dequantize + torch.matmul path, "
                "faster than the fp8_gemm kernel here (nvila_kernels.layers.fp8_cpu_path)",
                self.in_features,
                self.out_features,
                m,
                backends.cpu_isa(),
            )
        return path

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # a saved static layer (with input_scale) loads into a fresh, dynamic one
        if self.input_scale is None and prefix + "input_scale" in state_dict:
            self.register_buffer("input_scale", torch.ones((), dtype=torch.float32, device=self.weight.device))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _apply(self, fn, recurse=True):
        # model.to(dtype) / .half() would cast the FP8 weight and the fp32 scales too
        # (FP8 is a floating-point dtype): these buffers follow the device only.
        fixed = {n: getattr(self, n) for n in ("weight", "weight_scale", "input_scale")}
        super()._apply(fn, recurse)
        for name, old in fixed.items():
            new = getattr(self, name)
            if old is not None and new.dtype != old.dtype:
                setattr(self, name, old.to(new.device))
        return self

    def extra_repr(self) -> str:
        if self.input_scale is None:
            act = "dynamic"
        elif self.input_scale.device.type == "meta":
            act = "static"
        else:
            act = f"static({float(self.input_scale):.4g})"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"weight={self.weight.dtype}, activation_scale={act}, backend={self.backend}"
        )


def quantize_linears(
    module: nn.Module,
    filter: Callable[[str, nn.Linear], bool] | None = None,
    activation_scale: str | float = "dynamic",
    *,
    backend: str | None = None,
) -> nn.Module:
    """Replace, in place, every nn.Linear of `module` for which filter(name, linear) is
    True (all of them without a filter) by Fp8Linear.from_linear(linear, activation_scale).

    `name` is the qualified name from module.named_modules() ("layers.0.mlp.up").
    Returns `module`; if `module` is itself a selected nn.Linear, returns its Fp8Linear.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    if filter is not None and not callable(filter):
        raise TypeError(f"filter: expected None or a callable (name, linear) -> bool, got {type(filter).__name__}")
    if isinstance(module, nn.Linear):
        if filter is None or filter("", module):
            return Fp8Linear.from_linear(module, activation_scale, backend=backend)
        return module
    selected = [
        (name, m)
        for name, m in module.named_modules()
        if isinstance(m, nn.Linear) and (filter is None or filter(name, m))
    ]
    for name, linear in selected:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name)
        setattr(parent, child, Fp8Linear.from_linear(linear, activation_scale, backend=backend))
    return module


class SpatialCompress(nn.Module):
    """NVILA's projector input: k x k space-to-depth of a token grid fused with the
    projector's first LayerNorm (one kernel, see functional.spatial_compress).

    Parameters `weight` and `bias` (k*k*channels,) have the names of nn.LayerNorm's, so
    the official projector's LayerNorm loads directly:
        sc = SpatialCompress(1152 * 3, k=2)
        sc.load_state_dict(official_projector.layers[1].state_dict())
    and `sc` replaces `layers[0]` (DownSampleBlock) + `layers[1]` (LayerNorm).

    x: (B, H, W, C) token grid, or (B, N, C) with N a perfect square (the official
    DownSampleBlock's input: tokens of a square grid, row-major).
    Returns (B, ceil(H/k), ceil(W/k), k*k*C) for a grid input, (B, ceil(H/k)*ceil(W/k),
    k*k*C) for a token input; dtype of x. elementwise_affine=False: no LayerNorm weights
    (a LayerNorm without affine); layer_norm=False: space-to-depth only.
    """

    def __init__(
        self,
        channels: int,
        k: int = 2,
        eps: float = 1e-5,
        *,
        layer_norm: bool = True,
        elementwise_affine: bool = True,
        backend: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels: expected an int >= 1, got {channels!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected an int >= 1, got {k!r}")
        self.channels, self.k, self.eps, self.backend = channels, k, float(eps), backend
        self.layer_norm = layer_norm
        D = k * k * channels
        if layer_norm and elementwise_affine:
            self.weight = nn.Parameter(torch.ones(D, device=device, dtype=dtype))
            self.bias = nn.Parameter(torch.zeros(D, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        # LayerNorm without affine: unit weights, zero bias (not parameters, not saved)
        self._plain_ln = layer_norm and not elementwise_affine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.dim() == 3
        if tokens:
            B, N, C = x.shape
            side = int(round(N**0.5))
            if side * side != N:
                raise ValueError(f"x: expected (B, N, C) tokens of a square grid, got N = {N} (not a square)")
            x = x.view(B, side, side, C)
        if x.dim() != 4 or x.shape[-1] != self.channels:
            raise ValueError(f"x: expected (B, H, W, {self.channels}) or (B, N, {self.channels}), got {tuple(x.shape)}")
        w, b = self.weight, self.bias
        if self._plain_ln:
            D = self.k * self.k * self.channels
            w, b = torch.ones(D, device=x.device, dtype=x.dtype), torch.zeros(D, device=x.device, dtype=x.dtype)
        y = spatial_compress(x, self.k, w, b, self.eps, backend=self.backend)
        return y.flatten(1, 2) if tokens else y

    def extra_repr(self) -> str:
        return f"channels={self.channels}, k={self.k}, eps={self.eps}, layer_norm={self.layer_norm}"


class TemporalPool(nn.Module):
    """NVILA-8B-Video's temporal compression: the mean of each group of `group`
    consecutive frames. x: (T, ...) with T divisible by group -> (T // group, ...)."""

    def __init__(self, group: int = 8, *, backend: str | None = None):
        super().__init__()
        if isinstance(group, bool) or not isinstance(group, int) or group < 1:
            raise ValueError(f"group: expected an int >= 1, got {group!r}")
        self.group, self.backend = group, backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return temporal_pool(x, self.group, backend=self.backend)

    def extra_repr(self) -> str:
        return f"group={self.group}"
