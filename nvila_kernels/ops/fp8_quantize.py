"""fp8_quantize: per-tensor FP8 quantization (dynamic or static scale)."""

from __future__ import annotations

import torch

from .. import reference
from . import _examples as ex
from ._checks import check_float, check_non_empty, check_same_device, is_fake
from ._examples import one
from ._spec import FLOAT_NAMES as F
from ._spec import OTHER_DEVICE as OTHER
from ._spec import Accepted, OpSpec, Output, Refusal

__all__ = ["fp8_quantize"]

FP8_DTYPES = reference.FP8_DTYPES


def fp8_quantize(
    x: torch.Tensor,
    scale: torch.Tensor | None = None,
    fp8_dtype: torch.dtype = torch.float8_e4m3fn,
    *,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor FP8 quantization: returns (q, scale) with x ~ q.float() * scale.

    x: any shape, float32/float16/bfloat16. fp8_dtype: float8_e4m3fn or float8_e5m2.
    Dynamic when `scale` is None: scale = max(amax, 1e-12) / fp8_max, computed on
    the device (no host sync); amax ignores NaN and +-inf. Static: `scale` is a
    positive float32 tensor with one element. The cast saturates: values beyond
    +-fp8_max and +-inf become +-fp8_max; NaN stays NaN. The returned scale is a
    0-d float32 tensor (the dequantization multiplier).
    """
    return SPEC.run(dict(x=x, scale=scale, fp8_dtype=fp8_dtype), backend=backend)


def check_scale(scale, name: str, ref: torch.Tensor, ref_name: str) -> None:
    """A per-tensor scale: a float32 tensor with one element on ref's device, positive and finite."""
    if not isinstance(scale, torch.Tensor):
        raise TypeError(f"{name}: expected a float32 torch.Tensor with one element, got {type(scale).__name__}")
    if scale.dtype != torch.float32 or scale.numel() != 1:
        raise ValueError(
            f"{name}: expected a float32 tensor with one element (per-tensor scale), "
            f"got {scale.dtype} of shape {tuple(scale.shape)}"
        )
    check_same_device(scale, name, ref, ref_name)
    # A value check needs the value on the host: free for CPU tensors; on a GPU it
    # would be a device sync per call, so there it is the caller's contract.
    if scale.device.type == "cpu" and not torch.compiler.is_compiling() and not is_fake(scale):
        v = float(scale.reshape(()))
        if not (v > 0 and v != float("inf")):
            raise ValueError(f"{name}: expected a positive finite scale, got {v}")


def check(a: dict) -> tuple[Output, Output]:
    x, fp8_dtype = a["x"], a["fp8_dtype"]
    check_float(x, "x")
    if fp8_dtype not in FP8_DTYPES:
        raise TypeError(f"fp8_dtype: expected torch.float8_e4m3fn or torch.float8_e5m2, got {fp8_dtype}")
    check_non_empty(x, "x")
    if a["scale"] is not None:
        check_scale(a["scale"], "scale", x, "x")
    q = Output(tuple(x.shape), fp8_dtype, x, "x", "fp8_dtype")
    return q, Output((), torch.float32, x, "x", "float32")


def kernel_args(a: dict, q: torch.Tensor, scale_out: torch.Tensor) -> tuple:
    scale = None if a["scale"] is None else a["scale"].reshape(())
    return a["x"].contiguous(), scale, q, scale_out


fq = fp8_quantize
_ones = lambda d: torch.ones(4, device=d)
same = ex.same_as_contiguous
SPEC = OpSpec(
    name="fp8_quantize",
    # q and scale_out are written; scale None = dynamic (amax computed on the device)
    schema="(Tensor x, Tensor? scale, Tensor(a!) q, Tensor(b!) scale_out) -> ()",
    reference=reference.fp8_quantize,
    check=check,
    kernel_args=kernel_args,
    example=lambda d, backend: fq(_ones(d), backend=backend),
    accepts=(
        Accepted("fq-x-transposed-view", "x", "any strides (copied)", "a transposed view",
                 lambda d, b: same(lambda v: fq(v, backend=b)[0].view(torch.uint8), torch.randn(5, 7, device=d).t())),
    ),
    refusals=(
        Refusal("fq-x-type", "x", "a torch.Tensor", "a list", TypeError, "x: expected a torch.Tensor",
                lambda d: fq([1.0])),
        Refusal("fq-x-dtype", "x", F, "int64", TypeError, f"x: expected dtype {F}",
                lambda d: fq(torch.arange(4, device=d))),
        Refusal("fq-x-empty", "x", "non-empty, any shape (0-d too)", "(0,)", ValueError,
                "x: expected a non-empty tensor", lambda d: fq(torch.zeros(0, device=d))),
        Refusal("fq-fp8_dtype", "fp8_dtype", "float8_e4m3fn, float8_e5m2", "float16", TypeError,
                "fp8_dtype: expected torch.float8_e4m3fn or torch.float8_e5m2",
                lambda d: fq(_ones(d), None, torch.float16)),
        Refusal("fq-scale-type", "scale", "None or a float32 tensor with one element", "the float 1.0", TypeError,
                "scale: expected a float32 torch.Tensor with one element", lambda d: fq(_ones(d), 1.0)),
        Refusal("fq-scale-dtype", "scale", "float32", "float64", ValueError,
                "scale: expected a float32 tensor with one element",
                lambda d: fq(_ones(d), one(d, dtype=torch.float64))),
        Refusal("fq-scale-numel", "scale", "one element (any shape)", "2 elements", ValueError,
                "scale: expected a float32 tensor with one element", lambda d: fq(_ones(d), torch.ones(2, device=d))),
        Refusal("fq-scale-device", "scale", "x's device", "meta", ValueError, "scale: expected a tensor on",
                lambda d: fq(_ones(d), one(OTHER))),
        *(
            Refusal(f"fq-scale-{name}", "scale",
                    "positive, finite (checked for CPU tensors; on a GPU: caller's contract)", repr(v), ValueError,
                    "scale: expected a positive finite scale", lambda d, v=v: fq(_ones(d), one(d, v)))
            for v, name in ((0.0, "zero"), (-1.0, "negative"), (float("nan"), "nan"), (float("inf"), "inf"))
        ),
    ),
)  # fmt: skip
