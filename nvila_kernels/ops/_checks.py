"""Argument checks shared by several ops. Each raises TypeError or ValueError with a
message that starts with the argument's name and says what was expected."""

from __future__ import annotations

import math

import torch

from ..tiling import TilePlan

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# output channels per token of spatial_compress / merge_compress: the CUDA and Triton
# kernels index the channels of one token in 32 bits
MAX_TOKEN_CHANNELS = 2**31 - 1


def check_tensor(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")


def check_float(t, name: str) -> None:
    check_tensor(t, name)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32, float16 or bfloat16, got {t.dtype}")


def check_non_empty(t: torch.Tensor, name: str) -> None:
    if t.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {tuple(t.shape)}")


def check_positive_int(v, name: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {v!r}")


def check_eps(eps) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < math.inf:
        raise ValueError(f"eps: expected a float >= 0 and finite, got {eps!r}")


def check_same_device(t: torch.Tensor, name: str, x: torch.Tensor, x_name: str) -> None:
    if t.device != x.device:
        raise ValueError(f"{name}: expected a tensor on {x.device} (the device of {x_name}), got {t.device}")


def check_token_channels(D: int, what: str) -> None:
    if D > MAX_TOKEN_CHANNELS:
        raise ValueError(f"k: expected at most 2^31 - 1 output channels per token, got {what} = {D}")


def check_layernorm(ln_weight, ln_bias, D: int, what: str, x: torch.Tensor, x_name: str) -> None:
    """LayerNorm parameters: both None, or weight (and optionally bias) of shape (D,) on x's device."""
    if ln_bias is not None and ln_weight is None:
        raise ValueError("ln_bias: given without ln_weight (LayerNorm is applied when ln_weight is given)")
    for name, t in (("ln_weight", ln_weight), ("ln_bias", ln_bias)):
        if t is None:
            continue
        check_float(t, name)
        if tuple(t.shape) != (D,):
            raise ValueError(f"{name}: expected shape ({D},) = {what}, got {tuple(t.shape)}")
        check_same_device(t, name, x, x_name)


def check_plan_type(plan, name: str = "plan") -> None:
    if not isinstance(plan, TilePlan):
        raise TypeError(f"{name}: expected a nvila_kernels.tiling.TilePlan, got {type(plan).__name__}")


def check_scale_grids(plan: TilePlan) -> None:
    """Every scale of a (possibly hand-made) plan has a grid of ints >= 1 tiles."""
    for s in plan.scales:
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (s.rows, s.cols)):
            raise ValueError(f"plan: expected every scale's rows and cols to be ints >= 1, got {s}")


def check_out(out, shape: tuple[int, ...], dtype: torch.dtype, dtype_from: str, x: torch.Tensor, x_name: str) -> None:
    """out=: a contiguous tensor of the output's shape and dtype on x's device, apart from x's memory."""
    check_tensor(out, "out")
    if tuple(out.shape) != shape:
        raise ValueError(f"out: expected shape {shape}, got {tuple(out.shape)}")
    if out.dtype != dtype:
        raise TypeError(f"out: expected dtype {dtype} ({dtype_from}), got {out.dtype}")
    check_same_device(out, "out", x, x_name)
    if not out.is_contiguous():
        raise ValueError("out: expected a contiguous tensor")
    if out.numel() and x.numel() and _overlaps(out, x):
        raise ValueError(f"out: must not share memory with {x_name}")


def is_fake(t: torch.Tensor) -> bool:
    return torch._subclasses.fake_tensor.is_fake(t)


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the memory spans of a and b intersect (conservative for strided views)."""
    if torch.compiler.is_compiling() or a.device != b.device or a.device.type == "meta":
        return False
    if is_fake(a) or is_fake(b):
        return False
    sa, sb = a.untyped_storage(), b.untyped_storage()
    if sa.data_ptr() != sb.data_ptr():
        return False
    ea, eb = a.element_size(), b.element_size()
    a0 = a.storage_offset() * ea
    b0 = b.storage_offset() * eb
    a1 = a0 + sum((n - 1) * s for n, s in zip(a.shape, a.stride(), strict=True)) * ea + ea
    b1 = b0 + sum((n - 1) * s for n, s in zip(b.shape, b.stride(), strict=True)) * eb + eb
    return a0 < b1 and b0 < a1
