"""temporal_pool: NVILA's temporal compression of video frames."""

from __future__ import annotations

import torch

from .. import reference
from ._checks import check_float, check_non_empty, check_positive_int
from ._examples import same_as_contiguous
from ._spec import FLOAT_NAMES as F
from ._spec import OTHER_DEVICE as OTHER
from ._spec import Accepted, OpSpec, Output, Refusal

__all__ = ["temporal_pool"]


def temporal_pool(
    x: torch.Tensor,
    group: int,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """NVILA's temporal compression: mean over non-overlapping groups of `group`
    consecutive frames along dim 0, accumulated in fp32.

    x: (T, ...) float32/float16/bfloat16 with T divisible by `group` (NVILA video:
    (T, 16, 16, H) projector tokens per frame, group 8). Returns (T // group, ...).
    """
    return SPEC.run(dict(x=x, group=group), out, backend)


def check(a: dict) -> Output:
    x, group = a["x"], a["group"]
    check_float(x, "x")
    if x.dim() < 1:
        raise ValueError("x: expected at least 1 dimension (frames first), got a 0-d tensor")
    check_non_empty(x, "x")
    check_positive_int(group, "group")
    T = x.shape[0]
    if T % group != 0:
        raise ValueError(f"group: the number of frames T={T} (x.shape[0]) is not divisible by group={group}")
    return Output((T // group, *x.shape[1:]), x.dtype, x, "x", "the dtype of x")


def kernel_args(a: dict, out: torch.Tensor) -> tuple:
    x = a["x"]
    if x.dim() > 1 and not x[0].is_contiguous():
        x = x.contiguous()
    return x, a["group"], out


def _x(d, shape=(4, 3, 5), dtype=torch.float32):
    return torch.randn(shape, device=d).to(dtype)


tp, same = temporal_pool, same_as_contiguous
SPEC = OpSpec(
    name="temporal_pool",
    schema="(Tensor x, int group, Tensor(a!) out) -> ()",
    reference=reference.temporal_pool,
    check=check,
    kernel_args=kernel_args,
    example=lambda d, backend: tp(_x(d), 2, backend=backend),
    differentiable=("x",),
    accepts=(
        Accepted("tp-x-frame-strided-view", "x", "any frame stride, contiguous frames (read in place)",
                 "every other frame", lambda d, b: same(lambda v: tp(v, 2, backend=b), _x(d, (8, 3, 5))[::2])),
        Accepted("tp-x-expanded-view", "x", "expanded frames (stride 0)", "one frame expanded to 4",
                 lambda d, b: same(lambda v: tp(v, 2, backend=b), _x(d, (1, 3, 5)).expand(4, 3, 5))),
        Accepted("tp-x-1d-strided-view", "x", "1-D strided", "every other element",
                 lambda d, b: same(lambda v: tp(v, 2, backend=b), _x(d, (16,))[::2])),
        Accepted("tp-x-noncontiguous-frames", "x", "non-contiguous frames (copied first)", "transposed frames",
                 lambda d, b: same(lambda v: tp(v, 2, backend=b), _x(d).transpose(1, 2))),
    ),
    refusals=(
        Refusal("tp-x-type", "x", "a torch.Tensor", "a float", TypeError, "x: expected a torch.Tensor",
                lambda d: tp(1.0, 1)),
        Refusal("tp-x-dtype", "x", F, "int32", TypeError, f"x: expected dtype {F}",
                lambda d: tp(torch.ones(4, 3, dtype=torch.int32, device=d), 2)),
        Refusal("tp-x-rank", "x", ">= 1 dims, frames first", "0-d", ValueError, "x: expected at least 1 dimension",
                lambda d: tp(torch.tensor(1.0, device=d), 1)),
        Refusal("tp-x-empty", "x", "non-empty", "(4, 0)", ValueError, "x: expected a non-empty tensor",
                lambda d: tp(_x(d, (4, 0)), 2)),
        Refusal("tp-group-zero", "group", "int >= 1", "0", ValueError, "group: expected an int >= 1",
                lambda d: tp(_x(d), 0)),
        Refusal("tp-group-float", "group", "int >= 1", "2.0", ValueError, "group: expected an int >= 1",
                lambda d: tp(_x(d), 2.0)),
        Refusal("tp-group-not-divisor", "group", "divides x.shape[0]", "3 for 4 frames", ValueError,
                "group: the number of frames T=4 (x.shape[0]) is not divisible by group=3", lambda d: tp(_x(d), 3)),
        Refusal("tp-out-shape", "out", "(T // group, ...)", "(4, 3, 5)", ValueError, "out: expected shape (2, 3, 5)",
                lambda d: tp(_x(d), 2, out=_x(d))),
        Refusal("tp-out-dtype", "out", "x's dtype", "bfloat16", TypeError, "out: expected dtype torch.float32",
                lambda d: tp(_x(d), 2, out=_x(d, (2, 3, 5), torch.bfloat16))),
        Refusal("tp-out-device", "out", "x's device", "meta", ValueError, "out: expected a tensor on",
                lambda d: tp(_x(d), 2, out=torch.empty(2, 3, 5, device=OTHER))),
        Refusal("tp-out-strided", "out", "contiguous", "a transposed view", ValueError,
                "out: expected a contiguous tensor",
                lambda d: tp(_x(d), 2, out=torch.empty(2, 5, 3, device=d).transpose(1, 2))),
    ),
)  # fmt: skip
