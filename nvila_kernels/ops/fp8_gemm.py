"""fp8_gemm: (a * scale_a) @ (b * scale_b)^T + bias with FP8 operands, fp32 accumulation."""

from __future__ import annotations

import torch

from .. import reference
from ._checks import FLOAT_DTYPES, check_float, check_same_device, check_tensor
from ._examples import fp8, one
from ._spec import FLOAT_NAMES as F
from ._spec import OTHER_DEVICE as OTHER
from ._spec import Accepted, OpSpec, Output, Refusal
from .fp8_quantize import check_scale

__all__ = ["fp8_gemm"]

OUT_DTYPES = FLOAT_DTYPES


def fp8_gemm(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype = torch.bfloat16,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """out = (a * scale_a) @ (b * scale_b)^T + bias with fp32 accumulation.

    a: (M, K) float8_e4m3fn, b: (N, K) float8_e4m3fn (nn.Linear weight layout),
    scale_a / scale_b: float32 tensors with one element, bias: (N,) float or None,
    out_dtype: bfloat16, float16 or float32. Same semantics as
    torch._scaled_mm(a, b.t(), scale_a, scale_b, bias, out_dtype=out_dtype).
    """
    args = dict(a=a, b=b, scale_a=scale_a, scale_b=scale_b, bias=bias, out_dtype=out_dtype)
    return SPEC.run(args, backend=backend)


def check(args: dict) -> Output:
    a, b, bias, out_dtype = args["a"], args["b"], args["bias"], args["out_dtype"]
    for name, t in (("a", a), ("b", b)):
        check_tensor(t, name)
        if t.dtype != torch.float8_e4m3fn:
            raise TypeError(f"{name}: expected dtype torch.float8_e4m3fn, got {t.dtype}")
        if t.dim() != 2:
            raise ValueError(f"{name}: expected a 2-D tensor, got shape {tuple(t.shape)}")
    check_same_device(b, "b", a, "a")
    M, K = a.shape
    N = b.shape[0]
    if b.shape[1] != K:
        raise ValueError(f"b: expected shape (N, K) with K = {K} (a is {tuple(a.shape)}), got {tuple(b.shape)}")
    if M == 0 or N == 0 or K == 0:
        raise ValueError(f"a, b: expected non-empty matrices, got a {tuple(a.shape)} and b {tuple(b.shape)}")
    check_scale(args["scale_a"], "scale_a", a, "a")
    check_scale(args["scale_b"], "scale_b", a, "a")
    if bias is not None:
        check_float(bias, "bias")
        if tuple(bias.shape) != (N,):
            raise ValueError(f"bias: expected shape ({N},), got {tuple(bias.shape)}")
        check_same_device(bias, "bias", a, "a")
    if out_dtype not in OUT_DTYPES:
        raise TypeError(f"out_dtype: expected torch.bfloat16, torch.float16 or torch.float32, got {out_dtype}")
    return Output((M, N), out_dtype, a, "a", "out_dtype")


def kernel_args(args: dict, out: torch.Tensor) -> tuple:
    bias = args["bias"]
    bias32 = None if bias is None else bias.to(torch.float32).contiguous()
    scale_a, scale_b = args["scale_a"].reshape(()), args["scale_b"].reshape(())
    return args["a"].contiguous(), args["b"].contiguous(), scale_a, scale_b, bias32, out


fg, A, B = fp8_gemm, (4, 32), (8, 32)
SPEC = OpSpec(
    name="fp8_gemm",
    schema="(Tensor a, Tensor b, Tensor scale_a, Tensor scale_b, Tensor? bias, Tensor(a!) out) -> ()",
    reference=reference.fp8_gemm,
    check=check,
    kernel_args=kernel_args,
    example=lambda d, backend: fg(fp8(d, A), fp8(d, B), one(d), one(d), backend=backend),
    accepts=(
        Accepted("fg-a-b-views", "a", "any strides (copied)", "a, b transposed views",
                 lambda d, b: (lambda x, w: (fg(x, w, one(d, 0.5), one(d), backend=b),
                                             fg(x.contiguous(), w.contiguous(), one(d, 0.5), one(d), backend=b)))(
                     fp8(d, (32, 4)).t(), fp8(d, (32, 8)).t())),
    ),
    refusals=(
        Refusal("fg-a-type", "a", "a torch.Tensor", "a list", TypeError, "a: expected a torch.Tensor",
                lambda d: fg([[0]], fp8(d, B), one(d), one(d))),
        Refusal("fg-a-dtype", "a", "float8_e4m3fn", "float32", TypeError, "a: expected dtype torch.float8_e4m3fn",
                lambda d: fg(torch.ones(A, device=d), fp8(d, B), one(d), one(d))),
        Refusal("fg-b-dtype", "b", "float8_e4m3fn", "float8_e5m2", TypeError, "b: expected dtype torch.float8_e4m3fn",
                lambda d: fg(fp8(d, A), fp8(d, B).to(torch.float8_e5m2), one(d), one(d))),
        Refusal("fg-a-rank", "a", "2-D (M, K)", "1-D", ValueError, "a: expected a 2-D tensor",
                lambda d: fg(fp8(d, (32,)), fp8(d, B), one(d), one(d))),
        Refusal("fg-b-rank", "b", "2-D (N, K)", "3-D", ValueError, "b: expected a 2-D tensor",
                lambda d: fg(fp8(d, A), fp8(d, (1, 8, 32)), one(d), one(d))),
        Refusal("fg-b-k-mismatch", "b", "(N, K) with a's K", "K = 16 for a's 32", ValueError,
                "b: expected shape (N, K) with K = 32", lambda d: fg(fp8(d, A), fp8(d, (8, 16)), one(d), one(d))),
        Refusal("fg-b-device", "b", "a's device", "meta", ValueError, "b: expected a tensor on",
                lambda d: fg(fp8(d, A), fp8("cpu", B).to(OTHER), one(d), one(d))),
        Refusal("fg-empty", "a", "M, N, K >= 1", "M = 0", ValueError, "a, b: expected non-empty matrices",
                lambda d: fg(fp8(d, (0, 32)), fp8(d, B), one(d), one(d))),
        Refusal("fg-scale_a-numel", "scale_a", "float32 with one element", "(2,)", ValueError,
                "scale_a: expected a float32 tensor with one element",
                lambda d: fg(fp8(d, A), fp8(d, B), torch.ones(2, device=d), one(d))),
        Refusal("fg-scale_b-zero", "scale_b", "positive, finite (CPU tensors checked)", "0", ValueError,
                "scale_b: expected a positive finite scale", lambda d: fg(fp8(d, A), fp8(d, B), one(d), one(d, 0.0))),
        Refusal("fg-scale_a-device", "scale_a", "a's device", "meta", ValueError, "scale_a: expected a tensor on",
                lambda d: fg(fp8(d, A), fp8(d, B), one(OTHER), one(d))),
        Refusal("fg-bias-shape", "bias", "(N,)", "(N + 1,)", ValueError, "bias: expected shape (8,)",
                lambda d: fg(fp8(d, A), fp8(d, B), one(d), one(d), torch.ones(9, device=d))),
        Refusal("fg-bias-dtype", "bias", F, "int32", TypeError, f"bias: expected dtype {F}",
                lambda d: fg(fp8(d, A), fp8(d, B), one(d), one(d), torch.ones(8, dtype=torch.int32, device=d))),
        Refusal("fg-bias-device", "bias", "a's device", "meta", ValueError, "bias: expected a tensor on",
                lambda d: fg(fp8(d, A), fp8(d, B), one(d), one(d), torch.ones(8, device=OTHER))),
        Refusal("fg-out_dtype", "out_dtype", "bfloat16, float16, float32", "float8_e4m3fn", TypeError,
                "out_dtype: expected torch.bfloat16, torch.float16 or torch.float32",
                lambda d: fg(fp8(d, A), fp8(d, B), one(d), one(d), out_dtype=torch.float8_e4m3fn)),
    ),
)  # fmt: skip
